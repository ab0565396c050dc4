//! The segment file format end to end: round trips (hand-written, edge cases, proptest) in both
//! compressions, accessors against naive computations, and corruption: every byte of a file
//! flipped, truncations, an unknown version.

use std::collections::BTreeSet;

use grove_segment::SegmentError;
use grove_segment::columns::{
    DimensionColumn, DimensionData, MetricColumn, MetricData, SegmentColumns, StringRows,
};
use grove_segment::format::{
    Compression, DimensionReader, MetricReader, Segment, SegmentMeta, WriteOptions, write_segment,
    write_segment_to,
};
use grove_segment::id::SegmentId;
use grove_segment::schema::{
    DimensionSchema, MetricKind, MetricSchema, MultiValueHandling, Schema,
};
use grove_segment::time::{Granularity, Interval};
use proptest::prelude::*;
use roaring::RoaringBitmap;

const DAY_MS: i64 = 86_400_000;
const T0: i64 = 1_700_006_400_000;

#[allow(dead_code)]
#[path = "../benches/common/mod.rs"]
mod common;
use common::Rng;

fn metric(name: &str, kind: MetricKind) -> MetricSchema {
    MetricSchema {
        name: name.to_string(),
        field_name: (kind != MetricKind::Count).then(|| format!("{name}_in")),
        kind,
    }
}

fn meta_for(schema: Schema, columns: &SegmentColumns) -> SegmentMeta {
    SegmentMeta {
        id: SegmentId {
            data_source: schema.data_source.clone(),
            namespace: None,
            interval: Interval::new(T0, T0 + DAY_MS),
            version: "2024-01-01T00:00:00.000Z".to_string(),
            partition: 3,
        },
        schema,
        num_rows: columns.num_rows() as u64,
        time_min_ms: columns.time.first().copied().unwrap_or(0),
        time_max_ms: columns.time.last().copied().unwrap_or(0),
    }
}

fn schema(dimensions: Vec<DimensionSchema>, metrics: Vec<MetricSchema>) -> Schema {
    Schema {
        data_source: "wiki".to_string(),
        dimensions,
        metrics,
        query_granularity: Granularity::None,
        segment_granularity: Granularity::DAY,
        rollup: false,
        time_position: 0,
    }
}

