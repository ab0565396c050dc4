//! [`SledLogStore`]: openraft's log storage in the node's sled database.
//!
//! Layout: tree `raft_log` keyed by the entry index as 8 big-endian bytes (so key order is
//! index order), values are entries encoded by [`super::types::encode`]; tree `raft_meta`
//! holds `vote`, `committed` and `last_purged` (same encoding).
//!
//! Durability: `append` writes its entries in one batch and flushes before it reports the
//! entries written (openraft counts an entry towards a quorum only after that report);
//! `save_vote` flushes before it returns. `committed` is not flushed on its own: losing it only
//! means replaying less of the log at start, which the leader then re-sends. `purge` records
//! the new `last_purged` before it deletes entries, so a crash in between leaves entries that
//! are already covered, never a gap.
//!
//! Reads: the entries appended since the store opened, up to [`TAIL_ENTRIES_MAX`], are also
//! kept decoded in memory (the tail), so the leader's replication to each follower clones
//! them instead of reading and decoding sled. The tail is always a suffix of the log:
//! appends extend it, `truncate` cuts both at the same index, `purge` and the bound drop its
//! oldest entries; a range that starts inside it is read from it, any other from sled.
//!
//! The flushes are synchronous calls on the calling task: nothing else runs on a
//! current-thread runtime while the disk works, so paused-time tests cannot see timers fire
//! "during" a write.

// openraft's storage traits fix `StorageError` (large) as the error type of every method.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogId, StorageError, StorageIOError, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::{RaftNodeId, TypeConfig, decode, encode};

type StorageResult<T> = Result<T, StorageError<RaftNodeId>>;

/// Most recent entries kept decoded in memory for replication reads.
pub const TAIL_ENTRIES_MAX: usize = 2_048;

/// The log's last entries, by index (a contiguous suffix of the log, or empty).
type Tail = BTreeMap<u64, Entry<TypeConfig>>;

/// The Raft log of one node. Cheap to clone: clones share the trees.
#[derive(Clone)]
pub struct SledLogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    tail: Arc<Mutex<Tail>>,
    /// Held by every clone, so the owner can tell when the last one is gone (and with it the
    /// database's file lock).
    open: Option<Arc<()>>,
}

impl SledLogStore {
    pub fn open(db: &sled::Db) -> StorageResult<Self> {
        let tree = |name: &str| {
            db.open_tree(name)
                .map_err(|e| log_read_error(format!("opening tree {name}: {e}")))
        };
        Ok(SledLogStore {
            db: db.clone(),
            log: tree("raft_log")?,
            meta: tree("raft_meta")?,
            tail: Arc::new(Mutex::new(Tail::new())),
            open: None,
        })
    }

    /// Makes every clone of this store hold `token` (see [`super::RaftNode::shutdown`]).
    pub fn track(mut self, token: &Arc<()>) -> Self {
        self.open = Some(Arc::clone(token));
        self
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &str) -> StorageResult<Option<T>> {
        match self.meta.get(key) {
            Ok(Some(bytes)) => decode(&bytes)
                .map(Some)
                .map_err(|e| log_read_error(format!("undecodable {key}: {e}"))),
            Ok(None) => Ok(None),
            Err(e) => Err(log_read_error(format!("reading {key}: {e}"))),
        }
    }

    fn put_meta<T: Serialize>(&self, key: &str, value: &T) -> StorageResult<()> {
        let bytes = encode(value).map_err(|e| log_write_error(format!("encoding {key}: {e}")))?;
        self.meta
            .insert(key, bytes.as_ref())
            .map_err(|e| log_write_error(format!("writing {key}: {e}")))?;
        Ok(())
    }

    fn flush(&self) -> StorageResult<()> {
        self.db
            .flush()
            .map_err(|e| log_write_error(format!("flushing the log: {e}")))?;
        Ok(())
    }

