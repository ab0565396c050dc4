//! The watchdog: a run that stops advancing simulated time, or that spends more than its
//! wall-clock budget, ends as a failed run (violation `watchdog`, with its reproduce line)
//! instead of hanging a sweep or CI.
//!
//! - **Stalls.** The paused clock moves only when every task waits; a set of tasks that keep
//!   waking each other (a retry loop that never sleeps) freezes it and the run never ends.
//!   tokio's task-poll hook ([`Watchdog::install`], `tokio_unstable`) and [`Watched`] (the
//!   driver's polls) count the polls since the clock last moved; past [`STALL_POLLS`] the
//!   watchdog trips. Poll counts are
//!   deterministic, so a stall trips at the same poll in every replay: its reproduce line
//!   reproduces it.
//! - **Wall-clock budget.** The same hook compares the wall clock with the run's budget every
//!   [`WALL_CHECK_POLLS`] polls, and so does every poll of the driver (the only wall-clock
//!   reads on the simulated path; they change nothing unless the budget is spent, and then the
//!   run is a failure anyway).
//! - **Ending the run.** The driver's future runs inside [`Watched`], which, once the watchdog
//!   tripped, completes at its next poll; a trip wakes it, and a current-thread runtime polls
//!   its `block_on` future between tasks even while they spin. Dropping the runtime then drops
//!   every task without polling it again.
//! - **Backstop.** A task that never returns from one poll (a synchronous loop) cannot be
//!   stopped from inside the runtime: [`Backstop`], one OS thread that only sleeps, prints the
//!   run's reproduce line and exits the process once the budget and a grace period are spent.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Task polls without the simulated clock moving before a run counts as stalled. The busiest
/// instant of 200 clean seeds (a member replaying its log at start, a burst of replies) took
/// 105 polls; every run's summary prints its own.
pub const STALL_POLLS: u64 = 20_000;
/// Polls between two reads of the wall clock.
pub const WALL_CHECK_POLLS: u64 = 4_096;
/// A run's wall-clock budget when the command line does not say.
pub const RUN_BUDGET_DEFAULT: Duration = Duration::from_secs(300);
/// How long past its budget a run that cannot be stopped from inside may go on before the
/// backstop ends the process.
pub const BACKSTOP_GRACE: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Clock {
    /// The simulated instant of the last poll.
    last: Option<tokio::time::Instant>,
    /// Polls at that instant so far.
    polls_at_last: u64,
}

struct Inner {
    tripped: AtomicBool,
    reason: Mutex<Option<String>>,
    polls: AtomicU64,
    clock: Mutex<Clock>,
    /// The most polls seen at one simulated instant.
    polls_at_one_instant_max: AtomicU64,
    stall_polls: u64,
    wall_started: std::time::Instant,
    wall_budget: Duration,
    driver: Mutex<Option<Waker>>,
}

/// One run's watchdog. Cheap to clone.
#[derive(Clone)]
pub struct Watchdog {
    inner: Arc<Inner>,
}

impl Watchdog {
    pub fn new(wall_budget: Duration) -> Watchdog {
        Watchdog::with_stall_polls(wall_budget, STALL_POLLS)
    }

    pub fn with_stall_polls(wall_budget: Duration, stall_polls: u64) -> Watchdog {
        Watchdog {
            inner: Arc::new(Inner {
                tripped: AtomicBool::new(false),
                reason: Mutex::new(None),
                polls: AtomicU64::new(0),
                clock: Mutex::new(Clock::default()),
                polls_at_one_instant_max: AtomicU64::new(0),
                stall_polls,
                wall_started: std::time::Instant::now(),
                wall_budget,
                driver: Mutex::new(None),
            }),
        }
    }

    /// Hooks the watchdog into every task poll of the runtime `builder` builds.
    pub fn install(&self, builder: &mut tokio::runtime::Builder) {
        let watchdog = self.clone();
        builder.on_before_task_poll(move |_| watchdog.on_poll());
    }

    /// Why the run was stopped, if it was.
    pub fn tripped(&self) -> Option<String> {
        if !self.inner.tripped.load(Ordering::Acquire) {
            return None;
        }
        self.inner.reason.lock().expect("watchdog").clone()
    }

    /// The most task polls seen at one simulated instant (how close clean runs come to
    /// [`STALL_POLLS`]).
    pub fn polls_at_one_instant_max(&self) -> u64 {
        self.inner.polls_at_one_instant_max.load(Ordering::Relaxed)
    }

    fn on_poll(&self) {
        let inner = &self.inner;
        if inner.tripped.load(Ordering::Relaxed) {
            return;
        }
        let polls = inner.polls.fetch_add(1, Ordering::Relaxed) + 1;
        let now = tokio::time::Instant::now();
        let stalled_at = {
            let mut clock = inner.clock.lock().expect("watchdog");
            if clock.last == Some(now) {
                clock.polls_at_last += 1;
            } else {
                clock.last = Some(now);
                clock.polls_at_last = 1;
            }
            inner
                .polls_at_one_instant_max
                .fetch_max(clock.polls_at_last, Ordering::Relaxed);
            (clock.polls_at_last >= inner.stall_polls).then_some(clock.polls_at_last)
        };
        if let Some(count) = stalled_at {
            self.trip(format!(
                "simulated time stopped: {count} task polls without the clock moving"
            ));
        } else if polls.is_multiple_of(WALL_CHECK_POLLS) {
            self.check_wall_clock();
        }
    }

