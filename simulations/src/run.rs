//! One run: the seeded runtime, the safety phase (workload and faults), the liveness phase
//! (faults healed, the group must converge within the bound), then the invariant checks.
//!
//! Substrate: one tokio current-thread runtime with paused time for the whole cluster (see
//! ARCHITECTURE.md, "The simulator"): members, clients and the network are tasks on it, the
//! clock jumps to the next timer whenever every task waits, and with `tokio_unstable` its
//! scheduler's randomness (`select!` branch order) is seeded from the run's seed.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use grove_raft::metadata::{Command, TaskRecord, TaskState};
use grove_raft::replicated::{GroveNode, MemoryTables};
use openraft::ServerState;

use crate::cluster::{Cluster, rpc_name};
use crate::config::{Fault, STEP, SimConfig};
use crate::disk::DiskFaults;
use crate::history::{Outcome, Recorder, Request, Shared};
use crate::invariants::oracle::Oracle;
use crate::invariants::single_leader::{self, LeaderStats};
use crate::invariants::{
    Violation, acknowledged_writes, linearizable, log_matching, no_panic, offsets_cas,
};
use crate::nemesis::Nemesis;
use crate::rng::{fnv1a, stream};
use crate::watchdog::{Backstop, Watchdog};
use crate::workload;

/// What a run found.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub config: SimConfig,
    pub trace_hash: u64,
    pub events: u64,
    pub violations: Vec<Violation>,
    /// The last events before the end (or the failure), formatted.
    pub tail: Vec<String>,
    /// Virtual time the run covered.
    pub sim_time: Duration,
    /// Virtual time the liveness phase took to converge.
    pub converged_after: Option<Duration>,
    pub summary: String,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Runs `config` to the end; `verbose` prints every trace event as it happens.
pub fn run(config: &SimConfig, verbose: bool) -> RunReport {
    let _backstop = Backstop::start(config.wall_budget, config.seed, config.reproduce_command());
    no_panic::watch();
    let watchdog = Watchdog::new(config.wall_budget);
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_time().start_paused(true);
    builder.rng_seed(tokio::runtime::RngSeed::from_bytes(
        &stream(config.seed, "runtime").next_u64().to_le_bytes(),
    ));
    watchdog.install(&mut builder);
    let runtime = builder.build().expect("a current-thread runtime");
    let (recorder, _log) = {
        let _entered = runtime.enter();
        let log = crate::log::from_env().map(|log| tracing::dispatcher::set_default(&log));
        (Recorder::new(verbose), log)
    };
    #[cfg(feature = "mutations")]
    grove_raft::mutation::set(config.mutation);
    if config.has(Fault::Buggify) {
        grove_rpc::buggify::enable(
            stream(config.seed, "buggify").next_u64(),
            config.buggify_probability,
        );
    }
    let driven = std::panic::catch_unwind(AssertUnwindSafe(|| {
        runtime.block_on(watchdog.watch(simulate(config, recorder.clone())))
    }));
    grove_rpc::buggify::disable();
    #[cfg(feature = "mutations")]
    grove_raft::mutation::set(None);
    // Violations found now are stamped with the run's simulated time: the runtime's paused
    // clock, not the wall clock it falls back to once dropped.
    let _entered = runtime.enter();
    let mut recorder = recorder
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (converged_after, summary) = match driven {
        Ok(Some(done)) => done,
        Ok(None) => {
            let reason = watchdog.tripped().unwrap_or_default();
            recorder.violate(Violation::new("watchdog", reason));
            (None, "stopped by the watchdog".to_string())
        }
        Err(_) => (None, "the driver panicked".to_string()),
    };
    if let Some(panic) = no_panic::finish() {
        recorder.violate(panic);
    }
    let sim_time = recorder.now_or_last();
    let report = RunReport {
        config: config.clone(),
        trace_hash: recorder.trace.hash(),
        events: recorder.trace.events(),
        violations: recorder.violations.clone(),
        tail: recorder.trace.tail().map(|e| e.to_string()).collect(),
        sim_time,
        converged_after,
        summary: format!(
            "{summary}; busiest instant {} task polls",
            watchdog.polls_at_one_instant_max()
        ),
    };
    drop(recorder);
    drop(_entered);
    drop(runtime);
    report
}

/// The digest of a member's tables (their rows as JSON, in key order).
fn tables_digest(tables: &MemoryTables) -> u64 {
    let rows = tables.clone().into_rows();
    fnv1a(&serde_json::to_vec(&rows).unwrap_or_default())
}

