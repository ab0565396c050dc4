//! [`SeededRuntime`]: openraft's tokio runtime with its one source of randomness, the election
//! timeout draw, taken from a seed instead of the OS.
//!
//! openraft 0.9 draws a node's election timeout once, in `Raft::new`, from
//! `AsyncRuntime::thread_rng()`. The stock runtime answers with `rand::thread_rng()` (OS
//! entropy), so the same simulation seed could elect different leaders. Here `thread_rng()`
//! returns a `StdRng` seeded from a thread-local seed stream that [`seed_thread_rng`] sets;
//! [`crate::replicated::RaftNode::start`] sets it from the node's configured seed right before
//! it builds the Raft instance, on the same thread and before the first await.
//!
//! Spawning goes through `grove_rpc::pause::spawn`, so the simulator can freeze one node's
//! tasks (a process pause) by spawning them inside that node's gate.
//!
//! Invariants: no OS entropy and no wall clock; everything else (sleep, timeouts,
//! instants, oneshots) is tokio's, so paused and simulated time drive it. Without a seed the
//! stream starts from a fixed constant: still deterministic, but every node would draw the same
//! timeouts, so nodes must be seeded differently (the node id is mixed in).

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

use openraft::{AsyncRuntime, OptionalSend, TokioInstant, TokioRuntime};
use rand::SeedableRng;
use rand::rngs::StdRng;

thread_local! {
    static SEED_STREAM: Cell<u64> = const { Cell::new(0x6a09_e667_f3bc_c908) };
}

/// Sets this thread's seed stream: the next `thread_rng()` draws start from `seed`.
pub fn seed_thread_rng(seed: u64) {
    SEED_STREAM.with(|stream| stream.set(seed));
}

/// The next seed of this thread's stream (SplitMix64 step).
fn next_seed() -> u64 {
    SEED_STREAM.with(|stream| {
        let state = stream.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        stream.set(state);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

/// A SplitMix64 stream (Grove's own draws, e.g. election nudges).
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    /// Uniform in `[0, bound)` (`bound` > 0).
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % bound.max(1)
    }
}

/// Tokio for everything, a seeded `StdRng` for randomness.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SeededRuntime;

impl AsyncRuntime for SeededRuntime {
    type JoinError = <TokioRuntime as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <TokioRuntime as AsyncRuntime>::Sleep;
    type Instant = TokioInstant;
    type TimeoutError = <TokioRuntime as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> =
        <TokioRuntime as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = StdRng;
    type OneshotSender<T: OptionalSend> = <TokioRuntime as AsyncRuntime>::OneshotSender<T>;
    type OneshotReceiverError = <TokioRuntime as AsyncRuntime>::OneshotReceiverError;
    type OneshotReceiver<T: OptionalSend> = <TokioRuntime as AsyncRuntime>::OneshotReceiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        // Through the pause seam: a task spawned by a node the simulator can pause belongs to
        // that node's gate (outside the simulator this is `tokio::spawn`).
        grove_rpc::pause::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        TokioRuntime::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        TokioRuntime::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        TokioRuntime::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        StdRng::seed_from_u64(next_seed())
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        TokioRuntime::oneshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn same_seed_same_draws_other_seed_other_draws() {
        let draw = |seed| {
            seed_thread_rng(seed);
            (0..4)
                .map(|_| SeededRuntime::thread_rng().gen_range(150..300u64))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }
}