/// Every kind of column: single-value strings with nulls, multi-value strings, strings without
/// bitmaps, long and double dimensions with nulls, long, double and sketch metrics.
fn sample(rows: usize, seed: u64) -> (SegmentMeta, SegmentColumns) {
    let mut rng = Rng(seed);
    let mut time: Vec<i64> = (0..rows)
        .map(|_| T0 + rng.below(DAY_MS as u64) as i64)
        .collect();
    time.sort_unstable();

    let pages_len = 1 + rng.below(40) as usize;
    let mut page_dict: Vec<Option<String>> = vec![None];
    let mut words: BTreeSet<String> = BTreeSet::new();
    while words.len() < pages_len {
        let len = rng.below(12) as usize;
        let word: String = (0..len)
            .map(|_| ['a', 'b', 'é', 'z', '日', ' '][rng.below(6) as usize])
            .collect();
        words.insert(format!("page/{word}"));
    }
    page_dict.extend(words.into_iter().map(Some));
    let page_ids: Vec<u32> = (0..rows)
        .map(|_| {
            if rng.chance(10) {
                0
            } else {
                rng.below(page_dict.len() as u64) as u32
            }
        })
        .collect();

    let tag_dict: Vec<Option<String>> = vec![
        None,
        Some("".into()),
        Some("x".into()),
        Some("y".into()),
        Some("yz".into()),
    ];
    let mut offsets = vec![0u32];
    let mut tag_ids = Vec::new();
    for _ in 0..rows {
        let n = rng.below(4);
        let mut row: Vec<u32> = (0..n).map(|_| 1 + rng.below(4) as u32).collect();
        row.sort_unstable();
        tag_ids.extend(row);
        offsets.push(tag_ids.len() as u32);
    }

    let country_dict: Vec<Option<String>> = ["DE", "FR", "JP", "US"]
        .iter()
        .map(|s| Some(s.to_string()))
        .collect();
    let country_ids: Vec<u32> = (0..rows).map(|_| rng.below(4) as u32).collect();

    let mut user_nulls = RoaringBitmap::new();
    let users: Vec<i64> = (0..rows)
        .map(|row| {
            if rng.chance(20) {
                user_nulls.insert(row as u32);
                0
            } else {
                rng.next() as i64
            }
        })
        .collect();
    let mut score_nulls = RoaringBitmap::new();
    let scores: Vec<f64> = (0..rows)
        .map(|row| {
            if rng.chance(15) {
                score_nulls.insert(row as u32);
                0.0
            } else {
                (rng.below(1_000_000) as f64) / 7.0 - 50_000.0
            }
        })
        .collect();

    let mut tags = DimensionSchema::string("tags");
    tags.multi_value_handling = MultiValueHandling::SortedArray;
    let mut country = DimensionSchema::string("country");
    country.bitmap_index = false;
    let schema = schema(
        vec![
            DimensionSchema::string("page"),
            tags,
            country,
            DimensionSchema::long("user"),
            DimensionSchema::double("score"),
        ],
        vec![
            metric("count", MetricKind::Count),
            metric("added", MetricKind::LongSum),
            metric("delta", MetricKind::LongMin),
            metric("spend", MetricKind::DoubleSum),
            metric(
                "users",
                MetricKind::HllSketch {
                    lg_k: 12,
                    utf16le: false,
                },
            ),
        ],
    );
    let columns = SegmentColumns {
        time,
        dimensions: vec![
            DimensionColumn {
                name: "page".into(),
                data: DimensionData::String {
                    dictionary: page_dict,
                    rows: StringRows::Single(page_ids),
                },
            },
            DimensionColumn {
                name: "tags".into(),
                data: DimensionData::String {
                    dictionary: tag_dict,
                    rows: StringRows::Multi {
                        offsets,
                        ids: tag_ids,
                    },
                },
            },
            DimensionColumn {
                name: "country".into(),
                data: DimensionData::String {
                    dictionary: country_dict,
                    rows: StringRows::Single(country_ids),
                },
            },
            DimensionColumn {
                name: "user".into(),
                data: DimensionData::Long {
                    values: users,
                    nulls: user_nulls,
                },
            },
            DimensionColumn {
                name: "score".into(),
                data: DimensionData::Double {
                    values: scores,
                    nulls: score_nulls,
                },
            },
        ],
        metrics: vec![
            MetricColumn {
                name: "count".into(),
                kind: MetricKind::Count,
                data: MetricData::Long((0..rows).map(|_| 1 + rng.below(3) as i64).collect()),
            },
            MetricColumn {
                name: "added".into(),
                kind: MetricKind::LongSum,
                data: MetricData::Long(
                    (0..rows)
                        .map(|_| rng.below(1 << 40) as i64 - (1 << 39))
                        .collect(),
                ),
            },
            MetricColumn {
                name: "delta".into(),
                kind: MetricKind::LongMin,
                data: MetricData::Long((0..rows).map(|_| rng.next() as i64).collect()),
            },
            MetricColumn {
                name: "spend".into(),
                kind: MetricKind::DoubleSum,
                data: MetricData::Double(
                    (0..rows)
                        .map(|_| rng.below(1 << 30) as f64 / 1024.0)
                        .collect(),
                ),
            },
            MetricColumn {
                name: "users".into(),
                kind: MetricKind::HllSketch {
                    lg_k: 12,
                    utf16le: false,
                },
                data: MetricData::Sketch(
                    (0..rows)
                        .map(|_| (0..rng.below(24)).map(|_| rng.next() as u8).collect())
                        .collect(),
                ),
            },
        ],
    };
    (meta_for(schema, &columns), columns)
}

const BOTH: [Compression; 2] = [Compression::None, Compression::Zstd { level: 3 }];

fn write(meta: &SegmentMeta, columns: &SegmentColumns, compression: Compression) -> Vec<u8> {
    let mut bytes = Vec::new();
    let written =
        write_segment_to(&mut bytes, meta, columns, &WriteOptions { compression }).unwrap();
    assert_eq!(written, bytes.len() as u64);
    bytes
}

/// Round trip plus every accessor against a naive computation over the input.
fn check_round_trip(
    meta: &SegmentMeta,
    columns: &SegmentColumns,
    compression: Compression,
) -> Segment {
    let bytes = write(meta, columns, compression);
    let size = bytes.len() as u64;
    let segment = Segment::from_bytes(bytes, "test").unwrap();
    assert_eq!(segment.file_bytes(), size);
    assert_eq!(segment.meta(), meta);
    assert_eq!(segment.num_rows(), columns.num_rows());
    segment.verify().unwrap();
    assert_eq!(&segment.to_columns().unwrap(), columns);
    check_accessors(&segment, columns);
    segment
}

fn naive_sum(values: &[i64]) -> i64 {
    values.iter().fold(0i64, |a, &v| a.wrapping_add(v))
}

