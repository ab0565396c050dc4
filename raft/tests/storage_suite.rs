//! openraft's storage conformance suite (`openraft::testing::Suite`) against the log store and
//! the state machine, each run on a fresh [`FileDisk`] in a temporary directory.

// openraft's storage traits fix `StorageError` (large) as the error type of every method.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use grove_raft::replicated::{Disk, FileDisk, LogStore, StateMachineStore, TypeConfig};
use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};

struct FileBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for FileBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let disk: Arc<dyn Disk> = Arc::new(FileDisk::open(dir.path()).expect("member directory"));
        let log = LogStore::on_disk(Arc::clone(&disk));
        let machine = StateMachineStore::on_disk(disk, None)?;
        Ok((dir, log, machine))
    }
}

#[test]
fn log_and_state_machine_pass_openraft_suite() -> Result<(), StorageError<u64>> {
    Suite::test_all(FileBuilder)
}
