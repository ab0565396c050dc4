//! [`LogStore`]: openraft's log storage on a member's [`Disk`] (sled in production,
//! [`SledLogStore`]; the simulator's disk under `grove-sim`).
//!
//! Layout: tree [`Tree::Log`] (sled `raft_log`) keyed by the entry index as 8 big-endian bytes
//! (so key order is index order), values are entries encoded by [`super::types::encode`]; tree
//! [`Tree::Meta`] (sled `raft_meta`) holds `vote`, `committed` and `last_purged` (same
//! encoding).
//!
//! Durability: `append` writes its entries in one batch and syncs before it reports the
//! entries written (openraft counts an entry towards a quorum only after that report);
//! `save_vote` syncs before it returns, and so does `save_committed` on a member whose last
//! saved vote names itself. That commit index must survive a crash: a leader that restarts
//! resumes leading without a new blank entry (openraft 0.9 `Engine::startup`) and answers
//! read-index requests with its stored commit index, so a lost commit index would let a read
//! miss a write that leader had acknowledged. A follower's is written and left to its next
//! sync: it restarts as a follower and learns the commit index from the leader. `purge` records
//! the new `last_purged` (synced) before it deletes entries, so a crash in between leaves
//! entries that are already covered, never a gap.
//!
//! Reads: the last [`RECENT_ENTRIES_MAX`] entries appended by this incarnation are also kept
//! decoded in memory (shared by every clone, so the replication tasks' readers see them): a
//! leader reads each new entry once per follower, and decoding an entry (its command is JSON)
//! cost more than a third of the simulator's time. The cache only ever holds what the disk
//! holds at the same index: `truncate` and `purge` drop entries from it before they touch the
//! disk, and `append` adds entries only once they are written. A read the cache does not cover
//! entirely goes to the disk.
//!
//! The syncs are awaited ([`Disk::sync_async`]): sled's run on tokio's blocking pool, so
//! a flush does not hold a runtime worker (the other members' and the API's tasks run
//! meanwhile), and a paused test clock stays still while one is in progress; the
//! simulator's disk syncs in place.

// openraft's storage traits fix `StorageError` (large) as the error type of every method.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogId, StorageError, StorageIOError, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::disk::{Disk, SledDisk, Tree};
use super::types::{RaftNodeId, TypeConfig, decode, encode};

type StorageResult<T> = Result<T, StorageError<RaftNodeId>>;

/// The log store on sled, as production runs it.
pub type SledLogStore = LogStore;

/// Entries kept decoded in memory (the most recent appended by this incarnation).
pub const RECENT_ENTRIES_MAX: usize = 4_096;

/// The Raft log of one node. Cheap to clone: clones share the disk and the recent entries.
#[derive(Clone)]
pub struct LogStore {
    disk: Arc<dyn Disk>,
    recent: Arc<Mutex<BTreeMap<u64, Entry<TypeConfig>>>>,
    /// The member this log belongs to, when known ([`LogStore::of_member`]): decides whether
    /// a new commit index must be synced (see `save_committed`).
    member: Option<RaftNodeId>,
    /// Whether the last vote saved names this member (it leads or campaigns).
    own_vote: Arc<AtomicBool>,
    /// Held by every clone, so the owner can tell when the last one is gone (and with it the
    /// database's file lock).
    open: Option<Arc<()>>,
}

impl LogStore {
    /// The log in sled database `db`.
    pub fn open(db: &sled::Db) -> StorageResult<Self> {
        let disk = SledDisk::open(db).map_err(|e| log_read_error(e.to_string()))?;
        Ok(LogStore::on_disk(Arc::new(disk)))
    }

    /// The log on `disk`.
    pub fn on_disk(disk: Arc<dyn Disk>) -> Self {
        LogStore {
            disk,
            recent: Arc::default(),
            member: None,
            own_vote: Arc::new(AtomicBool::new(true)),
            open: None,
        }
    }

    /// Tells the store which member it serves: its commit index is then synced only while
    /// the last vote it saved names that member (see `save_committed`). A store that does
    /// not know syncs every commit index.
    pub fn of_member(mut self, member: RaftNodeId) -> Self {
        self.member = Some(member);
        self
    }

    fn note_vote(&self, vote: &Vote<RaftNodeId>) {
        let own = self.member.is_none() || vote.leader_id().voted_for() == self.member;
        self.own_vote.store(own, Ordering::Release);
    }

    /// Makes every clone of this store hold `token` (see [`super::RaftNode::shutdown`]).
    pub fn track(mut self, token: &Arc<()>) -> Self {
        self.open = Some(Arc::clone(token));
        self
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &str) -> StorageResult<Option<T>> {
        match self.disk.get(Tree::Meta, key.as_bytes()) {
            Ok(Some(bytes)) => decode(&bytes)
                .map(Some)
                .map_err(|e| log_read_error(format!("undecodable {key}: {e}"))),
            Ok(None) => Ok(None),
            Err(e) => Err(log_read_error(format!("reading {key}: {e}"))),
        }
    }

