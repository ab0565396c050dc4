//! Batch ingestion end to end: spec → readers → index (with spills) → merged, partitioned segments
//! in local deep storage, with parse errors reported by position and good rows never lost.

use grove_segment::SegmentError;
use grove_segment::columns::{DimensionData, MetricData, SegmentColumns};
use grove_segment::deep_storage::{DeepStorage, LoadSpec, LocalDeepStorage};
use grove_segment::format::{Segment, WriteOptions};
use grove_segment::ingest::{BatchOptions, BatchResult, run_batch};
use grove_segment::merge::merge_columns;
use grove_segment::spec::{IngestionSpec, parse_task};

const ROWS: &str = r#"{"ts":"2024-01-01T00:00:01Z","page":"a","user":"u1","added":1}
{"ts":"2024-01-01T00:00:02Z","page":"b","user":"u2","added":2}
this is not json
{"ts":"2024-01-01T00:00:03Z","page":"a","user":"u1","added":3}
{"ts":"2024-01-01T01:00:00Z","page":"c","user":"u3","added":"four"}
{"ts":"2024-01-02T00:00:00Z","page":"a","user":"u1","added":5}
{"page":"a","added":6}
{"ts":"2024-01-01T00:00:04Z","page":"d","user":"u4","added":7}
{"ts":"2024-01-01T00:00:05Z","page":"e","user":"u5","added":8}
{"ts":"2024-01-01T00:00:06Z","page":"a","user":"u6","added":9}
{"ts":"2024-01-03T00:00:06Z","page":"skip","user":"u6","added":10}
"#;

fn spec(
    max_rows_in_memory: u64,
    max_rows_per_segment: u64,
    max_parse_exceptions: u64,
) -> IngestionSpec {
    let data = serde_json::to_string(ROWS).expect("json string");
    let json = format!(
        r#"{{"type":"index_parallel","spec":{{
          "dataSchema":{{"dataSource":"edits",
            "timestampSpec":{{"column":"ts","format":"iso"}},
            "dimensionsSpec":{{"dimensions":["page"]}},
            "metricsSpec":[{{"type":"count","name":"count"}},{{"type":"longSum","name":"added","fieldName":"added"}},
                           {{"type":"HLLSketchBuild","name":"users","fieldName":"user"}}],
            "granularitySpec":{{"segmentGranularity":"day","queryGranularity":"hour","rollup":true}},
            "transformSpec":{{"filter":{{"type":"not","field":{{"type":"selector","dimension":"page","value":"skip"}}}}}}}},
          "ioConfig":{{"type":"index_parallel","inputSource":{{"type":"inline","data":{data}}},"inputFormat":{{"type":"json"}}}},
          "tuningConfig":{{"type":"index_parallel","maxRowsInMemory":{max_rows_in_memory},
            "partitionsSpec":{{"type":"dynamic","maxRowsPerSegment":{max_rows_per_segment}}},
            "maxParseExceptions":{max_parse_exceptions}}}}}}}"#
    );
    parse_task(&json).expect("spec parses").spec
}

fn run(spec: &IngestionSpec, dir: &std::path::Path) -> Result<BatchResult, SegmentError> {
    let storage = LocalDeepStorage::new(dir.join("deep"));
    let options = BatchOptions {
        work_dir: dir.join("work"),
        version: "2024-06-01T00:00:00.000Z".into(),
        write: WriteOptions::default(),
        threads: 1,
        split_bytes_min: grove_segment::ingest::SPLIT_BYTES_MIN,
    };
    run_batch(spec, &storage, &options)
}

fn load(result: &BatchResult, dir: &std::path::Path) -> Vec<SegmentColumns> {
    let storage = LocalDeepStorage::new(dir.join("deep"));
    result
        .segments
        .iter()
        .map(|s| {
            let local = dir.join(format!("pulled-{}", s.meta.id));
            storage.pull(&s.load_spec, &local).expect("pull");
            let segment = Segment::open(&local).expect("open");
            segment.verify().expect("checksums");
            assert_eq!(segment.meta(), &s.meta);
            segment.to_columns().expect("columns")
        })
        .collect()
}

