//! Deep storage: where pushed segment files live durably, and how nodes fetch them.
//!
//! Main types: the [`DeepStorage`] trait (a simulation seam: synchronous, object-safe, no tokio;
//! the simulator adds an in-memory implementation), [`LoadSpec`] (Druid's `loadSpec`, stored in
//! segment metadata) and [`LocalDeepStorage`] (a directory, possibly a shared mount).
//!
//! Local layout, as Druid's local deep storage:
//! `root/<dataSource>[/@<namespace>]/<start>_<end>/<version>/<partition>/index.grove`, with
//! timestamps in ISO basic format (`20240101T000000.000Z`: no `:` for file systems that dislike
//! it). Names are escaped so that distinct ids never share a path and no component is `.`, `..`
//! or hidden: bytes other than ASCII letters, digits, `-`, `.` and `_` become `%XX`, as does a
//! leading `.`; in versions `:` becomes `_` (and `_` becomes `%5F`), so ISO versions stay
//! readable. The namespace directory starts with `@` so it cannot be mistaken for an interval.
//!
//! Invariants: every write goes to a temp file in the target directory, is fsynced, then renamed
//! over the target, and the directory is fsynced, so readers see a whole old file or a whole new
//! one. A [`LoadSpec`] is only followed if it names an `index.grove` strictly inside the root
//! with no `..` (checked lexically; symbolic links set up by the operator are trusted).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::{Result, SegmentError};
use crate::id::SegmentId;
use crate::time::format_iso;

/// The name of a segment file in deep storage.
pub const SEGMENT_FILE_NAME: &str = "index.grove";

/// Where a pushed segment lives, as Druid's loadSpec: `{"type":"local","path":".."}` (later
/// `{"type":"s3",..}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum LoadSpec {
    Local { path: PathBuf },
}

/// Durable segment storage shared by all nodes.
pub trait DeepStorage: Send + Sync {
    /// Copies the segment file at `file` into deep storage under a path derived from `id`;
    /// idempotent (pushing the same id twice replaces it atomically). Returns where it went and
    /// its size in bytes.
    fn push(&self, id: &SegmentId, file: &Path) -> Result<(LoadSpec, u64)>;
    /// Copies the segment at `spec` to `dest` (written atomically: temp file + rename). Returns
    /// its size in bytes.
    fn pull(&self, spec: &LoadSpec, dest: &Path) -> Result<u64>;
    /// Deletes the segment at `spec`; deleting a segment that is already gone succeeds.
    fn delete(&self, spec: &LoadSpec) -> Result<()>;
    fn exists(&self, spec: &LoadSpec) -> Result<bool>;
}

/// Deep storage in a local (or mounted) directory.
#[derive(Clone, Debug)]
pub struct LocalDeepStorage {
    root: PathBuf,
}

impl LocalDeepStorage {
    /// Deep storage under `root` (made absolute against the current directory, so load specs
    /// stay valid for other processes). The directory is created on the first push.
    pub fn new(root: impl Into<PathBuf>) -> LocalDeepStorage {
        let root = root.into();
        LocalDeepStorage {
            root: std::path::absolute(&root).unwrap_or(root),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `id`'s segment file, relative to the root.
    pub fn segment_dir(id: &SegmentId) -> Result<PathBuf> {
        let refuse =
            |what: &str| SegmentError::DeepStorage(format!("segment {id}: {what} is empty"));
        if id.data_source.is_empty() {
            return Err(refuse("datasource name"));
        }
        if id.version.is_empty() {
            return Err(refuse("version"));
        }
        let mut dir = PathBuf::from(escape(&id.data_source, false));
        if let Some(ns) = &id.namespace {
            dir.push(format!("@{}", escape(ns, false)));
        }
        dir.push(format!(
            "{}_{}",
            basic_timestamp(id.interval.start_ms),
            basic_timestamp(id.interval.end_ms)
        ));
        dir.push(escape(&id.version, true));
        dir.push(id.partition.to_string());
        Ok(dir)
    }

    /// The file a load spec names, if it is a segment file strictly inside the root.
    fn resolve<'a>(&self, spec: &'a LoadSpec) -> Result<&'a Path> {
        let LoadSpec::Local { path } = spec;
        let inside = path.strip_prefix(&self.root).is_ok_and(|rest| {
            rest.components().count() >= 2
                && rest.components().all(|c| matches!(c, Component::Normal(_)))
                && rest
                    .file_name()
                    .is_some_and(|name| name == SEGMENT_FILE_NAME)
        });
        if !inside {
            return Err(SegmentError::DeepStorage(format!(
                "load spec path {} is not a segment file inside deep storage root {}",
                path.display(),
                self.root.display()
            )));
        }
        Ok(path)
    }
}

