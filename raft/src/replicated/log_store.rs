//! [`LogStore`]: openraft's log storage on a member's [`Disk`] ([`super::FileDisk`] in
//! production; the simulator's disk under `grove-sim`).
//!
//! Layout: tree [`Tree::Log`] keyed by the entry index as 8 big-endian bytes (so key order is
//! index order), values are entries encoded by [`super::types::encode`]; tree [`Tree::Meta`]
//! holds `vote`, `committed` and `last_purged` (same encoding).
//!
//! Durability: `append` writes its entries in one batch and syncs before it reports the
//! entries written (openraft counts an entry towards a quorum only after that report);
//! `save_vote` syncs before it returns. `save_committed` writes the commit index and leaves it
//! to the next sync: a member restarts as a follower even if it led (its own committed vote
//! reads back uncommitted), so it never answers a read index from a commit index a crash
//! set back (openraft 0.9 restores a member whose committed vote names itself as leader
//! without a new blank entry). A store not told its member syncs the commit index instead
//! and reads the vote as stored. `purge` records
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
//! The syncs are awaited through [`Disk::run_blocking`]: a [`super::FileDisk`]'s `fdatasync`
//! runs on tokio's blocking pool, so it does not hold a runtime worker (the other members'
//! and the API's tasks run meanwhile), and a paused test clock stays still while one is in
//! progress; the simulator's disk syncs in place. (openraft 0.9's core waits for an append's
//! callback before it goes on, so the callback is simply called after the sync.)

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

use super::disk::{Disk, Tree, offload};
use super::types::{RaftNodeId, TypeConfig, decode, encode};

type StorageResult<T> = Result<T, StorageError<RaftNodeId>>;

/// Entries kept decoded in memory (the most recent appended by this incarnation).
pub const RECENT_ENTRIES_MAX: usize = 4_096;

/// The Raft log of one node. Cheap to clone: clones share the disk and the recent entries.
#[derive(Clone)]
pub struct LogStore {
    disk: Arc<dyn Disk>,
    recent: Arc<Mutex<BTreeMap<u64, Entry<TypeConfig>>>>,
    /// The member this log belongs to, when known ([`LogStore::of_member`]); see
    /// `read_vote` and `save_committed`.
    member: Option<RaftNodeId>,
    /// Held by every clone, so the owner can tell when the last one is gone (and with it the
    /// database's file lock).
    open: Option<Arc<()>>,
}

impl LogStore {
    /// The log on `disk`.
    pub fn on_disk(disk: Arc<dyn Disk>) -> Self {
        LogStore {
            disk,
            recent: Arc::default(),
            member: None,
            open: None,
        }
    }

    /// Tells the store which member it serves: that member then restarts as a follower even
    /// if it led, and its commit index is written without a sync of its own (see
    /// `read_vote`). A store that does not know syncs every commit index.
    pub fn of_member(mut self, member: RaftNodeId) -> Self {
        self.member = Some(member);
        self
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

    /// Makes every write so far durable ([`Disk::sync`], off the runtime's workers).
    async fn sync(&self) -> std::io::Result<()> {
        let disk = Arc::clone(&self.disk);
        offload(self.disk.as_ref(), move || disk.sync()).await?
    }

    async fn flush(&self) -> StorageResult<()> {
        self.sync()
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
        self.disk
            .keys(Tree::Log, start, end)
            .map_err(|e| log_read_error(format!("reading the log: {e}")))
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
        self.sync()
            .await
            .map_err(|e| vote_error(format!("flushing the vote: {e}")))?;
        Ok(())
    }

    /// The stored vote, except that this member's own committed vote (it led when it
    /// stopped) reads as the same vote uncommitted: openraft 0.9 restores a member whose
    /// committed vote names itself as leader at once, without a new blank entry, and would
    /// then answer read-index requests from its stored commit index, which is not synced
    /// (`save_committed`). Uncommitted, the vote keeps the member from voting for anyone
    /// else in that term, and it leads again only by winning an election, whose blank
    /// entry every read index then covers. openraft reads the vote once, at start.
    async fn read_vote(&mut self) -> StorageResult<Option<Vote<RaftNodeId>>> {
        let vote: Option<Vote<RaftNodeId>> = self.get_meta("vote")?;
        Ok(vote.map(|vote| match self.member {
            Some(me) if vote.is_committed() && vote.leader_id().voted_for() == Some(me) => {
                Vote::new(vote.leader_id().term, me)
            }
            _ => vote,
        }))
    }

    async fn save_committed(&mut self, committed: Option<LogId<RaftNodeId>>) -> StorageResult<()> {
        self.put_meta("committed", &committed)?;
        // A member that knows itself writes its commit index without a sync of its own (the
        // next append's sync makes it durable): after a crash it restarts as a follower
        // (`read_vote`) and learns the commit index from the leader, so a lost one only
        // delays applying. Had it restarted as the leader it was, a lost commit index it
        // had acknowledged would let a read miss that write (found by grove-sim when the
        // member resumed leading: about one seed in 100 read stale offsets).
        if self.member.is_some() {
            Ok(())
        } else {
            self.flush().await
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
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A disk that counts its syncs.
    struct CountingDisk {
        inner: super::super::FileDisk,
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
    async fn a_member_restarts_as_a_follower_and_leaves_its_commit_index_to_the_next_sync() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Arc::new(CountingDisk {
            inner: super::super::FileDisk::open(dir.path()).unwrap(),
            syncs: AtomicUsize::new(0),
        });
        let syncs = || disk.syncs.load(Ordering::Relaxed);
        let store = |member: Option<RaftNodeId>| {
            let store = LogStore::on_disk(Arc::clone(&disk) as Arc<dyn Disk>);
            match member {
                Some(member) => store.of_member(member),
                None => store,
            }
        };

        // Member 1 leads term 2: its vote is synced, its commit index written unsynced.
        let mut log = store(Some(1));
        log.save_vote(&Vote::new_committed(2, 1)).await.unwrap();
        let before = syncs();
        log.save_committed(committed(3)).await.unwrap();
        assert_eq!(syncs(), before, "no sync of its own");
        assert_eq!(log.read_committed().await.unwrap(), committed(3));
        // Restarted, it reads its own vote uncommitted: it must win an election to lead.
        let mut restarted = store(Some(1));
        assert_eq!(restarted.read_vote().await.unwrap(), Some(Vote::new(2, 1)));
        // A store not told its member reads the vote as stored and syncs commit indexes.
        let mut unknown = store(None);
        assert_eq!(
            unknown.read_vote().await.unwrap(),
            Some(Vote::new_committed(2, 1))
        );
        let before = syncs();
        unknown.save_committed(committed(4)).await.unwrap();
        assert_eq!(syncs(), before + 1);
        // Another member's vote, committed or not, reads as stored.
        for vote in [Vote::new_committed(5, 2), Vote::new(6, 3)] {
            log.save_vote(&vote).await.unwrap();
            assert_eq!(store(Some(1)).read_vote().await.unwrap(), Some(vote));
        }
    }
}
