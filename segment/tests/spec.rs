//! Ingestion specs: Druid's documented example specs parse unchanged and resolve to the expected
//! schema; specs round-trip; unknown properties are ignored and unsupported features are clear
//! errors.

use std::path::{Path, PathBuf};

use grove_segment::filter::Filter;
use grove_segment::input::{ParseError, ParseReport, RowPosition};
use grove_segment::schema::{MetricKind, MultiValueHandling, ValueType};
use grove_segment::spec::{
    DataSchema, IGNORED_TUNING_FIELDS, InputFormat, InputSource, MetricSpec, TaskSpec, TaskType,
    TgtHllType, TuningConfig, parse_task,
};
use grove_segment::time::TimestampFormat;
use grove_segment::time::{Granularity, Interval, MS_PER_HOUR, parse_iso_timestamp};
use serde_json::{Value, json};

const FIXTURES: &[&str] = &[
    "wikipedia-index.json",
    "rollup-index.json",
    "inline-csv.json",
    "tsv.json",
    "parquet.json",
    "hll-filter.json",
];

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/spec")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse(name: &str) -> TaskSpec {
    parse_task(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn parse_err(json: &str) -> String {
    match parse_task(json) {
        Ok(task) => panic!("expected an error, parsed {task:?}"),
        Err(e) => e.to_string(),
    }
}

/// Edits a fixture as JSON, then returns the error it now gives.
fn err_after(name: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut value: Value = serde_json::from_str(&fixture(name)).unwrap();
    edit(&mut value);
    parse_err(&value.to_string())
}

fn assert_mentions(err: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            err.contains(part),
            "error {err:?} does not mention {part:?}"
        );
    }
}

#[test]
fn wikipedia_tutorial_spec_parses() {
    let task = parse("wikipedia-index.json");
    assert_eq!(task.task_type, TaskType::IndexParallel);
    let spec = &task.spec;
    let ds: &DataSchema = &spec.data_schema;
    assert_eq!(ds.data_source, "wikipedia");
    assert_eq!(ds.timestamp_spec.column, "time");
    assert_eq!(ds.timestamp_spec.format, TimestampFormat::Iso);
    assert_eq!(ds.granularity_spec.segment_granularity, Granularity::DAY);
    assert_eq!(ds.granularity_spec.query_granularity, Granularity::None);
    assert!(!ds.granularity_spec.rollup);
    assert_eq!(
        ds.granularity_spec.intervals,
        Some(vec![Interval::parse("2015-09-12/2015-09-13").unwrap()])
    );
    assert_eq!(
        spec.io_config.input_source,
        InputSource::Local {
            base_dir: Some(PathBuf::from("quickstart/tutorial/")),
            filter: Some("wikiticker-2015-09-12-sampled.json.gz".into()),
            files: vec![],
        }
    );
    assert!(matches!(spec.io_config.input_format, InputFormat::Json(_)));
    let tuning = &spec.tuning_config;
    assert_eq!(tuning.max_rows_in_memory, 25_000);
    assert_eq!(tuning.max_rows_per_segment, 5_000_000);
    assert_eq!(tuning.max_bytes_in_memory, 512 * 1024 * 1024);
    assert_eq!(tuning.max_parse_exceptions, u64::MAX);

    let schema = ds.schema().unwrap();
    assert_eq!(schema.dimensions.len(), 19);
    assert_eq!(schema.dimensions[0].name, "channel");
    assert_eq!(schema.dimensions[0].value_type, ValueType::String);
    assert_eq!(schema.dimensions[16].name, "added");
    assert_eq!(schema.dimensions[16].value_type, ValueType::Long);
    assert!(schema.metrics.is_empty());
    assert!(!schema.rollup);
}

