//! [`Cluster`]: the members of one Raft group on a [`MemoryNetwork`], each on its own
//! [`SimDisk`], started, crashed and restarted by the simulator.
//!
//! A crash cuts the member off the network at once (its handlers stop mid-call), stops its
//! Raft, and crashes its disk (unsynced writes lost, older handles fenced). A member whose Raft
//! stopped by itself (an injected disk error is fatal to openraft) is crashed the same way.
//! Restarting opens a new incarnation on the same disk: it recovers from what survived.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grove_raft::replicated::disk::Tree;
use grove_raft::replicated::{ApplyHook, GroveNode, RaftNode, RaftNodeConfig, default_raft_config};
use grove_rpc::pause::PauseGate;
use grove_rpc::{MemoryNetwork, NodeId, Router, Transport};
use openraft::SnapshotPolicy;

use crate::config::SimConfig;
use crate::disk::{DiskFaults, SimDisk};
use crate::history::Shared;
use crate::invariants::log_matching::Log;
use crate::invariants::state_machine_safety;
use crate::rng::stream;

/// Running members by id, shared with the clients.
pub type Directory = Arc<Mutex<BTreeMap<u64, RaftNode>>>;

pub struct Member {
    pub id: u64,
    pub disk: SimDisk,
    pub clock_rate: f64,
    /// The gate of its current incarnation's tasks (see [`Cluster::pause`]).
    pub gate: PauseGate,
}

pub struct Cluster {
    pub net: MemoryNetwork,
    pub members: Vec<Member>,
    pub running: Directory,
    recorder: Shared,
    seed: u64,
    starts: u64,
    /// Pauses begun so far.
    pub pauses: u64,
}

pub fn rpc_name(id: u64) -> String {
    format!("n{id}")
}

pub fn node_id(id: u64) -> NodeId {
    NodeId::new(&rpc_name(id)).expect("valid node name")
}

impl Cluster {
    pub fn new(config: &SimConfig, recorder: Shared) -> Cluster {
        let net = MemoryNetwork::with_faults(
            stream(config.seed, "network").next_u64(),
            config.calm_network(),
        );
        let members = (1..=config.nodes as u64)
            .map(|id| Member {
                id,
                disk: SimDisk::new(stream(config.seed, &format!("disk-{id}"))),
                clock_rate: config.clock_rates[id as usize - 1],
                gate: PauseGate::new(),
            })
            .collect();
        Cluster {
            net,
            members,
            running: Directory::default(),
            recorder,
            seed: config.seed,
            starts: 0,
            pauses: 0,
        }
    }

    pub fn ids(&self) -> Vec<u64> {
        self.members.iter().map(|m| m.id).collect()
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.running.lock().expect("directory").contains_key(&id)
    }

    pub fn node(&self, id: u64) -> Option<RaftNode> {
        self.running.lock().expect("directory").get(&id).cloned()
    }

    pub fn running_nodes(&self) -> Vec<(u64, RaftNode)> {
        let running = self.running.lock().expect("directory");
        running
            .iter()
            .map(|(id, node)| (*id, node.clone()))
            .collect()
    }

    fn member(&self, id: u64) -> &Member {
        &self.members[id as usize - 1]
    }

    /// openraft settings of member `id`: its timers divided by its clock rate, and frequent
    /// snapshots so snapshot building, log purging and installing run in every run.
    fn raft_config(&self, id: u64) -> openraft::Config {
        let rate = self.member(id).clock_rate;
        let scaled = |ms: u64| ((ms as f64) / rate).round().max(1.0) as u64;
        let base = default_raft_config();
        openraft::Config {
            heartbeat_interval: scaled(base.heartbeat_interval),
            election_timeout_min: scaled(base.election_timeout_min),
            election_timeout_max: scaled(base.election_timeout_max),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(64),
            max_in_snapshot_log_to_keep: 16,
            ..base
        }
    }