fn pages_and_counts(columns: &SegmentColumns) -> Vec<(i64, String, i64, i64)> {
    let DimensionData::String { dictionary, rows } = &columns.dimensions[0].data else {
        panic!("page is a string dimension");
    };
    let (MetricData::Long(count), MetricData::Long(added)) =
        (&columns.metrics[0].data, &columns.metrics[1].data)
    else {
        panic!("count and added are longs");
    };
    (0..columns.num_rows())
        .map(|r| {
            let page = dictionary[rows.row(r)[0] as usize]
                .clone()
                .unwrap_or_default();
            (columns.time[r], page, count[r], added[r])
        })
        .collect()
}

#[test]
fn parse_errors_are_reported_with_positions_and_good_rows_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let result = run(&spec(1_000_000, 5_000_000, 10), dir.path()).expect("ingest");
    let report = &result.report;
    assert_eq!(report.processed, 7);
    assert_eq!(report.unparseable, 3);
    assert_eq!(report.thrown_away, 1);
    let lines: Vec<(Option<u64>, &str)> = report
        .errors
        .iter()
        .map(|e| (e.position.line, e.position.source.as_str()))
        .collect();
    assert_eq!(
        lines,
        vec![
            (Some(3), "inline"),
            (Some(5), "inline"),
            (Some(7), "inline")
        ]
    );
    assert!(
        report.errors[1].message.contains("four"),
        "{}",
        report.errors[1].message
    );
    assert!(
        report.errors[2].message.contains("ts"),
        "{}",
        report.errors[2].message
    );

    // Two days → two segments; the first rolls hour-truncated rows up by page.
    assert_eq!(result.segments.len(), 2);
    let columns = load(&result, dir.path());
    let day1 = pages_and_counts(&columns[0]);
    let hour = 1_704_067_200_000;
    assert_eq!(
        day1,
        vec![
            (hour, "a".into(), 3, 1 + 3 + 9),
            (hour, "b".into(), 1, 2),
            (hour, "d".into(), 1, 7),
            (hour, "e".into(), 1, 8),
        ]
    );
    assert_eq!(
        pages_and_counts(&columns[1]),
        vec![(hour + 86_400_000, "a".into(), 1, 5)]
    );
    let LoadSpec::Local { path } = &result.segments[0].load_spec;
    assert!(
        path.starts_with(dir.path().join("deep")),
        "{}",
        path.display()
    );
}

#[test]
fn too_many_parse_errors_fail_with_the_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = run(&spec(1_000_000, 5_000_000, 2), dir.path()).expect_err("3 errors > 2 allowed");
    let message = err.to_string();
    assert!(message.contains("inline line 3"), "{message}");
    assert!(message.contains("maxParseExceptions 2"), "{message}");
    assert!(
        !dir.path().join("deep").join("edits").exists(),
        "nothing was published"
    );
}

#[test]
fn spills_and_partitions_give_the_same_rows_as_one_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec_small = spec(2, 2, 10);
    let result = run(&spec_small, dir.path()).expect("ingest");
    assert!(result.spills >= 2, "expected spills, got {}", result.spills);
    // Day one has 4 rolled-up rows → 2 partitions of 2; day two 1 row.
    let partitions: Vec<(u32, u32)> = result
        .segments
        .iter()
        .map(|s| (s.meta.id.partition, s.core_partitions))
        .collect();
    assert_eq!(partitions, vec![(0, 2), (1, 2), (0, 1)]);
    let columns = load(&result, dir.path());
    let schema = spec_small.data_schema.schema().expect("schema");
    let day1 = merge_columns(&schema, &columns[..2]).expect("merge partitions");

    let one_index_dir = tempfile::tempdir().expect("tempdir");
    let one_index = run(&spec(1_000_000, 5_000_000, 10), one_index_dir.path()).expect("ingest");
    assert_eq!((one_index.spills, one_index.report.processed), (0, 7));
    let all: Vec<_> = load(&one_index, one_index_dir.path())
        .iter()
        .flat_map(pages_and_counts)
        .collect();
    let mut pulled = pages_and_counts(&day1);
    pulled.extend(pages_and_counts(&columns[2]));
    assert_eq!(pulled, all);
    assert!(
        !dir.path()
            .join("work")
            .join("spills")
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(false),
        "spill files are removed"
    );
}

