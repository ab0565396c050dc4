//! The immutable segment file format: [`write_segment`] lays
//! [`SegmentColumns`](crate::columns::SegmentColumns) out on disk and
//! [`Segment`] reads them back from a memory map without copying.
//!
//! A file is a header (magic, version, flags), column blobs, a JSON footer directory (the
//! [`SegmentMeta`] plus, per blob, column, part, type, encoding, compression, offset, lengths and
//! crc32) and a fixed trailer pointing at the footer (see [`footer`]). Encodings:
//! - longs (`__time`, long dimensions and metrics, offsets): blocks of 1024 values, each frame of
//!   reference or delta, bit-packed at the smallest width ([`longs`], [`bitpack`]);
//! - doubles: raw little-endian f64 ([`doubles`] explains why not XOR);
//! - string dimensions: front-coded dictionary ([`dictionary`]) with null as id 0, bit-packed ids,
//!   multi-value offsets, one roaring bitmap per id ([`strings`]);
//! - nulls of long/double dimensions: one serialized roaring bitmap;
//! - sketches: concatenated bytes cut by an offsets column ([`sketches`]).
//!
//! With [`Compression::Zstd`] each blob is zstd-compressed when that makes it smaller; the reader
//! decompresses a blob on first use and caches it. [`Compression::None`] is the hot path: reads
//! come straight from the map.
//!
//! Checking: opening checks header, trailer, footer checksum and that blobs tile the file. Each
//! blob's crc32 is verified lazily on its first use and the result cached, and each column's
//! cross-part structure (dictionary order and UTF-8, ids below the dictionary length, offsets in
//! order, null rows in range) is validated once, on first use; [`Segment::verify`] does all of
//! it up front. Every read path therefore goes through a verified blob, and decoders
//! bounds-check lengths and offsets, so even a corrupt file whose checksum collided yields errors,
//! never a panic or an out-of-bounds read.

pub mod bitmaps;
pub mod bitpack;
pub mod codec;
pub mod dictionary;
pub mod doubles;
pub mod footer;
pub mod longs;
mod materialize;
mod reader;
pub mod sketches;
pub mod strings;
mod writer;

use serde::{Deserialize, Serialize};

pub use doubles::DoubleColumn;
pub use footer::{
    BlobCompression, BlobEntry, ColumnType, Encoding, FORMAT_VERSION, FORMAT_VERSION_OLDEST_READ,
    Part,
};
pub use longs::{BLOCK_ROWS, LongColumn};
pub use reader::{DerivedColumns, DimensionReader, MetricReader, Segment};
pub use sketches::SketchColumn;
pub use strings::{StringColumn, ValueCoupons};
pub use writer::{write_segment, write_segment_to};

use crate::error::SegmentError;

/// What a segment is, stored in its footer. Like every footer object it refuses fields it does
/// not know (see [`FORMAT_VERSION`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SegmentMeta {
    pub id: crate::id::SegmentId,
    /// Dimensions, metrics, granularities, roll-up, datasource.
    pub schema: crate::schema::Schema,
    pub num_rows: u64,
    /// Smallest `__time`; 0 when empty.
    pub time_min_ms: i64,
    /// Largest `__time`; 0 when empty.
    pub time_max_ms: i64,
}

/// How blobs are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    /// Raw blobs, read in place from the memory map (the hot format).
    #[default]
    None,
    /// Each blob zstd-compressed at `level` (kept raw when compression does not shrink it): for
    /// deep storage and cold tiers.
    Zstd { level: i32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct WriteOptions {
    pub compression: Compression,
}

/// Segment and column names for error messages.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Names<'a> {
    pub segment: &'a str,
    pub column: &'a str,
}

impl Names<'_> {
    pub fn corrupt(&self, message: impl Into<String>) -> SegmentError {
        SegmentError::Corrupt {
            segment: self.segment.to_string(),
            column: self.column.to_string(),
            message: message.into(),
        }
    }
}

/// The name of the time column.
pub const TIME_COLUMN: &str = "__time";

// A segment is shared between query threads behind an `Arc`.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Segment>();
};