#[test]
fn rollup_tutorial_spec_resolves_metrics() {
    let task = parse("rollup-index.json");
    let schema = task.spec.data_schema.schema().unwrap();
    assert_eq!(
        schema.segment_granularity,
        Granularity::named("week").unwrap()
    );
    assert_eq!(schema.query_granularity, Granularity::MINUTE);
    assert!(schema.rollup);
    let metrics: Vec<(&str, Option<&str>, MetricKind)> = schema
        .metrics
        .iter()
        .map(|m| (m.name.as_str(), m.field_name.as_deref(), m.kind))
        .collect();
    assert_eq!(
        metrics,
        vec![
            ("count", None, MetricKind::Count),
            ("packets", Some("packets"), MetricKind::LongSum),
            ("bytes", Some("bytes"), MetricKind::LongSum),
        ]
    );
}

#[test]
fn inline_csv_spec_parses() {
    let task = parse("inline-csv.json");
    assert_eq!(task.id.as_deref(), Some("inline_csv_example"));
    assert_eq!(task.context.get("priority"), Some(&json!(50)));
    let io = &task.spec.io_config;
    let InputSource::Inline { data } = &io.input_source else {
        panic!("not inline: {:?}", io.input_source)
    };
    assert!(data.starts_with("timestamp,page,language,user,added\n"));
    let InputFormat::Csv(csv) = &io.input_format else {
        panic!("not csv: {:?}", io.input_format)
    };
    assert!(csv.find_columns_from_header);
    assert!(csv.columns.is_empty());
    assert_eq!(csv.delimiter, b',');
    assert_eq!(csv.list_delimiter, "\u{1}");
    let tuning = &task.spec.tuning_config;
    assert_eq!(tuning.max_rows_per_segment, 1_000_000);
    assert_eq!(tuning.max_parse_exceptions, 10);
    assert_eq!(tuning.max_saved_parse_exceptions, Some(5));
    assert_eq!(tuning.errors_kept_max(), 5);
    assert!(tuning.log_parse_exceptions);
    let gs = &task.spec.data_schema.granularity_spec;
    assert_eq!(gs.query_granularity, Granularity::HOUR);
    assert!(gs.intervals.is_none());
}

#[test]
fn tsv_spec_parses_with_typed_dimensions_and_ignored_tuning() {
    let task = parse("tsv.json");
    let ds = &task.spec.data_schema;
    assert_eq!(ds.timestamp_spec.format, TimestampFormat::Millis);
    let schema = ds.schema().unwrap();
    let dims: Vec<(&str, ValueType, MultiValueHandling, bool)> = schema
        .dimensions
        .iter()
        .map(|d| {
            (
                d.name.as_str(),
                d.value_type,
                d.multi_value_handling,
                d.bitmap_index,
            )
        })
        .collect();
    assert_eq!(
        dims,
        vec![
            (
                "page",
                ValueType::String,
                MultiValueHandling::SortedArray,
                true
            ),
            (
                "tags",
                ValueType::String,
                MultiValueHandling::SortedSet,
                true
            ),
            (
                "comment",
                ValueType::String,
                MultiValueHandling::SortedArray,
                false
            ),
            (
                "score",
                ValueType::Double,
                MultiValueHandling::SortedArray,
                true
            ),
            (
                "ratio",
                ValueType::Double,
                MultiValueHandling::SortedArray,
                true
            ),
        ]
    );
    let kinds: Vec<MetricKind> = schema.metrics.iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        vec![
            MetricKind::Count,
            MetricKind::DoubleSum,
            MetricKind::DoubleMax,
            MetricKind::LongMin
        ]
    );
    assert_eq!(
        schema.segment_granularity,
        Granularity::Fixed {
            period_ms: 6 * MS_PER_HOUR,
            origin_ms: 0
        }
    );
    let InputFormat::Tsv(tsv) = &task.spec.io_config.input_format else {
        panic!("not tsv")
    };
    assert_eq!(tsv.delimiter, b'|');
    assert_eq!(tsv.list_delimiter, ";");
    assert_eq!(tsv.skip_header_rows, 1);
    assert_eq!(tsv.columns.len(), 9);
    let InputSource::Local { files, .. } = &task.spec.io_config.input_source else {
        panic!("not local")
    };
    assert_eq!(files, &[PathBuf::from("/data/extra/edits-late.tsv")]);
    assert_eq!(task.spec.tuning_config.max_rows_per_segment, 2_000_000);
    assert_eq!(task.spec.tuning_config.max_bytes_in_memory, u64::MAX);
}

