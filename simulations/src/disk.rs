//! [`SimDisk`]: a member's disk under the simulator, behind grove-raft's [`Disk`] seam.
//!
//! fsync semantics: a write lands in a page cache that reads see at once; [`Disk::sync`] makes
//! everything written so far durable. [`SimDisk::crash`] keeps the durable state plus a seeded
//! prefix of the batches written since the last sync (the OS may have written some back), and
//! with the torn-write fault also part of the next batch; the rest is lost. Each crash starts a
//! new generation: handles given to the crashed incarnation fail from then on, so nothing the
//! old incarnation still runs can write into the new one's disk.
//!
//! Injected errors: reads, writes and syncs fail with the configured probabilities (a failed
//! write changes nothing; a failed sync leaves the writes unsynced). openraft treats them as
//! fatal, so the member stops and the simulator restarts it.
//!
//! Determinism: ordered maps, one seeded stream per disk, no real I/O.

use std::collections::BTreeMap;
use std::io;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use grove_raft::replicated::disk::{BatchOp, Disk, KeyValue, Tree};

use crate::rng::SplitMix64;

/// Fault probabilities of one disk.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DiskFaults {
    pub read_error_probability: f64,
    pub write_error_probability: f64,
    pub sync_error_probability: f64,
    /// Chance that a crash keeps part of the first lost batch.
    pub torn_write_probability: f64,
}

/// What happened to a disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    pub writes: u64,
    pub syncs: u64,
    pub errors: u64,
    pub crashes: u64,
    pub lost_batches: u64,
    pub torn_batches: u64,
}

type Trees = [BTreeMap<Vec<u8>, Vec<u8>>; 3];

struct State {
    generation: u64,
    durable: Trees,
    /// `durable` plus every unsynced batch: what reads see.
    visible: Trees,
    unsynced: Vec<(Tree, Vec<BatchOp>)>,
    faults: DiskFaults,
    rng: SplitMix64,
    stats: DiskStats,
}

/// One member's disk; survives the member's crashes. Cheap to clone.
#[derive(Clone)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

/// The disk as one incarnation of its member sees it.
struct Handle {
    state: Arc<Mutex<State>>,
    generation: u64,
}

fn apply(trees: &mut Trees, tree: Tree, ops: &[BatchOp]) {
    let map = &mut trees[tree as usize];
    for (key, value) in ops {
        match value {
            Some(value) => map.insert(key.clone(), value.clone()),
            None => map.remove(key),
        };
    }
}

