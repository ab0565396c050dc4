//! [`MemoryTables`]: the metadata tables of a replica, in ordered in-memory maps, and
//! [`RequestLog`], the bounded memory of applied request ids that makes retried writes apply
//! once.
//!
//! Both are part of the replicated state: every replica applies the same entries in the same
//! order, so both evolve identically, and both travel in snapshots.
//!
//! Invariants: ordered maps only (reads list records in key order, as the sled store does;
//! nothing iterates a hash map); [`RequestLog`] forgets the oldest id first, by apply order,
//! once it holds [`REQUESTS_REMEMBERED_MAX`], so which ids are remembered depends only on the
//! log.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::chunked::ChunkedMap;
use super::types::{RequestId, Verdict};
use crate::metadata::apply::Tables;
use crate::metadata::{
    ClusterTables, DataSourceRecord, MetadataError, Result, SegmentRecord, StreamOffsets,
    TaskRecord,
};

/// How many applied request ids a replica remembers. A retry must arrive within this many
/// later writes to be recognised (a client retries for seconds; at 10,000 writes/s this is
/// ten seconds of writes).
pub const REQUESTS_REMEMBERED_MAX: usize = 100_000;

/// The tables [`crate::metadata::apply::apply`] changes, in memory.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemoryTables {
    /// Chunked ([`ChunkedMap`]) like the segments: a snapshot's copy of them is cheap.
    tasks: ChunkedMap<String, TaskRecord>,
    /// Keyed by (datasource, segment id text), like the sled store's `<ds>\0<id>`. Chunked
    /// ([`ChunkedMap`]): a snapshot starts with a copy of the tables, which every apply
    /// waits for, and a plain map of 1M rows took ~0.7 s to copy.
    segments: ChunkedMap<(String, String), SegmentRecord>,
    data_sources: BTreeMap<String, DataSourceRecord>,
    /// Stream offsets by datasource.
    offsets: BTreeMap<String, StreamOffsets>,
    /// Locks, rules, config, supervisors, nodes, assignments, audit log.
    cluster: ClusterTables,
}

/// The tables as plain rows, in key order: the snapshot form.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableRows {
    pub tasks: Vec<TaskRecord>,
    pub segments: Vec<SegmentRecord>,
    pub data_sources: Vec<DataSourceRecord>,
    pub offsets: Vec<(String, StreamOffsets)>,
    /// Absent from snapshots written before the cluster tables existed.
    #[serde(default)]
    pub cluster: ClusterTables,
}

impl MemoryTables {
    /// The rows, in key order.
    pub fn into_rows(self) -> TableRows {
        TableRows {
            tasks: self.tasks.into_values().collect(),
            segments: self.segments.into_values().collect(),
            data_sources: self.data_sources.into_values().collect(),
            offsets: self.offsets.into_iter().collect(),
            cluster: self.cluster,
        }
    }

    /// Rebuilds the tables from [`MemoryTables::into_rows`]; a key that appears twice is an
    /// error (the rows did not come from tables).
    pub fn from_rows(rows: TableRows) -> Result<Self> {
        let mut tables = MemoryTables {
            cluster: rows.cluster,
            ..MemoryTables::default()
        };
        let duplicate = |what: &str, key: &str| {
            MetadataError::Storage(format!("snapshot holds {what} '{key}' twice"))
        };
        for task in rows.tasks {
            if let Some(old) = tables.tasks.insert(task.id.clone(), task) {
                return Err(duplicate("task", &old.id));
            }
        }
        for segment in rows.segments {
            let key = (segment.id.data_source.clone(), segment.id_text());
            if let Some(old) = tables.segments.insert(key, segment) {
                return Err(duplicate("segment", &old.id_text()));
            }
        }
        for data_source in rows.data_sources {
            if let Some(old) = tables
                .data_sources
                .insert(data_source.name.clone(), data_source)
            {
                return Err(duplicate("datasource", &old.name));
            }
        }
        for (data_source, offsets) in rows.offsets {
            if tables
                .offsets
                .insert(data_source.clone(), offsets)
                .is_some()
            {
                return Err(duplicate("offsets of datasource", &data_source));
            }
        }
        Ok(tables)
    }

    /// The stored stream offsets of `data_source`.
    pub fn stream_offsets(&self, data_source: &str) -> Option<StreamOffsets> {
        self.offsets.get(data_source).cloned()
    }

    /// Every datasource with published segments, by name.
    pub fn data_sources(&self) -> Vec<DataSourceRecord> {
        self.data_sources.values().cloned().collect()
    }

    /// The used segments of `data_source`, by segment id.
    pub fn used_segments(&self, data_source: &str) -> Vec<SegmentRecord> {
        self.segments
            .range_from(&(data_source.to_owned(), String::new()))
            .take_while(|((ds, _), _)| ds == data_source)
            .filter(|(_, segment)| segment.used)
            .map(|(_, segment)| segment.clone())
            .collect()
    }

    /// Every segment row, used or not.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn task(&self, id: &str) -> Result<TaskRecord> {
        self.tasks
            .get(id)
            .cloned()
            .ok_or_else(|| MetadataError::UnknownTask(id.to_owned()))
    }

    /// Every task, by id.
    pub fn tasks(&self) -> Vec<TaskRecord> {
        self.tasks.iter().map(|(_, task)| task.clone()).collect()
    }

    /// Locks, rules, config, supervisors, nodes, assignments and the audit log.
    pub fn cluster(&self) -> &ClusterTables {
        &self.cluster
    }
}

