//! [`MemoryTables`]: the metadata tables of a replica, in ordered in-memory maps, and
//! [`RequestLog`], the bounded memory of applied request ids that makes retried writes apply
//! once.
//!
//! Both are part of the replicated state: every replica applies the same entries in the same
//! order, so both evolve identically, and both travel in snapshots.
//!
//! Invariants: ordered maps only (reads list records in key order; nothing iterates a hash
//! map); [`RequestLog`] forgets ids oldest first, by apply order, once they are older than
//! [`REQUESTS_REMEMBERED_MS`] on the log's clock or past [`REQUESTS_REMEMBERED_MAX`], so which
//! ids are remembered depends only on the log; a retry of a forgotten id is answered
//! [`MetadataError::OutcomeUnknown`], never applied again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::chunked::ChunkedMap;
use super::types::{RequestId, Verdict};
use crate::metadata::apply::Tables;
use crate::metadata::{
    ClusterTables, DataSourceRecord, MetadataError, Result, SegmentRecord, StreamOffsets,
    TaskRecord,
};

/// How long (on the log's clock: the greatest proposal time applied) a replica remembers an
/// applied request id, its command's digest and its verdict. A writer retries a write for its
/// `request_timeout` (10 s by default), so two minutes leaves a wide margin; a retry later
/// than that is answered "outcome unknown".
pub const REQUESTS_REMEMBERED_MS: i64 = 120_000;

/// At most this many request ids are remembered (~100 bytes each in memory, ~40 in a
/// snapshot): past it the oldest are forgotten early (their retries then get "outcome
/// unknown" too). At the raft bench's 15,000 writes/s that is ~17 s of writes; at ordinary
/// metadata rates the time window ends first.
pub const REQUESTS_REMEMBERED_MAX: usize = 250_000;

/// How long a writer whose ids were forgotten keeps its floor (the highest serial forgotten,
/// below which its requests are "outcome unknown"): a retry must come within this.
pub const CLIENTS_REMEMBERED_MS: i64 = 24 * 60 * 60 * 1000;

/// At most this many writers keep a floor (one per process start that had ids forgotten;
/// ~50 bytes each); past it the least recently active go first.
pub const CLIENTS_REMEMBERED_MAX: usize = 100_000;

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

    /// Up to `limit` used segments after key `after` ((datasource, id text); from the first
    /// for `None`), in key order, and the key to continue after, or `None` if the table was
    /// read to its end: a resync in parts.
    pub fn used_segments_after(
        &self,
        after: Option<&(String, String)>,
        limit: usize,
    ) -> (Vec<SegmentRecord>, Option<(String, String)>) {
        let mut found = Vec::new();
        let mut last = None;
        for (key, segment) in self.segments.after(after) {
            if found.len() == limit {
                return (found, last);
            }
            if segment.used {
                found.push(segment.clone());
            }
            last = Some(key.clone());
        }
        (found, None)
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

    fn put_task(&mut self, task: &TaskRecord) {
        self.tasks.insert(task.id.clone(), task.clone());
    }

    fn segment(&self, data_source: &str, id: &str) -> Result<Option<SegmentRecord>> {
        Ok(self
            .segments
            .get(&(data_source.to_owned(), id.to_owned()))
            .cloned())
    }

    fn put_segment(&mut self, segment: &SegmentRecord) {
        let key = (segment.id.data_source.clone(), segment.id_text());
        self.segments.insert(key, segment.clone());
    }

    fn put_data_source(&mut self, data_source: &DataSourceRecord) {
        self.data_sources
            .insert(data_source.name.clone(), data_source.clone());
    }

    fn offsets(&self, data_source: &str) -> Result<Option<StreamOffsets>> {
        Ok(self.offsets.get(data_source).cloned())
    }

    fn put_offsets(&mut self, data_source: &str, offsets: &StreamOffsets) {
        self.offsets.insert(data_source.to_owned(), offsets.clone());
    }

    fn cluster_mut(&mut self) -> &mut ClusterTables {
        &mut self.cluster
    }
}

/// What a replica remembers of one applied request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Remembered {
    /// [`super::ClientRequest::digest`] of the request first applied under the id.
    pub digest: u64,
    /// The log's clock when it was applied.
    pub applied_ms: i64,
    pub result: Result<(), MetadataError>,
}

/// A writer some of whose request ids were forgotten.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientFloor {
    /// The highest serial of its forgotten ids: a request of this writer at or below it that
    /// is not remembered may have been applied.
    pub forgotten_through: u64,
    /// The log's clock when it last had an id forgotten.
    pub last_ms: i64,
}

/// What the request log says of a request about to be applied.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    /// Applied before with the same command: its first verdict (flagged duplicate).
    Remembered(Verdict),
    /// The id was applied before with another command.
    Mismatch,
    /// The id may have been applied and forgotten since.
    Forgotten,
    /// Never applied.
    New,
}

