//! [`SegmentCache`]: the segments this node serves. Published segments are pulled from deep
//! storage into a local cache directory, memory-mapped, and kept in a [`Timelines`] so that
//! overshadowed versions are never queried. It is what queries read ([`SegmentProvider`]) and
//! what SQL sees ([`Catalog`]: one table per datasource, `sys.segments`).
//!
//! Invariant: a segment is in the timelines only after its file opened and its footer's id
//! matched the published record; every used segment the node was asked to serve is listed in
//! `sys.segments`, with `is_available` telling whether it loaded.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use grove_query::SegmentProvider;
use grove_query::sql::{Catalog, ColumnInfo, SegmentInfo, SqlType, TableInfo};
use grove_raft::metadata::SegmentRecord;
use grove_segment::deep_storage::{DeepStorage, LoadSpec, LocalDeepStorage, SEGMENT_FILE_NAME};
use grove_segment::format::Segment;
use grove_segment::id::SegmentId;
use grove_segment::schema::{MetricStorage, Schema, ValueType};
use grove_segment::time::{Interval, format_iso};
use grove_segment::timeline::Timelines;

/// Published segments, loaded for querying.
pub struct SegmentCache {
    deep_storage: Arc<dyn DeepStorage>,
    cache_dir: PathBuf,
    state: RwLock<Served>,
}

#[derive(Default)]
struct Served {
    /// Loaded segments by datasource and namespace, versions resolved.
    timelines: Timelines<Arc<Segment>>,
    /// Every segment this node was asked to serve, loaded or not, by id.
    records: BTreeMap<SegmentId, SegmentRecord>,
}

impl SegmentCache {
    pub fn new(deep_storage: Arc<dyn DeepStorage>, cache_dir: PathBuf) -> SegmentCache {
        SegmentCache {
            deep_storage,
            cache_dir,
            state: RwLock::new(Served::default()),
        }
    }

    /// Pulls `record`'s segment into the cache (unless a readable copy is there), opens it and
    /// makes it queryable. On error the segment is still listed (unavailable) and the error
    /// names it.
    pub fn load(&self, record: &SegmentRecord) -> Result<(), String> {
        let opened = self.open(record);
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.records.insert(record.id.clone(), record.clone());
        let segment = opened.map_err(|e| format!("segment {}: {e}", record.id))?;
        state
            .timelines
            .add(&record.id, record.core_partitions, Arc::new(segment))
    }

    /// Starts serving segments already opened with [`SegmentCache::open`], all at once (one
    /// lock), so a query sees all of them or none.
    pub fn serve(&self, opened: Vec<(SegmentRecord, Segment)>) -> Result<(), String> {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        for (record, segment) in opened {
            state.records.insert(record.id.clone(), record.clone());
            state
                .timelines
                .add(&record.id, record.core_partitions, Arc::new(segment))?;
        }
        Ok(())
    }

    /// Pulls a segment into the cache (unless a valid copy is there) and opens it, without
    /// serving it yet.
    pub fn open(&self, record: &SegmentRecord) -> Result<Segment, String> {
        let load_spec: LoadSpec = serde_json::from_value(record.load_spec.clone())
            .map_err(|e| format!("unreadable load spec: {e}"))?;
        let path = self
            .cache_dir
            .join(LocalDeepStorage::segment_dir(&record.id).map_err(|e| e.to_string())?)
            .join(SEGMENT_FILE_NAME);
        // A cached copy from an earlier run is used if it opens; otherwise pull it again.
        let segment = match path.exists().then(|| Segment::open(&path)) {
            Some(Ok(segment)) => segment,
            _ => {
                self.deep_storage
                    .pull(&load_spec, &path)
                    .map_err(|e| e.to_string())?;
                Segment::open(&path).map_err(|e| e.to_string())?
            }
        };
        if segment.meta().id != record.id {
            return Err(format!(
                "the file at {} holds segment {}",
                path.display(),
                segment.meta().id
            ));
        }
        Ok(segment)
    }