    fn put_meta<T: Serialize>(&self, key: &str, value: &T) -> StorageResult<()> {
        let bytes = encode(value).map_err(|e| log_write_error(format!("encoding {key}: {e}")))?;
        self.disk
            .write(
                Tree::Meta,
                vec![(key.as_bytes().to_vec(), Some(bytes.to_vec()))],
            )
            .map_err(|e| log_write_error(format!("writing {key}: {e}")))?;
        Ok(())
    }

    async fn flush(&self) -> StorageResult<()> {
        self.disk
            .sync_async()
            .await
            .map_err(|e| log_write_error(format!("flushing the log: {e}")))
    }

    fn last_purged(&self) -> StorageResult<Option<LogId<RaftNodeId>>> {
        Ok(self
            .get_meta::<Option<LogId<RaftNodeId>>>("last_purged")?
            .flatten())
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry<TypeConfig>>> {
        self.recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Entries `[start, end)` if the recent entries hold every one of them.
    fn recent_range(&self, start: u64, end: u64) -> Option<Vec<Entry<TypeConfig>>> {
        let recent = self.recent();
        let first = *recent.keys().next()?;
        if start < first || end <= start {
            return None;
        }
        let entries: Vec<_> = recent.range(start..end).map(|(_, e)| e.clone()).collect();
        (entries.len() as u64 == end - start).then_some(entries)
    }

    /// The keys of every entry within `range`.
    fn keys(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> StorageResult<Vec<Vec<u8>>> {
        Ok(self
            .disk
            .range(Tree::Log, start, end)
            .map_err(|e| log_read_error(format!("reading the log: {e}")))?
            .into_iter()
            .map(|(key, _)| key)
            .collect())
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn as_slice(bound: &Bound<[u8; 8]>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(key) => Bound::Included(&key[..]),
        Bound::Excluded(key) => Bound::Excluded(&key[..]),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn decode_entry(bytes: &[u8]) -> StorageResult<Entry<TypeConfig>> {
    decode(bytes).map_err(|e| log_read_error(format!("undecodable log entry: {e}")))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(&i) => Some(i),
            Bound::Excluded(&i) => i.checked_add(1),
            Bound::Unbounded => Some(0),
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => i.checked_add(1),
            Bound::Excluded(&i) => Some(i),
            Bound::Unbounded => None,
        };
        if let (Some(start), Some(end)) = (start, end)
            && let Some(entries) = self.recent_range(start, end)
        {
            return Ok(entries);
        }
        let key = |bound: Bound<&u64>| bound.map(|&i| index_key(i));
        let (start, end) = (key(range.start_bound()), key(range.end_bound()));
        self.disk
            .range(Tree::Log, as_slice(&start), as_slice(&end))
            .map_err(|e| log_read_error(format!("reading the log: {e}")))?
            .iter()
            .map(|(_, value)| decode_entry(value))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id = self.last_purged()?;
        let last = self
            .disk
            .last(Tree::Log)
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
        self.disk
            .write(Tree::Meta, vec![(b"vote".to_vec(), Some(bytes.to_vec()))])
            .map_err(|e| vote_error(format!("writing the vote: {e}")))?;
        self.disk
            .sync_async()
            .await
            .map_err(|e| vote_error(format!("flushing the vote: {e}")))?;
        self.note_vote(vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<RaftNodeId>>> {
        let vote = self.get_meta("vote")?;
        if let Some(vote) = &vote {
            self.note_vote(vote);
        }
        Ok(vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<RaftNodeId>>) -> StorageResult<()> {
        self.put_meta("committed", &committed)?;
        // Synced while this member's own vote is the last one saved: a leader that restarts
        // resumes leading without a new blank entry (openraft 0.9 `Engine::startup`), and
        // its read index is then this stored commit index; had it lost a commit it had
        // acknowledged, reads through it would miss that write (found by grove-sim: without
        // this sync about one seed in 100 read stale offsets). A member whose last saved
        // vote names another restarts as a follower, which learns the commit index from the
        // leader: its commit index is written unsynced and made durable by its next sync
        // (half the flushes of a follower under load).
        if self.own_vote.load(Ordering::Acquire) {
            self.flush().await
        } else {
            Ok(())
        }
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
        let mut batch = Vec::new();
        let mut appended = Vec::new();
        for entry in entries {
            let bytes = encode(&entry)
                .map_err(|e| log_write_error(format!("encoding entry {}: {e}", entry.log_id)))?;
            batch.push((index_key(entry.log_id.index).to_vec(), Some(bytes.to_vec())));
            appended.push(entry);
        }
        let written = match self.disk.write(Tree::Log, batch) {
            Ok(()) => self.flush().await,
            Err(e) => Err(log_write_error(format!("appending to the log: {e}"))),
        };
        if written.is_ok() {
            let mut recent = self.recent();
            for entry in appended {
                recent.insert(entry.log_id.index, entry);
            }
            while recent.len() > RECENT_ENTRIES_MAX {
                recent.pop_first();
            }
        }
        let report = written
            .as_ref()
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()));
        callback.log_io_completed(report);
        written
    }

    async fn truncate(&mut self, log_id: LogId<RaftNodeId>) -> StorageResult<()> {
        drop(self.recent().split_off(&log_id.index));
        let from = index_key(log_id.index);
        let batch = self
            .keys(Bound::Included(&from[..]), Bound::Unbounded)?
            .into_iter()
            .map(|key| (key, None))
            .collect();
        self.disk
            .write(Tree::Log, batch)
            .map_err(|e| log_write_error(format!("truncating the log: {e}")))?;
        self.flush().await
    }

    async fn purge(&mut self, log_id: LogId<RaftNodeId>) -> StorageResult<()> {
        {
            let mut recent = self.recent();
            let kept = recent.split_off(&log_id.index.saturating_add(1));
            *recent = kept;
        }
        self.put_meta("last_purged", &Some(log_id))?;
        self.flush().await?;
        let through = index_key(log_id.index);
        let batch = self
            .keys(Bound::Unbounded, Bound::Included(&through[..]))?
            .into_iter()
            .map(|key| (key, None))
            .collect();
        self.disk
            .write(Tree::Log, batch)
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

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;
    use std::sync::atomic::AtomicUsize;

    /// A sled disk that counts its syncs.
    struct CountingDisk {
        inner: SledDisk,
        syncs: AtomicUsize,
    }

    impl Disk for CountingDisk {
        fn get(&self, tree: Tree, key: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
            self.inner.get(tree, key)
        }
        fn range(
            &self,
            tree: Tree,
            start: Bound<&[u8]>,
            end: Bound<&[u8]>,
        ) -> std::io::Result<Vec<super::super::disk::KeyValue>> {
            self.inner.range(tree, start, end)
        }
        fn last(&self, tree: Tree) -> std::io::Result<Option<super::super::disk::KeyValue>> {
            self.inner.last(tree)
        }
        fn write(
            &self,
            tree: Tree,
            batch: Vec<super::super::disk::BatchOp>,
        ) -> std::io::Result<()> {
            self.inner.write(tree, batch)
        }
        fn sync(&self) -> std::io::Result<()> {
            self.syncs.fetch_add(1, Ordering::Relaxed);
            self.inner.sync()
        }
    }

    fn committed(index: u64) -> Option<LogId<RaftNodeId>> {
        Some(LogId::new(CommittedLeaderId::new(1, 1), index))
    }

    #[tokio::test]
    async fn a_commit_index_is_synced_only_while_the_members_own_vote_is_the_last_saved() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let disk = Arc::new(CountingDisk {
            inner: SledDisk::open(&db).unwrap(),
            syncs: AtomicUsize::new(0),
        });
        let syncs = || disk.syncs.load(Ordering::Relaxed);
        let mut log = LogStore::on_disk(Arc::clone(&disk) as Arc<dyn Disk>).of_member(1);

        // Before any vote is known the store syncs.
        log.save_committed(committed(1)).await.unwrap();
        assert_eq!(syncs(), 1);
        // Following member 2: written, not synced, and readable.
        log.save_vote(&Vote::new_committed(1, 2)).await.unwrap();
        let before = syncs();
        log.save_committed(committed(2)).await.unwrap();
        assert_eq!(syncs(), before);
        assert_eq!(log.read_committed().await.unwrap(), committed(2));
        // Leading (its own vote): synced again.
        log.save_vote(&Vote::new_committed(2, 1)).await.unwrap();
        let before = syncs();
        log.save_committed(committed(3)).await.unwrap();
        assert_eq!(syncs(), before + 1);

        // A store reopened on a follower's vote learns it from the stored vote.
        log.save_vote(&Vote::new(3, 2)).await.unwrap();
        let mut reopened = LogStore::on_disk(Arc::clone(&disk) as Arc<dyn Disk>).of_member(1);
        assert_eq!(reopened.read_vote().await.unwrap(), Some(Vote::new(3, 2)));
        let before = syncs();
        reopened.save_committed(committed(4)).await.unwrap();
        assert_eq!(syncs(), before);
        // A store that does not know its member syncs every commit index.
        let mut unknown = LogStore::on_disk(Arc::clone(&disk) as Arc<dyn Disk>);
        unknown.read_vote().await.unwrap();
        let before = syncs();
        unknown.save_committed(committed(5)).await.unwrap();
        assert_eq!(syncs(), before + 1);
    }
}