fn check_longs(column: &grove_segment::format::LongColumn<'_>, values: &[i64]) {
    assert_eq!(column.len(), values.len());
    assert_eq!(column.sum(), naive_sum(values));
    assert_eq!(column.min(), values.iter().copied().min());
    assert_eq!(column.max(), values.iter().copied().max());
    for row in (0..values.len()).step_by(1 + values.len() / 50) {
        assert_eq!(column.get(row), values[row], "row {row}");
    }
    let mut seen = Vec::new();
    column.for_each_block(|block| seen.extend_from_slice(block));
    assert_eq!(seen, values);
    if values.len() > 3 {
        let mut part = vec![0; values.len() - 3];
        column.decode(2, &mut part);
        assert_eq!(part, &values[2..values.len() - 1]);
    }
}

fn check_accessors(segment: &Segment, columns: &SegmentColumns) {
    let rows = columns.num_rows();
    check_longs(&segment.time().unwrap(), &columns.time);
    assert!(segment.dimension("nope").unwrap().is_none());
    assert!(segment.metric("nope").unwrap().is_none());
    for dim in &columns.dimensions {
        let reader = segment.dimension(&dim.name).unwrap().unwrap();
        match (&dim.data, reader) {
            (
                DimensionData::String {
                    dictionary,
                    rows: string_rows,
                },
                DimensionReader::String(col),
            ) => {
                assert_eq!(col.num_rows(), rows);
                assert_eq!(col.dictionary_len(), dictionary.len());
                assert_eq!(col.has_null(), dictionary.first() == Some(&None));
                assert_eq!(
                    col.is_multi_value(),
                    matches!(string_rows, StringRows::Multi { .. })
                );
                let mut buf = String::new();
                for (id, value) in dictionary.iter().enumerate() {
                    let id = id as u32;
                    assert_eq!(col.value(id).unwrap().as_deref(), value.as_deref());
                    assert_eq!(col.value_into(id, &mut buf).unwrap(), value.is_some());
                    assert_eq!(buf, value.clone().unwrap_or_default());
                    assert_eq!(col.lookup_value(value.as_deref()), Some(id));
                    if let Some(v) = value {
                        assert_eq!(col.lookup(v), Some(id));
                        assert_eq!(col.lookup(&format!("{v}\u{0}")), None);
                    }
                }
                assert!(col.value(dictionary.len() as u32).is_err());
                let mut ids = Vec::new();
                for row in 0..rows {
                    col.row_ids(row, &mut ids);
                    assert_eq!(ids, string_rows.row(row), "row {row}");
                }
                let mut per_row = Vec::new();
                col.for_each_row(|row, ids| per_row.push((row, ids.to_vec())));
                assert_eq!(per_row.len(), rows);
                assert!(
                    per_row
                        .iter()
                        .all(|(row, ids)| ids == string_rows.row(*row))
                );
                match string_rows {
                    StringRows::Single(expected) => {
                        let mut out = vec![0u32; rows];
                        col.decode_ids(0, &mut out).unwrap();
                        assert_eq!(&out, expected);
                        assert!(col.decode_ids(1, &mut out).is_err());
                    }
                    StringRows::Multi { .. } => {
                        assert!(col.decode_ids(0, &mut [0u32; 1]).is_err());
                    }
                }
                assert_eq!(col.has_bitmaps(), dim.name != "country");
                if col.has_bitmaps() {
                    let has_null = col.has_null();
                    for id in 0..dictionary.len() as u32 {
                        let expected: RoaringBitmap = (0..rows as u32)
                            .filter(|&r| {
                                let ids = string_rows.row(r as usize);
                                ids.contains(&id) || (id == 0 && has_null && ids.is_empty())
                            })
                            .collect();
                        assert_eq!(col.bitmap(id).unwrap(), expected, "{} id {id}", dim.name);
                    }
                    assert!(col.bitmap(dictionary.len() as u32).is_err());
                } else {
                    assert!(col.bitmap(0).is_err());
                }
            }
            (
                DimensionData::Long { values, nulls },
                DimensionReader::Long {
                    values: col,
                    nulls: n,
                },
            ) => {
                check_longs(&col, values);
                assert_eq!(n, nulls);
            }
            (
                DimensionData::Double { values, nulls },
                DimensionReader::Double {
                    values: col,
                    nulls: n,
                },
            ) => {
                assert_eq!(col.to_vec(), *values);
                assert_eq!(col.sum(), values.iter().fold(0.0, |a, v| a + v));
                assert_eq!(n, nulls);
            }
            (data, _) => panic!(
                "dimension {} read back as another type ({data:?})",
                dim.name
            ),
        }
    }
    for metric in &columns.metrics {
        match (&metric.data, segment.metric(&metric.name).unwrap().unwrap()) {
            (MetricData::Long(values), MetricReader::Long(col)) => check_longs(&col, values),
            (MetricData::Double(values), MetricReader::Double(col)) => {
                assert_eq!(col.sum(), values.iter().fold(0.0, |a, v| a + v));
                for (row, v) in values.iter().enumerate() {
                    assert_eq!(col.get(row), *v);
                }
                let mut seen = Vec::new();
                col.for_each_block(|b| seen.extend_from_slice(b));
                assert_eq!(&seen, values);
            }
            (MetricData::Sketch(values), MetricReader::Sketch(col)) => {
                assert_eq!(col.len(), values.len());
                for (row, v) in values.iter().enumerate() {
                    assert_eq!(col.get(row), v.as_slice());
                }
            }
            (data, _) => panic!(
                "metric {} read back as another type ({data:?})",
                metric.name
            ),
        }
    }
}

