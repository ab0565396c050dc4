//! Pause gates: the simulator's seam for freezing one node's tasks (a stop-the-world GC pause,
//! a `SIGSTOP`, a VM migration) while the rest of the cluster and the clock go on.
//!
//! A node's tasks are spawned through [`spawn`]. While a future runs inside a gate's scope
//! ([`PauseGate::scope`], [`PauseGate::enter`], or any task spawned from one), [`spawn`] wraps
//! the new task in the same gate, so everything a node starts — its Raft core and replication
//! tasks, its transport's accept loop and request handlers — belongs to its gate. While the gate
//! is paused its tasks are not polled: timers expire unobserved, messages queue in its inbox,
//! replies it owes are late. On [`PauseGate::resume`] every parked task is woken and sees all of
//! that at once. Outside any gate (production) [`spawn`] is `tokio::spawn` plus one
//! thread-local read, and nothing is ever parked.
//!
//! Invariants: the gate in scope is a thread-local set only while a gated or scoped future is
//! being polled (restored afterwards, also on unwind), so it never leaks into another task.
//! Parked tasks are woken in the order they parked, which is the order the (deterministic)
//! scheduler polled them, so a simulation replays exactly.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::task::JoinHandle;

thread_local! {
    static CURRENT: RefCell<Option<PauseGate>> = const { RefCell::new(None) };
}

#[derive(Default)]
struct GateState {
    paused: bool,
    /// Bumped by every resume, so a task parks (registers its waker) once per pause.
    generation: u64,
    parked: Vec<Waker>,
}

/// One node's gate. Cloning shares it.
#[derive(Clone, Default)]
pub struct PauseGate {
    state: Arc<Mutex<GateState>>,
    /// Whose gate it is (for logs; empty if unnamed).
    label: Arc<str>,
}

impl std::fmt::Debug for PauseGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PauseGate")
            .field("paused", &self.is_paused())
            .finish()
    }
}

impl PauseGate {
    pub fn new() -> PauseGate {
        PauseGate::default()
    }

    /// A gate named `label` (for logs: the simulator names each member's gate).
    pub fn named(label: &str) -> PauseGate {
        PauseGate {
            label: Arc::from(label),
            ..PauseGate::default()
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Stops polling this gate's tasks (from their next wake-up on).
    pub fn pause(&self) {
        self.lock().paused = true;
    }

    /// Lets this gate's tasks run again and wakes every one that parked.
    pub fn resume(&self) {
        let parked = {
            let mut state = self.lock();
            if !state.paused {
                return;
            }
            state.paused = false;
            state.generation += 1;
            std::mem::take(&mut state.parked)
        };
        for waker in parked {
            waker.wake();
        }
    }

    pub fn is_paused(&self) -> bool {
        self.lock().paused
    }

    /// Runs `f` with this gate in scope: tasks it [`spawn`]s belong to the gate.
    pub fn enter<T>(&self, f: impl FnOnce() -> T) -> T {
        let _scope = Scope::set(Some(self.clone()));
        f()
    }

    /// `future` with this gate in scope while it is polled (the future itself is never
    /// parked: the caller awaiting it is not the node), so tasks it [`spawn`]s belong to the
    /// gate.
    pub fn scope<F: Future>(&self, future: F) -> Scoped<F> {
        Scoped {
            gate: self.clone(),
            future: Box::pin(future),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        // A poisoned gate only means a task panicked while holding it; the state stays valid.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a task may run now; if not, parks `waker` (once per pause).
    fn admit(&self, parked_in: &mut Option<u64>, waker: &Waker) -> bool {
        let mut state = self.lock();
        if !state.paused {
            return true;
        }
        if *parked_in != Some(state.generation) {
            *parked_in = Some(state.generation);
            state.parked.push(waker.clone());
        }
        false
    }
}

/// Spawns `future` on the current tokio runtime, in the gate in scope if there is one.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match current() {
        None => tokio::spawn(future),
        Some(gate) => tokio::spawn(Gated {
            gate,
            parked_in: None,
            future: Box::pin(future),
        }),
    }
}

/// The gate in scope on this thread, if any.
pub fn current() -> Option<PauseGate> {
    CURRENT.with(|current| current.borrow().clone())
}

/// Sets the gate in scope; restores the previous one when dropped (also on unwind).
struct Scope {
    previous: Option<PauseGate>,
}

impl Scope {
    fn set(gate: Option<PauseGate>) -> Scope {
        let previous = CURRENT.with(|current| std::mem::replace(&mut *current.borrow_mut(), gate));
        Scope { previous }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
}

/// A task of a gate: not polled while the gate is paused.
struct Gated<F> {
    gate: PauseGate,
    parked_in: Option<u64>,
    future: Pin<Box<F>>,
}

impl<F: Future> Future for Gated<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        if !this.gate.admit(&mut this.parked_in, cx.waker()) {
            return Poll::Pending;
        }
        let _scope = Scope::set(Some(this.gate.clone()));
        this.future.as_mut().poll(cx)
    }
}

/// A future polled with a gate in scope (see [`PauseGate::scope`]).
pub struct Scoped<F> {
    gate: PauseGate,
    future: Pin<Box<F>>,
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let _scope = Scope::set(Some(this.gate.clone()));
        this.future.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// A task that counts ticks of a 10 ms interval.
    async fn ticker(ticks: Arc<AtomicU64>) {
        let mut interval = tokio::time::interval(Duration::from_millis(10));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        loop {
            interval.tick().await;
            ticks.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_gate_stops_its_tasks_and_their_children_and_resume_catches_up() {
        let gate = PauseGate::new();
        let (parent, child, outside) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let child_ticks = Arc::clone(&child);
        let parent_ticks = Arc::clone(&parent);
        gate.enter(|| {
            spawn(async move {
                // Spawned from inside a gated task: belongs to the same gate.
                spawn(ticker(child_ticks));
                ticker(parent_ticks).await;
            })
        });
        spawn(ticker(Arc::clone(&outside)));
        tokio::time::sleep(Duration::from_millis(45)).await;
        let before = (parent.load(Ordering::SeqCst), child.load(Ordering::SeqCst));
        assert_eq!(before, (5, 5), "ticks at 0, 10, 20, 30, 40 ms");

        gate.pause();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            (parent.load(Ordering::SeqCst), child.load(Ordering::SeqCst)),
            before,
            "nothing of the gate ran while it was paused"
        );
        assert_eq!(outside.load(Ordering::SeqCst), 15, "the rest went on");

        gate.resume();
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        // The missed ticks (50..140 ms) all fire at once on resume.
        assert_eq!(
            (parent.load(Ordering::SeqCst), child.load(Ordering::SeqCst)),
            (15, 15)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_scoped_future_is_never_parked_and_nothing_leaks_out_of_the_scope() {
        let gate = PauseGate::new();
        gate.pause();
        let value = gate
            .scope(async {
                assert!(current().is_some(), "in scope while polled");
                tokio::time::sleep(Duration::from_millis(5)).await;
                7
            })
            .await;
        assert_eq!(value, 7);
        assert!(current().is_none(), "the scope ends with the future");
        let ran = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&ran);
        spawn(async move {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .expect("an ungated task runs");
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }
}
