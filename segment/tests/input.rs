//! Input readers: each format reads the expected rows and types; malformed rows are reported with
//! their position while the good rows around them are all delivered; absent fields are null and do
//! not leak from the previous row.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use grove_segment::input::json::read_json;
use grove_segment::input::{ParseError, RowPosition, RowVisitor, read_input};
use grove_segment::row::{InputRow, RowLayout, Value};
use grove_segment::spec::{IoConfig, TimestampSpec};
use grove_segment::time::{MS_PER_DAY, TimestampFormat, parse_iso_timestamp};
use grove_segment::{Result, SegmentError};
use serde_json::json;

#[derive(Default)]
struct Collect {
    rows: Vec<(i64, Vec<Value>, RowPosition)>,
    errors: Vec<ParseError>,
    /// Fail (as a visitor may, past maxParseExceptions) on this many errors.
    errors_max: Option<usize>,
}

impl RowVisitor for Collect {
    fn row(&mut self, row: &InputRow, position: &RowPosition) -> Result<()> {
        self.rows
            .push((row.timestamp_ms, row.values.clone(), position.clone()));
        Ok(())
    }

    fn unparseable(&mut self, error: ParseError) -> Result<()> {
        self.errors.push(error);
        match self.errors_max {
            Some(max) if self.errors.len() >= max => {
                Err(SegmentError::Limit("too many parse errors".into()))
            }
            _ => Ok(()),
        }
    }
}

impl Collect {
    fn values(&self) -> Vec<Vec<Value>> {
        self.rows.iter().map(|r| r.1.clone()).collect()
    }

    fn times(&self) -> Vec<i64> {
        self.rows.iter().map(|r| r.0).collect()
    }

    fn lines(&self) -> Vec<u64> {
        self.rows.iter().map(|r| r.2.line.unwrap_or(0)).collect()
    }

    fn error_lines(&self) -> Vec<(String, u64)> {
        self.errors
            .iter()
            .map(|e| (e.position.source.clone(), e.position.line.unwrap_or(0)))
            .collect()
    }
}

fn layout(fields: &[&str]) -> RowLayout {
    RowLayout {
        fields: fields.iter().map(|f| f.to_string()).collect(),
        metric_slots: vec![],
    }
}

fn ts(column: &str, format: TimestampFormat) -> TimestampSpec {
    TimestampSpec {
        column: column.into(),
        format,
        missing_value: None,
    }
}

fn s(text: &str) -> Value {
    Value::String(text.into())
}

fn list(items: &[&str]) -> Value {
    Value::Strings(items.iter().map(|i| i.to_string()).collect())
}

fn iso(text: &str) -> i64 {
    parse_iso_timestamp(text).unwrap()
}

fn io_config(value: serde_json::Value) -> IoConfig {
    serde_json::from_value(value).unwrap()
}

fn read_json_text(text: &str, fields: &[&str], spec: &TimestampSpec) -> Collect {
    let mut out = Collect::default();
    read_json(
        text.as_bytes(),
        "test.json",
        &layout(fields),
        spec,
        &mut out,
    )
    .unwrap();
    out
}

