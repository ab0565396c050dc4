//! The nemesis: at every step of the safety phase, draws (from one seeded stream per fault
//! family, so switching one family off leaves the others' schedules as they were) which
//! faults start and stop — crashes and restarts, and partitions of the kinds the run has on:
//! a minority cut off, the leader isolated, one-way cuts, or two halves joined by one bridge
//! member — process pauses of single members, and membership changes (a voter removed, a
//! missing member added back as a learner and promoted), one at a time, running beside the
//! workload. Message and disk faults are set for the whole phase by the driver.

use std::collections::{BTreeMap, BTreeSet};

use std::time::Duration;

use grove_raft::replicated::{GroveNode, RaftNode, ReplicaError};
use openraft::ServerState;
use tokio::task::JoinHandle;

use crate::cluster::{Cluster, node_id, rpc_name};
use crate::config::{Fault, STEP, SimConfig};
use crate::history::Shared;
use crate::rng::{SplitMix64, fnv1a, stream};

pub struct Nemesis {
    /// Partitions: when, which kind, whom.
    rng: SplitMix64,
    pause_rng: SplitMix64,
    membership_rng: SplitMix64,
    crash_rng: SplitMix64,
    /// The step at which the current partition heals.
    partition_until: Option<u64>,
    /// Paused members and the step at which each resumes.
    paused_until: BTreeMap<u64, u64>,
    /// The membership change under way, if any.
    membership_change: Option<JoinHandle<()>>,
}

/// How long one membership change may take before the nemesis gives up waiting on it.
const MEMBERSHIP_CHANGE_TIMEOUT: Duration = Duration::from_secs(3);

/// A membership change the nemesis asks of the group.
#[derive(Clone, Copy, Debug)]
enum Change {
    Remove(u64),
    /// Add as a learner (waiting until it caught up), then promote to voter.
    Add(u64),
}

impl Nemesis {
    pub fn new(config: &SimConfig) -> Nemesis {
        Nemesis {
            rng: stream(config.seed, "faults-partition"),
            pause_rng: stream(config.seed, "faults-pause"),
            membership_rng: stream(config.seed, "faults-membership"),
            crash_rng: stream(config.seed, "faults-crash"),
            partition_until: None,
            paused_until: BTreeMap::new(),
            membership_change: None,
        }
    }

