//! SQL result formats, as Druid writes them: `object` (default), `array`, `objectLines`,
//! `arrayLines` and `csv`, each with the optional header rows Druid adds for `header`,
//! `typesHeader` and `sqlTypesHeader`.
//!
//! Shapes: `object` is a JSON array of row objects (the header is a first object mapping each
//! column to `null`, or to `{"type", "sqlType"}` when types are asked for); `array` is a JSON
//! array of row arrays (header rows: names, then native types, then SQL types); the `Lines`
//! forms write one JSON value per line and end with an empty line; `csv` writes the header rows
//! and rows as CSV lines (quoted only where needed) and ends with an empty line.

use grove_query::sql::{ColumnInfo, SqlResult, SqlType};
use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultFormat {
    Object,
    Array,
    ObjectLines,
    ArrayLines,
    Csv,
}

impl ResultFormat {
    /// Parses Druid's `resultFormat` name (case-insensitive, as Druid's enum parsing is).
    pub fn parse(name: &str) -> Result<ResultFormat, String> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "object" => ResultFormat::Object,
            "array" => ResultFormat::Array,
            "objectlines" => ResultFormat::ObjectLines,
            "arraylines" => ResultFormat::ArrayLines,
            "csv" => ResultFormat::Csv,
            _ => {
                return Err(format!(
                    "resultFormat '{name}' is not one of object, array, objectLines, arrayLines, csv"
                ));
            }
        })
    }

    pub fn content_type(&self) -> &'static str {
        match self {
            ResultFormat::Object | ResultFormat::Array => "application/json",
            ResultFormat::ObjectLines | ResultFormat::ArrayLines => "text/plain",
            ResultFormat::Csv => "text/csv",
        }
    }
}

/// Which header rows to write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    pub names: bool,
    pub types: bool,
    pub sql_types: bool,
}

/// The native (Druid column) type of a SQL type.
fn native_type(sql_type: &SqlType) -> &str {
    match sql_type {
        SqlType::Timestamp | SqlType::Bigint => "LONG",
        SqlType::Varchar => "STRING",
        SqlType::Double => "DOUBLE",
        SqlType::Other(name) => name,
    }
}

fn sql_type_name(sql_type: &SqlType) -> &str {
    match sql_type {
        SqlType::Timestamp => "TIMESTAMP",
        SqlType::Varchar => "VARCHAR",
        SqlType::Bigint => "BIGINT",
        SqlType::Double => "DOUBLE",
        SqlType::Other(name) => name,
    }
}

/// The header rows of the array-like formats (`array`, `arrayLines`, `csv`).
fn header_rows(columns: &[ColumnInfo], headers: Headers) -> Vec<Vec<Value>> {
    let mut rows = Vec::new();
    if !headers.names {
        return rows;
    }
    let row = |f: fn(&ColumnInfo) -> &str| -> Vec<Value> {
        columns
            .iter()
            .map(|c| Value::String(f(c).to_owned()))
            .collect()
    };
    rows.push(row(|c| &c.name));
    if headers.types {
        rows.push(row(|c| native_type(&c.sql_type)));
    }
    if headers.sql_types {
        rows.push(row(|c| sql_type_name(&c.sql_type)));
    }
    rows
}

/// The header object of the object-like formats (`object`, `objectLines`).
fn header_object(columns: &[ColumnInfo], headers: Headers) -> Option<String> {
    if !headers.names {
        return None;
    }
    let values = columns.iter().map(|c| {
        let mut types = Map::new();
        if headers.types {
            types.insert("type".into(), native_type(&c.sql_type).into());
        }
        if headers.sql_types {
            types.insert("sqlType".into(), sql_type_name(&c.sql_type).into());
        }
        if types.is_empty() {
            Value::Null
        } else {
            Value::Object(types)
        }
    });
    Some(object_text(columns, values))
}

/// A JSON object with the columns' names as keys, in column order (a `serde_json::Map` would
/// sort them).
fn object_text(columns: &[ColumnInfo], values: impl Iterator<Item = Value>) -> String {
    let mut out = String::from("{");
    for (i, (column, value)) in columns.iter().zip(values).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::String(column.name.clone()).to_string());
        out.push(':');
        out.push_str(&value.to_string());
    }
    out.push('}');
    out
}

/// Writes `result` in `format` with the requested headers.
#[cfg(test)]
pub fn render(result: &SqlResult, format: ResultFormat, headers: Headers) -> String {
    render_bounded(result, format, headers, u64::MAX).expect("no bound")
}