#[test]
fn json_values_are_typed() {
    let text = concat!(
        r#"{"timestamp":"2024-01-01T00:00:01.000Z","s":"abc","l":123,"d":1.5,"b":true,"n":null,"#,
        r#""a":["x",2,2.5,false,null,{"k":1},[1]],"o":{"z":1,"a":[true]},"big":18446744073709551615,"skip":{"deep":[1,2]}}"#,
        "\n"
    );
    let out = read_json_text(
        text,
        &["s", "l", "d", "b", "n", "a", "o", "big"],
        &ts("timestamp", TimestampFormat::Auto),
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.times(), vec![iso("2024-01-01T00:00:01Z")]);
    assert_eq!(
        out.values(),
        vec![vec![
            s("abc"),
            Value::Long(123),
            Value::Double(1.5),
            s("true"),
            Value::Null,
            list(&["x", "2", "2.5", "false", r#"{"k":1}"#, "[1]"]),
            s(r#"{"a":[true],"z":1}"#),
            Value::Double(18446744073709551615.0),
        ]]
    );
    assert_eq!(out.rows[0].2.source, "test.json");
    assert_eq!(out.rows[0].2.line, Some(1));
}

#[test]
fn json_absent_fields_become_null_and_do_not_leak() {
    let text = concat!(
        r#"{"t":1000,"a":"one","b":["x","y"],"c":5}"#,
        "\n",
        r#"{"t":2000}"#,
        "\n",
        r#"{"t":3000,"b":"z"}"#,
        "\n",
        r#"{"t":4000,"a":"four","b":["p"]}"#,
        "\n",
    );
    let out = read_json_text(text, &["a", "b", "c"], &ts("t", TimestampFormat::Millis));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.times(), vec![1000, 2000, 3000, 4000]);
    assert_eq!(
        out.values(),
        vec![
            vec![s("one"), list(&["x", "y"]), Value::Long(5)],
            vec![Value::Null, Value::Null, Value::Null],
            vec![Value::Null, s("z"), Value::Null],
            vec![s("four"), list(&["p"]), Value::Null],
        ]
    );
}

#[test]
fn json_malformed_rows_are_reported_with_their_lines() {
    let text = concat!(
        r#"{"ts":"2024-01-01","x":"1"}"#,
        "\n",
        "{\"ts\":\"2024-01-01\",\"x\":\n",
        "\n",
        "   \n",
        "[1,2,3]\n",
        r#"{"x":"no time"}"#,
        "\r\n",
        r#"{"ts":"yesterday","x":"bad time"}"#,
        "\n",
        r#"{"ts":"2024-01-02","x":"2"} trailing"#,
        "\n",
        "42\n",
        r#"{"ts":"2024-01-03","x":"3"}"#,
        "\r\n",
        r#"{"ts":null,"x":"null time"}"#,
        "\n",
        r#"{"ts":"2024-01-04","x":"4"}"#,
    );
    let out = read_json_text(text, &["x"], &ts("ts", TimestampFormat::Iso));
    assert_eq!(
        out.values(),
        vec![vec![s("1")], vec![s("3")], vec![s("4")]],
        "{:?}",
        out.errors
    );
    assert_eq!(out.lines(), vec![1, 10, 12]);
    assert_eq!(
        out.times(),
        vec![iso("2024-01-01"), iso("2024-01-03"), iso("2024-01-04")]
    );
    let lines: Vec<u64> = out.error_lines().iter().map(|e| e.1).collect();
    assert_eq!(lines, vec![2, 5, 6, 7, 8, 9, 11]);
    assert!(out.errors.iter().all(|e| e.position.source == "test.json"));
    let messages: Vec<&str> = out.errors.iter().map(|e| e.message.as_str()).collect();
    assert!(
        messages[0].starts_with("invalid JSON: EOF while parsing"),
        "{}",
        messages[0]
    );
    assert!(
        messages[1].contains("expected a JSON object"),
        "{}",
        messages[1]
    );
    assert_eq!(messages[2], "missing timestamp column 'ts'");
    assert!(
        messages[3].contains("unparseable timestamp 'yesterday'"),
        "{}",
        messages[3]
    );
    assert!(
        messages[4].contains("trailing characters"),
        "{}",
        messages[4]
    );
    assert!(
        messages[5].contains("expected a JSON object"),
        "{}",
        messages[5]
    );
    assert_eq!(messages[6], "missing timestamp column 'ts'");
    assert_eq!(
        out.errors[2].to_string(),
        "test.json line 6: missing timestamp column 'ts'"
    );
}

#[test]
fn json_keys_in_changing_orders_land_in_their_fields() {
    // The reader predicts each key from the previous row's order; a row in another order, with
    // unknown keys between, or with fewer keys must still fill the right slots.
    let many: Vec<String> = (0..12).map(|i| format!("f{i}")).collect();
    for fields in [
        vec!["a", "b", "c"],
        many.iter().map(String::as_str).collect::<Vec<_>>(),
    ] {
        let (x, y) = (fields[0], fields[1]);
        let text = format!(
            "{{\"t\":1,\"{x}\":\"1\",\"{y}\":\"2\"}}\n\
             {{\"{y}\":\"3\",\"t\":2,\"{x}\":\"4\"}}\n\
             {{\"zz\":0,\"{x}\":\"5\",\"t\":3}}\n\
             {{\"t\":4,\"{x}\":\"6\",\"{y}\":\"7\"}}\n"
        );
        let got = read_json_text(&text, &fields, &ts("t", TimestampFormat::Millis));
        let firsts: Vec<(Value, Value)> = got
            .values()
            .into_iter()
            .map(|v| (v[0].clone(), v[1].clone()))
            .collect();
        assert_eq!(
            firsts,
            vec![
                (s("1"), s("2")),
                (s("4"), s("3")),
                (s("5"), Value::Null),
                (s("6"), s("7"))
            ],
            "{} fields",
            fields.len()
        );
        assert_eq!(got.times(), vec![1, 2, 3, 4]);
    }
}

#[test]
fn json_timestamp_options() {
    // missingValue fills rows without a timestamp; posix seconds; the timestamp column may also
    // be a dimension.
    let mut spec = ts("when", TimestampFormat::Posix);
    spec.missing_value = Some(42);
    let text = "{\"when\":1700000000,\"a\":1}\n{\"a\":2}\n{\"when\":\"1700000001\"}\n";
    let out = read_json_text(text, &["a", "when"], &spec);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.times(), vec![1_700_000_000_000, 42, 1_700_000_001_000]);
    assert_eq!(
        out.values(),
        vec![
            vec![Value::Long(1), Value::Long(1_700_000_000)],
            vec![Value::Long(2), Value::Null],
            vec![Value::Null, s("1700000001")],
        ]
    );
}

#[test]
fn json_many_fields_long_lines_and_bom() {
    let fields: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    let names: Vec<&str> = fields.iter().map(String::as_str).collect();
    let long = "x".repeat(3 << 20);
    let text = format!(
        "\u{feff}{{\"t\":1,\"f19\":\"last\",\"f0\":\"first\"}}\n{{\"t\":2,\"f7\":\"{long}\"}}\n"
    );
    let out = read_json_text(&text, &names, &ts("t", TimestampFormat::Millis));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.rows.len(), 2);
    assert_eq!(out.rows[0].1[0], s("first"));
    assert_eq!(out.rows[0].1[19], s("last"));
    assert_eq!(out.rows[1].1[7], Value::String(long));
    assert_eq!(out.rows[1].1[0], Value::Null);
}