#[test]
fn a_chunk_whose_rows_all_fail_publishes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = serde_json::to_string(
        "{\"ts\":\"2024-01-01T00:00:00Z\",\"page\":\"a\",\"n\":1,\"x\":1}\n{\"ts\":\"2024-01-02T00:00:00Z\",\"page\":\"b\",\"n\":\"abc\",\"x\":\"abc\"}\n",
    )
    .expect("json string");
    for (dimension, metric) in [
        (
            r#"{"type":"long","name":"n"}"#,
            r#"{"type":"longSum","name":"s","fieldName":"n"}"#,
        ),
        (
            r#""page""#,
            r#"{"type":"doubleSum","name":"s","fieldName":"x"}"#,
        ),
    ] {
        let json = format!(
            r#"{{"type":"index","spec":{{"dataSchema":{{"dataSource":"d","timestampSpec":{{"column":"ts"}},
              "dimensionsSpec":{{"dimensions":[{dimension}]}},"metricsSpec":[{metric}],
              "granularitySpec":{{"segmentGranularity":"day"}}}},
              "ioConfig":{{"inputSource":{{"type":"inline","data":{data}}},"inputFormat":{{"type":"json"}}}},
              "tuningConfig":{{"maxParseExceptions":10}}}}}}"#
        );
        let spec = parse_task(&json).expect("spec").spec;
        let result = run(&spec, dir.path()).expect("ingest succeeds with one bad row");
        assert_eq!(result.report.unparseable, 1, "{dimension} {metric}");
        let days: Vec<String> = result
            .segments
            .iter()
            .map(|s| s.meta.id.interval.to_string())
            .collect();
        assert_eq!(
            days,
            vec!["2024-01-01T00:00:00.000Z/2024-01-02T00:00:00.000Z"],
            "{dimension} {metric}"
        );
    }
}

/// A local JSON file cut into pieces read on several threads (each with its own index and
/// spills), chunks persisted in parallel: the same report (errors at the file's own line
/// numbers) and the same segments as one thread reading it whole.
#[test]
fn pieces_of_a_file_on_threads_ingest_as_one_thread_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rows.json");
    // The rows several times over, so every piece holds rows of both days.
    std::fs::write(&file, ROWS.repeat(7)).expect("write rows");
    let local = format!(
        r#"{{"type":"local","baseDir":{},"filter":"rows.json"}}"#,
        serde_json::to_string(&dir.path().display().to_string()).unwrap()
    );
    let mut results = Vec::new();
    for (threads, max_rows) in [(1usize, 1_000_000u64), (2, 1_000_000), (3, 2)] {
        let text = format!(
            r#"{{"type":"index_parallel","spec":{{
              "dataSchema":{{"dataSource":"edits",
                "timestampSpec":{{"column":"ts","format":"iso"}},
                "dimensionsSpec":{{"dimensions":["page"]}},
                "metricsSpec":[{{"type":"count","name":"count"}},{{"type":"longSum","name":"added","fieldName":"added"}},
                               {{"type":"HLLSketchBuild","name":"users","fieldName":"user"}}],
                "granularitySpec":{{"segmentGranularity":"day","queryGranularity":"hour","rollup":true}}}},
              "ioConfig":{{"type":"index_parallel","inputSource":{local},"inputFormat":{{"type":"json"}}}},
              "tuningConfig":{{"type":"index_parallel","maxRowsInMemory":{max_rows},
                "maxParseExceptions":100}}}}}}"#
        );
        let spec = parse_task(&text).expect("spec parses").spec;
        let sub = dir.path().join(format!("t{threads}"));
        let storage = LocalDeepStorage::new(sub.join("deep"));
        let options = BatchOptions {
            work_dir: sub.join("work"),
            version: "2024-06-01T00:00:00.000Z".into(),
            write: WriteOptions::default(),
            threads,
            split_bytes_min: 1,
        };
        let result = run_batch(&spec, &storage, &options).expect("ingest");
        let lines: Vec<Option<u64>> = result
            .report
            .errors
            .iter()
            .map(|e| e.position.line)
            .collect();
        let rows: Vec<Vec<(i64, String, i64, i64)>> =
            load(&result, &sub).iter().map(pages_and_counts).collect();
        results.push((
            result.report.processed,
            result.report.unparseable,
            lines,
            rows,
        ));
    }
    // 3 errors per copy, at lines 3, 5, 7 of each 11-line copy.
    let expected_lines: Vec<Option<u64>> = (0..7u64)
        .flat_map(|k| [3, 5, 7].map(|l| Some(11 * k + l)))
        .collect();
    assert_eq!(results[0].2, expected_lines);
    for r in &results[1..] {
        assert_eq!(r, &results[0]);
    }
    assert_eq!(results[0].0, 56);
}
