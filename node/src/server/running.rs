//! The queries this server is running, by id, so `DELETE /druid/v2/{queryId}` (and
//! `DELETE /druid/v2/sql/{sqlQueryId}`) can stop them; and the [`Ticket`] a query holds while
//! its work lasts.
//!
//! Ownership: a query's ticket (its slot among the running queries and its entry here) and its
//! processing turn move with the work onto the blocking thread that runs it and are dropped
//! there, when the work has stopped, not when its HTTP handler returns. A client that goes away
//! or a `DELETE` only sets the query's [`Cancel`] flag; the work sees it at its next check and
//! stops, and only then are its slot and turn free for others.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::control::{Cancel, Stop};

/// The queries registered under one id: (registration serial, cancellation flag).
type Registered = Vec<(u64, Arc<Cancel>)>;

/// Running queries by id. Several may share an id (clients choose them); a `DELETE` stops all
/// of them.
#[derive(Default)]
pub struct RunningQueries {
    by_id: Mutex<BTreeMap<String, Registered>>,
    serials: AtomicU64,
}

impl RunningQueries {
    /// Stops every query registered under `id`; how many there were.
    pub fn cancel(&self, id: &str) -> usize {
        let by_id = self.by_id.lock().expect("running queries lock");
        let found = by_id.get(id).map_or(&[][..], Vec::as_slice);
        for (_, cancel) in found {
            cancel.stop(Stop::Deleted);
        }
        found.len()
    }

    fn add(&self, ids: &[String], cancel: &Arc<Cancel>) -> u64 {
        let serial = self.serials.fetch_add(1, Ordering::SeqCst);
        let mut by_id = self.by_id.lock().expect("running queries lock");
        for id in ids {
            by_id
                .entry(id.clone())
                .or_default()
                .push((serial, cancel.clone()));
        }
        serial
    }

    fn remove(&self, ids: &[String], serial: u64) {
        let mut by_id = self.by_id.lock().expect("running queries lock");
        for id in ids {
            if let Some(entries) = by_id.get_mut(id) {
                entries.retain(|(s, _)| *s != serial);
                if entries.is_empty() {
                    by_id.remove(id);
                }
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_id.lock().expect("running queries lock").len()
    }
}

/// What a query holds from its arrival until its work has stopped: one of the server's query
/// slots and its entry among the running queries. Dropped on the thread that ran the work.
pub struct Ticket {
    running: Arc<RunningQueries>,
    slots: Arc<AtomicUsize>,
    ids: Vec<String>,
    serial: u64,
}

impl Ticket {
    /// Takes one of `max` query slots (`None` when all are taken) and registers the query
    /// under `ids`.
    pub fn take(
        running: &Arc<RunningQueries>,
        slots: &Arc<AtomicUsize>,
        max: usize,
        ids: Vec<String>,
        cancel: &Arc<Cancel>,
    ) -> Option<Ticket> {
        slots
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        let serial = running.add(&ids, cancel);
        Some(Ticket {
            running: running.clone(),
            slots: slots.clone(),
            ids,
            serial,
        })
    }

    /// Slots taken now, this one included.
    pub fn slots_taken(&self) -> usize {
        self.slots.load(Ordering::SeqCst).max(1)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.running.remove(&self.ids, self.serial);
        self.slots.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A fresh query id in the form of a random (version 4) UUID, as Druid assigns one to a query
/// that brings none: the process's random hasher keys, a counter and the clock mixed.
pub fn new_query_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(std::collections::hash_map::RandomState::new);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let word = |salt: u64| {
        let mut hasher = keys.build_hasher();
        hasher.write_u64(count);
        hasher.write_u64(nanos);
        hasher.write_u64(salt);
        hasher.finish()
    };
    let (a, b) = (word(1), word(2));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ticket holds its slot and registration until dropped; a `DELETE` stops every query
    /// under the id, and nothing after the ticket is gone.
    #[test]
    fn tickets_hold_their_slot_and_registration_until_dropped() {
        let running = Arc::new(RunningQueries::default());
        let slots = Arc::new(AtomicUsize::new(0));
        let (a, b) = (Arc::new(Cancel::default()), Arc::new(Cancel::default()));
        let first = Ticket::take(&running, &slots, 2, vec!["q".into()], &a).unwrap();
        let second = Ticket::take(&running, &slots, 2, vec!["q".into(), "s".into()], &b).unwrap();
        assert!(Ticket::take(&running, &slots, 2, vec!["r".into()], &a).is_none());
        assert_eq!(second.slots_taken(), 2);
        assert_eq!(running.cancel("s"), 1);
        assert_eq!((a.stopped(), b.stopped()), (None, Some(Stop::Deleted)));
        assert_eq!(running.cancel("q"), 2);
        assert_eq!(a.stopped(), Some(Stop::Deleted));
        drop((first, second));
        assert_eq!(slots.load(Ordering::SeqCst), 0);
        assert_eq!(running.len(), 0);
        assert_eq!(running.cancel("q"), 0);
    }

    #[test]
    fn query_ids_look_like_uuids_and_differ() {
        let (a, b) = (new_query_id(), new_query_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4');
        assert!(a.split('-').map(str::len).eq([8, 4, 4, 4, 12]));
    }
}