#[test]
fn visitor_errors_stop_the_reader() {
    let text = "1\n2\n3\n{\"t\":1}\n";
    let mut out = Collect {
        errors_max: Some(2),
        ..Collect::default()
    };
    let err = read_json(
        text.as_bytes(),
        "x",
        &layout(&[]),
        &ts("t", TimestampFormat::Millis),
        &mut out,
    )
    .unwrap_err();
    assert!(matches!(err, SegmentError::Limit(_)), "{err}");
    assert_eq!(out.errors.len(), 2);
    assert!(out.rows.is_empty());
}

#[test]
fn local_source_reads_files_in_path_order_including_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("b.json"), "{\"t\":2,\"v\":\"b\"}\n").unwrap();
    std::fs::write(root.join("a.json"), "{\"t\":1,\"v\":\"a\"}\nnot json\n").unwrap();
    std::fs::write(root.join("ignored.txt"), "{\"t\":9}\n").unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"{\"t\":3,\"v\":\"c\"}\n").unwrap();
    std::fs::write(root.join("c.json.gz"), gz.finish().unwrap()).unwrap();
    let io = io_config(json!({
        "inputSource": {"type": "local", "baseDir": root, "filter": "*.json*"},
        "inputFormat": {"type": "json"}
    }));
    let mut out = Collect::default();
    read_input(
        &io,
        &layout(&["v"]),
        &ts("t", TimestampFormat::Millis),
        &mut out,
    )
    .unwrap();
    assert_eq!(out.values(), vec![vec![s("a")], vec![s("b")], vec![s("c")]]);
    let sources: Vec<String> = out
        .rows
        .iter()
        .map(|r| {
            Path::new(&r.2.source)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(sources, vec!["a.json", "b.json", "c.json.gz"]);
    assert_eq!(out.errors.len(), 1);
    assert!(out.errors[0].position.source.ends_with("a.json"));
    assert_eq!(out.errors[0].position.line, Some(2));

    let io = io_config(json!({
        "inputSource": {"type": "local", "files": [root.join("missing.json")]},
        "inputFormat": {"type": "json"}
    }));
    let err = read_input(
        &io,
        &layout(&["v"]),
        &ts("t", TimestampFormat::Millis),
        &mut out,
    )
    .unwrap_err();
    assert!(matches!(err, SegmentError::Io { .. }), "{err}");
    assert!(err.to_string().contains("missing.json"), "{err}");
}

#[test]
fn inline_csv_with_header_lists_and_bad_rows() {
    let data = concat!(
        "# exported 2024-01-01\n",
        "timestamp,page,tags,added\n",
        "2024-01-01T00:00:00Z,Main,a|b|c,10\n",
        "2024-01-01T01:00:00Z,,solo,\n",
        "2024-01-01T02:00:00Z,Short\n",
        "\"2024-01-01T03:00:00Z\",\"Quoted, with comma\nand newline\",x,7\n",
        "not a time,Bad,x,1\n",
        ",NoTime,x,1\n",
        "2024-01-01T04:00:00Z,Last,,3\n",
    );
    let io = io_config(json!({
        "inputSource": {"type": "inline", "data": data},
        "inputFormat": {"type": "csv", "findColumnsFromHeader": true, "skipHeaderRows": 1, "listDelimiter": "|"}
    }));
    let mut out = Collect::default();
    read_input(
        &io,
        &layout(&["page", "tags", "added"]),
        &ts("timestamp", TimestampFormat::Iso),
        &mut out,
    )
    .unwrap();
    assert_eq!(
        out.values(),
        vec![
            vec![s("Main"), list(&["a", "b", "c"]), s("10")],
            vec![Value::Null, s("solo"), Value::Null],
            vec![s("Quoted, with comma\nand newline"), s("x"), s("7")],
            vec![s("Last"), Value::Null, s("3")],
        ]
    );
    assert_eq!(out.lines(), vec![3, 4, 6, 10]);
    assert_eq!(
        out.times(),
        vec![
            iso("2024-01-01T00:00:00Z"),
            iso("2024-01-01T01:00:00Z"),
            iso("2024-01-01T03:00:00Z"),
            iso("2024-01-01T04:00:00Z"),
        ]
    );
    assert_eq!(
        out.error_lines(),
        vec![
            ("inline".into(), 5),
            ("inline".into(), 8),
            ("inline".into(), 9)
        ]
    );
    assert_eq!(out.errors[0].message, "expected 4 fields, found 2");
    assert!(
        out.errors[1]
            .message
            .contains("unparseable timestamp 'not a time'")
    );
    assert_eq!(
        out.errors[2].message,
        "missing timestamp column 'timestamp'"
    );
}

#[test]
fn tsv_with_columns_delimiter_and_number_parsing() {
    let data = "\u{feff}1700000000000|a;b|12|1.5|x\n1700000001000|c|-3|abc|y\n1700000002000|d|7\n";
    let io = io_config(json!({
        "inputSource": {"type": "inline", "data": data},
        "inputFormat": {"type": "tsv", "delimiter": "|", "listDelimiter": ";", "tryParseNumbers": true,
                        "columns": ["ts", "dim", "n", "m", "unused"]}
    }));
    let mut out = Collect::default();
    read_input(
        &io,
        &layout(&["dim", "n", "m"]),
        &ts("ts", TimestampFormat::Millis),
        &mut out,
    )
    .unwrap();
    assert_eq!(
        out.values(),
        vec![
            vec![list(&["a", "b"]), Value::Long(12), Value::Double(1.5)],
            vec![s("c"), Value::Long(-3), s("abc")],
        ]
    );
    assert_eq!(out.times(), vec![1_700_000_000_000, 1_700_000_001_000]);
    assert_eq!(out.error_lines(), vec![("inline".into(), 3)]);
}

/// Timestamps outside Druid's eternity are parse errors at their rows, whatever the format and
/// however the value is written, so they never reach granularity arithmetic.
#[test]
fn json_timestamps_outside_the_supported_range_are_parse_errors() {
    let text = concat!(
        "{\"t\":9223372036854775807,\"a\":\"max long\"}\n",
        "{\"t\":1700000000000,\"a\":\"good\"}\n",
        "{\"t\":\"9223372036854775807\",\"a\":\"max as text\"}\n",
        "{\"t\":-9223372036854775808,\"a\":\"min long\"}\n",
        "{\"t\":1e300,\"a\":\"huge double\"}\n",
        "{\"t\":18446744073709551615,\"a\":\"above i64\"}\n",
        "{\"t\":1700000001000,\"a\":\"good too\"}\n",
    );
    for spec in [
        ts("t", TimestampFormat::Auto),
        ts("t", TimestampFormat::Millis),
    ] {
        let out = read_json_text(text, &["a"], &spec);
        assert_eq!(out.values(), vec![vec![s("good")], vec![s("good too")]]);
        assert_eq!(out.times(), vec![1_700_000_000_000, 1_700_000_001_000]);
        let lines: Vec<u64> = out.error_lines().iter().map(|e| e.1).collect();
        assert_eq!(lines, vec![1, 3, 4, 5, 6], "{:?}", out.errors);
        for error in &out.errors {
            assert!(
                error.message.contains("is outside the supported range"),
                "{error}"
            );
        }
        assert!(out.errors[0].message.contains("'9223372036854775807'"));
        assert!(out.errors[3].message.contains("'1.0E300'"));
    }
    // Also when the timestamp column is a dimension (read through its row slot), and in posix
    // seconds that overflow milliseconds.
    let out = read_json_text(
        "{\"t\":9223372036854775807}\n{\"t\":1}\n",
        &["t"],
        &ts("t", TimestampFormat::Millis),
    );
    assert_eq!(out.error_lines(), vec![("test.json".into(), 1)]);
    assert_eq!(out.times(), vec![1]);
    let out = read_json_text(
        "{\"t\":9000000000000000}\n{\"t\":1}\n",
        &[],
        &ts("t", TimestampFormat::Posix),
    );
    assert_eq!(out.error_lines(), vec![("test.json".into(), 1)]);
    assert!(
        out.errors[0]
            .message
            .contains("outside the supported range")
    );
    assert_eq!(out.times(), vec![1000]);
}

/// An ISO timestamp whose year does not fit (past Druid's eternity, or past `i64`
/// milliseconds) is a parse error at its row in every input format, never a wrapped time.
#[test]
fn iso_timestamps_whose_year_does_not_fit_are_parse_errors() {
    let text = concat!(
        "{\"t\":\"440000000-01-01\",\"a\":\"past i64\"}\n",
        "{\"t\":\"2024-01-01\",\"a\":\"good\"}\n",
        "{\"t\":\"-440000000-01-01T00:00:00Z\",\"a\":\"before i64\"}\n",
        "{\"t\":\"200000000-01-01\",\"a\":\"past the eternity\"}\n",
    );
    for format in [TimestampFormat::Auto, TimestampFormat::Iso] {
        let out = read_json_text(text, &["a"], &ts("t", format));
        assert_eq!(out.values(), vec![vec![s("good")]], "{:?}", out.errors);
        let lines: Vec<u64> = out.error_lines().iter().map(|e| e.1).collect();
        assert_eq!(lines, vec![1, 3, 4]);
        assert!(
            out.errors[0]
                .message
                .contains("unparseable timestamp '440000000-01-01'"),
            "{}",
            out.errors[0]
        );
    }
    let io = io_config(json!({
        "inputSource": {"type": "inline", "data": "440000000-01-01,a\n2024-01-01,b\n"},
        "inputFormat": {"type": "csv", "columns": ["ts", "x"]}
    }));
    let mut out = Collect::default();
    read_input(
        &io,
        &layout(&["x"]),
        &ts("ts", TimestampFormat::Iso),
        &mut out,
    )
    .unwrap();
    assert_eq!(out.values(), vec![vec![s("b")]]);
    assert_eq!(out.error_lines(), vec![("inline".into(), 1)]);
}

#[test]
fn csv_timestamps_outside_the_supported_range_are_parse_errors() {
    let data = "9223372036854775807,a\n1700000000000,b\n-9223372036854775808,c\n1700000001000,d\n";
    let io = io_config(json!({
        "inputSource": {"type": "inline", "data": data},
        "inputFormat": {"type": "csv", "columns": ["ts", "x"]}
    }));
    for format in [TimestampFormat::Auto, TimestampFormat::Millis] {
        let mut out = Collect::default();
        read_input(&io, &layout(&["x"]), &ts("ts", format), &mut out).unwrap();
        assert_eq!(out.values(), vec![vec![s("b")], vec![s("d")]]);
        assert_eq!(out.lines(), vec![2, 4]);
        assert_eq!(
            out.error_lines(),
            vec![("inline".into(), 1), ("inline".into(), 3)]
        );
        assert!(
            out.errors[0].message.starts_with(
                "timestamp '9223372036854775807' in column 'ts' is outside the supported range"
            ),
            "{}",
            out.errors[0]
        );
    }
}

/// Doubles inside JSON arrays become text as Druid prints them (Java's `Double.toString`).
#[test]
fn json_array_doubles_become_java_text() {
    let out = read_json_text(
        "{\"t\":1,\"a\":[1.0,2.5,1e8,0.001,1e-5,-3e-4,1.2345e10,5e-324]}\n",
        &["a"],
        &ts("t", TimestampFormat::Millis),
    );
    assert_eq!(
        out.values(),
        vec![vec![list(&[
            "1.0",
            "2.5",
            "1.0E8",
            "0.001",
            "1.0E-5",
            "-3.0E-4",
            "1.2345E10",
            "4.9E-324"
        ])]]
    );
}

mod parquet_files {
    use super::*;
    use parquet::data_type::{
        BoolType, ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type,
    };
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    const SCHEMA: &str = "
        message row {
          REQUIRED INT64 ts (TIMESTAMP(MILLIS,true));
          OPTIONAL BYTE_ARRAY name (UTF8);
          OPTIONAL INT32 count;
          OPTIONAL DOUBLE score;
          OPTIONAL BOOLEAN flag;
          OPTIONAL group tags (LIST) {
            REPEATED group list {
              OPTIONAL BYTE_ARRAY element (UTF8);
            }
          }
          OPTIONAL BYTE_ARRAY raw;
          OPTIONAL INT32 day (DATE);
          OPTIONAL INT64 micros (TIMESTAMP(MICROS,true));
          OPTIONAL BYTE_ARRAY unused (UTF8);
        }";

    /// Writes two row groups: rows (t0, t0+1000) then (t0+2000).
    fn write_file(path: &Path) {
        let schema = Arc::new(parse_message_type(SCHEMA).unwrap());
        let props = Arc::new(WriterProperties::builder().build());
        let file = std::fs::File::create(path).unwrap();
        let mut writer = SerializedFileWriter::new(file, schema, props).unwrap();
        let t0 = iso("2024-03-01T00:00:00Z");
        let groups: [&[i64]; 2] = [&[t0, t0 + 1000], &[t0 + 2000]];
        for (g, times) in groups.iter().enumerate() {
            let mut rg = writer.next_row_group().unwrap();
            let mut column = 0;
            while let Some(mut col) = rg.next_column().unwrap() {
                let n = times.len();
                match column {
                    0 => {
                        col.typed::<Int64Type>()
                            .write_batch(times, None, None)
                            .unwrap();
                    }
                    1 => {
                        // Row 2 of group 0 has no name.
                        let (values, defs): (Vec<ByteArray>, Vec<i16>) = if g == 0 {
                            (vec![ByteArray::from("alpha")], vec![1, 0])
                        } else {
                            (vec![ByteArray::from("gamma")], vec![1])
                        };
                        col.typed::<ByteArrayType>()
                            .write_batch(&values, Some(&defs), None)
                            .unwrap();
                    }
                    2 => {
                        let values: Vec<i32> =
                            (0..n as i32).map(|i| 10 + i + g as i32 * 10).collect();
                        col.typed::<Int32Type>()
                            .write_batch(&values, Some(&vec![1; n]), None)
                            .unwrap();
                    }
                    3 => {
                        let values: Vec<f64> = vec![0.5; n];
                        col.typed::<DoubleType>()
                            .write_batch(&values, Some(&vec![1; n]), None)
                            .unwrap();
                    }
                    4 => {
                        let values: Vec<bool> = vec![true; n];
                        col.typed::<BoolType>()
                            .write_batch(&values, Some(&vec![1; n]), None)
                            .unwrap();
                    }
                    5 => {
                        // Group 0: ["x","y"], then an empty list; group 1: ["z", null].
                        let (values, defs, reps): (Vec<ByteArray>, Vec<i16>, Vec<i16>) = if g == 0 {
                            (vec!["x".into(), "y".into()], vec![3, 3, 1], vec![0, 1, 0])
                        } else {
                            (vec!["z".into()], vec![3, 2], vec![0, 1])
                        };
                        col.typed::<ByteArrayType>()
                            .write_batch(&values, Some(&defs), Some(&reps))
                            .unwrap();
                    }
                    6 => {
                        let values: Vec<ByteArray> = vec![ByteArray::from("bin"); n];
                        col.typed::<ByteArrayType>()
                            .write_batch(&values, Some(&vec![1; n]), None)
                            .unwrap();
                    }
                    7 => {
                        let values: Vec<i32> = vec![19_783; n];
                        col.typed::<Int32Type>()
                            .write_batch(&values, Some(&vec![1; n]), None)
                            .unwrap();
                    }
                    8 => {
                        let values: Vec<i64> = vec![1_500_999; n];
                        col.typed::<Int64Type>()
                            .write_batch(&values, Some(&vec![1; n]), None)
                            .unwrap();
                    }
                    _ => {
                        let values: Vec<ByteArray> = vec![ByteArray::from("u"); n];
                        col.typed::<ByteArrayType>()
                            .write_batch(&values, Some(&vec![1; n]), None)
                            .unwrap();
                    }
                }
                col.close().unwrap();
                column += 1;
            }
            rg.close().unwrap();
        }
        writer.close().unwrap();
    }

    fn parquet_io(path: &Path, binary_as_string: bool) -> IoConfig {
        io_config(json!({
            "inputSource": {"type": "local", "files": [path]},
            "inputFormat": {"type": "parquet", "binaryAsString": binary_as_string}
        }))
    }

    const FIELDS: &[&str] = &[
        "name", "count", "score", "flag", "tags", "raw", "day", "micros", "missing",
    ];

    #[test]
    fn parquet_file_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.parquet");
        write_file(&path);
        let mut out = Collect::default();
        read_input(
            &parquet_io(&path, true),
            &layout(FIELDS),
            &ts("ts", TimestampFormat::Auto),
            &mut out,
        )
        .unwrap();
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let t0 = iso("2024-03-01T00:00:00Z");
        assert_eq!(out.times(), vec![t0, t0 + 1000, t0 + 2000]);
        let day = Value::Long(19_783 * MS_PER_DAY);
        let micros = Value::Long(1_500);
        assert_eq!(
            out.values(),
            vec![
                vec![
                    s("alpha"),
                    Value::Long(10),
                    Value::Double(0.5),
                    s("true"),
                    list(&["x", "y"]),
                    s("bin"),
                    day.clone(),
                    micros.clone(),
                    Value::Null
                ],
                vec![
                    Value::Null,
                    Value::Long(11),
                    Value::Double(0.5),
                    s("true"),
                    list(&[]),
                    s("bin"),
                    day.clone(),
                    micros.clone(),
                    Value::Null
                ],
                vec![
                    s("gamma"),
                    Value::Long(20),
                    Value::Double(0.5),
                    s("true"),
                    list(&["z"]),
                    s("bin"),
                    day,
                    micros,
                    Value::Null
                ],
            ]
        );
        let positions: Vec<(Option<u64>, Option<u64>)> =
            out.rows.iter().map(|r| (r.2.row_group, r.2.row)).collect();
        assert_eq!(
            positions,
            vec![(Some(0), Some(1)), (Some(0), Some(2)), (Some(1), Some(1))]
        );
        assert!(out.rows[0].2.source.ends_with("rows.parquet"));
    }

    #[test]
    fn parquet_binary_needs_binary_as_string_and_timestamps_may_be_dates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.parquet");
        write_file(&path);
        let mut out = Collect::default();
        read_input(
            &parquet_io(&path, false),
            &layout(&["raw"]),
            &ts("day", TimestampFormat::Iso),
            &mut out,
        )
        .unwrap();
        assert!(out.rows.is_empty());
        assert_eq!(out.errors.len(), 3);
        assert_eq!(out.errors[2].position.row_group, Some(1));
        assert!(
            out.errors[0].message.contains("binaryAsString"),
            "{}",
            out.errors[0].message
        );

        let mut out = Collect::default();
        read_input(
            &parquet_io(&path, false),
            &layout(&["name"]),
            &ts("day", TimestampFormat::Iso),
            &mut out,
        )
        .unwrap();
        assert_eq!(out.times(), vec![19_783 * MS_PER_DAY; 3]);
        assert_eq!(
            out.values(),
            vec![vec![s("alpha")], vec![Value::Null], vec![s("gamma")]]
        );
    }

    #[test]
    fn corrupt_parquet_is_one_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.parquet");
        write_file(&path);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[bytes.len() / 2..]).unwrap();
        let mut out = Collect::default();
        let err = read_input(
            &parquet_io(&path, true),
            &layout(FIELDS),
            &ts("ts", TimestampFormat::Auto),
            &mut out,
        )
        .unwrap_err();
        assert!(matches!(err, SegmentError::Io { .. }), "{err}");
        assert!(err.to_string().contains("broken.parquet"), "{err}");
        assert!(out.rows.is_empty());
    }
}