#[test]
fn hand_written_segment_round_trips_in_both_compressions() {
    let (meta, columns) = sample(3000, 7);
    let plain = check_round_trip(&meta, &columns, Compression::None);
    let packed = check_round_trip(&meta, &columns, Compression::Zstd { level: 3 });
    assert!(packed.file_bytes() < plain.file_bytes());
    assert!(
        packed
            .blobs()
            .any(|b| b.compression == grove_segment::format::BlobCompression::Zstd)
    );
    // The directory names every column and part.
    let parts: Vec<(String, &str)> = plain
        .blobs()
        .map(|b| (b.column.clone(), b.part.name()))
        .collect();
    for expected in [
        ("__time", "values"),
        ("page", "dictionary"),
        ("page", "ids"),
        ("page", "bitmaps"),
        ("tags", "offsets"),
        ("user", "nulls"),
        ("users", "offsets"),
    ] {
        assert!(
            parts.contains(&(expected.0.to_string(), expected.1)),
            "{expected:?}"
        );
    }
    assert!(!parts.contains(&("country".to_string(), "bitmaps")));
}

#[test]
fn files_are_written_atomically_and_memory_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, columns) = sample(2500, 11);
    let path = dir.path().join("seg.grove");
    std::fs::write(&path, b"old contents").unwrap();
    let bytes = write_segment(&path, &meta, &columns, &WriteOptions::default()).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("seg.grove")],
        "no temporary file left"
    );
    let segment = Segment::open(&path).unwrap();
    assert_eq!(segment.file_bytes(), bytes);
    assert_eq!(segment.to_columns().unwrap(), columns);
    check_accessors(&segment, &columns);
    let shared = std::sync::Arc::new(segment);
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let s = shared.clone();
            std::thread::spawn(move || s.time().unwrap().sum())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), naive_sum(&columns.time));
    }
    let missing = Segment::open(&dir.path().join("missing")).unwrap_err();
    assert!(matches!(missing, SegmentError::Io { .. }), "{missing}");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        Segment::open(&empty).unwrap_err(),
        SegmentError::Corrupt { .. }
    ));
}

fn single_string_dim(
    name: &str,
    dictionary: Vec<Option<String>>,
    ids: Vec<u32>,
    time: Vec<i64>,
) -> (SegmentMeta, SegmentColumns) {
    let columns = SegmentColumns {
        time,
        dimensions: vec![DimensionColumn {
            name: name.into(),
            data: DimensionData::String {
                dictionary,
                rows: StringRows::Single(ids),
            },
        }],
        metrics: vec![],
    };
    (
        meta_for(
            schema(vec![DimensionSchema::string(name)], vec![]),
            &columns,
        ),
        columns,
    )
}

fn long_metric(values: Vec<i64>) -> (SegmentMeta, SegmentColumns) {
    let columns = SegmentColumns {
        time: vec![T0; values.len()],
        dimensions: vec![],
        metrics: vec![MetricColumn {
            name: "v".into(),
            kind: MetricKind::LongSum,
            data: MetricData::Long(values),
        }],
    };
    (
        meta_for(
            schema(vec![], vec![metric("v", MetricKind::LongSum)]),
            &columns,
        ),
        columns,
    )
}