/// [`render`], or `None` as soon as the text passes `bytes_max` (the answer is never held past
/// the server's bound).
pub fn render_bounded(
    result: &SqlResult,
    format: ResultFormat,
    headers: Headers,
    bytes_max: u64,
) -> Option<String> {
    let columns = &result.columns;
    match format {
        ResultFormat::Object | ResultFormat::ObjectLines => {
            let values = header_object(columns, headers).into_iter().chain(
                result
                    .rows
                    .iter()
                    .map(|row| object_text(columns, row.iter().cloned())),
            );
            json_values(values, format == ResultFormat::ObjectLines, bytes_max)
        }
        ResultFormat::Array | ResultFormat::ArrayLines => {
            let values = header_rows(columns, headers)
                .into_iter()
                .chain(result.rows.iter().cloned())
                .map(|row| Value::Array(row).to_string());
            json_values(values, format == ResultFormat::ArrayLines, bytes_max)
        }
        ResultFormat::Csv => {
            let mut out = String::new();
            for row in header_rows(columns, headers).iter().chain(&result.rows) {
                let cells: Vec<String> = row.iter().map(csv_cell).collect();
                out.push_str(&cells.join(","));
                out.push('\n');
                if out.len() as u64 > bytes_max {
                    return None;
                }
            }
            out.push('\n');
            (out.len() as u64 <= bytes_max).then_some(out)
        }
    }
}

/// A JSON array of `values` (JSON texts), or one value per line followed by an empty line;
/// `None` once past `bytes_max`.
fn json_values(
    values: impl Iterator<Item = String>,
    lines: bool,
    bytes_max: u64,
) -> Option<String> {
    let mut out = String::new();
    if !lines {
        out.push('[');
    }
    for (i, value) in values.enumerate() {
        if !lines && i > 0 {
            out.push(',');
        }
        out.push_str(&value);
        if lines {
            out.push('\n');
        }
        if out.len() as u64 > bytes_max {
            return None;
        }
    }
    out.push(if lines { '\n' } else { ']' });
    (out.len() as u64 <= bytes_max).then_some(out)
}

/// One CSV cell: null is empty, strings are raw, other values are their JSON text; quoted only
/// when they hold a comma, quote or line break.
fn csv_cell(value: &Value) -> String {
    let text = match value {
        Value::Null => return String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every format stops at the bound: the whole text when it fits exactly, nothing past it.
    #[test]
    fn rendering_stops_at_the_bound() {
        let all = Headers {
            names: true,
            types: true,
            sql_types: true,
        };
        for format in [
            ResultFormat::Object,
            ResultFormat::Array,
            ResultFormat::ObjectLines,
            ResultFormat::ArrayLines,
            ResultFormat::Csv,
        ] {
            let text = render(&result(), format, all);
            let bound = text.len() as u64;
            assert_eq!(render_bounded(&result(), format, all, bound), Some(text));
            assert_eq!(render_bounded(&result(), format, all, bound - 1), None);
        }
    }

    fn result() -> SqlResult {
        let column = |name: &str, sql_type| ColumnInfo {
            name: name.into(),
            sql_type,
        };
        SqlResult {
            columns: vec![
                column("page", SqlType::Varchar),
                column("n", SqlType::Bigint),
            ],
            rows: vec![vec![json!("a,b"), json!(3)], vec![Value::Null, json!(1)]],
        }
    }

    #[test]
    fn object_and_array_headers() {
        let all = Headers {
            names: true,
            types: true,
            sql_types: true,
        };
        let object: Value =
            serde_json::from_str(&render(&result(), ResultFormat::Object, all)).unwrap();
        assert_eq!(
            object[0],
            json!({"page": {"type": "STRING", "sqlType": "VARCHAR"}, "n": {"type": "LONG", "sqlType": "BIGINT"}})
        );
        assert_eq!(object[1], json!({"page": "a,b", "n": 3}));
        let names_only = Headers {
            names: true,
            ..Headers::default()
        };
        let object: Value =
            serde_json::from_str(&render(&result(), ResultFormat::Object, names_only)).unwrap();
        assert_eq!(object[0], json!({"page": null, "n": null}));
        // Columns keep their order.
        assert!(
            render(&result(), ResultFormat::Object, names_only)
                .starts_with(r#"[{"page":null,"n":null}"#)
        );
        let array = render(&result(), ResultFormat::Array, all);
        assert_eq!(
            array,
            r#"[["page","n"],["STRING","LONG"],["VARCHAR","BIGINT"],["a,b",3],[null,1]]"#
        );
        let plain = render(&result(), ResultFormat::Array, Headers::default());
        assert_eq!(plain, r#"[["a,b",3],[null,1]]"#);
    }

    #[test]
    fn line_formats_and_csv() {
        let names = Headers {
            names: true,
            ..Headers::default()
        };
        assert_eq!(
            render(&result(), ResultFormat::ArrayLines, names),
            "[\"page\",\"n\"]\n[\"a,b\",3]\n[null,1]\n\n"
        );
        assert_eq!(
            render(&result(), ResultFormat::ObjectLines, Headers::default()),
            "{\"page\":\"a,b\",\"n\":3}\n{\"page\":null,\"n\":1}\n\n"
        );
        assert_eq!(
            render(&result(), ResultFormat::Csv, names),
            "page,n\n\"a,b\",3\n,1\n\n"
        );
        assert_eq!(
            ResultFormat::parse("objectLines"),
            Ok(ResultFormat::ObjectLines)
        );
        assert!(
            ResultFormat::parse("xml")
                .unwrap_err()
                .contains("not one of")
        );
    }
}
