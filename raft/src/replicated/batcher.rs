//! [`WriteBatcher`]: group commit on the leader. openraft 0.9 appends (and so flushes) one
//! log entry per `client_write`, one after another, so a leader that put each write in its
//! own entry would commit at most one write per disk flush. The batcher puts the writes that
//! reach the leader while earlier entries are being written into the next entry
//! ([`WriteBatch`]): one append, one flush and one replication round for all of them.
//!
//! How: flat combining, no task of its own. A writer queues its request, then waits for
//! either its verdict or a turn (one of [`BATCHES_IN_FLIGHT`]); a writer that gets a turn
//! takes what is queued (at most [`BATCH_REQUESTS_MAX`] requests and about
//! [`BATCH_BYTES_MAX`] bytes), proposes it as one entry and hands each request its verdict.
//! Nobody waits for a batch to fill: a lone writer's entry holds its own request only.
//!
//! Durability is unchanged: an entry, and so every request in it, is acknowledged only after
//! a quorum flushed it. If the writer carrying a batch is cancelled (its attempt timed out),
//! the other requests in it are answered [`LeaderReply::Failed`] and retried by their
//! writers under the same request ids, which the state machine deduplicates. Requests whose
//! writer gave up before they were taken are dropped unproposed.

use std::collections::VecDeque;
use std::sync::Mutex;

use openraft::Raft;
use tokio::sync::{Semaphore, oneshot};

use super::network::LeaderReply;
use super::node::write_failure;
use super::types::{ClientRequest, TypeConfig, Verdict, WriteBatch};

/// Batches proposed and not yet answered at once: one being appended on the leader while the
/// one before it replicates.
pub const BATCHES_IN_FLIGHT: usize = 2;
/// Most requests in one entry.
pub const BATCH_REQUESTS_MAX: usize = 256;
/// A batch stops growing before its requests' encoded sizes pass this (a larger request goes
/// alone). With `max_payload_entries` (see `default_raft_config`) it bounds one append call:
/// openraft 0.9 gives an append one heartbeat interval, and a call that never fits in it is
/// re-sent forever (a follower then never catches up).
pub const BATCH_BYTES_MAX: usize = 32 << 10;

type Reply = LeaderReply<Verdict>;

struct Queued {
    request: ClientRequest,
    bytes: usize,
    reply: oneshot::Sender<Reply>,
}

/// The leader-side write queue of one member.
pub struct WriteBatcher {
    queue: Mutex<VecDeque<Queued>>,
    turns: Semaphore,
}

impl Default for WriteBatcher {
    fn default() -> Self {
        WriteBatcher {
            queue: Mutex::new(VecDeque::new()),
            turns: Semaphore::new(BATCHES_IN_FLIGHT),
        }
    }
}

impl WriteBatcher {
    /// Proposes `request` (its encoding `bytes` long) through `raft` in a batch and returns
    /// its verdict, or why the batch it was in did not commit here.
    pub async fn write(
        &self,
        raft: &Raft<TypeConfig>,
        request: ClientRequest,
        bytes: usize,
    ) -> Reply {
        let (reply, mut answer) = oneshot::channel();
        self.queue
            .lock()
            .expect("write queue lock")
            .push_back(Queued {
                request,
                bytes,
                reply,
            });
        tokio::select! {
            biased;
            answered = &mut answer => return answered.unwrap_or_else(|_| abandoned()),
            turn = self.turns.acquire() => {
                let _turn = turn.expect("the batcher never closes its turns");
                self.propose_queued(raft).await;
            }
        }
        answer.await.unwrap_or_else(|_| abandoned())
    }

    async fn propose_queued(&self, raft: &Raft<TypeConfig>) {
        let (requests, replies): (Vec<_>, Vec<_>) = self
            .take_batch()
            .into_iter()
            .map(|queued| (queued.request, queued.reply))
            .unzip();
        if requests.is_empty() {
            return;
        }
        match raft.client_write(WriteBatch { requests }).await {
            Ok(response) => {
                let verdicts = response.data;
                debug_assert_eq!(verdicts.len(), replies.len(), "one verdict per request");
                for (reply, verdict) in replies.into_iter().zip(verdicts) {
                    let _ = reply.send(LeaderReply::Done(verdict));
                }
            }
            Err(e) => {
                let failure: Reply = write_failure(e);
                for reply in replies {
                    let _ = reply.send(failure.clone());
                }
            }
        }
    }

    /// The oldest queued requests whose writers still wait, up to the batch bounds.
    fn take_batch(&self) -> Vec<Queued> {
        let mut queue = self.queue.lock().expect("write queue lock");
        let mut batch: Vec<Queued> = Vec::new();
        let mut bytes = 0;
        while let Some(next) = queue.front() {
            if next.reply.is_closed() {
                queue.pop_front();
                continue;
            }
            if !batch.is_empty()
                && (batch.len() == BATCH_REQUESTS_MAX || bytes + next.bytes > BATCH_BYTES_MAX)
            {
                break;
            }
            bytes += next.bytes;
            batch.extend(queue.pop_front());
        }
        batch
    }
}

fn abandoned() -> Reply {
    LeaderReply::Failed("the leader stopped proposing the batch holding this write".into())
}
