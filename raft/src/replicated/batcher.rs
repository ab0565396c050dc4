//! Group commit: writes that arrive while earlier ones are on their way travel together.
//!
//! Two places gather writes, with one mechanism ([`Combiner`]):
//! - the leader ([`Combiner::leader`]): openraft 0.9 appends (and so flushes) one log entry
//!   per `client_write`, one after another, so a leader that put each write in its own entry
//!   would commit at most one write per disk flush. The writes that reach the leader while
//!   earlier entries are being written go into the next entry ([`WriteBatch`]): one append,
//!   one flush and one replication round for all of them;
//! - a member that forwards writes to the leader ([`Combiner::forwarder`]): the writes its
//!   clients make while earlier forwards are in flight go to the leader in one call
//!   (`raft.client_writes`), not one call each.
//!
//! How: flat combining, no task of its own. A writer queues its requests, then waits for
//! either their answers or a turn (one of the combiner's batches in flight); a writer that
//! gets a turn takes what is queued for the same destination (up to the combiner's request
//! and byte bounds), sends it as one batch and hands each request its answer. Nobody waits
//! for a batch to fill: a lone writer's batch holds its own requests only.
//!
//! Durability is unchanged: an entry, and so every request in it, is acknowledged only after
//! a quorum flushed it. If the writer carrying a batch is cancelled (its attempt timed out),
//! the other requests in it are answered [`LeaderReply::Failed`] and retried by their
//! writers under the same request ids, which the state machine deduplicates. Requests whose
//! writer gave up before they were taken are dropped unsent.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::Raft;
use tokio::sync::{Semaphore, mpsc};

use super::network::LeaderReply;
use super::node::write_failure;
use super::types::{ClientRequest, TypeConfig, Verdict, WriteBatch};

/// Entries proposed and not yet answered at once on the leader: one being appended while the
/// one before it replicates.
pub const BATCHES_IN_FLIGHT: usize = 2;
/// Most requests in one entry.
pub const BATCH_REQUESTS_MAX: usize = 256;
/// An entry stops growing before its requests' encoded sizes pass this (a larger request
/// goes alone). With `max_payload_entries` (see `default_raft_config`) it bounds one append
/// call: openraft 0.9 gives an append one heartbeat interval, and a call that never fits in
/// it is re-sent forever (a follower then never catches up).
pub const BATCH_BYTES_MAX: usize = 32 << 10;
/// Forwarded batches in flight from one member: the next one gathers while the leader
/// proposes the one before. (Raft bench, 64 writers on a follower, alternated runs: 2 in
/// flight ~7,900 publishes/s at ~21 per entry, 4 in flight ~6,900/s at ~15 per entry: more
/// forwards in flight split the same writers into more, smaller entries.)
pub const FORWARDS_IN_FLIGHT: usize = 2;
/// A forwarded batch stops growing before its requests pass this (well under the transport's
/// frame limit; the leader splits it into entries by [`BATCH_BYTES_MAX`]).
pub const FORWARD_BYTES_MAX: usize = 1 << 20;

/// One answer per request of a batch, in order.
pub type Reply = LeaderReply<Verdict>;

/// A request and the size of its encoding (what the batch bounds count).
pub type SizedRequest = (ClientRequest, usize);

struct Queued {
    request: ClientRequest,
    bytes: usize,
    /// Where the batch goes (the leader's id when forwarding; 0 on the leader).
    destination: u64,
    /// The [`Combiner::submit`] call that queued it.
    owner: u64,
    position: usize,
    reply: mpsc::UnboundedSender<(usize, Reply)>,
}

/// A queue of writes and the turns to send them.
pub struct Combiner {
    queue: Mutex<VecDeque<Queued>>,
    turns: Semaphore,
    requests_max: usize,
    bytes_max: usize,
    next_owner: AtomicU64,
}

impl Combiner {
    /// The leader's: batches become log entries.
    pub fn leader() -> Self {
        Combiner::new(BATCHES_IN_FLIGHT, BATCH_REQUESTS_MAX, BATCH_BYTES_MAX)
    }

    /// A forwarding member's: batches become `raft.client_writes` calls to the leader.
    pub fn forwarder() -> Self {
        Combiner::new(FORWARDS_IN_FLIGHT, BATCH_REQUESTS_MAX, FORWARD_BYTES_MAX)
    }

    fn new(in_flight: usize, requests_max: usize, bytes_max: usize) -> Self {
        Combiner {
            queue: Mutex::new(VecDeque::new()),
            turns: Semaphore::new(in_flight),
            requests_max,
            bytes_max,
            next_owner: AtomicU64::new(0),
        }
    }