    fn last_purged(&self) -> StorageResult<Option<LogId<RaftNodeId>>> {
        Ok(self
            .get_meta::<Option<LogId<RaftNodeId>>>("last_purged")?
            .flatten())
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn decode_entry(bytes: &[u8]) -> StorageResult<Entry<TypeConfig>> {
    decode(bytes).map_err(|e| log_read_error(format!("undecodable log entry: {e}")))
}

impl RaftLogReader<TypeConfig> for SledLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(&i) => Bound::Included(index_key(i)),
            Bound::Excluded(&i) => Bound::Excluded(index_key(i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => Bound::Included(index_key(i)),
            Bound::Excluded(&i) => Bound::Excluded(index_key(i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        {
            let tail = self.tail.lock().expect("log tail lock");
            let first_in_tail = tail.keys().next().copied();
            let from = match range.start_bound() {
                Bound::Included(&i) => Some(i),
                Bound::Excluded(&i) => i.checked_add(1),
                Bound::Unbounded => None,
            };
            if let (Some(first), Some(from)) = (first_in_tail, from)
                && from >= first
            {
                let bounds = (Bound::Included(from), range.end_bound().cloned());
                return Ok(tail.range(bounds).map(|(_, entry)| entry.clone()).collect());
            }
        }
        self.log
            .range::<[u8; 8], _>((start, end))
            .map(|item| {
                let (_, value) =
                    item.map_err(|e| log_read_error(format!("reading the log: {e}")))?;
                decode_entry(&value)
            })
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for SledLogStore {
    type LogReader = SledLogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id = self.last_purged()?;
        let last = self
            .log
            .last()
            .map_err(|e| log_read_error(format!("reading the log: {e}")))?;
        let last_log_id = match last {
            Some((_, value)) => Some(*decode_entry(&value)?.get_log_id()),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<RaftNodeId>) -> StorageResult<()> {
        let bytes = encode(vote).map_err(|e| vote_error(format!("encoding the vote: {e}")))?;
        self.meta
            .insert("vote", bytes.as_ref())
            .map_err(|e| vote_error(format!("writing the vote: {e}")))?;
        self.db
            .flush()
            .map_err(|e| vote_error(format!("flushing the vote: {e}")))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<RaftNodeId>>> {
        self.get_meta("vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId<RaftNodeId>>) -> StorageResult<()> {
        self.put_meta("committed", &committed)
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<RaftNodeId>>> {
        Ok(self
            .get_meta::<Option<LogId<RaftNodeId>>>("committed")?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        let mut appended = Vec::new();
        for entry in entries {
            let bytes = encode(&entry)
                .map_err(|e| log_write_error(format!("encoding entry {}: {e}", entry.log_id)))?;
            batch.insert(&index_key(entry.log_id.index), bytes.as_ref());
            appended.push(entry);
        }
        {
            // Readable once `append` returns (openraft's rule), from the tail or from sled.
            let mut tail = self.tail.lock().expect("log tail lock");
            for entry in appended {
                // Never a hole: an append that does not continue the tail restarts it.
                if tail
                    .last_key_value()
                    .is_some_and(|(last, _)| last + 1 != entry.log_id.index)
                {
                    tail.clear();
                }
                tail.insert(entry.log_id.index, entry);
            }
            while tail.len() > TAIL_ENTRIES_MAX {
                tail.pop_first();
            }
        }
        let written = self
            .log
            .apply_batch(batch)
            .map_err(|e| log_write_error(format!("appending to the log: {e}")))
            .and_then(|()| self.flush());
        let report = written
            .as_ref()
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()));
        callback.log_io_completed(report);
        written
    }

    async fn truncate(&mut self, log_id: LogId<RaftNodeId>) -> StorageResult<()> {
        self.tail
            .lock()
            .expect("log tail lock")
            .retain(|index, _| *index < log_id.index);
        let mut batch = sled::Batch::default();
        for key in self.log.range(index_key(log_id.index)..).keys() {
            let key = key.map_err(|e| log_read_error(format!("reading the log: {e}")))?;
            batch.remove(key);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| log_write_error(format!("truncating the log: {e}")))?;
        self.flush()
    }

    async fn purge(&mut self, log_id: LogId<RaftNodeId>) -> StorageResult<()> {
        self.put_meta("last_purged", &Some(log_id))?;
        self.flush()?;
        self.tail
            .lock()
            .expect("log tail lock")
            .retain(|index, _| *index > log_id.index);
        let mut batch = sled::Batch::default();
        for key in self.log.range(..=index_key(log_id.index)).keys() {
            let key = key.map_err(|e| log_read_error(format!("reading the log: {e}")))?;
            batch.remove(key);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| log_write_error(format!("purging the log: {e}")))?;
        Ok(())
    }
}

fn log_read_error(message: impl Into<String>) -> StorageError<RaftNodeId> {
    StorageIOError::read_logs(&std::io::Error::other(message.into())).into()
}

fn log_write_error(message: impl Into<String>) -> StorageError<RaftNodeId> {
    StorageIOError::write_logs(&std::io::Error::other(message.into())).into()
}

fn vote_error(message: String) -> StorageError<RaftNodeId> {
    StorageIOError::write_vote(&std::io::Error::other(message)).into()
}