#[test]
fn parquet_spec_parses() {
    let task = parse("parquet.json");
    let InputFormat::Parquet(parquet) = &task.spec.io_config.input_format else {
        panic!("not parquet")
    };
    assert!(parquet.binary_as_string);
    let ts = &task.spec.data_schema.timestamp_spec;
    assert_eq!(
        ts.missing_value,
        parse_iso_timestamp("2020-01-01T00:00:00Z")
    );
    assert_eq!(task.spec.tuning_config.max_parse_exceptions, 0);
    let gs = &task.spec.data_schema.granularity_spec;
    assert_eq!(gs.segment_granularity, Granularity::HOUR);
    assert_eq!(
        gs.intervals,
        Some(vec![Interval::parse("2020-01-01/2020-01-02").unwrap()])
    );
}

#[test]
fn hll_sketch_and_transform_filter_spec_parses() {
    let task = parse("hll-filter.json");
    assert_eq!(task.task_type, TaskType::Index);
    let ds = &task.spec.data_schema;
    assert_eq!(
        ds.metrics_spec[1],
        MetricSpec::HllSketchBuild {
            name: "unique_users".into(),
            field_name: "user_id".into(),
            lg_k: 14,
            tgt_hll_type: TgtHllType::Hll8,
            round: true,
            string_encoding: None,
        }
    );
    let schema = ds.schema().unwrap();
    assert_eq!(
        schema.metrics[1].kind,
        MetricKind::HllSketch {
            lg_k: 14,
            utf16le: true
        }
    );
    // Druid's default stringEncoding is utf16le; utf8 is asked for by name.
    assert_eq!(
        schema.metrics[2].kind,
        MetricKind::HllSketch {
            lg_k: 12,
            utf16le: false
        }
    );
    let filter: &Filter = ds.transform_spec.filter.as_ref().unwrap();
    assert_eq!(filter.fields(), vec!["country", "device", "duration_ms"]);
    let layout = ds.row_layout().unwrap();
    assert_eq!(
        layout.fields,
        vec!["country", "device", "user_id", "session_id", "duration_ms"]
    );
    assert!(filter.compile(&layout).is_ok());
    let InputFormat::Json(json) = &task.spec.io_config.input_format else {
        panic!("not json")
    };
    assert!(json.keep_null_columns);
    assert_eq!(task.spec.tuning_config, TuningConfig::default());
}

#[test]
fn every_fixture_round_trips() {
    for name in FIXTURES {
        let task = parse(name);
        let text = serde_json::to_string_pretty(&task).unwrap();
        let again = parse_task(&text).unwrap_or_else(|e| panic!("{name} reparsed: {e}\n{text}"));
        assert_eq!(again, task, "{name}");
    }
}

#[test]
fn bare_spec_parses_as_an_index_parallel_task() {
    let full: Value = serde_json::from_str(&fixture("rollup-index.json")).unwrap();
    let bare = full["spec"].to_string();
    let task = parse_task(&bare).unwrap();
    assert_eq!(task.task_type, TaskType::IndexParallel);
    assert_eq!(task.id, None);
    assert_eq!(task.spec, parse("rollup-index.json").spec);
}

