//! The fixed header and trailer of a segment file and its footer directory.
//!
//! ```text
//! header  (16 bytes)  magic "GROVESEG", format version u32, flags u32 (0)
//! blobs               each starting 8-byte aligned, zero padding between them
//! footer              JSON: SegmentMeta and one BlobEntry per blob, in file order
//! trailer (32 bytes)  footer offset u64, footer length u64, footer crc32 u32, 0u32, magic
//! ```
//!
//! The footer is the directory: for each blob its column, part, column type, encoding,
//! compression, offset, stored and uncompressed length and the crc32 of the stored bytes.
//! [`Layout::parse`] checks the header, trailer and footer checksum and that the blobs tile the
//! space between header and footer exactly (padding included), so every byte of a file is covered
//! by a check.

use serde::{Deserialize, Serialize};

use super::SegmentMeta;
use super::codec::{Cursor, put_u32, put_u64};

pub const MAGIC: [u8; 8] = *b"GROVESEG";
/// The format version this build writes. It reads every version from
/// [`FORMAT_VERSION_OLDEST_READ`] to this one and refuses the others by number.
///
/// The rule: a change that would make a reader of the previous version read a file differently
/// from what it means bumps this number: a new or changed encoding, part, compression or blob
/// layout, a new footer field, or a new meaning for an existing field or value (a row order, a
/// null convention). Older readers then refuse the file by its version instead of misreading it;
/// this build keeps reading the older versions (their fixtures in `tests/fixtures` must read
/// back) unless [`FORMAT_VERSION_OLDEST_READ`] is raised on purpose. As a second line, every
/// object of the footer refuses fields it does not know, so a forgotten bump that adds a field
/// still cannot be read as if the field were absent. A change to the bytes that every reader
/// of the current version reads the same way (a better choice within an existing encoding)
/// keeps the number.
///
/// Versions:
/// - 1: the first format. Rows sorted by `__time` first, or, in files written since
///   dimension-first sorting (`meta.schema.timePosition` > 0), by the dimensions before it: a
///   reader from before that field would have read such a file as time-sorted.
/// - 2: the layout of 1; a file may sort dimensions before `__time` (`timePosition`), and
///   every footer object refuses unknown fields.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this build reads.
pub const FORMAT_VERSION_OLDEST_READ: u32 = 1;
pub const HEADER_BYTES: usize = 16;
pub const TRAILER_BYTES: usize = 32;
/// Blobs start at multiples of this.
pub const BLOB_ALIGN: usize = 8;

/// Which piece of a column a blob holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Part {
    /// Long, double or sketch values (and `__time`).
    Values,
    /// Rows whose long/double dimension value is null.
    Nulls,
    /// A string dimension's sorted dictionary.
    Dictionary,
    /// A string dimension's dictionary ids (flattened for multi-value).
    Ids,
    /// Row boundaries: multi-value string rows, sketch bytes.
    Offsets,
    /// One roaring bitmap per dictionary id.
    Bitmaps,
}

impl Part {
    pub const ALL: [Part; 6] = [
        Part::Values,
        Part::Nulls,
        Part::Dictionary,
        Part::Ids,
        Part::Offsets,
        Part::Bitmaps,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Part::Values => "values",
            Part::Nulls => "nulls",
            Part::Dictionary => "dictionary",
            Part::Ids => "ids",
            Part::Offsets => "offsets",
            Part::Bitmaps => "bitmaps",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The type of the column a blob belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ColumnType {
    Long,
    Double,
    String,
    Sketch,
}

/// How a blob's (uncompressed) bytes are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Encoding {
    /// Blocks of frame-of-reference / delta bit-packed longs (`longs.rs`).
    Longs,
    /// Raw little-endian f64 (`doubles.rs`).
    Doubles,
    /// Front-coded sorted strings (`dictionary.rs`).
    FrontCoded,
    /// Bit-packed dictionary ids (`strings.rs`).
    BitPacked,
    /// One serialized roaring bitmap.
    Roaring,
    /// An offset table and serialized roaring bitmaps (`strings.rs`).
    RoaringList,
    /// Opaque bytes, cut by an offsets part.
    Bytes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BlobCompression {
    None,
    Zstd,
}

/// One blob of the footer directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlobEntry {
    pub column: String,
    pub part: Part,
    #[serde(rename = "type")]
    pub column_type: ColumnType,
    pub encoding: Encoding,
    pub compression: BlobCompression,
    /// From the start of the file.
    pub offset: u64,
    /// Stored bytes.
    pub length: u64,
    /// Bytes after decompression (equal to `length` when not compressed).
    pub uncompressed_length: u64,
    /// crc32 of the stored bytes.
    pub crc32: u32,
}

/// The footer directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Footer {
    pub meta: SegmentMeta,
    pub blobs: Vec<BlobEntry>,
}