    /// Starts member `id` on its disk; an error (say, an injected read error while it
    /// recovers) leaves it down.
    pub async fn start(&mut self, id: u64) -> Result<(), String> {
        self.starts += 1;
        // Every task of this incarnation (its transport's and its Raft's) belongs to one gate.
        let gate = PauseGate::named(&rpc_name(id));
        self.members[id as usize - 1].gate = gate.clone();
        let transport = gate
            .enter(|| self.net.node(&rpc_name(id)))
            .map_err(|e| e.to_string())?;
        let mut config = RaftNodeConfig::new(id, GroveNode::new(rpc_name(id), ""), "");
        config.raft = self.raft_config(id);
        config.client_id = Some(self.starts << 32 | id);
        config.clock = grove_raft::replicated::WallClock::tokio(0);
        config.rng_seed = stream(self.seed, &format!("node-{id}")).next_u64() ^ self.starts;
        config.request_timeout = Duration::from_secs(2);
        config.attempt_timeout = Duration::from_millis(500);
        {
            let mut recorder = self.recorder.lock().expect("recorder");
            recorder.applied.insert(id, None);
            // A new incarnation: its in-memory vote starts from what its disk kept.
            recorder.votes.remove(&id);
            recorder.event(Some(id), "start", self.starts, String::new());
        }
        let recorder = Arc::clone(&self.recorder);
        let hook: ApplyHook = Arc::new(move |event| {
            let mut recorder = recorder.lock().expect("recorder");
            state_machine_safety::on_event(&mut recorder, id, event);
        });
        let transport: Arc<dyn Transport> = Arc::new(transport);
        let disk = self.member(id).disk.handle();
        let started = gate.scope(RaftNode::start_on(
            config,
            disk,
            Some(hook),
            Arc::clone(&transport),
            None,
        ));
        match started.await {
            Ok(node) => {
                gate.enter(|| transport.serve(node.routes(Router::new())));
                self.running.lock().expect("directory").insert(id, node);
                Ok(())
            }
            Err(e) => {
                self.net.crash(&node_id(id));
                self.member(id).disk.crash();
                let message = e.to_string();
                let mut recorder = self.recorder.lock().expect("recorder");
                recorder.event(Some(id), "start-failed", 0, message.clone());
                Err(message)
            }
        }
    }

    /// Crashes member `id` (see the module docs).
    pub async fn crash(&mut self, id: u64, why: &'static str) {
        // A paused member's tasks run again so that stopping its Raft can end them.
        self.member(id).gate.resume();
        let node = self.running.lock().expect("directory").remove(&id);
        self.net.crash(&node_id(id));
        if let Some(node) = node {
            // Stopping Raft only ends its tasks; the disk crash below decides what survives.
            let _ = tokio::time::timeout(Duration::from_secs(1), node.raft().shutdown()).await;
        }
        self.member(id).disk.crash();
        let stats = self.member(id).disk.stats();
        let mut recorder = self.recorder.lock().expect("recorder");
        recorder.event(
            Some(id),
            why,
            stats.lost_batches << 8 | stats.torn_batches,
            String::new(),
        );
    }

    /// Freezes member `id`'s tasks (a process pause): its timers expire unobserved, messages
    /// to it queue, and callers time out, until [`Cluster::resume`].
    pub fn pause(&mut self, id: u64) {
        self.pauses += 1;
        self.member(id).gate.pause();
    }

    pub fn resume(&self, id: u64) {
        self.member(id).gate.resume();
    }

    pub fn is_paused(&self, id: u64) -> bool {
        self.member(id).gate.is_paused()
    }

    pub fn set_disk_faults(&self, faults: DiskFaults) {
        for member in &self.members {
            member.disk.set_faults(faults);
        }
    }

    /// Every member's log as its disk holds it.
    pub fn logs(&self) -> BTreeMap<u64, Log> {
        self.members
            .iter()
            .map(|member| {
                let log = member
                    .disk
                    .visible(Tree::Log)
                    .into_values()
                    .filter_map(|bytes| {
                        let entry: openraft::Entry<grove_raft::replicated::TypeConfig> =
                            grove_raft::replicated::types::decode(&bytes).ok()?;
                        Some((entry.log_id.index, (entry.log_id, bytes)))
                    })
                    .collect();
                (member.id, log)
            })
            .collect()
    }
}