    /// Sends `requests` (each with its encoded size) to `destination` in batches with whatever
    /// else is queued for it, `send` carrying each batch (sizes kept); returns one answer per
    /// request, in order. `send` must answer each request of the batch it is given, in order
    /// (a missing answer reads as [`LeaderReply::Failed`]).
    pub async fn submit<F, Fut>(
        &self,
        destination: u64,
        requests: Vec<SizedRequest>,
        send: F,
    ) -> Vec<Reply>
    where
        F: Fn(Vec<SizedRequest>) -> Fut,
        Fut: Future<Output = Vec<Reply>>,
    {
        let owner = self.next_owner.fetch_add(1, Ordering::Relaxed);
        let (reply, mut answers) = mpsc::unbounded_channel();
        let mut replies: Vec<Option<Reply>> = vec![None; requests.len()];
        {
            let mut queue = self.queue.lock().expect("write queue lock");
            for (position, (request, bytes)) in requests.into_iter().enumerate() {
                queue.push_back(Queued {
                    request,
                    bytes,
                    destination,
                    owner,
                    position,
                    reply: reply.clone(),
                });
            }
        }
        drop(reply);
        let mut left = replies.len();
        while left > 0 {
            let carry = self.has_queued(owner);
            tokio::select! {
                biased;
                answer = answers.recv() => match answer {
                    Some((position, answer)) => {
                        if replies[position].replace(answer).is_none() {
                            left -= 1;
                        }
                    }
                    // Every request still unanswered was in a batch whose carrier gave up.
                    None => break,
                },
                turn = self.turns.acquire(), if carry => {
                    let _turn = turn.expect("the combiner never closes its turns");
                    self.send_queued(destination, &send).await;
                }
            }
        }
        replies
            .into_iter()
            .map(|reply| reply.unwrap_or_else(abandoned))
            .collect()
    }

    /// Takes a batch for `destination` and sends it with `send`.
    async fn send_queued<F, Fut>(&self, destination: u64, send: &F)
    where
        F: Fn(Vec<SizedRequest>) -> Fut,
        Fut: Future<Output = Vec<Reply>>,
    {
        let (requests, replies): (Vec<_>, Vec<_>) = self
            .take_batch(destination)
            .into_iter()
            .map(|queued| {
                let reply = (queued.position, queued.reply);
                ((queued.request, queued.bytes), reply)
            })
            .unzip();
        if requests.is_empty() {
            return;
        }
        let mut answers = send(requests).await.into_iter();
        for (position, reply) in replies {
            let answer = answers.next().unwrap_or_else(|| {
                LeaderReply::Failed("the batch came back without an answer to this write".into())
            });
            let _ = reply.send((position, answer));
        }
    }

    fn has_queued(&self, owner: u64) -> bool {
        let queue = self.queue.lock().expect("write queue lock");
        queue.iter().any(|queued| queued.owner == owner)
    }

    /// The oldest queued requests for `destination` whose writers still wait, up to the batch
    /// bounds; requests for other destinations stay queued in their order.
    fn take_batch(&self, destination: u64) -> Vec<Queued> {
        let mut queue = self.queue.lock().expect("write queue lock");
        let mut batch: Vec<Queued> = Vec::new();
        let mut bytes: usize = 0;
        let mut kept = VecDeque::new();
        while let Some(next) = queue.pop_front() {
            if next.reply.is_closed() {
                continue;
            }
            if next.destination != destination {
                kept.push_back(next);
                continue;
            }
            if !batch.is_empty()
                && (batch.len() == self.requests_max
                    || bytes.saturating_add(next.bytes) > self.bytes_max)
            {
                kept.push_back(next);
                kept.extend(queue.drain(..));
                break;
            }
            bytes = bytes.saturating_add(next.bytes);
            batch.push(next);
        }
        *queue = kept;
        batch
    }
}

/// Proposes `requests` through `raft` as one entry, each stamped with this leader's clock
/// (`proposed_ms`): one verdict per request, or the same failure for all if the entry did
/// not commit here.
pub async fn propose(
    raft: &Raft<TypeConfig>,
    requests: Vec<SizedRequest>,
    proposed_ms: i64,
) -> Vec<Reply> {
    let count = requests.len();
    let requests = requests
        .into_iter()
        .map(|(request, _)| ClientRequest {
            proposed_ms,
            ..request
        })
        .collect();
    match raft.client_write(WriteBatch { requests }).await {
        Ok(response) => {
            debug_assert_eq!(response.data.len(), count, "one verdict per request");
            response.data.into_iter().map(LeaderReply::Done).collect()
        }
        Err(e) => vec![write_failure(e); count],
    }
}

