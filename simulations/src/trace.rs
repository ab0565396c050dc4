//! [`Trace`]: every event of a run — virtual time, member, kind, digest — folded into one
//! 64-bit hash as it happens (FNV-1a over a fixed little-endian encoding, so the hash does not
//! depend on the platform's hasher). The same seed must give the same hash; the last events
//! are kept to print when an invariant fails.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

/// Events kept for a failure report.
pub const TAIL_EVENTS: usize = 40;

/// The member an event is about, or none (the network, the workload, the run).
pub type Who = Option<u64>;

#[derive(Clone, Debug)]
pub struct Event {
    pub at: Duration,
    pub who: Who,
    pub kind: &'static str,
    pub digest: u64,
    pub detail: String,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = self.who.map_or("-".to_string(), |id| format!("n{id}"));
        write!(
            f,
            "{:>10.3} ms  {who:<4} {:<14} {:016x}",
            self.at.as_secs_f64() * 1e3,
            self.kind,
            self.digest
        )?;
        if !self.detail.is_empty() {
            write!(f, "  {}", self.detail)?;
        }
        Ok(())
    }
}

pub struct Trace {
    hash: u64,
    events: u64,
    tail: VecDeque<Event>,
    /// Print every event as it happens.
    pub verbose: bool,
}

impl Default for Trace {
    fn default() -> Self {
        Trace {
            hash: 0xcbf2_9ce4_8422_2325,
            events: 0,
            tail: VecDeque::with_capacity(TAIL_EVENTS),
            verbose: false,
        }
    }
}

impl Trace {
    /// Records one event; `detail` is for people (it is hashed too).
    pub fn record(
        &mut self,
        at: Duration,
        who: Who,
        kind: &'static str,
        digest: u64,
        detail: String,
    ) {
        let mut fold = |bytes: &[u8]| {
            for &byte in bytes {
                self.hash ^= u64::from(byte);
                self.hash = self.hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        fold(&(at.as_nanos() as u64).to_le_bytes());
        fold(&who.map_or(u64::MAX, |id| id).to_le_bytes());
        fold(kind.as_bytes());
        fold(&digest.to_le_bytes());
        fold(detail.as_bytes());
        self.events += 1;
        let event = Event {
            at,
            who,
            kind,
            digest,
            detail,
        };
        if self.verbose {
            println!("{event}");
        }
        if self.tail.len() == TAIL_EVENTS {
            self.tail.pop_front();
        }
        self.tail.push_back(event);
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn tail(&self) -> impl Iterator<Item = &Event> {
        self.tail.iter()
    }
}
