//! A native query's result: Druid's JSON, as a tree, or as an [`EventTable`] — groupBy rows kept
//! as values under column names given once, written straight to the same text as the tree
//! would be ([`QueryResult::to_text`]). A dashboard's groupBy can return thousands of rows per query; building a map per
//! row (and a key string per cell) only to write it out and free it cost more than the rows.

use serde_json::{Map, Value as Json};

/// What [`crate::run_native`] returns: Druid's result JSON, as text ([`QueryResult::to_text`])
/// or as a tree ([`QueryResult::into_json`]).
#[derive(Debug)]
pub enum QueryResult {
    Json(Json),
    Events(EventTable),
    /// Written straight to text as it was built (a scan's rows, bounded in bytes as they
    /// grow); the tree is parsed back only when asked for.
    Text(String),
}

impl QueryResult {
    /// The result's JSON text, as `serde_json::to_string` writes it; a table's keys and
    /// timestamps are escaped once rather than once per row.
    pub fn to_text(&self) -> String {
        match self {
            QueryResult::Json(json) => json.to_string(),
            QueryResult::Events(table) => table.to_text(),
            QueryResult::Text(text) => text.clone(),
        }
    }

    /// [`QueryResult::to_text`], refused (with a resource-limit error naming the bound) once
    /// the text passes `bytes_max`: the answer is never held past its bound, however it was
    /// built.
    pub fn into_text_bounded(self, bytes_max: u64) -> crate::Result<String> {
        let text = match self {
            QueryResult::Text(text) => Some(text),
            QueryResult::Events(table) => table.write_text(bytes_max),
            QueryResult::Json(json) => {
                let mut out = Capped {
                    bytes: Vec::new(),
                    max: bytes_max,
                };
                serde_json::to_writer(&mut out, &json)
                    .ok()
                    .map(|()| String::from_utf8(out.bytes).expect("JSON text is UTF-8"))
            }
        };
        text.filter(|t| t.len() as u64 <= bytes_max).ok_or_else(|| {
            crate::QueryError::resource_limit(format!(
                "the query's result is larger than {} bytes (the server's result-bytes-max): \
                 narrow the query (a limit, fewer groups or columns, shorter intervals) or \
                 raise --result-bytes-max",
                crate::error::thousands(bytes_max)
            ))
        })
    }

    /// The result as a JSON tree.
    pub fn into_json(self) -> Json {
        match self {
            QueryResult::Json(json) => json,
            QueryResult::Events(table) => table.into_json(),
            QueryResult::Text(text) => {
                serde_json::from_str(&text).expect("a result's text is valid JSON")
            }
        }
    }
}

