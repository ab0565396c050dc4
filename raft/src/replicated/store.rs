//! [`ReplicatedMetadataStore`]: the [`MetadataStore`] interface over a [`RaftNode`], so the
//! server swaps the single-node sled store for the replicated one without other changes.
//!
//! `MetadataStore` is blocking (its callers run on blocking threads); each call here runs the
//! node's async operation on the runtime the node lives on. Writes go to the leader and return
//! once applied there; reads are linearizable (read index through the leader, then this
//! member's copy). Refusals are the apply step's, unchanged; a group that cannot be reached
//! in the node's `request_timeout` is a [`MetadataError::Storage`] error that says so.
//!
//! Must be called from outside the runtime's worker threads (e.g. `spawn_blocking`), like any
//! blocking call.

use tokio::runtime::Handle;

use super::node::RaftNode;
use crate::metadata::{
    AuditEntry, Command, DataSourceRecord, MetadataError, MetadataStore, Result, RulesRecord,
    SegmentRecord, StreamOffsets, TaskRecord,
};

/// The metadata store of a member of the replicated group.
#[derive(Clone)]
pub struct ReplicatedMetadataStore {
    node: RaftNode,
    runtime: Handle,
}

impl std::fmt::Debug for ReplicatedMetadataStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatedMetadataStore")
            .field("member", &self.node.id())
            .finish_non_exhaustive()
    }
}

impl ReplicatedMetadataStore {
    /// The store of `node`, whose tasks run on `runtime`.
    pub fn new(node: RaftNode, runtime: Handle) -> Self {
        ReplicatedMetadataStore { node, runtime }
    }

    pub fn node(&self) -> &RaftNode {
        &self.node
    }

    fn read<T>(&self, read: impl FnOnce(&super::MemoryTables) -> T) -> Result<T> {
        self.runtime
            .block_on(self.node.read(read))
            .map_err(MetadataError::from)
    }
}

impl MetadataStore for ReplicatedMetadataStore {
    fn apply(&self, command: Command) -> Result<()> {
        self.runtime
            .block_on(self.node.write(command))
            .map_err(MetadataError::from)
    }

    fn data_sources(&self) -> Result<Vec<DataSourceRecord>> {
        self.read(|tables| tables.data_sources())
    }

    fn used_segments(&self, data_source: &str) -> Result<Vec<SegmentRecord>> {
        self.read(|tables| tables.used_segments(data_source))
    }

    fn task(&self, id: &str) -> Result<TaskRecord> {
        self.read(|tables| tables.task(id))?
    }

    fn tasks(&self) -> Result<Vec<TaskRecord>> {
        self.read(|tables| tables.tasks())
    }

    fn stream_offsets(&self, data_source: &str) -> Result<Option<StreamOffsets>> {
        self.read(|tables| tables.stream_offsets(data_source))
    }

    fn rules(&self, data_source: &str) -> Result<Option<RulesRecord>> {
        self.read(|tables| tables.cluster().rules(data_source))
    }

    fn all_rules(&self) -> Result<Vec<RulesRecord>> {
        self.read(|tables| tables.cluster().all_rules())
    }

    fn audit(&self, audit_type: &str, key: Option<&str>) -> Result<Vec<AuditEntry>> {
        self.read(|tables| tables.cluster().audit(audit_type, key))
    }
}
