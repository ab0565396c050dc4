//! [`StateMachineStore`]: openraft's state machine for the metadata group. Applying an entry
//! runs the shared [`crate::metadata::apply::apply`] over [`MemoryTables`], so a replica
//! accepts and refuses exactly what the single-node sled store does.
//!
//! Where the state lives: in memory ([`MachineState`], behind a lock the read path shares);
//! durability comes from the Raft log (flushed before an entry is acknowledged) and from
//! snapshots, which are written to the node's [`Disk`] (tree [`Tree::Snapshot`], key
//! `snapshot`: metadata and data in one value, synced) before openraft may purge the log
//! they cover. After a restart
//! the state is the last snapshot plus the committed log replayed over it. Applying touches no
//! disk, no clock and no randomness, so the apply step is the same under the simulator.
//!
//! Snapshots: `get_snapshot_builder` copies the state under the lock (the only pause the apply
//! loop sees); encoding, writing and syncing happen in the builder, off the apply loop and off
//! the runtime's workers ([`Disk::run_blocking`]), as do an install's decoding and write. Data
//! format: bincode ([`SnapshotBody`], format version 2); the snapshot's metadata (last log
//! id, membership) is openraft's own `SnapshotMeta`, stored in the same value.
//!
//! Build versus install: openraft builds a snapshot on a task of its own while the state
//! machine may install a newer one received from the leader (and purge the log behind it).
//! A snapshot is stored only if it covers more of the log than the one stored, decided and
//! written under one lock ([`StateMachineStore::store_snapshot_if_newer`]), so a slow build
//! never replaces a newer install: the stored snapshot never falls behind the purged log.
//!
//! Leader-term fencing: a request carrying the term its writer observed is refused (nothing
//! applied, the refusal remembered under its request id) when its entry was appended by the
//! leader of another term.
//!
//! Observation: an optional [`ApplyHook`] is told of every applied entry (with its verdicts),
//! every installed snapshot and the snapshot loaded at open; the simulator checks its
//! invariants from it. Production passes none.
//!
//! Invariants: `last_applied` only grows, except when a snapshot is installed; an entry's
//! request id is applied at most once while remembered ([`RequestLog`]); installing a snapshot
//! replaces tables, request log, last applied id and membership together.

// openraft's storage traits fix `StorageError` (large) as the error type of every method.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::disk::{Disk, Tree, offload};
use super::tables::{Lookup, MemoryTables, RequestLog, RequestLogRows, TableRows};
use super::types::{ClientRequest, GroveNode, RaftNodeId, TypeConfig, Verdict};
use super::watch::{Change, ChangeLog};
use crate::metadata::MetadataError;
use crate::metadata::apply::apply;
use crate::mutation::{self, Mutation};

type StorageResult<T> = Result<T, StorageError<RaftNodeId>>;
type Meta = SnapshotMeta<RaftNodeId, GroveNode>;

/// The replicated state of one replica.
#[derive(Clone, Debug, Default)]
pub struct MachineState {
    pub last_applied: Option<LogId<RaftNodeId>>,
    pub membership: StoredMembership<RaftNodeId, GroveNode>,
    pub tables: MemoryTables,
    pub requests: RequestLog,
    /// Recent changes for watch streams (not replicated state: not in snapshots).
    pub changes: ChangeLog,
}

impl MachineState {
    /// Applies one entry: a verdict per request of a normal entry (none for a blank or
    /// membership entry). The changes its accepted requests make to watched tables are
    /// recorded as one event at the entry's index.
    pub fn apply_entry(&mut self, entry: &openraft::Entry<TypeConfig>) -> Vec<Verdict> {
        debug_assert!(
            self.last_applied
                .is_none_or(|last| last.index < entry.log_id.index),
            "entry {} applied after {:?}",
            entry.log_id,
            self.last_applied
        );
        self.last_applied = Some(entry.log_id);
        match &entry.payload {
            EntryPayload::Blank => Vec::new(),
            EntryPayload::Normal(batch) => {
                let mut changes = Vec::new();
                let verdicts = batch
                    .requests
                    .iter()
                    .map(|request| self.apply_request(entry.log_id, request, &mut changes))
                    .collect();
                if !changes.is_empty() {
                    self.changes.record(entry.log_id.index, changes);
                }
                verdicts
            }
            EntryPayload::Membership(membership) => {
                self.membership = StoredMembership::new(Some(entry.log_id), membership.clone());
                self.changes
                    .record(entry.log_id.index, vec![Change::of_membership(membership)]);
                Vec::new()
            }
        }
    }