fn abandoned() -> Reply {
    LeaderReply::Failed("the member carrying this write's batch stopped sending it".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Command;
    use crate::replicated::types::RequestId;
    use grove_segment::time::Interval;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    fn request(serial: u64) -> (ClientRequest, usize) {
        let id = RequestId { client: 1, serial };
        let command = Command::ReleaseTaskLock {
            task_id: format!("task-{serial}"),
            data_source: "wiki".into(),
            interval: Interval::new(0, 1),
        };
        (ClientRequest::new(id, command), 100)
    }

    fn echo((request, _): &SizedRequest) -> Reply {
        LeaderReply::Failed(format!("answer {}", request.id.serial))
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_writers_share_batches_and_each_gets_its_own_answer() {
        let combiner = Arc::new(Combiner::new(1, 8, 1 << 20));
        let sends = Arc::new(AtomicUsize::new(0));
        let writers = (0..20u64).map(|serial| {
            let (combiner, sends) = (Arc::clone(&combiner), Arc::clone(&sends));
            async move {
                let send = |batch: Vec<SizedRequest>| {
                    let sends = Arc::clone(&sends);
                    async move {
                        sends.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        batch.iter().map(echo).collect()
                    }
                };
                let answers = combiner.submit(7, vec![request(serial)], send).await;
                (serial, answers)
            }
        });
        for (serial, answers) in futures::future::join_all(writers).await {
            assert_eq!(
                answers,
                vec![LeaderReply::Failed(format!("answer {serial}"))]
            );
        }
        let sends = sends.load(Ordering::Relaxed);
        // One turn, at most 8 per batch: the first writer goes alone, the rest in 8s.
        assert!((3..=4).contains(&sends), "20 writers took {sends} sends");
    }

    #[tokio::test(start_paused = true)]
    async fn a_submit_of_many_requests_answers_each_in_order_across_batches() {
        let combiner = Combiner::new(2, 3, 1 << 20);
        let requests = (0..10).map(request).collect();
        let answers = combiner
            .submit(0, requests, |batch: Vec<SizedRequest>| async move {
                assert!(batch.len() <= 3, "a batch of {}", batch.len());
                batch.iter().map(echo).collect()
            })
            .await;
        let expected: Vec<Reply> = (0..10)
            .map(|serial| LeaderReply::Failed(format!("answer {serial}")))
            .collect();
        assert_eq!(answers, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn batches_keep_to_their_destination_and_byte_bound() {
        let combiner = Combiner::new(1, 100, 250);
        // Receivers stay open: a dropped one reads as a writer gone.
        let mut receivers = Vec::new();
        {
            let mut queue = combiner.queue.lock().unwrap();
            for serial in 0..6u64 {
                let (request, bytes) = request(serial);
                let (reply, receiver) = mpsc::unbounded_channel();
                receivers.push(receiver);
                queue.push_back(Queued {
                    request,
                    bytes,
                    destination: serial % 2,
                    owner: serial,
                    position: 0,
                    reply,
                });
            }
        }
        let serials = |batch: Vec<Queued>| -> Vec<u64> {
            batch.iter().map(|q| q.request.id.serial).collect()
        };
        assert_eq!(serials(combiner.take_batch(1)), [1, 3]);
        assert_eq!(serials(combiner.take_batch(0)), [0, 2]);
        assert_eq!(serials(combiner.take_batch(0)), [4]);
        assert_eq!(serials(combiner.take_batch(1)), [5]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_carrier_leaves_its_batch_answered_as_failed() {
        let combiner = Arc::new(Combiner::new(1, 8, 1 << 20));
        // Hold the only turn so both writers queue before either carries.
        let held = combiner.turns.acquire().await.unwrap();
        let spawn_writer = |serial: u64| {
            let combiner = Arc::clone(&combiner);
            tokio::spawn(async move {
                let stall = |_batch: Vec<SizedRequest>| async move {
                    std::future::pending::<()>().await;
                    Vec::new()
                };
                combiner.submit(0, vec![request(serial)], stall).await
            })
        };
        let carrier = spawn_writer(0);
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        let other = spawn_writer(1);
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        drop(held);
        // The first waiter takes the turn and both requests, then stalls.
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        assert!(combiner.queue.lock().unwrap().is_empty());
        carrier.abort();
        assert_eq!(other.await.unwrap(), vec![abandoned()]);
    }
}
