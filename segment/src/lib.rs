//! # grove-segment — data model, ingestion and the immutable segment format
//!
//! Role: everything between a Druid ingestion spec and an immutable, memory-mapped segment file in
//! deep storage. Data flows
//! `spec` → `input` readers → [`row::InputRow`] → `index` (roll-up in memory, bounded) →
//! [`columns::SegmentColumns`] → `format` writer → segment file → `deep_storage`;
//! `merge` combines persisted parts (re-applying roll-up) and `timeline` decides which segment
//! versions are visible.
//!
//! Main types: `spec::IngestionSpec`, [`schema::Schema`], `index::IncrementalIndex`,
//! [`columns::SegmentColumns`], `format::Segment` (reader), `id::SegmentId`,
//! `timeline::Timeline`, `deep_storage::DeepStorage`.
//!
//! Invariants: rows in a segment are sorted by (`__time`, dimensions); dictionaries are sorted
//! and unique with null first; every column blob carries a checksum that every read verifies; a
//! malformed input row is counted and reported with its position, never silently dropped.
//!
//! Must never depend on: tokio, actix, quinn, openraft or any other Grove crate. I/O here is
//! synchronous and confined to the reader, writer and deep-storage modules.

pub mod columns;
pub mod deep_storage;
pub mod error;
pub mod filter;
pub mod format;
pub mod id;
pub mod index;
pub mod ingest;
pub mod input;
pub mod merge;
pub mod row;
pub mod schema;
pub mod sketch;
pub mod spec;
pub mod time;
pub mod timeline;

pub use error::{Result, SegmentError};
