//! [`Disk`]: the storage seam under a member's Raft log, vote and snapshots. Production uses
//! [`super::FileDisk`] (files of Grove's own in the member's directory, synced with
//! `fdatasync`/`fsync`); the simulator (`grove-sim`) plugs in a disk whose unsynced writes a
//! crash loses and whose reads and writes can fail on purpose.
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
//! - [`Disk::run_blocking`] runs work that may block (a sync, a snapshot's encoding and
//!   write) where it holds no async runtime worker; a disk without threads (the
//!   simulator's) runs it in place. [`offload`] is the typed form the stores use.

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
    /// The last snapshot, under key `snapshot` (few, large values).
    Snapshot,
}

impl Tree {
    pub const ALL: [Tree; 3] = [Tree::Log, Tree::Meta, Tree::Snapshot];
}

/// One write of a batch: `Some(value)` puts, `None` removes.
pub type BatchOp = (Vec<u8>, Option<Vec<u8>>);

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Work handed to [`Disk::run_blocking`].
pub type BlockingJob = Box<dyn FnOnce() + Send + 'static>;

/// A [`Disk::run_blocking`] in progress: resolves once the job has run (or was dropped
/// unrun, if the runtime is shutting down).
pub type BlockingFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

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
    /// The keys of every entry within the bounds, in key order (the default reads the values
    /// too; a disk that keeps values elsewhere skips them).
    fn keys(&self, tree: Tree, start: Bound<&[u8]>, end: Bound<&[u8]>) -> io::Result<Vec<Vec<u8>>> {
        Ok(self
            .range(tree, start, end)?
            .into_iter()
            .map(|(key, _)| key)
            .collect())
    }
    /// The entry with the greatest key.
    fn last(&self, tree: Tree) -> io::Result<Option<KeyValue>>;
    /// Applies `batch` atomically (not yet durably).
    fn write(&self, tree: Tree, batch: Vec<BatchOp>) -> io::Result<()>;
    /// Makes every write so far durable.
    fn sync(&self) -> io::Result<()>;
    /// Runs `job`, which may block its thread for long (a sync, a snapshot's encoding and
    /// write), where it holds no async runtime worker: a real disk hands it to tokio's
    /// blocking pool. The default runs it in place, before returning (the simulator's disk:
    /// no threads, nothing else runs meanwhile).
    fn run_blocking(&self, job: BlockingJob) -> BlockingFuture {
        job();
        Box::pin(std::future::ready(()))
    }
}

/// Runs `work` through `disk`'s [`Disk::run_blocking`] and returns its result; an error if
/// it did not complete (it panicked, or the runtime shut down before it ran).
pub async fn offload<T: Send + 'static>(
    disk: &dyn Disk,
    work: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let result = std::sync::Arc::new(std::sync::Mutex::new(None));
    let slot = std::sync::Arc::clone(&result);
    disk.run_blocking(Box::new(move || {
        let value = work();
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
    }))
    .await;
    let value = result.lock().unwrap_or_else(|p| p.into_inner()).take();
    value.ok_or_else(|| {
        io::Error::other(
            "blocking work did not complete (it panicked, or the runtime is shutting down)",
        )
    })
}