    /// Applies one request of the entry at `log_id`: the command's verdict, or the remembered
    /// verdict of its request id (a retry), or a refusal if the id was used for another
    /// command or may have been applied and forgotten. The watched change it made is pushed
    /// onto `changes`.
    fn apply_request(
        &mut self,
        log_id: LogId<RaftNodeId>,
        request: &ClientRequest,
        changes: &mut Vec<Change>,
    ) -> Verdict {
        self.requests.advance(request.proposed_ms);
        let digest = request.digest();
        let refused = |error: MetadataError| Verdict {
            result: Err(error),
            duplicate: false,
        };
        match self.requests.lookup(&request.id, digest) {
            Lookup::Remembered(verdict) => return verdict,
            Lookup::Mismatch => {
                return refused(MetadataError::RequestIdReused {
                    id: request.id.to_string(),
                });
            }
            Lookup::Forgotten => {
                return refused(MetadataError::OutcomeUnknown(format!(
                    "request {} is older than the request ids this group remembers; it may \
                     have been applied before",
                    request.id
                )));
            }
            Lookup::New => {}
        }
        let committed = log_id.leader_id.term;
        let result = match request.term {
            Some(observed) if observed != committed => Err(MetadataError::StaleTerm {
                observed,
                committed,
            }),
            _ => apply(&mut self.tables, &request.command),
        };
        if result.is_ok()
            && let Some(change) = Change::of_command(&request.command, &self.tables)
        {
            changes.push(change);
        }
        self.requests.remember(request.id, digest, result.clone());
        Verdict {
            result,
            duplicate: false,
        }
    }
}

