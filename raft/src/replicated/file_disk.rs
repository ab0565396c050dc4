//! [`FileDisk`]: a member's [`Disk`] in files of Grove's own, made durable with `fdatasync`
//! and `fsync` (production; the simulator plugs in its own disk).
//!
//! Why not sled: sled 0.34 reaches the device with `sync_file_range`, which writes the pages
//! but flushes neither the file's metadata nor the drive's write cache, and it never syncs the
//! separate files it keeps large values in (every snapshot is one), nor their directory: an
//! entry counted toward a quorum, or the snapshot the log was purged behind, could vanish in a
//! power cut. Its flusher and I/O thread pool were also ~40% of the raft bench's CPU.
//!
//! Layout of the member's directory:
//! - `LOCK`: held (an exclusive `flock`) while the disk is open, so two processes never share
//!   the directory.
//! - `wal-<id>.log`: the write-ahead log of trees [`Tree::Log`] and [`Tree::Meta`], in
//!   segments of about [`SEGMENT_BYTES_MAX`]. A segment starts with [`SEGMENT_MAGIC`] and
//!   holds records; a record is one [`Disk::write`] batch: `u32` body length, `u32` CRC-32 of
//!   the body, the body (the tree, then each key and its new value or its removal). A record
//!   whose checksum fails ends the log: at open, the tail of the last segment from the first
//!   bad record on is cut off (a torn write of a batch never synced); a bad record anywhere
//!   else is corruption and refuses to open.
//! - `snap-<hex key>`: each value of tree [`Tree::Snapshot`] in a file of its own, written as
//!   `*.tmp`, `fsync`ed, renamed over the old one, then the directory `fsync`ed: a crash leaves
//!   the old value or the new one, whole.
//!
//! In memory: the meta tree whole (a few small values) and, for the log tree, where each
//! value lies (segment, offset, length); values are read back with `pread`.
//!
//! Durability (the [`Disk`] contract): a write is one `pwrite` of one record; [`Disk::sync`]
//! `fdatasync`s the segment written last (a rotated segment was synced when it stopped being
//! written). Concurrent syncs are combined: one `fdatasync` answers every write made before it
//! started. A new segment is created with a checkpoint of the meta tree, synced, and the
//! directory `fsync`ed before anything depends on it. A segment is deleted (then the directory
//! `fsync`ed) once no log value lives in it any more and the records that removed them are
//! synced, oldest first, so replaying what is left gives the state as of the last sync.
//! Snapshot values are durable when `write` returns (their files are synced there).
//!
//! [`FileDisk::sync_counts`] reports the syncs made (the counting seam the tests observe).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::disk::{BatchOp, BlockingFuture, BlockingJob, Disk, KeyValue, Tree};

/// A segment stops taking records once it holds this many bytes (a record larger than what
/// is left still goes whole into the next one).
pub const SEGMENT_BYTES_MAX: u64 = 64 << 20;

/// The first bytes of every segment: the format's name and version.
pub const SEGMENT_MAGIC: &[u8; 8] = b"GROVWAL1";

/// A record's header: body length and CRC-32, each `u32` little-endian.
const RECORD_HEADER_BYTES: usize = 8;

/// The syncs a [`FileDisk`] has made, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncCounts {
    /// `fdatasync` of a log segment.
    pub data: u64,
    /// `fsync` of a file (a new segment's tail cut, a snapshot value).
    pub file: u64,
    /// `fsync` of the directory (a file created, renamed or deleted).
    pub dir: u64,
}

#[derive(Default)]
struct Counters {
    data: AtomicU64,
    file: AtomicU64,
    dir: AtomicU64,
}

/// Where a log value lies.
#[derive(Clone, Copy, Debug)]
struct Location {
    segment: u64,
    offset: u64,
    len: u32,
}

struct Segment {
    file: Arc<File>,
    /// Bytes written (the next record goes here).
    len: u64,
    /// Log values whose latest write is in this segment.
    live: usize,
    /// The record (by write sequence) after which `live` last fell to 0.
    emptied_at: u64,
}

struct State {
    meta: BTreeMap<Vec<u8>, Vec<u8>>,
    log: BTreeMap<Vec<u8>, Location>,
    segments: BTreeMap<u64, Segment>,
    active: u64,
    /// Records written so far (each write's sequence number is the count after it).
    written: u64,
}

