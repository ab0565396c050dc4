//! Test data for the query engine: a schema with every column kind, rows built by hand or at
//! random, laid out as real segments (file bytes) and in-memory index snapshots.

#![allow(dead_code)]

use std::sync::Arc;

use grove_query::SegmentProvider;
use grove_query::snapshot::index_snapshot;
use grove_segment::format::Segment;
use grove_segment::id::SegmentId;
use grove_segment::index::IncrementalIndex;
use grove_segment::row::{InputRow, RowLayout, Value};
use grove_segment::schema::{
    DimensionSchema, MetricKind, MetricSchema, MultiValueHandling, Schema,
};
use grove_segment::time::{Granularity, Interval, parse_iso_timestamp};

pub const DAY: i64 = 86_400_000;

pub fn schema() -> Schema {
    sorted_schema(0)
}

/// The schema with rows sorted by the dimensions first and `__time` after the first `time_at`
/// of them (`forceSegmentSortByTime: false`); 0 is the default, time-first order.
pub fn sorted_schema(time_at: usize) -> Schema {
    let mut tags = DimensionSchema::string("tags");
    tags.multi_value_handling = MultiValueHandling::SortedArray;
    let mut device = DimensionSchema::string("device");
    device.bitmap_index = false;
    Schema {
        data_source: "events".into(),
        dimensions: vec![
            DimensionSchema::string("country"),
            tags,
            device,
            DimensionSchema::long("user"),
            DimensionSchema::double("price"),
        ],
        metrics: vec![
            MetricSchema {
                name: "count".into(),
                field_name: None,
                kind: MetricKind::Count,
            },
            MetricSchema {
                name: "clicks".into(),
                field_name: Some("clicks".into()),
                kind: MetricKind::LongSum,
            },
            MetricSchema {
                name: "spend".into(),
                field_name: Some("spend".into()),
                kind: MetricKind::DoubleSum,
            },
            MetricSchema {
                name: "users".into(),
                field_name: Some("uname".into()),
                kind: MetricKind::HllSketch {
                    lg_k: 12,
                    utf16le: false,
                },
            },
        ],
        query_granularity: Granularity::None,
        segment_granularity: Granularity::DAY,
        rollup: false,
        time_position: time_at,
    }
}

/// One input row of the test schema.
#[derive(Clone, Debug)]
pub struct Event {
    pub time: i64,
    pub country: Option<&'static str>,
    pub tags: Vec<&'static str>,
    pub device: Option<&'static str>,
    pub user: Option<i64>,
    pub price: Option<f64>,
    pub clicks: i64,
    pub spend: f64,
    pub uname: String,
}

impl Event {
    /// The row as the index reads it (laid out by `RowLayout::new(schema, extra)`).
    pub fn input_row(&self, layout: &RowLayout) -> InputRow {
        let mut row = layout.empty_row();
        row.timestamp_ms = self.time;
        let mut set = |name: &str, v: Value| {
            if let Some(slot) = layout.slot(name) {
                row.values[slot] = v;
            }
        };
        set("country", opt_str(self.country));
        set(
            "tags",
            Value::Strings(self.tags.iter().map(|s| s.to_string()).collect()),
        );
        set("device", opt_str(self.device));
        set("user", self.user.map_or(Value::Null, Value::Long));
        set("price", self.price.map_or(Value::Null, Value::Double));
        set("clicks", Value::Long(self.clicks));
        set("spend", Value::Double(self.spend));
        set("uname", Value::String(self.uname.clone()));
        row
    }
}

fn opt_str(s: Option<&str>) -> Value {
    s.map_or(Value::Null, |s| Value::String(s.to_string()))
}

pub fn ts(text: &str) -> i64 {
    parse_iso_timestamp(text).unwrap_or_else(|| panic!("bad timestamp {text}"))
}

/// Builds one segment per day of `events`: as a segment file's bytes when `on_disk`, else as the
/// snapshot of an in-memory index.
pub fn segments(events: &[Event], on_disk: impl Fn(usize) -> bool) -> Vec<Arc<Segment>> {
    sorted_segments(events, on_disk, 0)
}

/// [`segments`] of [`sorted_schema`]`(time_at)`.
pub fn sorted_segments(
    events: &[Event],
    on_disk: impl Fn(usize) -> bool,
    time_at: usize,
) -> Vec<Arc<Segment>> {
    let schema = sorted_schema(time_at);
    let layout = RowLayout::new(&schema, &[]);
    let mut days: Vec<i64> = events.iter().map(|e| e.time.div_euclid(DAY)).collect();
    days.sort_unstable();
    days.dedup();
    let mut out = Vec::new();
    for (i, day) in days.into_iter().enumerate() {
        let mut index = IncrementalIndex::new(&schema);
        for e in events.iter().filter(|e| e.time.div_euclid(DAY) == day) {
            index.add(&e.input_row(&layout)).expect("valid row");
        }
        let id = SegmentId::new(
            "events",
            None,
            Interval::new(day * DAY, (day + 1) * DAY),
            "2024-06-01T00:00:00.000Z",
            0,
        );
        let snapshot = index_snapshot(&index, id).expect("snapshot");
        let segment = if on_disk(i) {
            // Round-trip through a file to exercise the memory-mapped reader.
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("segment.bin");
            let columns = snapshot.to_columns().expect("columns");
            grove_segment::format::write_segment(
                &path,
                snapshot.meta(),
                &columns,
                &Default::default(),
            )
            .expect("write");
            let seg = Segment::open(&path).expect("open");
            // The map stays valid after the directory is removed on Unix.
            drop(dir);
            seg
        } else {
            snapshot
        };
        out.push(Arc::new(segment));
    }
    out
}

/// Serves fixed segments (all of one datasource).
pub struct Fixed(pub Vec<Arc<Segment>>);

impl SegmentProvider for Fixed {
    fn segments(&self, data_source: &str, intervals: &[Interval]) -> Vec<Arc<Segment>> {
        self.0
            .iter()
            .filter(|s| {
                let id = &s.meta().id;
                id.data_source == data_source && intervals.iter().any(|i| i.overlaps(&id.interval))
            })
            .cloned()
            .collect()
    }
}

/// Runs queries on up to `.0` threads (segments split between them).
pub struct Parallel(pub usize);

impl grove_query::QueryControl for Parallel {
    fn check(&self) -> grove_query::Result<()> {
        Ok(())
    }

    fn parallelism(&self) -> usize {
        self.0
    }
}
pub mod events;

/// Runs a native query and returns its result as JSON, checking on the way that the text the
/// server would write from the result is byte for byte the text of its JSON tree.
pub fn native(
    query: &serde_json::Value,
    provider: &dyn SegmentProvider,
    control: &dyn grove_query::QueryControl,
) -> grove_query::Result<serde_json::Value> {
    let result = grove_query::run_native(query, provider, control)?;
    let text = result.to_text();
    let json = result.into_json();
    assert_eq!(
        text,
        serde_json::to_string(&json).expect("JSON serializes"),
        "the result's text is not its tree's"
    );
    Ok(json)
}