/// What an [`ApplyHook`] is told.
#[derive(Debug)]
pub enum ApplyEvent<'a> {
    /// An entry was applied; `verdicts` holds one verdict per request of its batch, in batch
    /// order (empty for blank and membership entries).
    Applied {
        entry: &'a openraft::Entry<TypeConfig>,
        verdicts: &'a [Verdict],
    },
    /// The state was replaced by a snapshot received from the leader.
    Installed { meta: &'a Meta },
    /// The state was loaded from the snapshot stored on disk (at open).
    Loaded { meta: &'a Meta },
}

/// Called (synchronously, under the state lock) for every [`ApplyEvent`].
pub type ApplyHook = Arc<dyn Fn(ApplyEvent<'_>) + Send + Sync>;

/// The snapshot's data: the tables and the request log.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SnapshotBody {
    format_version: u32,
    tables: TableRows,
    requests: RequestLogRows,
}

/// 4: the audit log by sequence number with its last number; 3: the request log with
/// digests, clock and writers' floors (2 remembered ids and verdicts only; 1 was JSON).
const SNAPSHOT_FORMAT_VERSION: u32 = 4;

/// openraft's state machine: the shared in-memory state plus the disk its snapshots live on.
#[derive(Clone)]
pub struct StateMachineStore {
    state: Arc<RwLock<MachineState>>,
    disk: Arc<dyn Disk>,
    /// Held by every clone (and so by snapshot builders), like [`super::LogStore`]'s.
    open: Option<Arc<()>>,
    on_apply: Option<ApplyHook>,
    /// The last log id the stored snapshot covers (`None`: none stored), held while a
    /// snapshot is compared with it and stored, so a build and an install never interleave.
    stored: Arc<Mutex<Option<Option<LogId<RaftNodeId>>>>>,
}

impl StateMachineStore {
    /// Opens the state machine whose snapshots live on `disk`, telling `on_apply` (if any)
    /// what it applies; the last snapshot stored there, if any, is loaded.
    pub fn on_disk(disk: Arc<dyn Disk>, on_apply: Option<ApplyHook>) -> StorageResult<Self> {
        let store = StateMachineStore {
            state: Arc::new(RwLock::new(MachineState::default())),
            disk,
            open: None,
            on_apply,
            stored: Arc::new(Mutex::new(None)),
        };
        if let Some((meta, data)) = store.stored_snapshot()? {
            *store.stored.lock().expect("snapshot lock") = Some(meta.last_log_id);
            let state = restore(&meta, &data)?;
            let mut guard = store.state.write().expect("state lock");
            *guard = state;
            if let Some(hook) = &store.on_apply {
                hook(ApplyEvent::Loaded { meta: &meta });
            }
        }
        Ok(store)
    }

    /// Makes every clone of this store hold `token` (see [`super::RaftNode::shutdown`]).
    pub fn track(mut self, token: &Arc<()>) -> Self {
        self.open = Some(Arc::clone(token));
        self
    }

    /// The state, shared with the read path (hold the lock only to copy out what you need).
    pub fn state(&self) -> Arc<RwLock<MachineState>> {
        Arc::clone(&self.state)
    }

    /// The stored snapshot: one value under key `snapshot`: its metadata's length as 4
    /// big-endian bytes, the metadata as JSON, then the data.
    fn stored_snapshot(&self) -> StorageResult<Option<(Meta, Vec<u8>)>> {
        let Some(mut value) = self
            .disk
            .get(Tree::Snapshot, b"snapshot")
            .map_err(|e| read_error(format!("reading the snapshot: {e}")))?
        else {
            return Ok(None);
        };
        let meta_len = value
            .get(..4)
            .map(|len| u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize)
            .filter(|len| 4 + len <= value.len())
            .ok_or_else(|| read_error("the stored snapshot is cut short"))?;
        let meta = serde_json::from_slice(&value[4..4 + meta_len])
            .map_err(|e| read_error(format!("undecodable snapshot metadata: {e}")))?;
        value.drain(..4 + meta_len);
        Ok(Some((meta, value)))
    }

    /// Stores a snapshot as one value (metadata and data together: a crash keeps both or
    /// neither, whatever the disk tears) and syncs it, if it covers more of the log than the
    /// stored one; returns whether it did. Compared and written under one lock. Blocks (call
    /// it through [`offload`]).
    pub fn store_snapshot_if_newer(&self, meta: &Meta, data: &[u8]) -> StorageResult<bool> {
        let mut stored = self.stored.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(stored) = *stored
            && meta.last_log_id <= stored
        {
            return Ok(false);
        }
        let meta_bytes = serde_json::to_vec(meta)
            .map_err(|e| write_error(format!("encoding snapshot metadata: {e}")))?;
        if mutation::active(Mutation::SnapshotTwoKeys) {
            let ops = vec![
                (b"meta".to_vec(), Some(meta_bytes)),
                (b"data".to_vec(), Some(data.to_vec())),
            ];
            self.disk
                .write(Tree::Snapshot, ops)
                .and_then(|()| self.disk.sync())
                .map_err(|e| write_error(format!("writing the snapshot: {e}")))?;
            *stored = Some(meta.last_log_id);
            return Ok(true);
        }
        let meta_len = u32::try_from(meta_bytes.len())
            .map_err(|_| write_error("snapshot metadata over 4 GiB"))?;
        let mut value = Vec::with_capacity(4 + meta_bytes.len() + data.len());
        value.extend_from_slice(&meta_len.to_be_bytes());
        value.extend_from_slice(&meta_bytes);
        value.extend_from_slice(data);
        self.disk
            .write(Tree::Snapshot, vec![(b"snapshot".to_vec(), Some(value))])
            .map_err(|e| write_error(format!("writing the snapshot: {e}")))?;
        self.disk
            .sync()
            .map_err(|e| write_error(format!("flushing the snapshot: {e}")))?;
        *stored = Some(meta.last_log_id);
        Ok(true)
    }

    /// Runs `work` off the runtime's workers ([`offload`]); its storage error, or one saying
    /// it did not complete.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> StorageResult<T> + Send + 'static,
    ) -> StorageResult<T> {
        offload(self.disk.as_ref(), work)
            .await
            .map_err(|e| write_error(format!("snapshot work: {e}")))?
    }
}

