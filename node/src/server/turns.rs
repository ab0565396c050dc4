//! [`Turns`]: at most `n` queries process at once; the rest wait by priority (higher first,
//! Druid's `context.priority`, default 0), then in arrival order. A waiter dropped before its
//! turn (its client went away) leaves the queue, and a turn handed to a waiter that is dropped
//! before it saw it passes on, so no turn is ever lost. A [`Turn`] is owned (it holds the
//! `Arc<Turns>`), so it moves with the work onto the thread that runs it and comes back only
//! when that work has stopped.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

pub struct Turns {
    state: Mutex<State>,
}

struct State {
    free: usize,
    /// Arrival numbers, so equal priorities keep arrival order.
    arrivals: u64,
    waiting: BinaryHeap<Waiter>,
}

struct Waiter {
    priority: i64,
    arrival: Reverse<u64>,
    wake: oneshot::Sender<()>,
}

impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.priority, self.arrival).cmp(&(other.priority, other.arrival))
    }
}

impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Waiter {}

/// A turn, given back on drop.
pub struct Turn(Arc<Turns>);

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A place in the queue; handed a turn it never saw (dropped first), it passes the turn on.
struct Waiting<'a> {
    turns: &'a Turns,
    wake: oneshot::Receiver<()>,
    /// The turn arrived and is the query's.
    served: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.served {
            return;
        }
        self.wake.close();
        if self.wake.try_recv().is_ok() {
            self.turns.release();
        }
    }
}

impl Turns {
    /// `n` turns (at least one).
    pub fn new(n: usize) -> Turns {
        Turns {
            state: Mutex::new(State {
                free: n.max(1),
                arrivals: 0,
                waiting: BinaryHeap::new(),
            }),
        }
    }

    /// Waits for a turn at `priority`. Dropping the wait leaves the queue (and passes on a
    /// turn handed to it meanwhile).
    pub async fn take(self: &Arc<Self>, priority: i64) -> Turn {
        let mut waiting = {
            let mut state = self.state.lock().expect("turns lock");
            if state.free > 0 && state.waiting.is_empty() {
                state.free -= 1;
                return Turn(self.clone());
            }
            let (wake, woken) = oneshot::channel();
            state.arrivals += 1;
            let arrival = Reverse(state.arrivals);
            state.waiting.push(Waiter {
                priority,
                arrival,
                wake,
            });
            Waiting {
                turns: self,
                wake: woken,
                served: false,
            }
        };
        // A sender is only dropped after sending, so the wait ends with a turn.
        let handed = (&mut waiting.wake).await.is_ok();
        debug_assert!(handed, "a waiter's sender is dropped only after sending");
        waiting.served = true;
        Turn(self.clone())
    }

    /// Hands the turn to the best waiter still waiting, or frees it.
    fn release(&self) {
        let mut state = self.state.lock().expect("turns lock");
        while let Some(waiter) = state.waiting.pop() {
            if waiter.wake.send(()).is_ok() {
                return;
            }
        }
        state.free += 1;
    }

    #[cfg(test)]
    fn free(&self) -> usize {
        self.state.lock().expect("turns lock").free
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// Waiters get their turns by priority, then arrival; a waiter gone before its turn takes
    /// none, and every turn comes back.
    #[tokio::test(flavor = "current_thread")]
    async fn turns_go_by_priority_then_arrival_and_none_is_lost() {
        let turns = Arc::new(Turns::new(1));
        let first = turns.take(0).await;
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for (name, priority) in [("a", 0), ("b", 5), ("gone", 9), ("c", 0), ("d", 5)] {
            let turns = turns.clone();
            let order_tx = order_tx.clone();
            tasks.push(tokio::spawn(async move {
                let _turn = turns.take(priority).await;
                order_tx.send(name).unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }));
            // Let it queue before the next one arrives.
            tokio::task::yield_now().await;
        }
        let gone = tasks.remove(2);
        gone.abort();
        assert!(gone.await.unwrap_err().is_cancelled());
        drop(first);
        for task in tasks {
            let _ = task.await;
        }
        drop(order_tx);
        let mut got = Vec::new();
        while let Some(name) = order.recv().await {
            got.push(name);
        }
        assert_eq!(got, ["b", "d", "a", "c"]);
        assert_eq!(turns.free(), 1);
    }

    /// A waiter handed a turn but dropped before it saw it passes the turn on.
    #[tokio::test(flavor = "current_thread")]
    async fn a_turn_handed_to_a_dropped_waiter_passes_on() {
        let turns = Arc::new(Turns::new(1));
        let first = turns.take(0).await;
        let mut waiter = Box::pin(turns.take(0));
        // Queue it, then hand it the turn without letting it run.
        assert!(futures_poll_once(waiter.as_mut()).is_none());
        drop(first);
        drop(waiter);
        assert_eq!(turns.free(), 1);
        let _again = turns.take(0).await;
        assert_eq!(turns.free(), 0);
    }

    fn futures_poll_once<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match f.poll(&mut cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        }
    }
}