#[test]
fn edge_cases_round_trip() {
    for compression in BOTH {
        // Zero rows, one row, block boundaries.
        for rows in [0, 1, 2, 1023, 1024, 1025, 2049] {
            let (meta, columns) = sample(rows, rows as u64 + 1);
            check_round_trip(&meta, &columns, compression);
        }
        // A dictionary of only null.
        let (meta, columns) = single_string_dim("empty", vec![None], vec![0; 1500], vec![T0; 1500]);
        let segment = check_round_trip(&meta, &columns, compression);
        let Some(DimensionReader::String(col)) = segment.dimension("empty").unwrap() else {
            panic!("not a string column")
        };
        assert_eq!(col.id_width(), 0);
        assert_eq!(col.lookup("anything"), None);
        assert_eq!(col.bitmap(0).unwrap().len(), 1500);
        // Alternating extremes (width 64) and all-equal blocks.
        let (meta, columns) = long_metric(
            (0..3000)
                .map(|i| if i % 2 == 0 { i64::MIN } else { i64::MAX })
                .collect(),
        );
        check_round_trip(&meta, &columns, compression);
        let (meta, columns) = long_metric(vec![-42; 4096]);
        let segment = check_round_trip(&meta, &columns, compression);
        let Some(MetricReader::Long(col)) = segment.metric("v").unwrap() else {
            panic!()
        };
        assert_eq!(col.sum(), -42 * 4096);
    }
}

#[test]
fn extreme_longs_round_trip() {
    let extremes: Vec<i64> = (0..3000i64)
        .map(|i| match i % 3 {
            0 => i64::MIN,
            1 => i64::MAX,
            _ => i.wrapping_mul(0x0123_4567_89ab_cdef),
        })
        .collect();
    let (meta, columns) = long_metric(extremes);
    for compression in BOTH {
        check_round_trip(&meta, &columns, compression);
    }
}

#[test]
fn a_hundred_thousand_distinct_strings() {
    let rows = 120_000usize;
    let dictionary: Vec<Option<String>> = (0..rows)
        .map(|i| Some(format!("user-{i:07}@example.com")))
        .collect();
    // Rows in a scrambled order of ids.
    let ids: Vec<u32> = (0..rows as u64)
        .map(|i| ((i * 7919) % rows as u64) as u32)
        .collect();
    let time: Vec<i64> = (0..rows as i64).map(|i| T0 + i).collect();
    let (meta, columns) = single_string_dim("user", dictionary, ids, time);
    let bytes = write(&meta, &columns, Compression::None);
    let segment = Segment::from_bytes(bytes, "big").unwrap();
    assert_eq!(segment.to_columns().unwrap(), columns);
    let Some(DimensionReader::String(col)) = segment.dimension("user").unwrap() else {
        panic!()
    };
    assert_eq!(col.id_width(), 17);
    for id in (0..rows as u32).step_by(997) {
        let value = format!("user-{id:07}@example.com");
        assert_eq!(col.lookup(&value), Some(id));
        assert_eq!(col.value(id).unwrap().as_deref(), Some(value.as_str()));
        let row = (0..rows)
            .find(|&r| (r as u64 * 7919) % rows as u64 == id as u64)
            .unwrap();
        assert_eq!(
            col.bitmap(id).unwrap().iter().collect::<Vec<_>>(),
            vec![row as u32]
        );
    }
    assert_eq!(col.lookup("user-"), None);
    assert_eq!(col.lookup("user-9999999@example.com"), None);
}

#[test]
fn mismatched_columns_are_refused() {
    let (meta, columns) = sample(10, 3);
    let mut out = Vec::new();
    let mut wrong_rows = meta.clone();
    wrong_rows.num_rows = 11;
    let err =
        write_segment_to(&mut out, &wrong_rows, &columns, &WriteOptions::default()).unwrap_err();
    assert!(
        matches!(&err, SegmentError::Schema(m) if m.contains("11 rows")),
        "{err}"
    );
    let mut renamed = columns.clone();
    renamed.dimensions[1].name = "labels".into();
    let err = write_segment_to(&mut out, &meta, &renamed, &WriteOptions::default()).unwrap_err();
    assert!(err.to_string().contains("labels"), "{err}");
    let mut wrong_kind = columns.clone();
    wrong_kind.metrics[1].kind = MetricKind::LongMax;
    assert!(write_segment_to(&mut out, &meta, &wrong_kind, &WriteOptions::default()).is_err());
    let mut unsorted = columns.clone();
    unsorted.time.swap(0, 9);
    let err = write_segment_to(&mut out, &meta, &unsorted, &WriteOptions::default()).unwrap_err();
    assert!(err.to_string().contains("sorted"), "{err}");
    let mut wrong_range = meta.clone();
    wrong_range.time_max_ms += 1;
    assert!(write_segment_to(&mut out, &wrong_range, &columns, &WriteOptions::default()).is_err());
    assert!(out.is_empty(), "nothing written for refused columns");
}