/// A writer into memory that fails once it holds more than `max` bytes.
struct Capped {
    bytes: Vec<u8>,
    max: u64,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if (self.bytes.len() + buf.len()) as u64 > self.max {
            return Err(std::io::Error::other("result-bytes-max"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Rows shaped `{"event": {..}, "timestamp": "..", "version": "v1"}` (groupBy's), their event
/// columns named once. Keys are written in the order of a JSON map's (sorted), so the text is
/// the same as the tree's.
#[derive(Debug)]
pub struct EventTable {
    /// Event column names, sorted.
    names: Vec<String>,
    /// Where each column, in the order rows are given, is stored.
    slot_of: Vec<usize>,
    /// Timestamp texts by bucket, each formatted once for the adjacent rows that share it.
    stamps: Vec<(i64, String)>,
    /// Each row's index into `stamps`.
    row_stamps: Vec<u32>,
    /// Row after row, `names.len()` values each, in `names` order.
    values: Vec<Json>,
}

impl EventTable {
    /// A table of rows whose event columns are `columns` (distinct), in the order
    /// [`EventTable::push`] is given their values.
    pub fn new(columns: Vec<String>) -> EventTable {
        let mut order: Vec<usize> = (0..columns.len()).collect();
        order.sort_by(|&a, &b| columns[a].cmp(&columns[b]));
        let mut slot_of = vec![0; columns.len()];
        for (slot, &column) in order.iter().enumerate() {
            slot_of[column] = slot;
        }
        let mut names = columns;
        names.sort();
        EventTable {
            names,
            slot_of,
            stamps: Vec::new(),
            row_stamps: Vec::new(),
            values: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.row_stamps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.row_stamps.is_empty()
    }

    /// Appends a row of bucket `bucket` (its timestamp text from `stamp`, called once per run
    /// of rows of one bucket) with `values` in the columns' order. Panics if the number of
    /// values is not the number of columns.
    pub fn push(
        &mut self,
        bucket: i64,
        stamp: impl FnOnce(i64) -> String,
        values: impl IntoIterator<Item = Json>,
    ) {
        if self.stamps.last().is_none_or(|(b, _)| *b != bucket) {
            self.stamps.push((bucket, stamp(bucket)));
        }
        self.row_stamps.push((self.stamps.len() - 1) as u32);
        let width = self.names.len();
        let start = self.values.len();
        self.values.resize(start + width, Json::Null);
        let mut given = 0;
        for (column, value) in values.into_iter().enumerate() {
            self.values[start + self.slot_of[column]] = value;
            given += 1;
        }
        assert_eq!(given, width, "a row needs one value per column");
    }

    /// Keeps rows `offset..offset + limit` (limitSpec's offset and limit).
    pub fn keep(&mut self, offset: usize, limit: Option<usize>) {
        let width = self.names.len();
        let start = offset.min(self.len());
        let end = limit.map_or(self.len(), |n| start.saturating_add(n).min(self.len()));
        self.row_stamps.truncate(end);
        self.row_stamps.drain(..start);
        self.values.truncate(end * width);
        self.values.drain(..start * width);
    }

    /// The place of event column `name` in a row ([`EventTable::cell`]), if it is one.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Row `r`'s value of column `c` (a place from [`EventTable::column`]).
    pub fn cell(&self, r: usize, c: usize) -> &Json {
        &self.row(r)[c]
    }

    /// Row `r`'s timestamp text.
    pub fn timestamp(&self, r: usize) -> &str {
        self.stamp(r)
    }

    fn row(&self, r: usize) -> &[Json] {
        let width = self.names.len();
        &self.values[r * width..(r + 1) * width]
    }

    fn stamp(&self, r: usize) -> &str {
        &self.stamps[self.row_stamps[r] as usize].1
    }

    fn to_text(&self) -> String {
        self.write_text(u64::MAX).expect("no bound")
    }

    /// The text, or `None` as soon as it passes `bytes_max`.
    fn write_text(&self, bytes_max: u64) -> Option<String> {
        let quoted = |text: &str| Json::from(text).to_string();
        let keys: Vec<String> = self.names.iter().map(|n| quoted(n)).collect();
        let stamps: Vec<String> = self.stamps.iter().map(|(_, s)| quoted(s)).collect();
        let row_bytes = 48 + keys.iter().map(|k| k.len() + 12).sum::<usize>();
        let mut out = Vec::with_capacity(2 + self.len() * row_bytes);
        out.push(b'[');
        for r in 0..self.len() {
            if r > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"event\":{");
            for (i, (key, value)) in keys.iter().zip(self.row(r)).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(key.as_bytes());
                out.push(b':');
                serde_json::to_writer(&mut out, value).expect("JSON values write to memory");
            }
            out.extend_from_slice(b"},\"timestamp\":");
            out.extend_from_slice(stamps[self.row_stamps[r] as usize].as_bytes());
            out.extend_from_slice(b",\"version\":\"v1\"}");
            if out.len() as u64 > bytes_max {
                return None;
            }
        }
        out.push(b']');
        Some(String::from_utf8(out).expect("JSON text is UTF-8"))
    }

    fn into_json(self) -> Json {
        let rows = (0..self.len())
            .map(|r| {
                let event: Map<String, Json> = self
                    .names
                    .iter()
                    .cloned()
                    .zip(self.row(r).iter().cloned())
                    .collect();
                let mut row = Map::new();
                row.insert("event".into(), Json::Object(event));
                row.insert("timestamp".into(), Json::String(self.stamp(r).to_owned()));
                row.insert("version".into(), Json::String("v1".into()));
                Json::Object(row)
            })
            .collect();
        Json::Array(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table() -> EventTable {
        let mut t = EventTable::new(vec!["zeta".into(), "alpha".into(), "mid\"q".into()]);
        let stamp = |b: i64| format!("t{b}");
        t.push(1, stamp, [json!(1), json!("a"), json!(null)]);
        t.push(1, stamp, [json!(2.5), json!("b\n"), json!(-3)]);
        t.push(7, stamp, [json!(3), json!(null), json!("x")]);
        t
    }

    /// The text equals the tree's (keys sorted, one timestamp per bucket), and rows keep their
    /// columns whatever order they were given in.
    #[test]
    fn text_equals_the_tree() {
        let t = table();
        let text = t.to_text();
        let tree = t.into_json();
        assert_eq!(text, serde_json::to_string(&tree).unwrap());
        assert_eq!(
            tree[1],
            json!({"event": {"zeta": 2.5, "alpha": "b\n", "mid\"q": -3}, "timestamp": "t1",
                   "version": "v1"})
        );
        assert_eq!(tree[2]["timestamp"], "t7");
        let empty = EventTable::new(vec!["a".into()]);
        assert_eq!(empty.to_text(), "[]");
    }

    #[test]
    fn keep_cuts_offset_and_limit() {
        for (offset, limit, expected) in [
            (0, None, vec![1, 2, 3]),
            (1, None, vec![2, 3]),
            (1, Some(1), vec![2]),
            (0, Some(0), vec![]),
            (5, Some(2), vec![]),
            (2, Some(9), vec![3]),
        ] {
            let mut t = table();
            t.keep(offset, limit);
            let json = t.into_json();
            let zetas: Vec<f64> = json
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["event"]["zeta"].as_f64().unwrap())
                .collect();
            let expected: Vec<f64> = expected.iter().map(|&v| [1.0, 2.5, 3.0][v - 1]).collect();
            assert_eq!(zetas, expected, "{offset} {limit:?}");
        }
    }
}