async fn simulate(config: &SimConfig, recorder: Shared) -> (Option<Duration>, String) {
    let event = |kind: &'static str, detail: String| {
        let digest = fnv1a(detail.as_bytes());
        recorder
            .lock()
            .expect("recorder")
            .event(None, kind, digest, detail);
    };
    event("config", config.to_string());
    let mut cluster = Cluster::new(config, recorder.clone());
    for id in cluster.ids() {
        if let Err(e) = cluster.start(id).await {
            event("start-failed", e);
        }
    }
    let members: BTreeMap<u64, GroveNode> = cluster
        .ids()
        .into_iter()
        .map(|id| (id, GroveNode::new(rpc_name(id), "")))
        .collect();
    if let Some(first) = cluster.node(1)
        && let Err(e) = first.bootstrap(members).await
    {
        event("bootstrap-failed", e.to_string());
    }
    // The group forms before the faults start: every member has the membership entry.
    let formed = tokio::time::timeout(Duration::from_secs(5), async {
        while cluster
            .running_nodes()
            .iter()
            .any(|(_, node)| node.applied_index().is_none())
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    if formed.is_err() {
        event("not-formed", status(&cluster));
    }

    // Safety phase.
    cluster.net.set_faults(config.network.clone());
    cluster.set_disk_faults(config.disk);
    let clients = workload::spawn(config, &cluster.running, &recorder);
    let mut nemesis = Nemesis::new(config);
    let mut leaders = LeaderStats::default();
    for step in 0..config.steps {
        if config.stall_at_step == Some(step) {
            event("stall", "a task that never lets time pass".into());
            tokio::spawn(async {
                loop {
                    tokio::task::yield_now().await;
                }
            });
        }
        nemesis.step(step, config, &mut cluster, &recorder).await;
        tokio::time::sleep(STEP).await;
        observe(&mut cluster, &recorder, &mut leaders).await;
    }

    // Liveness phase: everything healed; the group must converge within the bound.
    for client in &clients {
        client.abort();
    }
    let fires = grove_rpc::buggify::disable();
    event("buggify-fired", fires.to_string());
    cluster.net.set_faults(config.calm_network());
    cluster.net.heal_all();
    nemesis.calm(&cluster);
    cluster.set_disk_faults(DiskFaults::default());
    event("liveness", String::new());
    let healed_at = recorder.lock().expect("recorder").now();
    let mut probed = BTreeMap::new();
    let converged_after = loop {
        for id in cluster.ids() {
            if !cluster.is_running(id) {
                let _ = cluster.start(id).await;
            }
        }
        observe(&mut cluster, &recorder, &mut leaders).await;
        crate::nemesis::restore_membership(&cluster).await;
        let now = recorder.lock().expect("recorder").now();
        if now - healed_at >= config.liveness_bound {
            let status = status(&cluster);
            recorder.lock().expect("recorder").violate(Violation::new(
                "liveness",
                format!(
                    "not converged {} s after healing: {status}",
                    config.liveness_bound.as_secs()
                ),
            ));
            break None;
        }
        if converged(&cluster, &mut probed).await {
            let now = recorder.lock().expect("recorder").now();
            break Some(now - healed_at);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // The end-of-run checks.
    let finals: BTreeMap<u64, (u64, Option<u64>)> = if converged_after.is_some() {
        cluster
            .running_nodes()
            .into_iter()
            .map(|(id, node)| (id, (node.read_local(tables_digest), node.applied_index())))
            .collect()
    } else {
        BTreeMap::new()
    };
    let logs = cluster.logs();
    let mut recorder = recorder.lock().expect("recorder");
    let (oracle, mut violations) = Oracle::replay(&recorder.committed);
    violations.extend(log_matching::check(&logs));
    violations.extend(linearizable::check(&recorder.ops, &oracle));
    violations.extend(offsets_cas::check(&recorder.committed, &oracle));
    let model_digest = tables_digest(&oracle.state.tables);
    violations.extend(acknowledged_writes::check(
        &recorder.ops,
        &oracle,
        &finals,
        model_digest,
    ));
    for violation in violations {
        recorder.violate(violation);
    }
    let summary = format!(
        "{}; buggify fired {fires} times",
        summarize(&recorder, &cluster, &leaders, &oracle)
    );
    recorder.event(None, "end", model_digest, String::new());
    (converged_after, summary)
}

/// Samples every running member: its metrics go into the trace and the election checks; a
/// member whose Raft stopped by itself is crashed (and restarted later).
async fn observe(cluster: &mut Cluster, recorder: &Shared, leaders: &mut LeaderStats) {
    let mut stopped = Vec::new();
    {
        let mut recorder = recorder.lock().expect("recorder");
        for (id, node) in cluster.running_nodes() {
            let metrics = node.metrics();
            if let Err(fatal) = &metrics.running_state {
                stopped.push((id, fatal.to_string()));
                continue;
            }
            let digest = fnv1a(
                format!(
                    "{} {:?} {:?} {:?} {:?}",
                    metrics.current_term,
                    metrics.state,
                    metrics.current_leader,
                    metrics.last_log_index,
                    metrics.last_applied
                )
                .as_bytes(),
            );
            recorder.event(Some(id), "metrics", digest, String::new());
            single_leader::observe(&mut recorder, leaders, id, &metrics);
        }
    }
    for (id, why) in stopped {
        recorder
            .lock()
            .expect("recorder")
            .event(Some(id), "raft-stopped", 0, why);
        cluster.crash(id, "crash-fatal").await;
    }
}

/// Whether the group has converged: every member runs and follows one leader, a write
/// through every member has succeeded, and every member has applied the leader's whole log.
async fn converged(cluster: &Cluster, probed: &mut BTreeMap<u64, bool>) -> bool {
    let nodes = cluster.running_nodes();
    if nodes.len() != cluster.members.len() {
        return false;
    }
    let Some(leader) = nodes[0].1.current_leader() else {
        return false;
    };
    if nodes
        .iter()
        .any(|(_, n)| n.current_leader() != Some(leader))
    {
        return false;
    }
    let Some((_, leader_node)) = nodes.iter().find(|(id, _)| *id == leader) else {
        return false;
    };
    if leader_node.metrics().state != ServerState::Leader {
        return false;
    }
    for (id, node) in &nodes {
        if probed.contains_key(id) {
            continue;
        }
        let probe = Command::CreateTask {
            task: TaskRecord {
                id: format!("probe-{id}"),
                task_type: "probe".into(),
                data_source: "probe".into(),
                spec: serde_json::json!({}),
                state: TaskState::Running,
                error: None,
                created_ms: 0,
                started_ms: None,
                ended_ms: None,
                report: None,
            },
        };
        match tokio::time::timeout(Duration::from_secs(2), node.write(probe)).await {
            Ok(Ok(())) => {
                probed.insert(*id, true);
            }
            _ => return false,
        }
    }
    let last = leader_node.metrics().last_log_index;
    nodes.iter().all(|(_, node)| node.applied_index() == last)
}

fn status(cluster: &Cluster) -> String {
    cluster
        .ids()
        .into_iter()
        .map(|id| match cluster.node(id) {
            None => format!("n{id} down"),
            Some(node) => {
                let m = node.metrics();
                let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
                format!(
                    "n{id} {:?} vote {} leader {:?} log {:?} applied {:?} voters {voters:?} (config at {:?})",
                    m.state,
                    m.vote,
                    m.current_leader,
                    m.last_log_index,
                    m.last_applied.map(|l| l.index),
                    m.membership_config.log_id().map(|l| l.index)
                )
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn summarize(
    recorder: &Recorder,
    cluster: &Cluster,
    leaders: &LeaderStats,
    oracle: &Oracle,
) -> String {
    let (mut writes, mut acked, mut reads) = (0, 0, 0);
    for op in &recorder.ops {
        match (&op.request, &op.outcome) {
            (Request::Write { .. }, Outcome::Acked(_)) => {
                writes += 1;
                acked += 1;
            }
            (Request::Write { .. }, _) => writes += 1,
            (Request::ReadOffsets { .. }, Outcome::Read(_)) => reads += 1,
            _ => {}
        }
    }
    let crashes: u64 = cluster.members.iter().map(|m| m.disk.stats().crashes).sum();
    let disk_errors: u64 = cluster.members.iter().map(|m| m.disk.stats().errors).sum();
    let torn: u64 = cluster
        .members
        .iter()
        .map(|m| m.disk.stats().torn_batches)
        .sum();
    let net = cluster.net.stats();
    format!(
        "{writes} writes ({acked} answered), {reads} reads, {} entries applied; {crashes} crashes, \
         {} pauses, {disk_errors} disk errors, {torn} torn writes; messages {} delivered, {} dropped, {} \
         duplicated, {} reordered; {} terms, {} with several leaders",
        oracle.last_index.map_or(0, |i| i + 1),
        cluster.pauses,
        net.delivered,
        net.dropped,
        net.duplicated,
        net.reordered,
        leaders.leaders_by_term.len(),
        leaders.shared_terms()
    )
}