/// Everything a reader can be asked, as text; errors kept as errors.
fn observe(bytes: Vec<u8>) -> Vec<Result<String, SegmentError>> {
    let segment = match Segment::from_bytes(bytes, "probe") {
        Ok(s) => s,
        Err(e) => return vec![Err(e)],
    };
    let mut out: Vec<Result<String, SegmentError>> = vec![
        Ok(format!("{:?}", segment.meta())),
        segment.to_columns().map(|c| format!("{c:?}")),
        segment.verify().map(|()| "verified".to_string()),
        segment.time().map(|t| {
            format!(
                "{:?} {} {:?} {:?} {}",
                t.to_vec(),
                t.sum(),
                t.min(),
                t.max(),
                t.get(t.len() / 2)
            )
        }),
    ];
    for dim in &segment.meta().schema.dimensions {
        let observed = segment.dimension(&dim.name).and_then(|reader| {
            Ok(match reader {
                None => "missing".to_string(),
                Some(DimensionReader::String(col)) => {
                    let mut text = String::new();
                    col.for_each_value(|id, v| text.push_str(&format!("{id}={v:?};")))?;
                    for id in 0..col.dictionary_len() as u32 {
                        text.push_str(&format!("{:?}", col.value(id)?));
                        if let Some(v) = col.value(id)? {
                            text.push_str(&format!("{:?}", col.lookup(&v)));
                        }
                        if col.has_bitmaps() {
                            text.push_str(&format!("{:?}", col.bitmap(id)?));
                        }
                    }
                    let mut ids = Vec::new();
                    for row in 0..col.num_rows() {
                        col.row_ids(row, &mut ids);
                        text.push_str(&format!("{ids:?}"));
                    }
                    col.for_each_row(|_, ids| text.push_str(&format!("{ids:?}")));
                    text
                }
                Some(DimensionReader::Long { values, nulls }) => {
                    format!("{:?} {} {nulls:?}", values.to_vec(), values.sum())
                }
                Some(DimensionReader::Double { values, nulls }) => {
                    format!("{:?} {} {nulls:?}", values.to_vec(), values.sum())
                }
            })
        });
        out.push(observed);
    }
    for metric in &segment.meta().schema.metrics {
        out.push(segment.metric(&metric.name).map(|reader| match reader {
            None => "missing".to_string(),
            Some(MetricReader::Long(c)) => format!("{:?} {} {:?}", c.to_vec(), c.sum(), c.max()),
            Some(MetricReader::Double(c)) => format!("{:?} {}", c.to_vec(), c.sum()),
            Some(MetricReader::Sketch(c)) => {
                format!("{:?}", (0..c.len()).map(|r| c.get(r)).collect::<Vec<_>>())
            }
        }));
    }
    out
}

#[test]
fn every_flipped_byte_is_an_error_naming_the_column() {
    for compression in BOTH {
        let (meta, columns) = sample(16, 5);
        let original = write(&meta, &columns, compression);
        let baseline = observe(original.clone());
        assert!(baseline.iter().all(|r| r.is_ok()), "{baseline:?}");
        let segment = Segment::from_bytes(original.clone(), "x").unwrap();
        let blobs: Vec<_> = segment.blobs().cloned().collect();
        for offset in 0..original.len() {
            let mut bytes = original.clone();
            bytes[offset] ^= 0xff;
            let observed = observe(bytes);
            let mut errors = 0;
            for (got, expected) in observed.iter().zip(&baseline) {
                match got {
                    Err(_) => errors += 1,
                    Ok(text) => assert_eq!(
                        Some(text),
                        expected.as_ref().ok(),
                        "offset {offset}: wrong data"
                    ),
                }
            }
            assert!(errors > 0, "offset {offset}: corruption went unnoticed");
            // A byte inside a blob is reported against that blob's column.
            if let Some(blob) = blobs
                .iter()
                .find(|b| (b.offset..b.offset + b.length).contains(&(offset as u64)))
            {
                // The open error, or else the one from `to_columns`.
                let err = observed
                    .iter()
                    .take(2)
                    .find_map(|r| r.as_ref().err())
                    .unwrap_or_else(|| panic!("offset {offset}: to_columns succeeded"));
                match err {
                    SegmentError::Corrupt {
                        segment, column, ..
                    } => {
                        assert_eq!(column, &blob.column, "offset {offset}: {err}");
                        assert_eq!(segment, &meta.id.to_string());
                    }
                    other => panic!("offset {offset}: {other}"),
                }
                assert!(err.to_string().contains(&blob.column), "{err}");
            }
        }
    }
}

