//! openraft's storage conformance suite (`openraft::testing::Suite`) against the log store and
//! the state machine, each run on a fresh [`FileDisk`] in a temporary directory: once as a
//! store that does not know its member, and once in production mode, told it serves member
//! 0 (the suite's own node id: its committed vote then reads back uncommitted and its commit
//! index is left to the next sync, see `LogStore::read_vote`). The suite saves only
//! uncommitted votes, so both must pass it unchanged; `restart.rs` pins what the read-back
//! does to a restarted leader.

// openraft's storage traits fix `StorageError` (large) as the error type of every method.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use grove_raft::replicated::{Disk, FileDisk, LogStore, StateMachineStore, TypeConfig};
use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};

/// Builds stores on a fresh directory; `member`: the member the log store is told it serves.
struct FileBuilder {
    member: Option<u64>,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for FileBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let disk: Arc<dyn Disk> = Arc::new(FileDisk::open(dir.path()).expect("member directory"));
        let log = LogStore::on_disk(Arc::clone(&disk));
        let log = match self.member {
            Some(member) => log.of_member(member),
            None => log,
        };
        let machine = StateMachineStore::on_disk(disk, None)?;
        Ok((dir, log, machine))
    }
}

#[test]
fn log_and_state_machine_pass_openraft_suite() -> Result<(), StorageError<u64>> {
    Suite::test_all(FileBuilder { member: None })
}

/// Production mode: the log store knows its member (the suite's node id, 0).
#[test]
fn log_of_a_known_member_and_state_machine_pass_openraft_suite() -> Result<(), StorageError<u64>> {
    Suite::test_all(FileBuilder { member: Some(0) })
}