#[test]
/// As Druid's JSON mapper, properties Grove does not know are ignored (a misspelling included):
/// the spec parses to what it was without them.
fn unknown_properties_are_ignored_as_in_druid() {
    type Edit = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "wikipedia-index.json",
            Box::new(|v| v["spec"]["dataSchema"]["dataSorce"] = json!("x")),
        ),
        (
            "wikipedia-index.json",
            Box::new(|v| {
                v["spec"]["dataSchema"]["dimensionsSpec"]["dimensions"][16]["bitmap"] = json!(true)
            }),
        ),
        (
            "rollup-index.json",
            Box::new(|v| v["spec"]["dataSchema"]["metricsSpec"][1]["fieldNme"] = json!("packets")),
        ),
        (
            "wikipedia-index.json",
            Box::new(|v| v["spec"]["ioConfig"]["inputSorce"] = json!({})),
        ),
        (
            "wikipedia-index.json",
            Box::new(|v| v["spec"]["ioConfig"]["inputFormat"]["flatten"] = json!({})),
        ),
        (
            "wikipedia-index.json",
            Box::new(|v| v["spec"]["ioConfig"]["inputSource"]["recursive"] = json!(true)),
        ),
        (
            "wikipedia-index.json",
            Box::new(|v| v["spec"]["tuningConfig"]["maxRowsInMemoryy"] = json!(5)),
        ),
        (
            "wikipedia-index.json",
            Box::new(|v| v["spec"]["tuningConfig"]["partitionsSpec"]["targetRows"] = json!(5)),
        ),
        (
            "wikipedia-index.json",
            Box::new(|v| v["spec"]["dataSchema"]["granularitySpec"]["timezone"] = json!("UTC")),
        ),
        (
            "wikipedia-index.json",
            Box::new(|v| v["spec"]["dataSchema"]["timestampSpec"]["formatt"] = json!("iso")),
        ),
        ("wikipedia-index.json", Box::new(|v| v["tasks"] = json!(1))),
    ];
    for (name, edit) in cases {
        let mut value: Value = serde_json::from_str(&fixture(name)).unwrap();
        edit(&mut value);
        let task = parse_task(&value.to_string()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(task, parse(name), "{name}: {value}");
    }
    // Query-only filter features are refused in a transformSpec, naming them.
    let err = err_after("hll-filter.json", |v| {
        v["spec"]["dataSchema"]["transformSpec"]["filter"]["fields"][1]["extractionFn"] =
            json!({"type": "upper"})
    });
    assert_mentions(&err, &["extractionFn", "transformSpec"]);
}

#[test]
fn unsupported_features_are_clear_errors() {
    let err = parse_err(&fixture("transform-index.json"));
    assert_mentions(
        &err,
        &[
            "transform 'animal'",
            "concat('super-', animal)",
            "not supported",
        ],
    );

    let err = parse_err(&fixture("legacy-parser-index.json"));
    assert_mentions(
        &err,
        &["legacy parser specs are not supported; use inputFormat"],
    );

    let err = err_after("wikipedia-index.json", |v| {
        v["spec"]["tuningConfig"]["partitionsSpec"] =
            json!({"type": "hashed", "numShards": 3, "partitionDimensions": ["page"]})
    });
    assert_mentions(&err, &["partitionsSpec type 'hashed' is not supported yet"]);

    let err = err_after("wikipedia-index.json", |v| {
        v["spec"]["tuningConfig"]["partitionsSpec"] =
            json!({"type": "range", "partitionDimensions": ["page"], "targetRowsPerSegment": 5})
    });
    assert_mentions(&err, &["'range' is not supported yet"]);

    let err = err_after("wikipedia-index.json", |v| {
        v["spec"]["ioConfig"]["inputSource"] =
            json!({"type": "s3", "uris": ["s3://bucket/wiki.json"]})
    });
    assert_mentions(&err, &["inputSource type 's3' is not supported yet"]);

    let err = err_after("wikipedia-index.json", |v| {
        v["spec"]["ioConfig"]["inputFormat"] = json!({"type": "avro_ocf"})
    });
    assert_mentions(&err, &["inputFormat type 'avro_ocf' is not supported yet"]);

    let err = err_after("wikipedia-index.json", |v| {
        v["spec"]["dataSchema"]["dimensionsSpec"] = json!({"dimensions": []})
    });
    assert_mentions(&err, &["schemaless", "list the dimensions"]);
    let err = err_after("wikipedia-index.json", |v| {
        v["spec"]["dataSchema"]["dimensionsSpec"] = json!({"useSchemaDiscovery": true})
    });
    assert_mentions(&err, &["useSchemaDiscovery", "list the dimensions"]);

    let err = err_after("wikipedia-index.json", |v| {
        v["spec"]["ioConfig"]["inputFormat"] = json!({
            "type": "json",
            "flattenSpec": {"fields": [{"type": "path", "name": "x", "expr": "$.a.b"}]}
        })
    });
    assert_mentions(&err, &["flattenSpec", "not supported yet"]);

    let err = err_after("wikipedia-index.json", |v| {
        v["spec"]["dataSchema"]["dimensionsSpec"]["spatialDimensions"] =
            json!([{"dimName": "coords", "dims": ["lat", "lon"]}])
    });
    assert_mentions(&err, &["spatialDimensions are not supported yet"]);

    let err = err_after("wikipedia-index.json", |v| {
        v["spec"]["dataSchema"]["metricsSpec"] =
            json!([{"type": "thetaSketch", "name": "t", "fieldName": "user"}])
    });
    assert_mentions(&err, &["thetaSketch"]);

    let err = err_after("wikipedia-index.json", |v| {
        v["type"] = json!("index_hadoop")
    });
    assert_mentions(&err, &["task type 'index_hadoop' is not supported"]);
}