#[test]
fn truncated_files_and_unknown_versions_are_clear_errors() {
    let (meta, columns) = sample(30, 9);
    let bytes = write(&meta, &columns, Compression::None);
    for len in 0..bytes.len() {
        let err = Segment::from_bytes(bytes[..len].to_vec(), "cut.seg").unwrap_err();
        assert!(
            matches!(&err, SegmentError::Corrupt { segment, .. } if segment == "cut.seg"),
            "{len}: {err}"
        );
    }
    let short = Segment::from_bytes(bytes[..20].to_vec(), "cut.seg").unwrap_err();
    assert!(short.to_string().contains("too short"), "{short}");
    let mut v99 = bytes.clone();
    v99[8..12].copy_from_slice(&99u32.to_le_bytes());
    let err = Segment::from_bytes(v99, "new.seg").unwrap_err();
    assert!(
        matches!(err, SegmentError::UnsupportedVersion { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("version 99"), "{err}");
    let err = Segment::from_bytes(
        b"PAR1 not a segment at all, just some bytes here".to_vec(),
        "x",
    )
    .unwrap_err();
    assert!(err.to_string().contains("magic"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn random_segments_round_trip(rows in 0usize..1600, seed in any::<u64>(), zstd in any::<bool>()) {
        let (meta, columns) = sample(rows, seed);
        let compression = if zstd { Compression::Zstd { level: 1 } } else { Compression::None };
        check_round_trip(&meta, &columns, compression);
    }

    #[test]
    fn random_longs_round_trip(values in proptest::collection::vec(any::<i64>(), 0..3000), small in proptest::collection::vec(-5i64..5, 0..3000)) {
        for v in [values, small] {
            let (meta, columns) = long_metric(v);
            let segment = Segment::from_bytes(write(&meta, &columns, Compression::None), "p").unwrap();
            prop_assert_eq!(segment.to_columns().unwrap(), columns.clone());
            check_accessors(&segment, &columns);
        }
    }
}

// ---- Format versions ------------------------------------------------------------------------
//
// `tests/fixtures/format_v{N}_{time_first,dimension_first}.seg` were written by the build whose
// `FORMAT_VERSION` was N. Every version this build reads must still read back as the same
// columns; the current version's fixtures must be what this build writes byte for byte, so a
// change to the written bytes cannot go unnoticed: when it fails, decide whether an older reader
// would read the new bytes differently (then bump `FORMAT_VERSION`, see its doc comment) and
// rewrite the current fixtures with `GROVE_WRITE_FIXTURES=1 cargo test -p grove-segment --test
// format fixtures`.

fn fixture_path(version: u32, name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("format_v{version}_{name}.seg"))
}

/// The fixtures' contents: every column type sorted by time first, and a string dimension that
/// sorts before `__time` (`timePosition` 1), whose rows are therefore not in time order.
fn fixture_segments() -> Vec<(&'static str, SegmentMeta, SegmentColumns)> {
    let (time_first, columns) = sample(40, 7);
    let time = vec![T0 + 5, T0 + 9, T0 + 1, T0 + 7, T0 + 3, T0 + 4];
    let dictionary = vec![None, Some("a".into()), Some("b".into()), Some("c".into())];
    let (mut dimension_first, dims_columns) =
        single_string_dim("advertiser", dictionary, vec![0, 1, 1, 2, 3, 3], time);
    dimension_first.schema.time_position = 1;
    dimension_first.time_min_ms = T0 + 1;
    dimension_first.time_max_ms = T0 + 9;
    vec![
        ("time_first", time_first, columns),
        ("dimension_first", dimension_first, dims_columns),
    ]
}

#[test]
fn fixtures_of_every_readable_version_read_back_and_the_current_ones_are_what_this_build_writes() {
    use grove_segment::format::{FORMAT_VERSION, FORMAT_VERSION_OLDEST_READ};
    let rewrite = std::env::var_os("GROVE_WRITE_FIXTURES").is_some();
    for (name, meta, columns) in fixture_segments() {
        let written = write(&meta, &columns, Compression::None);
        let current = fixture_path(FORMAT_VERSION, name);
        if rewrite {
            std::fs::create_dir_all(current.parent().unwrap()).unwrap();
            std::fs::write(&current, &written).unwrap();
        }
        let stored =
            std::fs::read(&current).unwrap_or_else(|e| panic!("{}: {e}", current.display()));
        assert!(
            stored == written,
            "this build writes {name} differently from {}: if a reader of version \
             {FORMAT_VERSION} would read the new bytes differently, bump FORMAT_VERSION; then \
             rewrite the fixtures (GROVE_WRITE_FIXTURES=1)",
            current.display()
        );
        for version in FORMAT_VERSION_OLDEST_READ..=FORMAT_VERSION {
            let path = fixture_path(version, name);
            let bytes = std::fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (every version this build reads keeps its fixtures)",
                    path.display()
                )
            });
            assert_eq!(bytes[8..12], version.to_le_bytes(), "{}", path.display());
            let segment = Segment::from_bytes(bytes, name)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            segment.verify().unwrap();
            assert_eq!(segment.meta(), &meta, "{}", path.display());
            assert_eq!(
                &segment.to_columns().unwrap(),
                &columns,
                "{}",
                path.display()
            );
            check_accessors(&segment, &columns);
        }
    }
}