impl DeepStorage for LocalDeepStorage {
    fn push(&self, id: &SegmentId, file: &Path) -> Result<(LoadSpec, u64)> {
        let dest = self
            .root
            .join(Self::segment_dir(id)?)
            .join(SEGMENT_FILE_NAME);
        let mut source = File::open(file).map_err(|e| SegmentError::io(file, e))?;
        let bytes = write_atomically(&mut source, &dest)?;
        // Directories create_dir_all may have made must be durable too.
        let mut dir = dest.parent().and_then(Path::parent);
        while let Some(d) = dir.filter(|d| d.starts_with(&self.root)) {
            sync_dir(d)?;
            dir = d.parent();
        }
        Ok((LoadSpec::Local { path: dest }, bytes))
    }

    fn pull(&self, spec: &LoadSpec, dest: &Path) -> Result<u64> {
        let path = self.resolve(spec)?;
        let mut source = File::open(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                SegmentError::DeepStorage(format!("{}: segment not found", path.display()))
            }
            _ => SegmentError::io(path, e),
        })?;
        write_atomically(&mut source, dest)
    }

    fn delete(&self, spec: &LoadSpec) -> Result<()> {
        let path = self.resolve(spec)?;
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(SegmentError::io(path, e)),
        }
        // Remove the partition, version, interval, namespace and datasource directories while
        // they are empty; never the root. A failure just means a directory is still in use.
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| *d != self.root && d.starts_with(&self.root)) {
            if fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    fn exists(&self, spec: &LoadSpec) -> Result<bool> {
        let path = self.resolve(spec)?;
        match fs::metadata(path) {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(SegmentError::io(path, e)),
        }
    }
}

/// Copies `source` to `dest` through a fsynced temp file in `dest`'s directory, renamed over
/// `dest`; then fsyncs the directory. Returns the bytes copied.
fn write_atomically(source: &mut File, dest: &Path) -> Result<u64> {
    static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = dest
        .file_name()
        .ok_or_else(|| SegmentError::DeepStorage(format!("{}: not a file path", dest.display())))?;
    let mut attempt = 0;
    let (tmp, mut out) = loop {
        fs::create_dir_all(dir).map_err(|e| SegmentError::io(dir, e))?;
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(
            ".{}.tmp-{}-{n}",
            name.to_string_lossy(),
            std::process::id()
        ));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(out) => break (tmp, out),
            // A concurrent delete removed the (empty) directory we just made: make it again.
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 3 => attempt += 1,
            Err(e) => return Err(SegmentError::io(tmp, e)),
        }
    };
    let written = io::copy(source, &mut out)
        .and_then(|bytes| out.sync_all().map(|()| bytes))
        .and_then(|bytes| fs::rename(&tmp, dest).map(|()| bytes));
    drop(out);
    match written {
        Ok(bytes) => {
            sync_dir(dir)?;
            Ok(bytes)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(SegmentError::io(dest, e))
        }
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SegmentError::io(dir, e))
}