    pub async fn step(
        &mut self,
        step: u64,
        config: &SimConfig,
        cluster: &mut Cluster,
        recorder: &Shared,
    ) {
        let event = |kind: &'static str, detail: String| {
            let digest = fnv1a(detail.as_bytes());
            recorder
                .lock()
                .expect("recorder")
                .event(None, kind, digest, detail);
        };
        if self.partition_until.is_some_and(|until| step >= until) {
            cluster.net.heal_all();
            self.partition_until = None;
            event("heal", String::new());
        }
        let kinds = config.partitions();
        if self.partition_until.is_none()
            && !kinds.is_empty()
            && self.rng.chance(config.partition_per_step)
        {
            let kind = kinds[self.rng.between(0, kinds.len() as u64 - 1) as usize];
            let detail = self.partition(kind, cluster);
            let steps = self
                .rng
                .between(1, config.partition_ms_max / STEP.as_millis() as u64);
            self.partition_until = Some(step + steps);
            event(
                "partition",
                format!("{}: {detail} for {steps} steps", kind.name()),
            );
        }
        if config.has(Fault::Pause) {
            self.pauses(step, config, cluster, &event);
        }
        if config.has(Fault::Membership) {
            self.membership(config, cluster, recorder);
        }
        if config.has(Fault::Crash) {
            for id in cluster.ids() {
                let running = cluster.is_running(id);
                if running && self.crash_rng.chance(config.crash_per_step) {
                    cluster.crash(id, "crash").await;
                } else if !running && self.crash_rng.chance(config.restart_per_step) {
                    let _ = cluster.start(id).await;
                }
            }
        }
    }

    /// Resumes the pauses that are over, then may pause running members.
    fn pauses(
        &mut self,
        step: u64,
        config: &SimConfig,
        cluster: &mut Cluster,
        event: &impl Fn(&'static str, String),
    ) {
        let due: Vec<u64> = self
            .paused_until
            .iter()
            // A member crashed meanwhile was resumed by the crash and restarts unpaused.
            .filter(|&(&id, &until)| step >= until || !cluster.is_paused(id))
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            self.paused_until.remove(&id);
            cluster.resume(id);
            event("resume", format!("{id}"));
        }
        for id in cluster.ids() {
            if self.paused_until.contains_key(&id)
                || !cluster.is_running(id)
                || !self.pause_rng.chance(config.pause_per_step)
            {
                continue;
            }
            let steps = self
                .pause_rng
                .between(1, (config.pause_ms_max / STEP.as_millis() as u64).max(1));
            cluster.pause(id);
            self.paused_until.insert(id, step + steps);
            event("pause", format!("{id} for {steps} steps"));
        }
    }

    /// May start a membership change through a running member (it carries it to the leader):
    /// a member that is not a voter is added back, else (with at least 3 voters) a voter,
    /// possibly the leader, is removed.
    fn membership(&mut self, config: &SimConfig, cluster: &Cluster, recorder: &Shared) {
        if self
            .membership_change
            .as_ref()
            .is_some_and(|change| !change.is_finished())
            || !self.membership_rng.chance(config.membership_per_step)
        {
            return;
        }
        let Some((_, voters)) = leader_view(cluster) else {
            return;
        };
        let missing: Vec<u64> = cluster
            .ids()
            .into_iter()
            .filter(|id| !voters.contains(id))
            .collect();
        let change = if !missing.is_empty() {
            Change::Add(missing[self.membership_rng.between(0, missing.len() as u64 - 1) as usize])
        } else if voters.len() >= 3 {
            let voters: Vec<u64> = voters.into_iter().collect();
            Change::Remove(voters[self.membership_rng.between(0, voters.len() as u64 - 1) as usize])
        } else {
            return;
        };
        let running = cluster.running_nodes();
        let (via, node) =
            running[self.membership_rng.between(0, running.len() as u64 - 1) as usize].clone();
        let recorder = recorder.clone();
        let record = move |kind: &'static str, detail: String| {
            let digest = fnv1a(detail.as_bytes());
            recorder
                .lock()
                .expect("recorder")
                .event(None, kind, digest, detail);
        };
        record("membership", format!("{change:?} via {via}"));
        self.membership_change = Some(tokio::spawn(async move {
            let outcome =
                tokio::time::timeout(MEMBERSHIP_CHANGE_TIMEOUT, apply_change(&node, change)).await;
            let outcome = match outcome {
                Ok(Ok(())) => "done".to_string(),
                Ok(Err(e)) => format!("failed: {e}"),
                Err(_) => "timed out".to_string(),
            };
            record("membership-end", format!("{change:?} via {via}: {outcome}"));
        }));
    }

    /// Ends every pause and stops waiting on a membership change (the liveness phase).
    pub fn calm(&mut self, cluster: &Cluster) {
        if let Some(change) = self.membership_change.take() {
            change.abort();
        }
        self.resume_all(cluster);
    }

    /// Ends every pause.
    fn resume_all(&mut self, cluster: &Cluster) {
        for (id, _) in std::mem::take(&mut self.paused_until) {
            cluster.resume(id);
        }
    }

    /// Cuts links for a partition of `kind`; says which.
    fn partition(&mut self, kind: Fault, cluster: &Cluster) -> String {
        let ids = cluster.ids();
        let n = ids.len() as u64;
        let net = &cluster.net;
        match kind {
            Fault::Minority => {
                let size = self.rng.between(1, (n - 1) / 2);
                let minority = self.choose(&ids, size);
                for &a in &minority {
                    for &b in ids.iter().filter(|b| !minority.contains(b)) {
                        net.cut_both(&node_id(a), &node_id(b));
                    }
                }
                format!("{minority:?} cut off")
            }
            Fault::IsolateLeader => {
                // The member that leads with the highest term, if any.
                let leader = cluster
                    .running_nodes()
                    .into_iter()
                    .map(|(id, node)| (id, node.metrics()))
                    .filter(|(_, m)| m.state == ServerState::Leader)
                    .max_by_key(|(id, m)| (m.current_term, *id))
                    .map(|(id, _)| id);
                match leader {
                    Some(id) => {
                        net.isolate(&node_id(id));
                        format!("leader {id} isolated")
                    }
                    None => "no leader to isolate".into(),
                }
            }
            Fault::OneWay => {
                let cuts = self.rng.between(1, n);
                let mut done = Vec::new();
                for _ in 0..cuts {
                    let from = ids[self.rng.between(0, n - 1) as usize];
                    let to = ids[self.rng.between(0, n - 1) as usize];
                    if from != to {
                        net.cut(&node_id(from), &node_id(to));
                        done.push((from, to));
                    }
                }
                format!("one-way cuts {done:?}")
            }
            Fault::Bridge => {
                let bridge = ids[self.rng.between(0, n - 1) as usize];
                let rest: Vec<u64> = ids.iter().copied().filter(|&id| id != bridge).collect();
                let half = self.choose(&rest, (rest.len() as u64) / 2);
                for &a in &half {
                    for &b in rest.iter().filter(|b| !half.contains(b)) {
                        net.cut_both(&node_id(a), &node_id(b));
                    }
                }
                format!("{half:?} and the rest reach each other only through {bridge}")
            }
            other => format!("{} is not a partition", other.name()),
        }
    }

    /// `count` distinct ids of `ids`, drawn.
    fn choose(&mut self, ids: &[u64], count: u64) -> BTreeSet<u64> {
        let mut pool = ids.to_vec();
        let mut chosen = BTreeSet::new();
        for _ in 0..count.min(pool.len() as u64) {
            let at = self.rng.between(0, pool.len() as u64 - 1) as usize;
            chosen.insert(pool.swap_remove(at));
        }
        chosen
    }
}

/// The leader with the highest term among running members, and its voters.
fn leader_view(cluster: &Cluster) -> Option<(u64, BTreeSet<u64>)> {
    cluster
        .running_nodes()
        .into_iter()
        .map(|(id, node)| (id, node.metrics()))
        .filter(|(_, m)| m.state == ServerState::Leader)
        .max_by_key(|(id, m)| (m.current_term, *id))
        .map(|(id, m)| (id, m.membership_config.membership().voter_ids().collect()))
}

async fn apply_change(node: &RaftNode, change: Change) -> Result<(), ReplicaError> {
    match change {
        Change::Remove(id) => node.remove_voter(id).await,
        Change::Add(id) => {
            node.add_learner(id, GroveNode::new(rpc_name(id), ""))
                .await?;
            node.promote_voter(id).await
        }
    }
}

/// The liveness phase's repair: every member that is not a voter is added back through the
/// leader (bounded by the change timeout). Whether it worked shows in convergence.
pub async fn restore_membership(cluster: &Cluster) {
    let Some((leader, voters)) = leader_view(cluster) else {
        return;
    };
    let Some(node) = cluster.node(leader) else {
        return;
    };
    for id in cluster.ids() {
        if !voters.contains(&id) {
            let _ = tokio::time::timeout(
                MEMBERSHIP_CHANGE_TIMEOUT,
                apply_change(&node, Change::Add(id)),
            )
            .await;
        }
    }
}
