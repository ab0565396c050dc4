//! A test cluster of metadata-group members on the in-memory network, each with its own sled
//! directory, and helpers to write and check commands. Time is tokio's (tests run with paused
//! time), the network's faults come from its seed.

#![allow(dead_code)]

pub mod fixtures;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use grove_raft::metadata::Command;
use grove_raft::replicated::{Disk, FileDisk, GroveNode, RaftNode, RaftNodeConfig, RaftNodeId};
use grove_rpc::{MemoryNetwork, NodeId, Router, Transport};

/// The longest any test waits for the group to do something (virtual time).
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn member(id: RaftNodeId) -> GroveNode {
    GroveNode::new(format!("n{id}"), "")
}

pub fn rpc_name(id: RaftNodeId) -> NodeId {
    NodeId::new(&format!("n{id}")).unwrap()
}

/// A command that creates RUNNING task `id` (of datasource `wiki`).
pub fn create_task(id: &str) -> Command {
    Command::CreateTask {
        task: fixtures::task(id, "wiki"),
    }
}

/// The schema of datasource `wiki`.
pub fn schema() -> grove_segment::schema::Schema {
    fixtures::schema("wiki")
}

/// A used segment of `wiki` on day `day` (from 2024-01-01), partition `partition`.
pub fn segment(day: i64, partition: u32) -> grove_raft::metadata::SegmentRecord {
    grove_raft::metadata::SegmentRecord {
        core_partitions: 2,
        ..fixtures::segment("wiki", day, "v1", partition)
    }
}

/// Snapshots every `every` entries and keeps no log behind them: a member that misses writes
/// can only catch up by snapshot.
pub fn snapshot_often(raft: &mut openraft::Config, every: u64) {
    raft.snapshot_policy = openraft::SnapshotPolicy::LogsSinceLast(every);
    raft.max_in_snapshot_log_to_keep = 0;
    raft.purge_batch_size = 1;
}

/// Offsets of stream `edits`: partition 0 at `at`, partition 1 at `2 * at`.
pub fn offsets(at: i64) -> grove_raft::metadata::StreamOffsets {
    grove_raft::metadata::StreamOffsets {
        stream: "edits".into(),
        partitions: [(0, at), (1, at * 2)].into(),
    }
}

/// Stream task `task` publishes one segment (of `partition`) and moves the offsets 0 → 100.
pub fn publish_offsets_0_to_100(task: &str, partition: u32) -> Command {
    Command::PublishSegmentsWithOffsets {
        task_id: task.into(),
        segments: vec![segment(0, partition)],
        schema: schema(),
        report: grove_raft::metadata::TaskReport::default(),
        ended_ms: 10,
        start_offsets: offsets(0),
        end_offsets: offsets(100),
    }
}

pub struct Cluster {
    pub net: MemoryNetwork,
    root: tempfile::TempDir,
    nodes: BTreeMap<RaftNodeId, RaftNode>,
    transports: BTreeMap<RaftNodeId, Arc<dyn Transport>>,
    /// openraft settings every member starts with.
    pub raft: openraft::Config,
    starts: u64,
    seed: u64,
}

impl Cluster {
    pub fn new(seed: u64) -> Self {
        Cluster {
            net: MemoryNetwork::new(seed),
            root: tempfile::tempdir().unwrap(),
            nodes: BTreeMap::new(),
            transports: BTreeMap::new(),
            raft: grove_raft::replicated::default_raft_config(),
            starts: 0,
            seed,
        }
    }

    /// Starts member `id` (again, from its directory, if it ran before).
    pub async fn start(&mut self, id: RaftNodeId) -> RaftNode {
        self.start_on(id, |disk| Arc::new(disk)).await
    }

    /// [`Cluster::start`] on the member's [`FileDisk`] as `wrap` wraps it (a slower disk).
    pub async fn start_on(
        &mut self,
        id: RaftNodeId,
        wrap: impl FnOnce(FileDisk) -> Arc<dyn Disk>,
    ) -> RaftNode {
        assert!(!self.nodes.contains_key(&id), "member {id} is running");
        self.starts += 1;
        let transport = self.net.node(&format!("n{id}")).unwrap();
        let dir = self.root.path().join(format!("n{id}"));
        let mut config = RaftNodeConfig::new(id, member(id), &dir);
        config.raft = self.raft.clone();
        // Unique per start, as a real node draws it.
        config.client_id = Some(self.starts << 32 | id);
        config.rng_seed = self.seed;
        let transport: Arc<dyn Transport> = Arc::new(transport);
        let disk = wrap(FileDisk::open(&dir).unwrap());
        let node = RaftNode::start_on(config, disk, None, Arc::clone(&transport), None)
            .await
            .unwrap();
        transport.serve(node.routes(Router::new()));
        self.nodes.insert(id, node.clone());
        self.transports.insert(id, transport);
        node
    }