    /// Stops serving a segment and forgets it.
    pub fn unload(&self, id: &SegmentId) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.records.remove(id);
        state.timelines.remove(id);
    }

    /// Loaded segments that newer complete versions fully overshadow, sorted.
    pub fn overshadowed(&self) -> Vec<SegmentId> {
        self.read().timelines.overshadowed()
    }

    /// Datasources with loaded segments, sorted.
    pub fn data_sources(&self) -> Vec<String> {
        self.read()
            .timelines
            .data_sources()
            .map(str::to_owned)
            .collect()
    }

    /// The schema of `data_source` as its newest visible segments define it: per namespace the
    /// highest visible version's schema; metrics of further namespaces are appended.
    pub fn schema(&self, data_source: &str) -> Option<Schema> {
        let state = self.read();
        let mut merged: Option<Schema> = None;
        for namespace in state.timelines.namespaces(data_source) {
            let entries = state
                .timelines
                .lookup(data_source, namespace, Interval::ETERNITY);
            let Some(schema) = entries
                .iter()
                .max_by_key(|entry| entry.version)
                .and_then(|entry| entry.chunks.first())
                .map(|(_, segment)| &segment.meta().schema)
            else {
                continue;
            };
            match &mut merged {
                None => merged = Some(schema.clone()),
                Some(merged) => {
                    for metric in &schema.metrics {
                        if merged.metric_index(&metric.name).is_none() {
                            merged.metrics.push(metric.clone());
                        }
                    }
                }
            }
        }
        merged
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Served> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl SegmentProvider for SegmentCache {
    fn segments(&self, data_source: &str, intervals: &[Interval]) -> Vec<Arc<Segment>> {
        let state = self.read();
        // Keyed by id: a segment overlapping several query intervals is returned once.
        let mut found: BTreeMap<&SegmentId, &Arc<Segment>> = BTreeMap::new();
        for namespace in state.timelines.namespaces(data_source) {
            for interval in intervals {
                for entry in state.timelines.lookup(data_source, namespace, *interval) {
                    for (_, segment) in entry.chunks {
                        found.insert(&segment.meta().id, segment);
                    }
                }
            }
        }
        found.into_values().cloned().collect()
    }
}

impl Catalog for SegmentCache {
    fn tables(&self) -> Vec<TableInfo> {
        self.data_sources()
            .into_iter()
            .filter_map(|name| {
                let schema = self.schema(&name)?;
                Some(TableInfo {
                    name,
                    columns: columns(&schema),
                })
            })
            .collect()
    }

    fn segments(&self) -> Vec<SegmentInfo> {
        let state = self.read();
        state
            .records
            .values()
            .map(|record| SegmentInfo {
                segment_id: record.id_text(),
                datasource: record.id.data_source.clone(),
                start: format_iso(record.id.interval.start_ms),
                end: format_iso(record.id.interval.end_ms),
                version: record.id.version.clone(),
                partition_num: i64::from(record.id.partition),
                num_rows: i64::try_from(record.num_rows).unwrap_or(i64::MAX),
                size: i64::try_from(record.size_bytes).unwrap_or(i64::MAX),
                is_published: true,
                is_available: state.timelines.get(&record.id).is_some(),
            })
            .collect()
    }
}

/// A datasource's SQL columns: `__time`, then dimensions, then metrics, typed as Druid types them.
pub fn columns(schema: &Schema) -> Vec<ColumnInfo> {
    let column = |name: &str, sql_type: SqlType| ColumnInfo {
        name: name.to_owned(),
        sql_type,
    };
    let mut out = vec![column("__time", SqlType::Timestamp)];
    out.extend(schema.dimensions.iter().map(|d| {
        column(
            &d.name,
            match d.value_type {
                ValueType::String => SqlType::Varchar,
                ValueType::Long => SqlType::Bigint,
                ValueType::Double => SqlType::Double,
            },
        )
    }));
    out.extend(schema.metrics.iter().map(|m| {
        column(
            &m.name,
            match m.kind.storage() {
                MetricStorage::Long => SqlType::Bigint,
                MetricStorage::Double => SqlType::Double,
                MetricStorage::Sketch => SqlType::Other("COMPLEX<HLLSketch>".into()),
            },
        )
    }));
    out
}

#[cfg(test)]
mod tests {
    use grove_segment::schema::{DimensionSchema, MetricKind, MetricSchema};
    use grove_segment::time::Granularity;

    use super::*;

    #[test]
    fn sql_columns_follow_druid_types() {
        let metric = |name: &str, kind| MetricSchema {
            name: name.into(),
            field_name: Some("x".into()),
            kind,
        };
        let schema = Schema {
            data_source: "wiki".into(),
            dimensions: vec![
                DimensionSchema::string("page"),
                DimensionSchema::long("size"),
                DimensionSchema::double("score"),
            ],
            metrics: vec![
                metric("count", MetricKind::Count),
                metric("total", MetricKind::DoubleSum),
                metric(
                    "users",
                    MetricKind::HllSketch {
                        lg_k: 12,
                        utf16le: false,
                    },
                ),
            ],
            query_granularity: Granularity::named("none").unwrap(),
            segment_granularity: Granularity::named("day").unwrap(),
            rollup: true,
            time_position: 0,
        };
        let typed: Vec<(String, SqlType)> = columns(&schema)
            .into_iter()
            .map(|c| (c.name, c.sql_type))
            .collect();
        let expected = [
            ("__time", SqlType::Timestamp),
            ("page", SqlType::Varchar),
            ("size", SqlType::Bigint),
            ("score", SqlType::Double),
            ("count", SqlType::Bigint),
            ("total", SqlType::Double),
            ("users", SqlType::Other("COMPLEX<HLLSketch>".into())),
        ];
        assert_eq!(typed, expected.map(|(n, t)| (n.to_owned(), t)).to_vec());
    }
}
