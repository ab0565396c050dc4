//! openraft's storage conformance suite (`openraft::testing::Suite`) against the sled log
//! store and the state machine, each run on a fresh sled database in a temporary directory.

// openraft's storage traits fix `StorageError` (large) as the error type of every method.
#![allow(clippy::result_large_err)]

use grove_raft::replicated::{SledLogStore, StateMachineStore, TypeConfig};
use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};

struct SledBuilder;

impl StoreBuilder<TypeConfig, SledLogStore, StateMachineStore, tempfile::TempDir> for SledBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, SledLogStore, StateMachineStore), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let db = sled::open(dir.path()).expect("sled database");
        let log = SledLogStore::open(&db)?;
        let machine = StateMachineStore::open(&db)?;
        Ok((dir, log, machine))
    }
}

#[test]
fn sled_log_and_state_machine_pass_openraft_suite() -> Result<(), StorageError<u64>> {
    Suite::test_all(SledBuilder)
}
