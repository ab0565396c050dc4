//! [`SledMetadataStore`]: the single-node metadata store, four sled trees in one database.
//!
//! Layout: `tasks` keyed by task id, `segments` keyed by `<datasource>\0<segment id>`,
//! `data_sources` and `offsets` (stream offsets) keyed by datasource name; values are the records as JSON (they carry free-form JSON such
//! as load specs and task specs). Each command runs [`apply`] inside one sled transaction over
//! the four trees and is flushed to disk before `apply` returns.

use std::cell::RefCell;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};
use sled::{Transactional, Tree};

use super::apply::{Tables, apply};
use super::{
    Command, DataSourceRecord, MetadataError, MetadataStore, Result, SegmentRecord, StreamOffsets,
    TaskRecord,
};

/// The metadata of one node, persisted in a sled database directory.
pub struct SledMetadataStore {
    db: sled::Db,
    tasks: Tree,
    segments: Tree,
    data_sources: Tree,
    offsets: Tree,
}

impl std::fmt::Debug for SledMetadataStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledMetadataStore").finish_non_exhaustive()
    }
}

impl SledMetadataStore {
    /// Opens (or creates) the store in directory `path`. sled locks the directory: a second
    /// process opening it gets an error.
    pub fn open(path: &Path) -> Result<SledMetadataStore> {
        let db =
            sled::open(path).map_err(|e| storage(format!("opening {}: {e}", path.display())))?;
        let tree = |name: &str| {
            db.open_tree(name)
                .map_err(|e| storage(format!("opening tree {name}: {e}")))
        };
        Ok(SledMetadataStore {
            tasks: tree("tasks")?,
            segments: tree("segments")?,
            data_sources: tree("data_sources")?,
            offsets: tree("offsets")?,
            db,
        })
    }
}

impl MetadataStore for SledMetadataStore {
    fn apply(&self, command: Command) -> Result<()> {
        let outcome = (
            &self.tasks,
            &self.segments,
            &self.data_sources,
            &self.offsets,
        )
            .transaction(|(tasks, segments, data_sources, offsets)| {
                let mut tables = SledTables {
                    tasks,
                    segments,
                    data_sources,
                    offsets,
                    interrupted: RefCell::new(None),
                };
                let result = apply(&mut tables, &command);
                // A conflict or storage error inside sled must reach sled (a conflict retries
                // the closure), not be reported as the command's verdict.
                if let Some(e) = tables.interrupted.into_inner() {
                    return Err(e.into());
                }
                result.map_err(ConflictableTransactionError::Abort)
            });
        match outcome {
            Ok(()) => {}
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(storage(e)),
        }
        self.db
            .flush()
            .map_err(|e| storage(format!("flush: {e}")))?;
        Ok(())
    }

    fn data_sources(&self) -> Result<Vec<DataSourceRecord>> {
        scan(self.data_sources.iter())
    }

    fn used_segments(&self, data_source: &str) -> Result<Vec<SegmentRecord>> {
        let mut segments: Vec<SegmentRecord> =
            scan(self.segments.scan_prefix(segment_prefix(data_source)))?;
        segments.retain(|s| s.used);
        Ok(segments)
    }

    fn task(&self, id: &str) -> Result<TaskRecord> {
        match self.tasks.get(id).map_err(storage)? {
            Some(bytes) => decode(&bytes),
            None => Err(MetadataError::UnknownTask(id.to_owned())),
        }
    }

    fn tasks(&self) -> Result<Vec<TaskRecord>> {
        scan(self.tasks.iter())
    }

    fn stream_offsets(&self, data_source: &str) -> Result<Option<StreamOffsets>> {
        match self.offsets.get(data_source).map_err(storage)? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }
}

/// The three trees inside one transaction. The first sled error is kept in `interrupted` and
/// handed back to sled by [`SledMetadataStore::apply`].
struct SledTables<'a> {
    tasks: &'a TransactionalTree,
    segments: &'a TransactionalTree,
    data_sources: &'a TransactionalTree,
    offsets: &'a TransactionalTree,
    interrupted: RefCell<Option<UnabortableTransactionError>>,
}

impl SledTables<'_> {
    fn get<T: DeserializeOwned>(&self, tree: &TransactionalTree, key: &[u8]) -> Result<Option<T>> {
        match tree.get(key) {
            Ok(Some(bytes)) => decode(&bytes).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(self.interrupt(e)),
        }
    }

    fn put<T: Serialize>(&self, tree: &TransactionalTree, key: &[u8], value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| storage(format!("encoding: {e}")))?;
        tree.insert(key, bytes)
            .map(|_| ())
            .map_err(|e| self.interrupt(e))
    }

    fn interrupt(&self, e: UnabortableTransactionError) -> MetadataError {
        let message = storage(format!("transaction interrupted: {e}"));
        self.interrupted.borrow_mut().get_or_insert(e);
        message
    }
}

impl Tables for SledTables<'_> {
    fn task(&self, id: &str) -> Result<Option<TaskRecord>> {
        self.get(self.tasks, id.as_bytes())
    }

    fn put_task(&mut self, task: &TaskRecord) -> Result<()> {
        self.put(self.tasks, task.id.as_bytes(), task)
    }

    fn segment(&self, data_source: &str, id: &str) -> Result<Option<SegmentRecord>> {
        self.get(self.segments, &segment_key(data_source, id))
    }

    fn put_segment(&mut self, segment: &SegmentRecord) -> Result<()> {
        let key = segment_key(&segment.id.data_source, &segment.id_text());
        self.put(self.segments, &key, segment)
    }

    fn put_data_source(&mut self, data_source: &DataSourceRecord) -> Result<()> {
        self.put(self.data_sources, data_source.name.as_bytes(), data_source)
    }

    fn offsets(&self, data_source: &str) -> Result<Option<StreamOffsets>> {
        self.get(self.offsets, data_source.as_bytes())
    }

    fn put_offsets(&mut self, data_source: &str, offsets: &StreamOffsets) -> Result<()> {
        self.put(self.offsets, data_source.as_bytes(), offsets)
    }
}

fn segment_prefix(data_source: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(data_source.len() + 1);
    key.extend_from_slice(data_source.as_bytes());
    key.push(0);
    key
}

fn segment_key(data_source: &str, id: &str) -> Vec<u8> {
    let mut key = segment_prefix(data_source);
    key.extend_from_slice(id.as_bytes());
    key
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| storage(format!("undecodable record: {e}")))
}

/// Decodes every value of a sled iterator, in key order.
fn scan<T: DeserializeOwned>(iter: sled::Iter) -> Result<Vec<T>> {
    iter.map(|entry| {
        let (_, value) = entry.map_err(storage)?;
        decode(&value)
    })
    .collect()
}

fn storage(e: impl std::fmt::Display) -> MetadataError {
    MetadataError::Storage(e.to_string())
}

#[cfg(test)]
mod tests;