    /// Starts members `ids` and makes them a group (bootstrapped on the first).
    pub async fn start_group(&mut self, ids: &[RaftNodeId]) {
        for &id in ids {
            self.start(id).await;
        }
        let members = ids.iter().map(|&id| (id, member(id))).collect();
        assert!(self.node(ids[0]).bootstrap(members).await.unwrap());
    }

    pub fn node(&self, id: RaftNodeId) -> &RaftNode {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("member {id} is not running"))
    }

    /// Running member `id`'s transport (to make calls as that member).
    pub fn transport(&self, id: RaftNodeId) -> Arc<dyn Transport> {
        Arc::clone(&self.transports[&id])
    }

    pub fn running(&self) -> Vec<RaftNodeId> {
        self.nodes.keys().copied().collect()
    }

    /// Stops member `id` as a crash: the network drops it, then its Raft stops (its storage
    /// closes; nothing more is written than what it had flushed).
    pub async fn kill(&mut self, id: RaftNodeId) {
        let node = self.nodes.remove(&id).unwrap();
        self.transports.remove(&id);
        self.net.crash(&rpc_name(id));
        node.shutdown().await.unwrap();
    }

    /// Waits until every running member agrees on one leader among them; returns it.
    pub async fn leader(&self) -> RaftNodeId {
        let running = self.running();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let leaders: Vec<_> = running
                .iter()
                .map(|id| self.node(*id).current_leader())
                .collect();
            if let Some(Some(leader)) = leaders.first()
                && running.contains(leader)
                && leaders.iter().all(|l| l == &Some(*leader))
                && self.node(*leader).metrics().state.is_leader()
            {
                return *leader;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no agreed leader among {running:?}: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A running member other than `not`.
    pub fn other_than(&self, not: RaftNodeId) -> RaftNodeId {
        *self.nodes.keys().find(|id| **id != not).unwrap()
    }

    /// Waits until member `id` has applied through `index`.
    pub async fn wait_applied(&self, id: RaftNodeId, index: u64) {
        self.node(id)
            .raft()
            .wait(Some(PATIENCE))
            .applied_index_at_least(Some(index), "catch up")
            .await
            .unwrap_or_else(|e| panic!("member {id} did not apply through {index}: {e}"));
    }

    /// Waits until every running member has applied what `id` has, and checks that their
    /// tables are equal.
    pub async fn converge(&self, id: RaftNodeId) {
        let index = self.node(id).applied_index().unwrap();
        for other in self.running() {
            self.wait_applied(other, index).await;
        }
        let expected = self.node(id).read_local(|t| t.clone());
        for other in self.running() {
            let tables = self.node(other).read_local(|t| t.clone());
            assert!(
                tables == expected,
                "member {other}'s tables differ from member {id}'s"
            );
        }
    }

    /// Task ids member `id` holds (a linearizable read).
    pub async fn task_ids(&self, id: RaftNodeId) -> Vec<String> {
        self.node(id)
            .read(|t| t.tasks().into_iter().map(|task| task.id).collect())
            .await
            .unwrap()
    }
}

/// A member's disk whose syncs take `delay_ms` longer (virtual time; changeable while it
/// runs): a slow device.
pub struct SlowSyncs {
    pub inner: FileDisk,
    pub delay_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl Disk for SlowSyncs {
    fn get(
        &self,
        tree: grove_raft::replicated::Tree,
        key: &[u8],
    ) -> std::io::Result<Option<Vec<u8>>> {
        self.inner.get(tree, key)
    }
    fn range(
        &self,
        tree: grove_raft::replicated::Tree,
        start: std::ops::Bound<&[u8]>,
        end: std::ops::Bound<&[u8]>,
    ) -> std::io::Result<Vec<grove_raft::replicated::disk::KeyValue>> {
        self.inner.range(tree, start, end)
    }
    fn keys(
        &self,
        tree: grove_raft::replicated::Tree,
        start: std::ops::Bound<&[u8]>,
        end: std::ops::Bound<&[u8]>,
    ) -> std::io::Result<Vec<Vec<u8>>> {
        self.inner.keys(tree, start, end)
    }
    fn last(
        &self,
        tree: grove_raft::replicated::Tree,
    ) -> std::io::Result<Option<grove_raft::replicated::disk::KeyValue>> {
        self.inner.last(tree)
    }
    fn write(
        &self,
        tree: grove_raft::replicated::Tree,
        batch: Vec<grove_raft::replicated::disk::BatchOp>,
    ) -> std::io::Result<()> {
        self.inner.write(tree, batch)
    }
    fn sync(&self) -> std::io::Result<()> {
        self.inner.sync()
    }
    fn run_blocking(
        &self,
        job: grove_raft::replicated::disk::BlockingJob,
    ) -> grove_raft::replicated::disk::BlockingFuture {
        let delay = Duration::from_millis(self.delay_ms.load(std::sync::atomic::Ordering::Relaxed));
        let run = self.inner.run_blocking(job);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            run.await
        })
    }
}