impl Tables for MemoryTables {
    fn task(&self, id: &str) -> Result<Option<TaskRecord>> {
        Ok(self.tasks.get(id).cloned())
    }

    fn put_task(&mut self, task: &TaskRecord) -> Result<()> {
        self.tasks.insert(task.id.clone(), task.clone());
        Ok(())
    }

    fn segment(&self, data_source: &str, id: &str) -> Result<Option<SegmentRecord>> {
        Ok(self
            .segments
            .get(&(data_source.to_owned(), id.to_owned()))
            .cloned())
    }

    fn put_segment(&mut self, segment: &SegmentRecord) -> Result<()> {
        let key = (segment.id.data_source.clone(), segment.id_text());
        self.segments.insert(key, segment.clone());
        Ok(())
    }

    fn put_data_source(&mut self, data_source: &DataSourceRecord) -> Result<()> {
        self.data_sources
            .insert(data_source.name.clone(), data_source.clone());
        Ok(())
    }

    fn offsets(&self, data_source: &str) -> Result<Option<StreamOffsets>> {
        Ok(self.offsets.get(data_source).cloned())
    }

    fn put_offsets(&mut self, data_source: &str, offsets: &StreamOffsets) -> Result<()> {
        self.offsets.insert(data_source.to_owned(), offsets.clone());
        Ok(())
    }

    fn cluster_mut(&mut self) -> &mut ClusterTables {
        &mut self.cluster
    }
}

/// The verdicts of the last [`REQUESTS_REMEMBERED_MAX`] applied requests, by id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestLog {
    verdicts: BTreeMap<RequestId, Result<(), MetadataError>>,
    /// Ids in apply order, oldest first.
    order: VecDeque<RequestId>,
}

impl RequestLog {
    /// The remembered verdict of `id`, if it was applied.
    pub fn get(&self, id: &RequestId) -> Option<Verdict> {
        self.verdicts.get(id).map(|result| Verdict {
            result: result.clone(),
            duplicate: true,
        })
    }

    /// Remembers the first application of `id`.
    pub fn remember(&mut self, id: RequestId, result: Result<(), MetadataError>) {
        debug_assert!(
            !self.verdicts.contains_key(&id),
            "request {id} applied twice"
        );
        if self.order.len() == REQUESTS_REMEMBERED_MAX
            && let Some(oldest) = self.order.pop_front()
        {
            self.verdicts.remove(&oldest);
        }
        self.verdicts.insert(id, result);
        self.order.push_back(id);
        debug_assert_eq!(self.verdicts.len(), self.order.len());
    }

    /// The remembered ids and verdicts, oldest first (the snapshot form).
    pub fn entries(&self) -> Vec<(RequestId, Result<(), MetadataError>)> {
        self.order
            .iter()
            .map(|id| (*id, self.verdicts[id].clone()))
            .collect()
    }

    /// Rebuilds the log from [`RequestLog::entries`].
    pub fn from_entries(entries: Vec<(RequestId, Result<(), MetadataError>)>) -> Self {
        let mut log = RequestLog::default();
        for (id, result) in entries {
            log.remember(id, result);
        }
        log
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_log_forgets_oldest_first_and_round_trips() {
        let mut log = RequestLog::default();
        for serial in 0..(REQUESTS_REMEMBERED_MAX as u64 + 2) {
            let result = if serial % 2 == 0 {
                Ok(())
            } else {
                Err(MetadataError::Refused(format!("no {serial}")))
            };
            log.remember(RequestId { client: 1, serial }, result);
        }
        assert_eq!(log.len(), REQUESTS_REMEMBERED_MAX);
        assert!(
            log.get(&RequestId {
                client: 1,
                serial: 0
            })
            .is_none()
        );
        assert!(
            log.get(&RequestId {
                client: 1,
                serial: 1
            })
            .is_none()
        );
        let kept = log
            .get(&RequestId {
                client: 1,
                serial: 3,
            })
            .unwrap();
        assert!(kept.duplicate);
        assert_eq!(kept.result, Err(MetadataError::Refused("no 3".into())));
        assert_eq!(RequestLog::from_entries(log.entries()), log);
    }

    #[test]
    fn tables_rebuild_from_rows_in_any_order_and_refuse_a_repeated_row() {
        use crate::replicated::types::running_task;
        let mut tables = MemoryTables::default();
        for id in ["c", "a", "b"] {
            tables
                .put_task(&running_task(id, serde_json::json!({})))
                .unwrap();
        }
        let mut rows = tables.clone().into_rows();
        assert_eq!(MemoryTables::from_rows(rows).unwrap(), tables);
        // Out of key order still rebuilds the same tables.
        rows = tables.clone().into_rows();
        rows.tasks.reverse();
        assert_eq!(MemoryTables::from_rows(rows).unwrap(), tables);
        // A row twice is refused, wherever the repeat is.
        for at in [0, 2] {
            let mut rows = tables.clone().into_rows();
            let repeat = rows.tasks[at].clone();
            rows.tasks.insert(at, repeat);
            let error = MemoryTables::from_rows(rows).unwrap_err();
            assert!(error.to_string().contains("twice"), "{error}");
        }
    }
}