#[test]
fn invalid_values_are_errors() {
    let err = err_after("rollup-index.json", |v| {
        v["spec"]["dataSchema"]["metricsSpec"][2]["name"] = json!("srcIP")
    });
    assert_mentions(&err, &["column name 'srcIP' is used more than once"]);

    let err = err_after("rollup-index.json", |v| {
        v["spec"]["tuningConfig"]["maxRowsPerSegment"] = json!(10);
        v["spec"]["tuningConfig"]["partitionsSpec"]["maxRowsPerSegment"] = json!(20);
    });
    assert_mentions(
        &err,
        &["maxRowsPerSegment is 10 in tuningConfig but 20 in partitionsSpec"],
    );

    let err =
        err_after(
            "rollup-index.json",
            |v| {
                v["spec"]["dataSchema"]["metricsSpec"] =
                    json!([{"type": "HLLSketchBuild", "name": "u", "fieldName": "user", "lgK": 30}])
            },
        );
    assert_mentions(&err, &["lgK 30 is outside"]);

    let err = err_after("rollup-index.json", |v| {
        v["spec"]["ioConfig"]["inputFormat"] = json!({"type": "csv"})
    });
    assert_mentions(
        &err,
        &["csv inputFormat needs columns, or findColumnsFromHeader: true"],
    );

    let err = err_after("rollup-index.json", |v| {
        v["spec"]["ioConfig"]["inputFormat"] =
            json!({"type": "tsv", "columns": ["a"], "delimiter": "||"})
    });
    assert_mentions(&err, &["delimiter '||'"]);

    let err = err_after("rollup-index.json", |v| {
        v["spec"]["tuningConfig"]["maxBytesInMemory"] = json!(-5)
    });
    assert_mentions(&err, &["maxBytesInMemory -5 is invalid"]);

    let err = err_after("rollup-index.json", |v| {
        v["spec"]["dataSchema"]["granularitySpec"]["segmentGranularity"] = json!("fortnight")
    });
    assert_mentions(&err, &["fortnight"]);

    let err = err_after("rollup-index.json", |v| {
        v["spec"]["dataSchema"]["granularitySpec"]["segmentGranularity"] = json!("month");
        v["spec"]["dataSchema"]["granularitySpec"]["queryGranularity"] = json!("week");
    });
    assert_mentions(
        &err,
        &["queryGranularity \"WEEK\" does not fit segmentGranularity \"MONTH\""],
    );
    for (segment, query) in [
        ("year", "quarter"),
        ("day", "fifteen_minute"),
        ("week", "day"),
        ("all", "week"),
    ] {
        let mut value: Value = serde_json::from_str(&fixture("rollup-index.json")).unwrap();
        value["spec"]["dataSchema"]["granularitySpec"]["segmentGranularity"] = json!(segment);
        value["spec"]["dataSchema"]["granularitySpec"]["queryGranularity"] = json!(query);
        assert!(
            parse_task(&value.to_string()).is_ok(),
            "{segment} / {query}"
        );
    }

    let err = err_after("inline-csv.json", |v| {
        v["spec"]["ioConfig"]["inputFormat"] = json!({"type": "parquet"})
    });
    assert_mentions(&err, &["parquet input needs a local inputSource"]);

    let err = err_after("rollup-index.json", |v| v["dataSource"] = json!("other"));
    assert_mentions(&err, &["task dataSource 'other' differs"]);

    let err = parse_err("{\"type\": \"index_parallel\", \"spec\": ");
    assert!(err.starts_with("invalid ingestion spec: "), "{err}");
}