pub fn header() -> [u8; HEADER_BYTES] {
    let mut out = [0u8; HEADER_BYTES];
    out[..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out
}

pub fn trailer(footer_offset: u64, footer: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(TRAILER_BYTES);
    put_u64(&mut out, footer_offset);
    put_u64(&mut out, footer.len() as u64);
    put_u32(&mut out, crc32fast::hash(footer));
    put_u32(&mut out, 0);
    out.extend_from_slice(&MAGIC);
    out
}

/// What went wrong reading the fixed parts of a file; the reader turns it into a
/// `SegmentError` naming the segment.
#[derive(Debug, PartialEq)]
pub enum LayoutError {
    /// (column, message): `(header)`, `(trailer)`, `(footer)` or a blob's column.
    Corrupt(String, String),
    UnsupportedVersion(u32),
}

fn corrupt(column: &str, message: impl Into<String>) -> LayoutError {
    LayoutError::Corrupt(column.to_string(), message.into())
}

/// A checked footer directory.
pub struct Layout {
    pub footer: Footer,
}

impl Layout {
    /// Checks magic, version, flags, trailer, footer checksum and blob tiling, as a reader of
    /// the versions this build reads.
    pub fn parse(file: &[u8]) -> Result<Layout, LayoutError> {
        Layout::parse_as_reader_of(file, FORMAT_VERSION_OLDEST_READ..=FORMAT_VERSION)
    }

    /// [`Layout::parse`] as a reader of `versions` would: how tests play an older or newer
    /// build.
    pub fn parse_as_reader_of(
        file: &[u8],
        versions: std::ops::RangeInclusive<u32>,
    ) -> Result<Layout, LayoutError> {
        if file.len() >= MAGIC.len() && file[..MAGIC.len()] != MAGIC {
            return Err(corrupt("(header)", "bad magic: not a grove segment file"));
        }
        if file.len() < HEADER_BYTES + TRAILER_BYTES {
            return Err(corrupt(
                "(header)",
                format!(
                    "file is {} bytes, too short for a segment (truncated?)",
                    file.len()
                ),
            ));
        }
        let mut header = Cursor::new(&file[..HEADER_BYTES]);
        let magic = header
            .take(8, "magic")
            .map_err(|m| corrupt("(header)", m))?;
        if magic != MAGIC {
            return Err(corrupt("(header)", "bad magic: not a grove segment file"));
        }
        let version = header.u32("version").map_err(|m| corrupt("(header)", m))?;
        if !versions.contains(&version) {
            return Err(LayoutError::UnsupportedVersion(version));
        }
        let flags = header.u32("flags").map_err(|m| corrupt("(header)", m))?;
        if flags != 0 {
            return Err(corrupt("(header)", format!("unknown flags {flags:#x}")));
        }
        let trailer_at = file.len() - TRAILER_BYTES;
        let mut trailer = Cursor::new(&file[trailer_at..]);
        let bad_trailer = |m: String| corrupt("(trailer)", m);
        let footer_offset = trailer.u64("footer offset").map_err(bad_trailer)?;
        let footer_len = trailer.u64("footer length").map_err(bad_trailer)?;
        let footer_crc = trailer.u32("footer checksum").map_err(bad_trailer)?;
        let reserved = trailer.u32("reserved").map_err(bad_trailer)?;
        let magic = trailer.take(8, "magic").map_err(bad_trailer)?;
        if magic != MAGIC {
            return Err(corrupt(
                "(trailer)",
                "bad trailing magic (truncated or torn write?)",
            ));
        }
        if reserved != 0 {
            return Err(corrupt("(trailer)", "reserved bytes are not zero"));
        }
        if footer_offset < HEADER_BYTES as u64
            || footer_offset.checked_add(footer_len) != Some(trailer_at as u64)
        {
            return Err(corrupt(
                "(trailer)",
                format!(
                    "footer at {footer_offset} of {footer_len} bytes does not end at the trailer ({trailer_at})"
                ),
            ));
        }
        let footer_bytes = &file[footer_offset as usize..trailer_at];
        if crc32fast::hash(footer_bytes) != footer_crc {
            return Err(corrupt("(footer)", "checksum mismatch"));
        }
        let footer: Footer = serde_json::from_slice(footer_bytes)
            .map_err(|e| corrupt("(footer)", format!("cannot parse the directory: {e}")))?;
        check_tiling(file, &footer.blobs, footer_offset as usize)?;
        Ok(Layout { footer })
    }
}

/// Blobs must follow each other in file order from the header to the footer, each at the next
/// aligned offset, with zero padding.
fn check_tiling(file: &[u8], blobs: &[BlobEntry], footer_offset: usize) -> Result<(), LayoutError> {
    let mut end = HEADER_BYTES;
    for blob in blobs {
        let start = end.next_multiple_of(BLOB_ALIGN);
        if blob.offset != start as u64 {
            return Err(corrupt(
                &blob.column,
                format!(
                    "{} blob at offset {}, expected {start}",
                    blob.part.name(),
                    blob.offset
                ),
            ));
        }
        if start > footer_offset || file[end..start].iter().any(|&b| b != 0) {
            return Err(corrupt(&blob.column, "padding before the blob is not zero"));
        }
        let blob_end = usize::try_from(blob.length)
            .ok()
            .and_then(|len| start.checked_add(len))
            .filter(|&e| e <= footer_offset)
            .ok_or_else(|| {
                corrupt(
                    &blob.column,
                    format!(
                        "{} blob of {} bytes runs past the footer",
                        blob.part.name(),
                        blob.length
                    ),
                )
            })?;
        if blob.compression == BlobCompression::None && blob.uncompressed_length != blob.length {
            return Err(corrupt(
                &blob.column,
                "uncompressed blob with two different lengths",
            ));
        }
        end = blob_end;
    }
    if end != footer_offset {
        return Err(corrupt(
            "(footer)",
            format!("blobs end at {end}, footer starts at {footer_offset}"),
        ));
    }
    Ok(())
}