struct Inner {
    dir: PathBuf,
    /// Held for the exclusive lock on `LOCK`.
    _lock: File,
    state: Mutex<State>,
    /// Serializes `fdatasync`s, so waiters find their writes synced by the one before.
    syncing: Mutex<()>,
    /// Every record up to this sequence is durable.
    synced: AtomicU64,
    /// Set by a failed write or sync: the page cache may have dropped what it held, so
    /// nothing is acknowledged from this handle again (reopen to see what is on disk).
    failed: std::sync::atomic::AtomicBool,
    counters: Counters,
}

/// A member's disk in its own directory (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct FileDisk {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FileDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDisk")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

fn segment_name(id: u64) -> String {
    format!("wal-{id:016x}.log")
}

fn segment_id(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

fn snapshot_name(key: &[u8]) -> String {
    let mut name = String::from("snap-");
    for byte in key {
        name.push_str(&format!("{byte:02x}"));
    }
    name
}

fn snapshot_key(name: &str) -> Option<Vec<u8>> {
    let hex = name.strip_prefix("snap-")?;
    if hex.len() % 2 != 0 || hex.is_empty() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

fn tree_byte(tree: Tree) -> u8 {
    match tree {
        Tree::Log => 0,
        Tree::Meta => 1,
        Tree::Snapshot => 2,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn corrupt(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// One batch as a record: header, then the body.
fn encode_record(tree: Tree, batch: &[BatchOp]) -> io::Result<Vec<u8>> {
    let too_large = || io::Error::other("a batch over 4 GiB");
    let mut body = Vec::with_capacity(
        5 + batch
            .iter()
            .map(|(k, v)| 9 + k.len() + v.as_ref().map_or(0, Vec::len))
            .sum::<usize>(),
    );
    body.push(tree_byte(tree));
    body.extend_from_slice(
        &u32::try_from(batch.len())
            .map_err(|_| too_large())?
            .to_le_bytes(),
    );
    for (key, value) in batch {
        body.extend_from_slice(
            &u32::try_from(key.len())
                .map_err(|_| too_large())?
                .to_le_bytes(),
        );
        body.extend_from_slice(key);
        match value {
            Some(value) => {
                body.push(1);
                body.extend_from_slice(
                    &u32::try_from(value.len())
                        .map_err(|_| too_large())?
                        .to_le_bytes(),
                );
                body.extend_from_slice(value);
            }
            None => body.push(0),
        }
    }
    let mut record = Vec::with_capacity(RECORD_HEADER_BYTES + body.len());
    record.extend_from_slice(
        &u32::try_from(body.len())
            .map_err(|_| too_large())?
            .to_le_bytes(),
    );
    record.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    record.extend_from_slice(&body);
    Ok(record)
}

/// One op of a decoded record: the key, and the value's offset and length in the record's
/// segment (`None`: a removal).
type DecodedOp = (Vec<u8>, Option<(u64, u32)>);

/// Decodes the record at `at` of `bytes` (a whole segment): its tree, its ops and the offset
/// after it; `None` if no whole, intact record starts there.
fn decode_record(bytes: &[u8], at: usize) -> Option<(Tree, Vec<DecodedOp>, usize)> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    let body_len = u32_at(at)? as usize;
    let crc = u32_at(at + 4)?;
    let start = at + RECORD_HEADER_BYTES;
    let end = start.checked_add(body_len)?;
    let body = bytes.get(start..end)?;
    if body_len < 5 || crc32fast::hash(body) != crc {
        return None;
    }
    let tree = match body[0] {
        0 => Tree::Log,
        1 => Tree::Meta,
        _ => return None,
    };
    let count = u32_at(start + 1)? as usize;
    let mut ops = Vec::with_capacity(count.min(body_len));
    let mut cursor = start + 5;
    for _ in 0..count {
        let key_len = u32_at(cursor)? as usize;
        let key = bytes.get(cursor + 4..cursor + 4 + key_len)?.to_vec();
        cursor += 4 + key_len;
        match *bytes.get(cursor)? {
            0 => {
                ops.push((key, None));
                cursor += 1;
            }
            1 => {
                let value_len = u32_at(cursor + 1)?;
                let value_at = cursor + 5;
                bytes.get(value_at..value_at + value_len as usize)?;
                ops.push((key, Some((value_at as u64, value_len))));
                cursor = value_at + value_len as usize;
            }
            _ => return None,
        }
    }
    (cursor == end).then_some((tree, ops, end))
}

impl FileDisk {
    /// Opens (creating if needed) the disk in `dir`: takes its lock, replays its log (cutting
    /// off a torn tail), and starts a new segment.
    pub fn open(dir: &Path) -> io::Result<FileDisk> {
        let context = |what: &str, e: io::Error| {
            io::Error::new(e.kind(), format!("{what} {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| context("creating", e))?;
        if dir.join("conf").exists() && dir.join("db").exists() {
            return Err(io::Error::other(format!(
                "{} holds a sled database of an earlier Grove build; this build keeps the \
                 Raft log in files of its own and cannot read it: recreate the directory",
                dir.display()
            )));
        }
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))
            .map_err(|e| context("opening the lock file in", e))?;
        lock_file.try_lock().map_err(|e| {
            io::Error::other(format!(
                "{} is in use by another process (its LOCK is held): {e}",
                dir.display()
            ))
        })?;
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| context("listing", e))? {
            let entry = entry.map_err(|e| context("listing", e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = segment_id(&name) {
                ids.push(id);
            } else if name.starts_with("snap-") && name.ends_with(".tmp") {
                // A snapshot value whose write did not finish: the old value is in place.
                std::fs::remove_file(entry.path()).map_err(|e| context("cleaning", e))?;
            }
        }
        ids.sort_unstable();
        let disk = FileDisk {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                _lock: lock_file,
                state: Mutex::new(State {
                    meta: BTreeMap::new(),
                    log: BTreeMap::new(),
                    segments: BTreeMap::new(),
                    active: 0,
                    written: 0,
                }),
                syncing: Mutex::new(()),
                synced: AtomicU64::new(0),
                failed: std::sync::atomic::AtomicBool::new(false),
                counters: Counters::default(),
            }),
        };
        {
            let mut state = lock(&disk.inner.state);
            for (position, id) in ids.iter().enumerate() {
                let last = position + 1 == ids.len();
                disk.replay(&mut state, *id, last)?;
            }
            let next = ids.last().map_or(1, |id| id + 1);
            disk.start_segment(&mut state, next)?;
        }
        disk.collect_garbage()?;
        Ok(disk)
    }

    /// The syncs made so far.
    pub fn sync_counts(&self) -> SyncCounts {
        let counters = &self.inner.counters;
        SyncCounts {
            data: counters.data.load(Ordering::Relaxed),
            file: counters.file.load(Ordering::Relaxed),
            dir: counters.dir.load(Ordering::Relaxed),
        }
    }

    /// The directory this disk lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.inner.dir.join(name)
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.inner.dir)?.sync_all()?;
        self.inner.counters.dir.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn sync_file(&self, file: &File) -> io::Result<()> {
        file.sync_all()?;
        self.inner.counters.file.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn sync_file_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()?;
        self.inner.counters.data.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Replays segment `id` into `state`; the last segment's torn tail is cut off.
    fn replay(&self, state: &mut State, id: u64, last: bool) -> io::Result<()> {
        let path = self.path(&segment_name(id));
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let mut bytes = Vec::new();
        (&file).read_to_end(&mut bytes)?;
        let mut at = 0;
        if bytes.len() >= SEGMENT_MAGIC.len() {
            if &bytes[..SEGMENT_MAGIC.len()] != SEGMENT_MAGIC {
                return Err(corrupt(format!(
                    "{}: not a Grove log segment (or of another format version)",
                    path.display()
                )));
            }
            at = SEGMENT_MAGIC.len();
        }
        state.segments.insert(
            id,
            Segment {
                file: Arc::new(file),
                len: 0,
                live: 0,
                emptied_at: 0,
            },
        );
        if at > 0 {
            while let Some((tree, ops, end)) = decode_record(&bytes, at) {
                state.written += 1;
                apply_ops(state, tree, id, &bytes, ops);
                at = end;
            }
        }
        if at < bytes.len() {
            if !last {
                return Err(corrupt(format!(
                    "{}: a damaged record at byte {at}, before the last segment's tail",
                    path.display()
                )));
            }
            // A write never synced (it was never acknowledged): cut it off for good (synced
            // below), so the segment reads the same after the next crash too.
            state.segments[&id].file.set_len(at as u64)?;
        }
        // What was replayed may be only in the page cache (the process crashed before its
        // sync): it is read as the log from now on, so it must be durable first.
        self.sync_file(&state.segments[&id].file)?;
        state.segments.get_mut(&id).expect("inserted above").len = at as u64;
        Ok(())
    }

    /// Creates segment `id`, writes a checkpoint of the meta tree to it, syncs it and the
    /// directory, and makes it the one written to.
    fn start_segment(&self, state: &mut State, id: u64) -> io::Result<()> {
        let path = self.path(&segment_name(id));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let checkpoint: Vec<BatchOp> = state
            .meta
            .iter()
            .map(|(key, value)| (key.clone(), Some(value.clone())))
            .collect();
        let mut bytes = SEGMENT_MAGIC.to_vec();
        if !checkpoint.is_empty() {
            bytes.extend_from_slice(&encode_record(Tree::Meta, &checkpoint)?);
        }
        file.write_all_at(&bytes, 0)?;
        self.sync_file_data(&file)?;
        self.sync_dir()?;
        if !checkpoint.is_empty() {
            state.written += 1;
        }
        state.segments.insert(
            id,
            Segment {
                file: Arc::new(file),
                len: bytes.len() as u64,
                live: 0,
                emptied_at: state.written,
            },
        );
        state.active = id;
        // Everything before the new segment is in synced segments (the previous one was
        // synced before this was started, or at open everything replayed was on disk).
        self.inner
            .synced
            .fetch_max(state.written, Ordering::Relaxed);
        Ok(())
    }

    /// Deletes the oldest segments no log value lives in any more, once the records that
    /// emptied them are synced.
    fn collect_garbage(&self) -> io::Result<()> {
        let synced = self.inner.synced.load(Ordering::Relaxed);
        let mut state = lock(&self.inner.state);
        let mut deleted = false;
        while let Some((&id, segment)) = state.segments.first_key_value() {
            if id == state.active || segment.live > 0 || segment.emptied_at > synced {
                break;
            }
            std::fs::remove_file(self.path(&segment_name(id)))?;
            state.segments.remove(&id);
            deleted = true;
        }
        drop(state);
        if deleted {
            self.sync_dir()?;
        }
        Ok(())
    }

    fn write_snapshot_values(&self, batch: Vec<BatchOp>) -> io::Result<()> {
        for (key, value) in batch {
            let path = self.path(&snapshot_name(&key));
            match value {
                Some(value) => {
                    let temporary = path.with_extension("tmp");
                    let file = OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .open(&temporary)?;
                    file.write_all_at(&value, 0)?;
                    self.sync_file(&file)?;
                    std::fs::rename(&temporary, &path)?;
                }
                None => match std::fs::remove_file(&path) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    other => other?,
                },
            }
        }
        self.sync_dir()
    }

    fn snapshot_keys(&self) -> io::Result<Vec<Vec<u8>>> {
        let mut keys = Vec::new();
        for entry in std::fs::read_dir(&self.inner.dir)? {
            let name = entry?.file_name();
            if let Some(key) = snapshot_key(&name.to_string_lossy()) {
                keys.push(key);
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn read_snapshot_value(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(&snapshot_name(key))) {
            Ok(value) => Ok(Some(value)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Where the log values of `keys` lie, with their segments' files (taken under one
    /// lock: a segment is deleted only once no value lives in it).
    fn locate(
        &self,
        keys: impl FnOnce(&State) -> Vec<(Vec<u8>, Location)>,
    ) -> Vec<(Vec<u8>, Location, Arc<File>)> {
        let state = lock(&self.inner.state);
        keys(&state)
            .into_iter()
            .map(|(key, at)| {
                let file = Arc::clone(&state.segments[&at.segment].file);
                (key, at, file)
            })
            .collect()
    }

    /// Reads the located log values (outside the lock: `pread`s).
    fn read_values(located: Vec<(Vec<u8>, Location, Arc<File>)>) -> io::Result<Vec<KeyValue>> {
        located
            .into_iter()
            .map(|(key, at, file)| {
                let mut value = vec![0; at.len as usize];
                file.read_exact_at(&mut value, at.offset)?;
                Ok((key, value))
            })
            .collect()
    }

    fn check_usable(&self) -> io::Result<()> {
        if self.inner.failed.load(Ordering::Relaxed) {
            return Err(io::Error::other(format!(
                "{}: an earlier write or sync failed; reopen the disk",
                self.inner.dir.display()
            )));
        }
        Ok(())
    }

    fn fail(&self, error: io::Error) -> io::Error {
        self.inner.failed.store(true, Ordering::Relaxed);
        error
    }
}

/// Applies a decoded record of segment `id` (whose bytes are `bytes`) to the index.
fn apply_ops(state: &mut State, tree: Tree, id: u64, bytes: &[u8], ops: Vec<DecodedOp>) {
    for (key, value) in ops {
        match (tree, value) {
            (Tree::Meta, Some((at, len))) => {
                let value = bytes[at as usize..at as usize + len as usize].to_vec();
                state.meta.insert(key, value);
            }
            (Tree::Meta, None) => {
                state.meta.remove(&key);
            }
            (_, Some((offset, len))) => index_put(
                state,
                key,
                Location {
                    segment: id,
                    offset,
                    len,
                },
            ),
            (_, None) => index_remove(state, &key),
        }
    }
}

fn index_put(state: &mut State, key: Vec<u8>, location: Location) {
    if let Some(old) = state.log.insert(key, location) {
        release(state, old.segment);
    }
    if let Some(segment) = state.segments.get_mut(&location.segment) {
        segment.live += 1;
    }
}

fn index_remove(state: &mut State, key: &[u8]) {
    if let Some(old) = state.log.remove(key) {
        release(state, old.segment);
    }
}

fn release(state: &mut State, segment: u64) {
    let written = state.written;
    if let Some(segment) = state.segments.get_mut(&segment) {
        segment.live -= 1;
        if segment.live == 0 {
            segment.emptied_at = written;
        }
    }
}

impl Disk for FileDisk {
    fn get(&self, tree: Tree, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        match tree {
            Tree::Snapshot => self.read_snapshot_value(key),
            Tree::Meta => Ok(lock(&self.inner.state).meta.get(key).cloned()),
            Tree::Log => {
                let located = self.locate(|state| {
                    state
                        .log
                        .get(key)
                        .map(|at| (key.to_vec(), *at))
                        .into_iter()
                        .collect()
                });
                Ok(Self::read_values(located)?.pop().map(|(_, value)| value))
            }
        }
    }

    fn range(
        &self,
        tree: Tree,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> io::Result<Vec<KeyValue>> {
        let owned = |bound: Bound<&[u8]>| bound.map(<[u8]>::to_vec);
        let bounds = (owned(start), owned(end));
        match tree {
            Tree::Snapshot => {
                let keys = self.snapshot_keys()?;
                let mut values = Vec::new();
                for key in keys {
                    if std::ops::RangeBounds::contains(&bounds, &key)
                        && let Some(value) = self.read_snapshot_value(&key)?
                    {
                        values.push((key, value));
                    }
                }
                Ok(values)
            }
            Tree::Meta => Ok(lock(&self.inner.state)
                .meta
                .range(bounds)
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect()),
            Tree::Log => {
                let located = self.locate(|state| {
                    state
                        .log
                        .range(bounds)
                        .map(|(key, at)| (key.clone(), *at))
                        .collect()
                });
                Self::read_values(located)
            }
        }
    }

    fn keys(&self, tree: Tree, start: Bound<&[u8]>, end: Bound<&[u8]>) -> io::Result<Vec<Vec<u8>>> {
        let owned = |bound: Bound<&[u8]>| bound.map(<[u8]>::to_vec);
        let bounds = (owned(start), owned(end));
        let state = lock(&self.inner.state);
        Ok(match tree {
            Tree::Log => state
                .log
                .range(bounds)
                .map(|(key, _)| key.clone())
                .collect(),
            Tree::Meta => state
                .meta
                .range(bounds)
                .map(|(key, _)| key.clone())
                .collect(),
            Tree::Snapshot => {
                drop(state);
                let keys = self.snapshot_keys()?;
                keys.into_iter()
                    .filter(|key| std::ops::RangeBounds::contains(&bounds, key))
                    .collect()
            }
        })
    }

    fn last(&self, tree: Tree) -> io::Result<Option<KeyValue>> {
        match tree {
            Tree::Snapshot => match self.snapshot_keys()?.pop() {
                Some(key) => Ok(self.read_snapshot_value(&key)?.map(|value| (key, value))),
                None => Ok(None),
            },
            Tree::Meta => Ok(lock(&self.inner.state)
                .meta
                .last_key_value()
                .map(|(key, value)| (key.clone(), value.clone()))),
            Tree::Log => {
                let located = self.locate(|state| {
                    state
                        .log
                        .last_key_value()
                        .map(|(key, at)| (key.clone(), *at))
                        .into_iter()
                        .collect()
                });
                Ok(Self::read_values(located)?.pop())
            }
        }
    }

    fn write(&self, tree: Tree, batch: Vec<BatchOp>) -> io::Result<()> {
        if tree == Tree::Snapshot {
            return self.write_snapshot_values(batch);
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.check_usable()?;
        let record = encode_record(tree, &batch)?;
        let mut state = lock(&self.inner.state);
        let active_len = state.segments[&state.active].len;
        if active_len > SEGMENT_MAGIC.len() as u64
            && active_len + record.len() as u64 > SEGMENT_BYTES_MAX
        {
            // The segment is full: make it durable (the next one's checkpoint and later
            // deletions depend on it), then start the next.
            let full = Arc::clone(&state.segments[&state.active].file);
            self.sync_file_data(&full).map_err(|e| self.fail(e))?;
            self.inner
                .synced
                .fetch_max(state.written, Ordering::Relaxed);
            let next = state.active + 1;
            self.start_segment(&mut state, next)
                .map_err(|e| self.fail(e))?;
        }
        let id = state.active;
        let offset = state.segments[&id].len;
        let file = Arc::clone(&state.segments[&id].file);
        if let Err(e) = file.write_all_at(&record, offset) {
            // Whatever part of it landed is not a record; the disk takes no more writes.
            let _ = file.set_len(offset);
            return Err(self.fail(e));
        }
        state.segments.get_mut(&id).expect("active segment").len += record.len() as u64;
        state.written += 1;
        let ops = batch
            .into_iter()
            .scan(
                offset as usize + RECORD_HEADER_BYTES + 5,
                |cursor, (key, value)| {
                    let key_at = *cursor + 4;
                    *cursor = key_at + key.len() + 1;
                    let value = value.map(|value| {
                        let value_at = *cursor + 4;
                        *cursor = value_at + value.len();
                        (value_at as u64, value.len() as u32, value)
                    });
                    Some((key, value))
                },
            )
            .collect::<Vec<_>>();
        for (key, value) in ops {
            match (tree, value) {
                (Tree::Meta, Some((_, _, value))) => {
                    state.meta.insert(key, value);
                }
                (Tree::Meta, None) => {
                    state.meta.remove(&key);
                }
                (_, Some((offset, len, _))) => index_put(
                    &mut state,
                    key,
                    Location {
                        segment: id,
                        offset,
                        len,
                    },
                ),
                (_, None) => index_remove(&mut state, &key),
            }
        }
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        self.check_usable()?;
        let target = lock(&self.inner.state).written;
        {
            let _turn = lock(&self.inner.syncing);
            if self.inner.synced.load(Ordering::Relaxed) >= target {
                return Ok(());
            }
            // Everything written by now is in the active segment or in one synced when it
            // stopped being written.
            let (upto, file) = {
                let state = lock(&self.inner.state);
                (
                    state.written,
                    Arc::clone(&state.segments[&state.active].file),
                )
            };
            // A failed fdatasync may have dropped the dirty pages it was to write (and a
            // retry would then succeed without them): the disk takes nothing more.
            self.sync_file_data(&file).map_err(|e| self.fail(e))?;
            self.inner.synced.fetch_max(upto, Ordering::Relaxed);
        }
        self.collect_garbage()
    }

    /// On tokio's blocking pool: an `fdatasync` (0.1 ms to several ms), a snapshot's write
    /// or its encoding would otherwise hold a runtime worker. A paused test clock stays still
    /// while the job runs, as it would for work done in place.
    fn run_blocking(&self, job: BlockingJob) -> BlockingFuture {
        Box::pin(async move {
            let _ = tokio::task::spawn_blocking(job).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &[u8], value: &[u8]) -> BatchOp {
        (key.to_vec(), Some(value.to_vec()))
    }

    fn all(disk: &FileDisk, tree: Tree) -> Vec<KeyValue> {
        disk.range(tree, Bound::Unbounded, Bound::Unbounded)
            .unwrap()
    }

    #[test]
    fn writes_read_back_after_reopening_and_syncs_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FileDisk::open(dir.path()).unwrap();
        disk.write(
            Tree::Log,
            vec![put(b"\0\x01", b"one"), put(b"\0\x02", b"two")],
        )
        .unwrap();
        disk.write(Tree::Meta, vec![put(b"vote", b"v1")]).unwrap();
        disk.write(Tree::Log, vec![(b"\0\x01".to_vec(), None)])
            .unwrap();
        disk.write(Tree::Snapshot, vec![put(b"snapshot", b"state")])
            .unwrap();
        let before = disk.sync_counts();
        disk.sync().unwrap();
        assert_eq!(disk.sync_counts().data, before.data + 1);
        // Nothing written since: a second sync has nothing to do.
        disk.sync().unwrap();
        assert_eq!(disk.sync_counts().data, before.data + 1);
        assert!(
            FileDisk::open(dir.path()).is_err(),
            "a second opener is refused while the first holds the lock"
        );
        drop(disk);

        let disk = FileDisk::open(dir.path()).unwrap();
        assert_eq!(
            all(&disk, Tree::Log),
            [(b"\0\x02".to_vec(), b"two".to_vec())]
        );
        assert_eq!(disk.get(Tree::Meta, b"vote").unwrap(), Some(b"v1".to_vec()));
        assert_eq!(
            disk.last(Tree::Snapshot).unwrap(),
            Some((b"snapshot".to_vec(), b"state".to_vec()))
        );
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_damage_before_it_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FileDisk::open(dir.path()).unwrap();
        for i in 0..5u8 {
            disk.write(Tree::Log, vec![put(&[i], &[i; 100])]).unwrap();
        }
        disk.sync().unwrap();
        drop(disk);
        let segment = |id: u64| dir.path().join(segment_name(id));
        // The last record written half (a power cut during its write, never synced).
        let file = OpenOptions::new().write(true).open(segment(1)).unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(len - 50).unwrap();
        drop(file);
        let disk = FileDisk::open(dir.path()).unwrap();
        let keys: Vec<u8> = all(&disk, Tree::Log).iter().map(|(k, _)| k[0]).collect();
        assert_eq!(keys, [0, 1, 2, 3]);
        drop(disk);
        // The cut is durable: the segment is no longer the last, and opens clean.
        let disk = FileDisk::open(dir.path()).unwrap();
        assert_eq!(all(&disk, Tree::Log).len(), 4);
        drop(disk);
        // A flipped byte in a segment that is not the last is corruption, not a torn write.
        let mut bytes = std::fs::read(segment(1)).unwrap();
        bytes[SEGMENT_MAGIC.len() + RECORD_HEADER_BYTES + 3] ^= 0xff;
        std::fs::write(segment(1), bytes).unwrap();
        let error = FileDisk::open(dir.path()).unwrap_err();
        assert!(error.to_string().contains("damaged record"), "{error}");
    }

    #[test]
    fn full_segments_rotate_and_emptied_ones_are_deleted_once_synced() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FileDisk::open(dir.path()).unwrap();
        let value = vec![7u8; 1 << 20];
        let segments = || {
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| {
                    segment_id(&e.as_ref().unwrap().file_name().to_string_lossy()).is_some()
                })
                .count()
        };
        disk.write(Tree::Meta, vec![put(b"vote", b"v")]).unwrap();
        for i in 0..200u64 {
            disk.write(
                Tree::Log,
                vec![(i.to_be_bytes().to_vec(), Some(value.clone()))],
            )
            .unwrap();
        }
        disk.sync().unwrap();
        assert!(segments() >= 3, "{} segments", segments());
        // Purge everything but the last 10 values: the segments that held only the purged
        // ones go once the removal is synced, not before.
        let removed = (0..190u64)
            .map(|i| (i.to_be_bytes().to_vec(), None))
            .collect();
        disk.write(Tree::Log, removed).unwrap();
        let before = segments();
        disk.sync().unwrap();
        assert!(segments() < before, "{} -> {}", before, segments());
        drop(disk);
        let disk = FileDisk::open(dir.path()).unwrap();
        let kept = all(&disk, Tree::Log);
        assert_eq!(kept.len(), 10);
        assert!(kept.iter().all(|(_, v)| *v == value));
        assert_eq!(disk.get(Tree::Meta, b"vote").unwrap(), Some(b"v".to_vec()));
    }

    #[test]
    fn a_sled_directory_of_an_earlier_build_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("conf"), b"segment_size: 524288").unwrap();
        std::fs::write(dir.path().join("db"), b"").unwrap();
        let error = FileDisk::open(dir.path()).unwrap_err();
        assert!(error.to_string().contains("sled database"), "{error}");
    }
}