/// Decodes snapshot data into a state as of `meta`.
fn restore(meta: &SnapshotMeta<RaftNodeId, GroveNode>, data: &[u8]) -> StorageResult<MachineState> {
    if data.first() == Some(&b'{') {
        return Err(read_error(format!(
            "snapshot {} is in the JSON format of an older build (format 1); this build reads \
             format {SNAPSHOT_FORMAT_VERSION}",
            meta.snapshot_id
        )));
    }
    let body: SnapshotBody = grove_rpc::codec::decode_document(data)
        .map_err(|e| read_error(format!("undecodable snapshot {}: {e}", meta.snapshot_id)))?;
    if body.format_version != SNAPSHOT_FORMAT_VERSION {
        return Err(read_error(format!(
            "snapshot {} has format version {}, this build reads {SNAPSHOT_FORMAT_VERSION}",
            meta.snapshot_id, body.format_version
        )));
    }
    Ok(MachineState {
        last_applied: meta.last_log_id,
        membership: meta.last_membership.clone(),
        tables: MemoryTables::from_rows(body.tables).map_err(|e| read_error(e.to_string()))?,
        requests: RequestLog::from_rows(body.requests),
        changes: match meta.last_log_id {
            Some(log_id) => ChangeLog::restored_at(log_id.index),
            None => ChangeLog::default(),
        },
    })
}

/// Builds one snapshot from a copy of the state taken when openraft asked for the builder.
pub struct SnapshotBuilder {
    state: MachineState,
    store: StateMachineStore,
}