/// The request log as a snapshot carries it.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestLogRows {
    pub clock_ms: i64,
    /// Oldest first (apply order).
    pub remembered: Vec<(RequestId, Remembered)>,
    pub clients: Vec<(u64, ClientFloor)>,
}

/// The request ids applied recently (see [`REQUESTS_REMEMBERED_MS`] and
/// [`REQUESTS_REMEMBERED_MAX`]), with their commands' digests and verdicts, and for writers
/// whose ids were forgotten, the highest serial forgotten. Chunked ([`ChunkedMap`]): a
/// snapshot's copy of it costs a pointer per few hundred ids.
///
/// Sound because a writer's serials only grow: a request that is neither remembered nor at
/// or below its writer's floor was never applied.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestLog {
    remembered: ChunkedMap<RequestId, Remembered>,
    /// Ids by the sequence they were applied in, oldest first.
    order: ChunkedMap<u64, RequestId>,
    next_sequence: u64,
    clients: ChunkedMap<u64, ClientFloor>,
    /// Writers by (last_ms, client), least recently active first.
    clients_by_age: ChunkedMap<(i64, u64), ()>,
    /// The greatest proposal time applied.
    clock_ms: i64,
    window_ms: i64,
    remembered_max: usize,
}

impl Default for RequestLog {
    fn default() -> Self {
        RequestLog::with_bounds(REQUESTS_REMEMBERED_MS, REQUESTS_REMEMBERED_MAX)
    }
}

impl RequestLog {
    /// A log that remembers ids for `window_ms` and at most `remembered_max` of them (the
    /// replicated state machine uses the defaults; every replica must use the same).
    pub fn with_bounds(window_ms: i64, remembered_max: usize) -> Self {
        RequestLog {
            remembered: ChunkedMap::default(),
            order: ChunkedMap::default(),
            next_sequence: 0,
            clients: ChunkedMap::default(),
            clients_by_age: ChunkedMap::default(),
            clock_ms: 0,
            window_ms,
            remembered_max: remembered_max.max(1),
        }
    }

    /// What is known of request `id` whose command has `digest`.
    pub fn lookup(&self, id: &RequestId, digest: u64) -> Lookup {
        if let Some(remembered) = self.remembered.get(id) {
            return if remembered.digest == digest {
                Lookup::Remembered(Verdict {
                    result: remembered.result.clone(),
                    duplicate: true,
                })
            } else {
                Lookup::Mismatch
            };
        }
        match self.clients.get(&id.client) {
            Some(floor) if id.serial <= floor.forgotten_through => Lookup::Forgotten,
            _ => Lookup::New,
        }
    }

    /// The remembered verdict of `id`, if it is remembered (whatever its command).
    pub fn get(&self, id: &RequestId) -> Option<Verdict> {
        self.remembered.get(id).map(|remembered| Verdict {
            result: remembered.result.clone(),
            duplicate: true,
        })
    }

    /// Moves the log's clock to `proposed_ms` if that is later, and forgets what it says is
    /// too old.
    pub fn advance(&mut self, proposed_ms: i64) {
        if proposed_ms > self.clock_ms {
            self.clock_ms = proposed_ms;
            self.forget_old();
        }
    }

    /// Remembers the first application of `id` (lookup said [`Lookup::New`]).
    pub fn remember(&mut self, id: RequestId, digest: u64, result: Result<(), MetadataError>) {
        debug_assert!(
            self.remembered.get(&id).is_none(),
            "request {id} applied twice"
        );
        self.remembered.insert(
            id,
            Remembered {
                digest,
                applied_ms: self.clock_ms,
                result,
            },
        );
        self.order.insert(self.next_sequence, id);
        self.next_sequence += 1;
        self.forget_old();
        debug_assert_eq!(self.remembered.len(), self.order.len());
    }

    /// Forgets ids past the time window or the count bound, oldest first, raising their
    /// writers' floors; drops floors past [`CLIENTS_REMEMBERED_MS`] or the count bound.
    fn forget_old(&mut self) {
        while let Some((_, id)) = self.order.first() {
            let id = *id;
            let applied_ms = self.remembered.get(&id).map_or(i64::MIN, |r| r.applied_ms);
            let expired = applied_ms.saturating_add(self.window_ms) < self.clock_ms;
            if !expired && self.order.len() <= self.remembered_max {
                break;
            }
            self.order.pop_first();
            self.remembered.remove(&id);
            self.raise_floor(id);
        }
        while let Some(((last_ms, client), ())) = self.clients_by_age.first() {
            let (last_ms, client) = (*last_ms, *client);
            let expired = last_ms.saturating_add(CLIENTS_REMEMBERED_MS) < self.clock_ms;
            if !expired && self.clients.len() <= CLIENTS_REMEMBERED_MAX {
                break;
            }
            self.clients_by_age.pop_first();
            self.clients.remove(&client);
        }
    }

