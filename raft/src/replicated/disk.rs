//! [`Disk`]: the storage seam under a member's Raft log, vote and snapshots. Production uses
//! [`SledDisk`] (one sled database per member); the simulator (`grove-sim`) plugs in a disk
//! whose unsynced writes a crash loses and whose reads and writes can fail on purpose.
//!
//! The contract every implementation keeps (and [`super::LogStore`] and
//! [`super::StateMachineStore`] rely on):
//! - Three ordered trees ([`Tree`]); keys compare as bytes.
//! - [`Disk::write`] applies one batch atomically for readers: a read after it sees all of it.
//! - Nothing is durable until [`Disk::sync`] returns `Ok`; after a crash, every batch synced
//!   before is there, and of the batches written after the last sync some prefix may be (a
//!   disk that tears writes may also keep part of the first batch past that prefix).
//! - Errors are `std::io::Error`s; the stores turn them into openraft `StorageError`s, which
//!   stop the member (openraft treats storage failures as fatal).

use std::future::Future;
use std::io;
use std::ops::Bound;
use std::pin::Pin;

/// The trees a member keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tree {
    /// Log entries keyed by their index as 8 big-endian bytes.
    Log,
    /// `vote`, `committed`, `last_purged`.
    Meta,
    /// The last snapshot: `meta` and `data`.
    Snapshot,
}

impl Tree {
    pub const ALL: [Tree; 3] = [Tree::Log, Tree::Meta, Tree::Snapshot];

    /// The sled tree name (kept from before the seam existed, so old databases still open).
    pub fn sled_name(self) -> &'static str {
        match self {
            Tree::Log => "raft_log",
            Tree::Meta => "raft_meta",
            Tree::Snapshot => "snapshot",
        }
    }
}

/// One write of a batch: `Some(value)` puts, `None` removes.
pub type BatchOp = (Vec<u8>, Option<Vec<u8>>);

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A [`Disk::sync_async`] in progress.
pub type SyncFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send + 'static>>;

/// Ordered key-value trees with explicit durability (see the module docs for the contract).
pub trait Disk: Send + Sync + 'static {
    fn get(&self, tree: Tree, key: &[u8]) -> io::Result<Option<Vec<u8>>>;
    /// Every entry with a key within the bounds, in key order.
    fn range(
        &self,
        tree: Tree,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> io::Result<Vec<KeyValue>>;
    /// The entry with the greatest key.
    fn last(&self, tree: Tree) -> io::Result<Option<KeyValue>>;
    /// Applies `batch` atomically (not yet durably).
    fn write(&self, tree: Tree, batch: Vec<BatchOp>) -> io::Result<()>;
    /// Makes every write so far durable.
    fn sync(&self) -> io::Result<()>;
    /// [`Disk::sync`], awaited: every write made before the call is durable when it
    /// resolves. A disk whose sync blocks for long runs it off the async runtime's workers
    /// (which serve the other tasks meanwhile); the default syncs in place, before it
    /// returns (the simulator's disk: no thread, nothing runs during the sync).
    fn sync_async(&self) -> SyncFuture {
        let synced = self.sync();
        Box::pin(std::future::ready(synced))
    }
}

/// The production disk: a member's sled database.
#[derive(Clone)]
pub struct SledDisk {
    db: sled::Db,
    trees: [sled::Tree; 3],
}

impl SledDisk {
    pub fn open(db: &sled::Db) -> io::Result<Self> {
        let open = |tree: Tree| {
            db.open_tree(tree.sled_name())
                .map_err(|e| io::Error::other(format!("opening tree {}: {e}", tree.sled_name())))
        };
        Ok(SledDisk {
            db: db.clone(),
            trees: [open(Tree::Log)?, open(Tree::Meta)?, open(Tree::Snapshot)?],
        })
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        &self.trees[tree as usize]
    }
}

fn sled_error(what: &str, e: sled::Error) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

impl Disk for SledDisk {
    fn get(&self, tree: Tree, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        Ok(self
            .tree(tree)
            .get(key)
            .map_err(|e| sled_error("reading", e))?
            .map(|value| value.to_vec()))
    }

    fn range(
        &self,
        tree: Tree,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> io::Result<Vec<KeyValue>> {
        let owned = |bound: Bound<&[u8]>| bound.map(<[u8]>::to_vec);
        self.tree(tree)
            .range::<Vec<u8>, _>((owned(start), owned(end)))
            .map(|item| {
                let (key, value) = item.map_err(|e| sled_error("reading", e))?;
                Ok((key.to_vec(), value.to_vec()))
            })
            .collect()
    }

    fn last(&self, tree: Tree) -> io::Result<Option<KeyValue>> {
        Ok(self
            .tree(tree)
            .last()
            .map_err(|e| sled_error("reading", e))?
            .map(|(key, value)| (key.to_vec(), value.to_vec())))
    }

    fn write(&self, tree: Tree, batch: Vec<BatchOp>) -> io::Result<()> {
        let mut sled_batch = sled::Batch::default();
        for (key, value) in batch {
            match value {
                Some(value) => sled_batch.insert(key, value),
                None => sled_batch.remove(key),
            }
        }
        self.tree(tree)
            .apply_batch(sled_batch)
            .map_err(|e| sled_error("writing", e))
    }

    fn sync(&self) -> io::Result<()> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| sled_error("flushing", e))
    }

    /// On tokio's blocking pool: a sled flush waits for its write and fsync (0.05 ms to
    /// several ms), during which a runtime worker would otherwise serve nothing. The blocking
    /// task holds paused test clocks still, as an in-place flush does.
    fn sync_async(&self) -> SyncFuture {
        let disk = self.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || disk.sync())
                .await
                .unwrap_or_else(|e| Err(io::Error::other(format!("flushing: {e}"))))
        })
    }
}