/// Escapes one path component (see the module doc). `colon_as_underscore` is for versions.
fn escape(text: &str, colon_as_underscore: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, b) in text.bytes().enumerate() {
        match b {
            b':' if colon_as_underscore => out.push('_'),
            b'_' if colon_as_underscore => out.push_str("%5F"),
            b'.' if i == 0 => out.push_str("%2E"),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `2024-01-01T00:00:00.000Z` → `20240101T000000.000Z` (a leading year sign is kept).
fn basic_timestamp(ms: i64) -> String {
    let iso = format_iso(ms);
    let (sign, rest) = match iso.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", iso.as_str()),
    };
    let mut out = String::with_capacity(iso.len());
    out.push_str(sign);
    out.extend(rest.chars().filter(|c| !matches!(c, '-' | ':')));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{Interval, MS_PER_DAY};

    fn id(ds: &str, ns: Option<&str>, version: &str, partition: u32) -> SegmentId {
        let start = 19_723 * MS_PER_DAY; // 2024-01-01
        SegmentId::new(
            ds,
            ns,
            Interval::new(start, start + MS_PER_DAY),
            version,
            partition,
        )
    }

    fn segment_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn layout_is_druid_like_and_escaped() {
        let dir = LocalDeepStorage::segment_dir(&id("wiki", None, "2024-05-17T13:45:12.345Z", 3))
            .unwrap();
        assert_eq!(
            dir,
            Path::new("wiki/20240101T000000.000Z_20240102T000000.000Z/2024-05-17T13_45_12.345Z/3")
        );
        let dir = LocalDeepStorage::segment_dir(&id("../x/y", Some(".."), "v_1:a/b", 0)).unwrap();
        assert_eq!(
            dir,
            Path::new("%2E.%2Fx%2Fy/@%2E./20240101T000000.000Z_20240102T000000.000Z/v%5F1_a%2Fb/0")
        );
        assert!(dir.components().all(|c| matches!(c, Component::Normal(_))));
        // Distinct versions never share a directory.
        let a = LocalDeepStorage::segment_dir(&id("w", None, "a:b", 0)).unwrap();
        let b = LocalDeepStorage::segment_dir(&id("w", None, "a_b", 0)).unwrap();
        assert_ne!(a, b);
        assert!(LocalDeepStorage::segment_dir(&id("", None, "v", 0)).is_err());
        assert!(LocalDeepStorage::segment_dir(&id("w", None, "", 0)).is_err());
        assert_eq!(basic_timestamp(-1), "19691231T235959.999Z");
        let far = basic_timestamp(Interval::ETERNITY.start_ms);
        assert!(
            far.starts_with('-') && !far[1..].contains(['-', ':']),
            "{far}"
        );
    }

    #[test]
    fn push_pull_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = LocalDeepStorage::new(tmp.path().join("deep"));
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let file = segment_file(tmp.path(), "seg", &data);
        let seg = id("wiki", Some("ns"), "v1", 2);
        let (spec, bytes) = storage.push(&seg, &file).unwrap();
        assert_eq!(bytes, data.len() as u64);
        let LoadSpec::Local { path } = &spec;
        assert!(
            path.ends_with("wiki/@ns/20240101T000000.000Z_20240102T000000.000Z/v1/2/index.grove")
        );
        assert!(storage.exists(&spec).unwrap());
        let dest = tmp.path().join("cache/sub/pulled.grove");
        assert_eq!(storage.pull(&spec, &dest).unwrap(), data.len() as u64);
        assert_eq!(fs::read(&dest).unwrap(), data);
        // Pulling again replaces the local copy; no temp files are left behind.
        assert_eq!(storage.pull(&spec, &dest).unwrap(), data.len() as u64);
        let names: Vec<_> = fs::read_dir(dest.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("pulled.grove")]);
        // The load spec is Druid's JSON form.
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["type"], "local");
        assert_eq!(serde_json::from_value::<LoadSpec>(json).unwrap(), spec);
    }

    #[test]
    fn push_twice_replaces() {
        let tmp = tempfile::tempdir().unwrap();
        let storage: Box<dyn DeepStorage> =
            Box::new(LocalDeepStorage::new(tmp.path().join("deep")));
        let seg = id("wiki", None, "v1", 0);
        let (first, _) = storage
            .push(&seg, &segment_file(tmp.path(), "a", b"first version"))
            .unwrap();
        let (second, bytes) = storage
            .push(&seg, &segment_file(tmp.path(), "b", b"second"))
            .unwrap();
        assert_eq!((first.clone(), bytes), (second, 6));
        let LoadSpec::Local { path } = &first;
        assert_eq!(fs::read(path).unwrap(), b"second");
        assert_eq!(
            fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1,
            "no temp files left"
        );
    }

    #[test]
    fn delete_removes_file_and_empty_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("deep");
        let storage = LocalDeepStorage::new(&root);
        let file = segment_file(tmp.path(), "seg", b"data");
        let (keep, _) = storage.push(&id("wiki", None, "v1", 0), &file).unwrap();
        let (gone, _) = storage.push(&id("wiki", None, "v1", 1), &file).unwrap();
        storage.delete(&gone).unwrap();
        assert!(!storage.exists(&gone).unwrap());
        assert!(storage.exists(&keep).unwrap());
        let LoadSpec::Local { path } = &gone;
        assert!(
            !path.parent().unwrap().exists(),
            "empty partition dir removed"
        );
        assert!(
            path.parent().unwrap().parent().unwrap().exists(),
            "version dir still in use"
        );
        storage.delete(&gone).unwrap(); // already gone: fine
        storage.delete(&keep).unwrap();
        assert!(root.exists(), "root is kept");
        assert_eq!(
            fs::read_dir(&root).unwrap().count(),
            0,
            "datasource dir removed"
        );
    }

    #[test]
    fn missing_segment_and_source_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = LocalDeepStorage::new(tmp.path());
        let missing = tmp.path().join("nope");
        let err = storage
            .push(&id("wiki", None, "v1", 0), &missing)
            .unwrap_err();
        assert!(
            matches!(&err, SegmentError::Io { path, .. } if *path == missing),
            "{err}"
        );
        let spec = LoadSpec::Local {
            path: tmp.path().join("wiki/x/v1/0/index.grove"),
        };
        assert!(!storage.exists(&spec).unwrap());
        let err = storage.pull(&spec, &tmp.path().join("out")).unwrap_err();
        assert!(matches!(err, SegmentError::DeepStorage(_)), "{err}");
        assert!(err.to_string().contains("segment not found"), "{err}");
        assert!(!tmp.path().join("out").exists());
    }

    #[test]
    fn paths_outside_root_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("deep");
        let storage = LocalDeepStorage::new(&root);
        let victim = segment_file(tmp.path(), "index.grove", b"secret");
        for path in [
            victim.clone(),
            root.join("../index.grove"),
            root.join("wiki/../../index.grove"),
            root.join("index.grove"),
            root.join("wiki/x/v1/0/other.file"),
            PathBuf::from("wiki/x/v1/0/index.grove"),
        ] {
            let spec = LoadSpec::Local { path: path.clone() };
            for result in [
                storage.exists(&spec).map(|_| ()),
                storage.pull(&spec, &tmp.path().join("out")).map(|_| ()),
                storage.delete(&spec),
            ] {
                let err = result.expect_err("must be refused");
                assert!(
                    err.to_string().contains("inside deep storage root"),
                    "{}: {err}",
                    path.display()
                );
            }
        }
        assert_eq!(fs::read(&victim).unwrap(), b"secret");
    }
}