#[test]
fn tuning_defaults_and_limits_resolve() {
    let mut value: Value = serde_json::from_str(&fixture("rollup-index.json")).unwrap();
    value["spec"]
        .as_object_mut()
        .unwrap()
        .remove("tuningConfig");
    let task = parse_task(&value.to_string()).unwrap();
    assert_eq!(task.spec.tuning_config, TuningConfig::default());
    assert_eq!(task.spec.tuning_config.max_rows_in_memory, 1_000_000);
    assert_eq!(task.spec.tuning_config.max_saved_parse_exceptions, None);
    assert_eq!(
        task.spec.tuning_config.errors_kept_max(),
        ParseReport::ERRORS_KEPT
    );
    assert!(!task.spec.tuning_config.log_parse_exceptions);

    value["spec"]["tuningConfig"] =
        json!({"maxBytesInMemory": 0, "reportParseExceptions": true, "maxTotalRows": 7});
    let task = parse_task(&value.to_string()).unwrap();
    let tuning = &task.spec.tuning_config;
    assert_eq!(
        tuning.max_bytes_in_memory,
        TuningConfig::DEFAULT_MAX_BYTES_IN_MEMORY
    );
    assert_eq!(tuning.max_parse_exceptions, 0);
    assert_eq!(tuning.errors_kept_max(), ParseReport::ERRORS_KEPT);
}

/// `maxTotalRows` only tunes when Druid pushes segments: accepted (at the top or in a dynamic
/// partitionsSpec), ignored, and never written back.
#[test]
fn max_total_rows_is_ignored() {
    assert!(IGNORED_TUNING_FIELDS.contains(&"maxTotalRows"));
    let mut value: Value = serde_json::from_str(&fixture("rollup-index.json")).unwrap();
    value["spec"]["tuningConfig"] = json!({
        "maxTotalRows": 7,
        "partitionsSpec": {"type": "dynamic", "maxRowsPerSegment": 100, "maxTotalRows": 9}
    });
    let task = parse_task(&value.to_string()).unwrap();
    let tuning = &task.spec.tuning_config;
    assert_eq!(tuning.max_rows_per_segment, 100);
    let written = serde_json::to_string(&task).unwrap();
    assert!(!written.contains("maxTotalRows"), "{written}");
    let without = {
        value["spec"]["tuningConfig"] =
            json!({"partitionsSpec": {"type": "dynamic", "maxRowsPerSegment": 100}});
        parse_task(&value.to_string()).unwrap()
    };
    assert_eq!(without.spec.tuning_config, *tuning);
}

