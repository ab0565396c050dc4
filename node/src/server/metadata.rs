//! The node's metadata: a single-member Raft group (`grove_raft::replicated`) under
//! `DIR/metadata`, bootstrapped on first start (a later start finds the group in its log and
//! does nothing), recovered from its snapshot and log on restart.
//!
//! Transport: the in-memory `grove-rpc` network, with this member its only node. A
//! single-member group sends no Raft messages (it is its own quorum), so a network would carry
//! nothing; QUIC would need the cluster's certificates (`grove cluster init`) and a UDP port
//! for no traffic. The member still sits behind the `Transport` seam, so a node joining a
//! cluster swaps in the QUIC transport without other changes.
//!
//! Raft's tasks run on a runtime of their own (two worker threads), not on actix's
//! single-threaded workers: `MetadataStore` calls block on it, from blocking threads.
//! Every call is bounded by [`NodeConfig::metadata_timeout_ms`](super::NodeConfig): past it the
//! call fails with `MetadataError::Unavailable` (a 503 at the HTTP edge) instead of waiting.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use grove_raft::replicated::{GroveNode, RaftNode, RaftNodeConfig, ReplicatedMetadataStore};
use grove_rpc::{MemoryNetwork, Router, Transport};

/// This member's id and transport name in its group.
const MEMBER_ID: u64 = 1;
const MEMBER_NAME: &str = "local";

/// The metadata group of one node and the runtime its Raft runs on.
pub struct MetadataGroup {
    pub store: Arc<ReplicatedMetadataStore>,
    /// Taken on drop and shut down in the background (a runtime may not be dropped inside an
    /// async context, which is where actix drops the node).
    runtime: Option<tokio::runtime::Runtime>,
}

impl MetadataGroup {
    /// Opens (or creates and bootstraps) the group stored in `dir`.
    pub fn open(dir: &Path, timeout: Duration) -> anyhow::Result<MetadataGroup> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("grove-metadata")
            .enable_all()
            .build()
            .context("starting the metadata runtime")?;
        let mut config =
            RaftNodeConfig::new(MEMBER_ID, GroveNode::new(MEMBER_NAME, ""), dir.to_owned());
        // The writer id is drawn at random per start (the default), so request ids of an
        // earlier run are never taken for retries of this run's writes.
        config.rng_seed = process_seed();
        config.request_timeout = timeout;
        config.attempt_timeout = timeout.min(Duration::from_secs(2));
        let node = runtime.block_on(async {
            let network = MemoryNetwork::new(0);
            let transport: Arc<dyn Transport> = Arc::new(
                network
                    .node(MEMBER_NAME)
                    .context("starting the metadata member's transport")?,
            );
            let node = RaftNode::start(config, Arc::clone(&transport), None)
                .await
                .with_context(|| format!("opening the metadata group in {}", dir.display()))?;
            transport.serve(node.routes(Router::new()));
            node.bootstrap([(MEMBER_ID, GroveNode::new(MEMBER_NAME, ""))].into())
                .await
                .context("bootstrapping the metadata group")?;
            anyhow::Ok(node)
        })?;
        let store = ReplicatedMetadataStore::new(node, runtime.handle().clone());
        Ok(MetadataGroup {
            store: Arc::new(store),
            runtime: Some(runtime),
        })
    }

    /// The group's member.
    #[cfg(test)]
    pub fn member(&self) -> &RaftNode {
        self.store.node()
    }

    /// Stops the member's Raft (its calls then fail as unavailable once they time out), as a
    /// lost quorum would. Call from outside any async context.
    #[cfg(test)]
    pub fn stop(&self) {
        if let Some(runtime) = &self.runtime {
            runtime
                .block_on(self.member().shutdown())
                .expect("stopping raft");
        }
    }

    /// Stops Raft and waits until its storage is closed (so `dir` can be opened again).
    /// Call from outside any async context.
    #[cfg(test)]
    pub fn close(mut self) -> anyhow::Result<()> {
        if let Some(runtime) = self.runtime.take() {
            runtime
                .block_on(self.store.node().shutdown())
                .context("stopping the metadata group")?;
            runtime.shutdown_background();
        }
        Ok(())
    }
}

impl Drop for MetadataGroup {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A seed for the election-timeout draw: the start time in ns mixed with the pid.
fn process_seed() -> u64 {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    now_ns ^ (u64::from(std::process::id()) << 40)
}

#[cfg(test)]
mod tests {
    use grove_raft::metadata::{Command, MetadataError, MetadataStore};

    use super::*;

    fn task(id: &str) -> Command {
        Command::CreateTask {
            task: crate::server::running_task(id, "wiki"),
        }
    }

    #[test]
    fn bootstraps_once_recovers_on_restart_and_is_unavailable_in_time_when_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let timeout = Duration::from_secs(1);
        let group = MetadataGroup::open(dir.path(), timeout).unwrap();
        group.store.apply(task("t1")).unwrap();
        group.close().unwrap();
        let group = MetadataGroup::open(dir.path(), timeout).unwrap();
        assert_eq!(group.store.task("t1").unwrap().id, "t1");
        group.store.apply(task("t2")).unwrap();
        let ids: Vec<_> = group
            .store
            .tasks()
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, ["t1", "t2"]);
        // A member that stopped answers within the timeout, as unavailable (a 503 at the edge).
        let runtime = group.runtime.as_ref().unwrap();
        runtime.block_on(group.member().shutdown()).unwrap();
        let started = std::time::Instant::now();
        let error = group.store.apply(task("t3")).unwrap_err();
        assert!(matches!(error, MetadataError::Unavailable(_)), "{error:?}");
        let error = group.store.tasks().unwrap_err();
        assert!(matches!(error, MetadataError::Unavailable(_)), "{error:?}");
        assert!(
            started.elapsed() < timeout * 3,
            "a call to a stopped group hung"
        );
    }
}