/// The JSON reader alone on 1M small rows; run with
/// `cargo test --release -p grove-segment --test input -- --ignored --nocapture json_reader_speed`.
#[test]
#[ignore]
fn json_reader_speed() {
    struct Count(u64, i64);
    impl RowVisitor for Count {
        fn row(&mut self, row: &InputRow, _: &RowPosition) -> Result<()> {
            self.0 += 1;
            self.1 = self.1.wrapping_add(row.timestamp_ms);
            Ok(())
        }
        fn unparseable(&mut self, error: ParseError) -> Result<()> {
            panic!("{error}")
        }
    }
    const ROWS: usize = 1_000_000;
    let mut text = String::with_capacity(ROWS * 64);
    for i in 0..ROWS {
        text.push_str(&format!(
            "{{\"timestamp\":\"2024-01-01T00:00:{:02}.000Z\",\"dim0\":\"abc{}\",\"value\":{}}}\n",
            i % 60,
            i % 100,
            i
        ));
    }
    let layout = layout(&["dim0", "value"]);
    let spec = ts("timestamp", TimestampFormat::Auto);
    let mut best = f64::MAX;
    for _ in 0..3 {
        let mut count = Count(0, 0);
        let start = Instant::now();
        read_json(text.as_bytes(), "bench", &layout, &spec, &mut count).unwrap();
        best = best.min(start.elapsed().as_secs_f64());
        assert_eq!(count.0, ROWS as u64);
    }
    println!(
        "json reader: {ROWS} rows in {:.3}s = {:.2}M rows/s",
        best,
        ROWS as f64 / best / 1e6
    );
}