#[test]
fn parse_exception_reporting_settings_reach_the_report() {
    let mut value: Value = serde_json::from_str(&fixture("rollup-index.json")).unwrap();
    value["spec"]["tuningConfig"] = json!({
        "maxParseExceptions": 10,
        "maxSavedParseExceptions": 2,
        "logParseExceptions": true
    });
    let task = parse_task(&value.to_string()).unwrap();
    let tuning = &task.spec.tuning_config;
    assert_eq!(tuning.errors_kept_max(), 2);
    let mut report =
        ParseReport::with_limits(tuning.max_parse_exceptions, tuning.errors_kept_max())
            .with_log_parse_exceptions(tuning.log_parse_exceptions);
    assert!(report.log_parse_exceptions);
    for line in 1..=4 {
        let error = ParseError {
            position: RowPosition {
                source: "inline".into(),
                line: Some(line),
                ..RowPosition::default()
            },
            message: "bad".into(),
        };
        assert!(!report.record(error));
    }
    assert_eq!(report.unparseable, 4);
    let kept: Vec<Option<u64>> = report.errors.iter().map(|e| e.position.line).collect();
    assert_eq!(kept, vec![Some(1), Some(2)]);
    assert!(
        report.summary().ends_with("; and 2 more"),
        "{}",
        report.summary()
    );

    // Reparsing what Grove writes keeps the settings.
    let again = parse_task(&serde_json::to_string(&task).unwrap()).unwrap();
    assert_eq!(again.spec.tuning_config, *tuning);

    // Zero saved keeps none; the default report keeps 100 and does not log.
    value["spec"]["tuningConfig"] = json!({"maxSavedParseExceptions": 0});
    let task = parse_task(&value.to_string()).unwrap();
    assert_eq!(task.spec.tuning_config.errors_kept_max(), 0);
    let report = ParseReport::new(5);
    assert_eq!(report.errors_kept_max, ParseReport::ERRORS_KEPT);
    assert!(!report.log_parse_exceptions);
    assert_eq!(report.max_parse_exceptions, 5);
}

#[test]
fn append_and_drop_existing_are_refused_unless_false() {
    let err = err_after("rollup-index.json", |v| {
        v["spec"]["ioConfig"]["appendToExisting"] = json!(true)
    });
    assert_mentions(
        &err,
        &[
            "appendToExisting is not supported yet",
            "batch ingestion replaces the intervals it writes",
        ],
    );
    let err = err_after("rollup-index.json", |v| {
        v["spec"]["ioConfig"]["dropExisting"] = json!(true)
    });
    assert_mentions(&err, &["dropExisting is not supported yet"]);
    let mut value: Value = serde_json::from_str(&fixture("rollup-index.json")).unwrap();
    value["spec"]["ioConfig"]["appendToExisting"] = json!(false);
    value["spec"]["ioConfig"]["dropExisting"] = json!(false);
    assert!(parse_task(&value.to_string()).is_ok());
}

#[test]
fn error_messages_have_no_runs_of_spaces() {
    let err = err_after("rollup-index.json", |v| {
        v["spec"]["dataSchema"]["granularitySpec"]["segmentGranularity"] = json!("month");
        v["spec"]["dataSchema"]["granularitySpec"]["queryGranularity"] = json!("week");
    });
    assert!(!err.contains("  "), "{err:?}");
    assert_mentions(
        &err,
        &["every segment must hold whole query-granularity buckets"],
    );
}

#[test]
fn missing_value_outside_the_supported_range_is_an_error() {
    let err = err_after("rollup-index.json", |v| {
        v["spec"]["dataSchema"]["timestampSpec"]["missingValue"] = json!(i64::MAX)
    });
    assert_mentions(
        &err,
        &["missingValue 9223372036854775807 is outside the supported range"],
    );
}