impl SnapshotBuilder {
    /// Encodes the copied state and stores it unless a newer snapshot is stored (blocking).
    fn build(state: MachineState, store: &StateMachineStore) -> StorageResult<(Meta, Vec<u8>)> {
        let body = SnapshotBody {
            format_version: SNAPSHOT_FORMAT_VERSION,
            requests: state.requests.rows(),
            tables: state.tables.into_rows(),
        };
        let mut data = Vec::new();
        grove_rpc::codec::encode_document(&body, &mut data)
            .map_err(|e| write_error(format!("encoding the snapshot: {e}")))?;
        drop(body);
        // The id names the log position it covers; two builds at one position hold the same
        // state (apply is deterministic), so they may share it.
        let snapshot_id = match state.last_applied {
            Some(log_id) => format!("{}-{}-{}", log_id.leader_id, log_id.index, data.len()),
            None => format!("empty-{}", data.len()),
        };
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership,
            snapshot_id,
        };
        // A build older than the stored snapshot (one installed meanwhile) is not stored;
        // openraft, told of it, keeps the newer one it knows.
        store.store_snapshot_if_newer(&meta, &data)?;
        Ok((meta, data))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let state = std::mem::take(&mut self.state);
        let store = self.store.clone();
        let (meta, data) = self
            .store
            .blocking(move || SnapshotBuilder::build(state, &store))
            .await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(
        Option<LogId<RaftNodeId>>,
        StoredMembership<RaftNodeId, GroveNode>,
    )> {
        let state = self.state.read().expect("state lock");
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Vec<Verdict>>>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut state = self.state.write().expect("state lock");
        Ok(entries
            .into_iter()
            .map(|entry| {
                let verdicts = state.apply_entry(&entry);
                if let Some(hook) = &self.on_apply {
                    hook(ApplyEvent::Applied {
                        entry: &entry,
                        verdicts: &verdicts,
                    });
                }
                verdicts
            })
            .collect())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let state = self.state.read().expect("state lock");
        // Everything but the change log, which snapshots do not carry.
        let copy = MachineState {
            last_applied: state.last_applied,
            membership: state.membership.clone(),
            tables: state.tables.clone(),
            requests: state.requests.clone(),
            changes: ChangeLog::default(),
        };
        drop(state);
        SnapshotBuilder {
            state: copy,
            store: self.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<RaftNodeId, GroveNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let store = self.clone();
        let installed = meta.clone();
        let state = self
            .blocking(move || {
                let state = restore(&installed, &data)?;
                // openraft installs only a snapshot newer than what this member applied, so
                // it is newer than the stored one too, unless a build raced it: then the
                // lock orders them and only the newer is kept.
                store.store_snapshot_if_newer(&installed, &data)?;
                Ok(state)
            })
            .await?;
        let replaced = {
            let mut guard = self.state.write().expect("state lock");
            let replaced = std::mem::replace(&mut *guard, state);
            if let Some(hook) = &self.on_apply {
                hook(ApplyEvent::Installed { meta });
            }
            replaced
        };
        // Freeing a large state takes a while too.
        self.blocking(move || {
            drop(replaced);
            Ok(())
        })
        .await
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let store = self.clone();
        let stored = self.blocking(move || store.stored_snapshot()).await?;
        Ok(stored.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

fn read_error(message: impl Into<String>) -> StorageError<RaftNodeId> {
    StorageIOError::read_state_machine(&std::io::Error::other(message.into())).into()
}

fn write_error(message: impl Into<String>) -> StorageError<RaftNodeId> {
    StorageIOError::write_state_machine(&std::io::Error::other(message.into())).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Command;
    use crate::replicated::FileDisk;
    use crate::replicated::tables::REQUESTS_REMEMBERED_MS;
    use crate::replicated::types::{RequestId, running_task};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};

    fn create_task(index: u64, id: &str) -> Entry<TypeConfig> {
        let task = running_task(id, serde_json::json!({"type": "index"}));
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(super::super::types::WriteBatch {
                requests: vec![ClientRequest::new(
                    RequestId {
                        client: 1,
                        serial: index,
                    },
                    Command::CreateTask { task },
                )],
            }),
        }
    }

    /// An entry at `index` holding one request of writer `client`, proposed at `proposed_ms`.
    fn request_entry(
        index: u64,
        client: u64,
        command: Command,
        proposed_ms: i64,
    ) -> Entry<TypeConfig> {
        let request = ClientRequest {
            proposed_ms,
            ..ClientRequest::new(RequestId { client, serial: 1 }, command)
        };
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(super::super::types::WriteBatch {
                requests: vec![request],
            }),
        }
    }

    #[test]
    fn a_retry_after_its_id_was_forgotten_gets_outcome_unknown_not_a_second_verdict() {
        let mut state = MachineState::default();
        let task = || Command::CreateTask {
            task: running_task("x", serde_json::json!({})),
        };
        let applied = state.apply_entry(&request_entry(1, 5, task(), 1_000));
        assert_eq!(applied[0].result, Ok(()));
        // Within the window a retry gets the first verdict.
        let retry = state.apply_entry(&request_entry(2, 5, task(), 2_000));
        assert_eq!(
            (retry[0].result.clone(), retry[0].duplicate),
            (Ok(()), true)
        );
        // Another writer's write moves the log's clock past the window.
        let later = 1_000 + REQUESTS_REMEMBERED_MS + 1;
        let other = Command::CreateTask {
            task: running_task("y", serde_json::json!({})),
        };
        state.apply_entry(&request_entry(3, 6, other, later));
        // Applied again, the retry would be refused with TaskExists: a wrong verdict for a
        // write that succeeded. It is answered "outcome unknown", and nothing changes.
        let late = state.apply_entry(&request_entry(4, 5, task(), later));
        assert!(
            matches!(late[0].result, Err(MetadataError::OutcomeUnknown(_))),
            "{:?}",
            late[0]
        );
        assert_eq!(state.tables.tasks().len(), 2);
    }

    async fn snapshot(store: &mut StateMachineStore) {
        let mut builder = store.get_snapshot_builder().await;
        builder.build_snapshot().await.unwrap();
    }

    fn task_ids(store: &StateMachineStore) -> usize {
        store.state().read().unwrap().tables.tasks().len()
    }

    /// A [`FileDisk`] that counts the jobs handed to [`Disk::run_blocking`].
    struct Offloads {
        inner: FileDisk,
        jobs: std::sync::atomic::AtomicUsize,
    }

    impl Disk for Offloads {
        fn get(&self, tree: Tree, key: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
            self.inner.get(tree, key)
        }
        fn range(
            &self,
            tree: Tree,
            start: std::ops::Bound<&[u8]>,
            end: std::ops::Bound<&[u8]>,
        ) -> std::io::Result<Vec<crate::replicated::disk::KeyValue>> {
            self.inner.range(tree, start, end)
        }
        fn last(&self, tree: Tree) -> std::io::Result<Option<crate::replicated::disk::KeyValue>> {
            self.inner.last(tree)
        }
        fn write(
            &self,
            tree: Tree,
            batch: Vec<crate::replicated::disk::BatchOp>,
        ) -> std::io::Result<()> {
            self.inner.write(tree, batch)
        }
        fn sync(&self) -> std::io::Result<()> {
            self.inner.sync()
        }
        fn run_blocking(
            &self,
            job: crate::replicated::disk::BlockingJob,
        ) -> crate::replicated::disk::BlockingFuture {
            self.jobs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.run_blocking(job)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_build_older_than_a_snapshot_installed_meanwhile_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Arc::new(Offloads {
            inner: FileDisk::open(&dir.path().join("follower")).unwrap(),
            jobs: Default::default(),
        });
        let jobs = || disk.jobs.load(std::sync::atomic::Ordering::Relaxed);
        let mut follower = StateMachineStore::on_disk(Arc::clone(&disk) as _, None).unwrap();
        follower
            .apply([create_task(1, "a"), create_task(2, "b")])
            .await
            .unwrap();
        // openraft starts a build: the state as of index 2 is copied.
        let mut builder = follower.get_snapshot_builder().await;
        // Meanwhile the leader's snapshot as of index 4 is installed.
        let leader_disk = FileDisk::open(&dir.path().join("leader")).unwrap();
        let mut leader = StateMachineStore::on_disk(Arc::new(leader_disk), None).unwrap();
        leader
            .apply((1..=4).map(|i| create_task(i, &format!("t{i}"))))
            .await
            .unwrap();
        let installed = leader
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let before = jobs();
        follower
            .install_snapshot(&installed.meta, installed.snapshot)
            .await
            .unwrap();
        assert!(
            jobs() > before,
            "the install decodes and writes off the workers"
        );
        // The build finishes last; it must not replace the newer snapshot.
        let before = jobs();
        let built = builder.build_snapshot().await.unwrap();
        assert!(
            jobs() > before,
            "the build encodes and writes off the workers"
        );
        assert_eq!(built.meta.last_log_id.unwrap().index, 2);
        let stored = follower.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(stored.meta.last_log_id.unwrap().index, 4);
        drop((follower, builder));
        // Restarted, the member loads the installed snapshot (the log behind it may be gone).
        let reopened = StateMachineStore::on_disk(disk as _, None).unwrap();
        assert_eq!(task_ids(&reopened), 4);
        let last = reopened.state().read().unwrap().last_applied;
        assert_eq!(last.unwrap().index, 4);
    }

    #[tokio::test]
    async fn a_snapshot_is_one_value_that_reloads_and_a_value_cut_short_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let disk: Arc<dyn Disk> = Arc::new(FileDisk::open(dir.path()).unwrap());
        let mut store = StateMachineStore::on_disk(Arc::clone(&disk), None).unwrap();
        store.apply([create_task(1, "a")]).await.unwrap();
        snapshot(&mut store).await;
        assert!(disk.get(Tree::Snapshot, b"snapshot").unwrap().is_some());
        assert_eq!(
            task_ids(&StateMachineStore::on_disk(Arc::clone(&disk), None).unwrap()),
            1
        );
        // A value cut short is a clear error, not a panic.
        disk.write(
            Tree::Snapshot,
            vec![(b"snapshot".to_vec(), Some(vec![0, 0, 9]))],
        )
        .unwrap();
        let error = StateMachineStore::on_disk(disk, None)
            .err()
            .expect("refused");
        assert!(error.to_string().contains("cut short"), "{error}");
    }
}