    fn check_wall_clock(&self) {
        if self.inner.wall_started.elapsed() > self.inner.wall_budget {
            self.trip(format!(
                "the wall-clock budget of {:?} is spent",
                self.inner.wall_budget
            ));
        }
    }

    /// Stops the run: the driver completes at its next poll.
    pub fn trip(&self, reason: String) {
        {
            let mut slot = self.inner.reason.lock().expect("watchdog");
            if slot.is_some() {
                return;
            }
            *slot = Some(reason);
        }
        self.inner.tripped.store(true, Ordering::Release);
        if let Some(waker) = self.inner.driver.lock().expect("watchdog").take() {
            waker.wake();
        }
    }

    /// `future` that completes with `None` as soon as the watchdog trips.
    pub fn watch<F: Future>(&self, future: F) -> Watched<F> {
        Watched {
            watchdog: self.clone(),
            future: Box::pin(future),
        }
    }
}

/// The driver's future under a [`Watchdog`].
pub struct Watched<F> {
    watchdog: Watchdog,
    future: Pin<Box<F>>,
}

impl<F: Future> Future for Watched<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The driver's polls count too: a driver that keeps waking itself stops the clock
        // as surely as a task does.
        self.watchdog.on_poll();
        self.watchdog.check_wall_clock();
        if self.watchdog.inner.tripped.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        *self.watchdog.inner.driver.lock().expect("watchdog") = Some(cx.waker().clone());
        match self.future.as_mut().poll(cx) {
            Poll::Ready(output) => Poll::Ready(Some(output)),
            Poll::Pending if self.watchdog.inner.tripped.load(Ordering::Acquire) => {
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The last resort for a run stuck inside one poll: after `budget` + [`BACKSTOP_GRACE`] it
/// prints `reproduce` and exits the process (status 3). Dropping it (the run ended) stops it.
pub struct Backstop {
    done: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Backstop {
    pub fn start(budget: Duration, seed: u64, reproduce: String) -> Backstop {
        let (done, finished) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("grove-sim-backstop-{seed}"))
            .spawn(move || {
                let limit = budget.saturating_add(BACKSTOP_GRACE);
                if let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(limit) {
                    eprintln!(
                        "VIOLATION watchdog: seed {seed} is still running {limit:?} of wall time \
                         after it started and cannot be stopped (a task that never returns from a \
                         poll)\nreproduce: {reproduce}"
                    );
                    println!("VIOLATION watchdog: seed {seed} cannot be stopped");
                    println!("reproduce: {reproduce}");
                    std::process::exit(3);
                }
            })
            .expect("the backstop thread starts");
        Backstop {
            done: Some(done),
            thread: Some(thread),
        }
    }
}

impl Drop for Backstop {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(watchdog: &Watchdog) -> tokio::runtime::Runtime {
        let mut builder = tokio::runtime::Builder::new_current_thread();
        builder.enable_time().start_paused(true);
        watchdog.install(&mut builder);
        builder.build().expect("runtime")
    }

    #[test]
    fn tasks_that_never_let_time_pass_trip_the_watchdog() {
        let watchdog = Watchdog::with_stall_polls(Duration::from_secs(600), 10_000);
        let runtime = runtime(&watchdog);
        let ended = runtime.block_on(watchdog.watch(async {
            // Two tasks that keep waking each other: the clock can never move.
            for _ in 0..2 {
                tokio::spawn(async {
                    loop {
                        tokio::task::yield_now().await;
                    }
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            "the driver slept through"
        }));
        assert_eq!(ended, None);
        let reason = watchdog.tripped().expect("tripped");
        assert!(reason.contains("simulated time stopped"), "{reason}");
        drop(runtime);
    }

    #[test]
    fn a_spent_wall_clock_budget_trips_the_watchdog() {
        let watchdog = Watchdog::new(Duration::ZERO);
        let runtime = runtime(&watchdog);
        let ended = runtime.block_on(watchdog.watch(async {
            // Busy but moving: time passes, so only the budget can stop it.
            tokio::spawn(async {
                loop {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            });
            tokio::time::sleep(Duration::from_secs(3_600)).await;
        }));
        assert_eq!(ended, None);
        let reason = watchdog.tripped().expect("tripped");
        assert!(reason.contains("budget"), "{reason}");
    }

    #[test]
    fn a_run_that_lets_time_pass_is_left_alone() {
        let watchdog = Watchdog::with_stall_polls(Duration::from_secs(600), 1_000);
        let runtime = runtime(&watchdog);
        let ended = runtime.block_on(watchdog.watch(async {
            let ticker = tokio::spawn(async {
                for _ in 0..5_000 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            });
            ticker.await.expect("ticker");
            7
        }));
        assert_eq!(ended, Some(7));
        assert!(watchdog.tripped().is_none());
        assert!(watchdog.polls_at_one_instant_max() < 1_000);
    }
}