    fn raise_floor(&mut self, id: RequestId) {
        let floor = match self.clients.get(&id.client) {
            Some(floor) => {
                self.clients_by_age.remove(&(floor.last_ms, id.client));
                ClientFloor {
                    forgotten_through: floor.forgotten_through.max(id.serial),
                    last_ms: self.clock_ms,
                }
            }
            None => ClientFloor {
                forgotten_through: id.serial,
                last_ms: self.clock_ms,
            },
        };
        self.clients.insert(id.client, floor);
        self.clients_by_age.insert((floor.last_ms, id.client), ());
    }

    /// The snapshot form.
    pub fn rows(&self) -> RequestLogRows {
        RequestLogRows {
            clock_ms: self.clock_ms,
            remembered: self
                .order
                .iter()
                .map(|(_, id)| {
                    (
                        *id,
                        self.remembered
                            .get(id)
                            .expect("ordered ids are remembered")
                            .clone(),
                    )
                })
                .collect(),
            clients: self
                .clients
                .iter()
                .map(|(client, floor)| (*client, *floor))
                .collect(),
        }
    }

    /// Rebuilds the log from [`RequestLog::rows`].
    pub fn from_rows(rows: RequestLogRows) -> Self {
        let mut log = RequestLog {
            clock_ms: rows.clock_ms,
            ..RequestLog::default()
        };
        for (client, floor) in rows.clients {
            log.clients.insert(client, floor);
            log.clients_by_age.insert((floor.last_ms, client), ());
        }
        for (id, remembered) in rows.remembered {
            log.remembered.insert(id, remembered);
            log.order.insert(log.next_sequence, id);
            log.next_sequence += 1;
        }
        log
    }

    /// The log's clock: the greatest proposal time applied.
    pub fn clock_ms(&self) -> i64 {
        self.clock_ms
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

    fn id(client: u64, serial: u64) -> RequestId {
        RequestId { client, serial }
    }

    #[test]
    fn request_log_forgets_by_time_and_count_and_answers_forgotten_ids_unknown() {
        let mut log = RequestLog::with_bounds(1_000, 3);
        log.advance(10_000);
        for serial in 1..=3 {
            let result = if serial == 2 {
                Err(MetadataError::Refused("no".into()))
            } else {
                Ok(())
            };
            log.remember(id(1, serial), serial * 10, result);
        }
        assert_eq!(
            log.lookup(&id(1, 2), 20),
            Lookup::Remembered(Verdict {
                result: Err(MetadataError::Refused("no".into())),
                duplicate: true
            })
        );
        assert_eq!(log.lookup(&id(1, 2), 21), Lookup::Mismatch);
        assert_eq!(log.lookup(&id(1, 4), 40), Lookup::New);
        // Past the count bound: the oldest goes, and its writer's floor rises.
        log.remember(id(2, 7), 70, Ok(()));
        assert_eq!(log.len(), 3);
        assert_eq!(log.lookup(&id(1, 1), 10), Lookup::Forgotten);
        assert_eq!(log.lookup(&id(1, 4), 40), Lookup::New, "above the floor");
        assert_eq!(log.lookup(&id(2, 1), 10), Lookup::New, "another writer");
        // Past the time window: everything applied at 10,000 goes once the clock passes 11,000.
        log.advance(11_000);
        assert_eq!(log.len(), 3);
        log.advance(11_001);
        assert!(log.is_empty());
        assert_eq!(log.lookup(&id(1, 3), 30), Lookup::Forgotten);
        assert_eq!(log.lookup(&id(2, 7), 70), Lookup::Forgotten);
        assert_eq!(log.lookup(&id(2, 8), 80), Lookup::New);
        // The clock never goes back: an older proposal time changes nothing.
        log.advance(5);
        assert_eq!(log.clock_ms(), 11_001);
        let rows = log.rows();
        let restored = RequestLog::from_rows(rows);
        assert_eq!(restored.lookup(&id(2, 7), 70), Lookup::Forgotten);
        assert_eq!(restored.clock_ms(), 11_001);
        // A writer's floor itself goes after a day without forgotten ids.
        let mut log = restored;
        log.advance(11_001 + CLIENTS_REMEMBERED_MS + 1);
        assert_eq!(log.lookup(&id(2, 7), 70), Lookup::New);
    }

    #[test]
    fn tables_rebuild_from_rows_in_any_order_and_refuse_a_repeated_row() {
        use crate::replicated::types::running_task;
        let mut tables = MemoryTables::default();
        for id in ["c", "a", "b"] {
            tables.put_task(&running_task(id, serde_json::json!({})));
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