impl SimDisk {
    pub fn new(rng: SplitMix64) -> SimDisk {
        SimDisk {
            state: Arc::new(Mutex::new(State {
                generation: 0,
                durable: Default::default(),
                visible: Default::default(),
                unsynced: Vec::new(),
                faults: DiskFaults::default(),
                rng,
                stats: DiskStats::default(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("disk lock")
    }

    /// A handle for a new incarnation of the member.
    pub fn handle(&self) -> Arc<dyn Disk> {
        let generation = self.lock().generation;
        Arc::new(Handle {
            state: Arc::clone(&self.state),
            generation,
        })
    }

    pub fn set_faults(&self, faults: DiskFaults) {
        self.lock().faults = faults;
    }

    /// The member crashed: unsynced writes are lost (but a seeded prefix, and maybe part of
    /// the next batch); handles of the crashed incarnation stop working.
    pub fn crash(&self) {
        let mut state = self.lock();
        let state = &mut *state;
        state.generation += 1;
        state.stats.crashes += 1;
        let unsynced = std::mem::take(&mut state.unsynced);
        let kept = state.rng.between(0, unsynced.len() as u64) as usize;
        for (tree, ops) in &unsynced[..kept] {
            apply(&mut state.durable, *tree, ops);
        }
        if let Some((tree, ops)) = unsynced.get(kept) {
            if ops.len() > 1 && state.rng.chance(state.faults.torn_write_probability) {
                let part = state.rng.between(1, ops.len() as u64 - 1) as usize;
                apply(&mut state.durable, *tree, &ops[..part]);
                state.stats.torn_batches += 1;
            }
            state.stats.lost_batches += (unsynced.len() - kept) as u64;
        }
        state.visible = state.durable.clone();
    }

    pub fn stats(&self) -> DiskStats {
        self.lock().stats
    }

    /// The entries of `tree` as reads see them now (for the invariant checkers).
    pub fn visible(&self, tree: Tree) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.lock().visible[tree as usize].clone()
    }
}

impl Handle {
    /// The state, if this handle's incarnation is still the live one and no error is drawn.
    fn access(
        &self,
        error_probability: impl Fn(&DiskFaults) -> f64,
        what: &str,
    ) -> io::Result<std::sync::MutexGuard<'_, State>> {
        let mut state = self.state.lock().expect("disk lock");
        if state.generation != self.generation {
            return Err(io::Error::other(format!(
                "simulated disk: {what} by a crashed incarnation"
            )));
        }
        let probability = error_probability(&state.faults);
        if state.rng.chance(probability) {
            state.stats.errors += 1;
            return Err(io::Error::other(format!(
                "simulated disk: injected {what} error"
            )));
        }
        Ok(state)
    }
}

impl Disk for Handle {
    fn get(&self, tree: Tree, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let state = self.access(|f| f.read_error_probability, "read")?;
        Ok(state.visible[tree as usize].get(key).cloned())
    }

    fn range(
        &self,
        tree: Tree,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> io::Result<Vec<KeyValue>> {
        let state = self.access(|f| f.read_error_probability, "read")?;
        Ok(state.visible[tree as usize]
            .range::<[u8], _>((start, end))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }

    fn last(&self, tree: Tree) -> io::Result<Option<KeyValue>> {
        let state = self.access(|f| f.read_error_probability, "read")?;
        Ok(state.visible[tree as usize]
            .last_key_value()
            .map(|(key, value)| (key.clone(), value.clone())))
    }

    fn write(&self, tree: Tree, batch: Vec<BatchOp>) -> io::Result<()> {
        let mut state = self.access(|f| f.write_error_probability, "write")?;
        state.stats.writes += 1;
        apply(&mut state.visible, tree, &batch);
        state.unsynced.push((tree, batch));
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let mut state = self.access(|f| f.sync_error_probability, "sync")?;
        let state = &mut *state;
        state.stats.syncs += 1;
        for (tree, ops) in std::mem::take(&mut state.unsynced) {
            apply(&mut state.durable, tree, &ops);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str) -> BatchOp {
        (key.as_bytes().to_vec(), Some(value.as_bytes().to_vec()))
    }

    #[test]
    fn a_crash_keeps_synced_writes_and_fences_the_old_incarnation() {
        let disk = SimDisk::new(SplitMix64::new(1));
        let first = disk.handle();
        first.write(Tree::Meta, vec![put("a", "1")]).unwrap();
        first.sync().unwrap();
        // Many unsynced batches: a crash keeps some prefix of them, never a later one alone.
        for i in 0..50 {
            first
                .write(Tree::Log, vec![put(&format!("{i:02}"), "x")])
                .unwrap();
        }
        assert_eq!(first.get(Tree::Log, b"49").unwrap(), Some(b"x".to_vec()));
        disk.crash();
        assert!(
            first.get(Tree::Meta, b"a").is_err(),
            "old incarnation fenced"
        );
        let second = disk.handle();
        assert_eq!(second.get(Tree::Meta, b"a").unwrap(), Some(b"1".to_vec()));
        let kept = second
            .range(Tree::Log, Bound::Unbounded, Bound::Unbounded)
            .unwrap();
        let expected: Vec<Vec<u8>> = (0..kept.len()).map(|i| format!("{i:02}").into()).collect();
        let keys: Vec<Vec<u8>> = kept.into_iter().map(|(key, _)| key).collect();
        assert_eq!(keys, expected, "a prefix of the unsynced batches survives");
        assert!(keys.len() < 50 || disk.stats().lost_batches == 0);
    }

    #[test]
    fn injected_errors_change_nothing() {
        let disk = SimDisk::new(SplitMix64::new(2));
        disk.set_faults(DiskFaults {
            write_error_probability: 1.0,
            ..DiskFaults::default()
        });
        let handle = disk.handle();
        assert!(handle.write(Tree::Log, vec![put("k", "v")]).is_err());
        disk.set_faults(DiskFaults::default());
        assert_eq!(handle.get(Tree::Log, b"k").unwrap(), None);
        assert_eq!(disk.stats().errors, 1);
    }
}