/// Druid lets `__time` be listed in `dimensions` to place it in the sort order; with time-first
/// segments (forceSegmentSortByTime true, the default) it may only come first.
#[test]
fn time_as_the_first_dimension_is_accepted_and_elsewhere_is_a_clear_error() {
    let with_time_first = |entry: Value| {
        let mut value: Value = serde_json::from_str(&fixture("wikipedia-index.json")).unwrap();
        let dims = value["spec"]["dataSchema"]["dimensionsSpec"]["dimensions"]
            .as_array_mut()
            .unwrap();
        dims.insert(0, entry);
        value.to_string()
    };
    let plain = parse("wikipedia-index.json")
        .spec
        .data_schema
        .schema()
        .unwrap();
    assert_eq!(plain.time_position, 0);
    for entry in [json!("__time"), json!({"type": "long", "name": "__time"})] {
        let task =
            parse_task(&with_time_first(entry.clone())).unwrap_or_else(|e| panic!("{entry}: {e}"));
        let schema = task.spec.data_schema.schema().unwrap();
        assert_eq!(schema.dimensions, plain.dimensions, "{entry}");
        assert_eq!(schema.time_position, 0, "{entry}");
    }

    let err = parse_err(&with_time_first(
        json!({"type": "double", "name": "__time"}),
    ));
    assert_mentions(
        &err,
        &["'__time' in dimensions must be a plain name or of type long"],
    );

    let err = err_after("wikipedia-index.json", |v| {
        v["spec"]["dataSchema"]["dimensionsSpec"]["dimensions"]
            .as_array_mut()
            .unwrap()
            .insert(3, json!("__time"))
    });
    assert_mentions(
        &err,
        &[
            "'__time' may only be the first entry of dimensions",
            "forceSegmentSortByTime",
        ],
    );

    let err = err_after("wikipedia-index.json", |v| {
        let dims = v["spec"]["dataSchema"]["dimensionsSpec"]["dimensions"]
            .as_array_mut()
            .unwrap();
        dims.insert(0, json!("__time"));
        dims.insert(1, json!("__time"));
    });
    assert_mentions(&err, &["'__time' is listed twice"]);
}

/// `forceSegmentSortByTime: false`: rows sort by the dimensions in their listed order, with
/// `__time` where it is listed, or after every dimension when it is not; the spec writes itself
/// back the way it was read.
#[test]
fn dimension_first_sort_orders_place_time_where_listed_or_last() {
    let spec_with = |time_at: Option<usize>| {
        let mut value: Value = serde_json::from_str(&fixture("wikipedia-index.json")).unwrap();
        let dims_spec = &mut value["spec"]["dataSchema"]["dimensionsSpec"];
        dims_spec["forceSegmentSortByTime"] = json!(false);
        if let Some(at) = time_at {
            dims_spec["dimensions"]
                .as_array_mut()
                .unwrap()
                .insert(at, json!({"type": "long", "name": "__time"}));
        }
        parse_task(&value.to_string()).unwrap_or_else(|e| panic!("time at {time_at:?}: {e}"))
    };
    let plain = parse("wikipedia-index.json")
        .spec
        .data_schema
        .schema()
        .unwrap();
    let dims = plain.dimensions.len();
    for (time_at, expected) in [(Some(0), 0), (Some(1), 1), (Some(3), 3), (None, dims)] {
        let task = spec_with(time_at);
        let schema = task.spec.data_schema.schema().unwrap();
        assert_eq!(schema.dimensions, plain.dimensions, "time at {time_at:?}");
        assert_eq!(schema.time_position, expected, "time at {time_at:?}");
        assert_eq!(schema.time_sorted(), expected == 0);
        let written = serde_json::to_value(&task).unwrap();
        let dims_spec = &written["spec"]["dataSchema"]["dimensionsSpec"];
        assert_eq!(dims_spec["forceSegmentSortByTime"], json!(false));
        assert_eq!(
            dims_spec["dimensions"][expected],
            json!({"type": "long", "name": "__time"})
        );
        let again = parse_task(&written.to_string()).unwrap();
        assert_eq!(again, task, "time at {time_at:?}");
    }
}