/// `bytes` with its footer JSON changed by `edit` (the trailer rewritten to match).
fn with_footer(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let trailer = bytes.len() - 32;
    let offset = u64::from_le_bytes(bytes[trailer..trailer + 8].try_into().unwrap()) as usize;
    let mut footer: serde_json::Value = serde_json::from_slice(&bytes[offset..trailer]).unwrap();
    edit(&mut footer);
    let footer = serde_json::to_vec(&footer).unwrap();
    let mut out = bytes[..offset].to_vec();
    out.extend_from_slice(&footer);
    out.extend_from_slice(&(offset as u64).to_le_bytes());
    out.extend_from_slice(&(footer.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&footer).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(b"GROVESEG");
    out
}

/// A reader of version 1 (this build, playing an older one) refuses a version-2 file, so a
/// dimension-first segment is never read as time-sorted; this build reads both, and refuses a
/// version from the future by number.
#[test]
fn an_older_reader_refuses_a_newer_file_by_its_version() {
    use grove_segment::format::FORMAT_VERSION;
    use grove_segment::format::footer::{Layout, LayoutError};
    const { assert!(FORMAT_VERSION >= 2, "dimension-first files need version 2") };
    for (name, meta, columns) in fixture_segments() {
        let new = write(&meta, &columns, Compression::None);
        let old_reader = 1..=FORMAT_VERSION - 1;
        assert_eq!(
            Layout::parse_as_reader_of(&new, old_reader.clone()).err(),
            Some(LayoutError::UnsupportedVersion(FORMAT_VERSION)),
            "{name}"
        );
        let old = std::fs::read(fixture_path(1, name)).unwrap();
        assert!(
            Layout::parse_as_reader_of(&old, old_reader).is_ok(),
            "{name}"
        );
        let mut future = new.clone();
        future[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let err = Segment::from_bytes(future, name).unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "format version {} is not supported",
                FORMAT_VERSION + 1
            )),
            "{err}"
        );
    }
}

/// A footer field this build does not know, at any level of the directory, is refused as a
/// corrupt footer naming the field (a newer build's meaning is never read as if absent).
#[test]
fn unknown_footer_fields_are_refused_at_every_level() {
    let (meta, columns) = sample(30, 11);
    let bytes = write(&meta, &columns, Compression::None);
    assert!(Segment::from_bytes(with_footer(&bytes, |_| {}), "same").is_ok());
    type Edit = fn(&mut serde_json::Value);
    let edits: [(&str, Edit); 9] = [
        ("footer", |f| f["sortOrder"] = "dimensions".into()),
        ("meta", |f| f["meta"]["nullHandling"] = "sql".into()),
        ("id", |f| f["meta"]["id"]["shard"] = 1.into()),
        ("schema", |f| {
            f["meta"]["schema"]["sortedBy"] = "page".into()
        }),
        ("dimension", |f| {
            f["meta"]["schema"]["dimensions"][0]["encoding"] = "x".into()
        }),
        ("metric", |f| {
            f["meta"]["schema"]["metrics"][1]["nullable"] = true.into()
        }),
        ("metric kind", |f| {
            f["meta"]["schema"]["metrics"][4]["kind"]["tgtHllType"] = "HLL_8".into()
        }),
        ("unit metric kind", |f| {
            f["meta"]["schema"]["metrics"][0]["kind"]["round"] = true.into()
        }),
        ("blob", |f| f["blobs"][0]["filter"] = "bloom".into()),
    ];
    for (level, edit) in edits {
        let err = Segment::from_bytes(with_footer(&bytes, edit), "edited")
            .err()
            .unwrap_or_else(|| panic!("{level}: an unknown field was read"));
        let text = err.to_string();
        assert!(
            matches!(&err, SegmentError::Corrupt { column, .. } if column == "(footer)")
                && text.contains("unknown field"),
            "{level}: {text}"
        );
    }
}
