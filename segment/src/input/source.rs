//! Input sources: which files (or inline text) an `inputSource` names, in a deterministic order,
//! and how each is opened (`.gz` and `.zst` files are decompressed on the fly).
//!
//! `local`: every file under `baseDir` (recursively, as Druid does) whose file name matches the
//! wildcard `filter` (`*` any run of characters, `?` one character), plus the explicit `files`;
//! sorted by path, without duplicates. A missing file or directory is an `Io` error with its path;
//! a `baseDir` in which nothing matches is an error too, since it is almost always a typo.
//! `inline`: one source named `inline`.

use std::fs::{self, File};
use std::io::{self, BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

use crate::error::{Result, SegmentError};
use crate::spec::InputSource;

/// Directories deeper than this under `baseDir` are not searched (guards against symlink loops).
const DEPTH_MAX: usize = 64;

/// One thing to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputItem<'a> {
    File(PathBuf),
    Inline(&'a str),
}

impl InputItem<'_> {
    /// The name positions and errors use: the path as given, or `inline`.
    pub fn name(&self) -> String {
        match self {
            InputItem::File(path) => path.display().to_string(),
            InputItem::Inline(_) => "inline".to_owned(),
        }
    }

    /// The item's bytes as a stream, decompressed when the file name ends in `.gz` or `.zst`.
    pub fn open(&self) -> Result<Box<dyn Read + '_>> {
        let path = match self {
            InputItem::Inline(text) => return Ok(Box::new(text.as_bytes())),
            InputItem::File(path) => path,
        };
        let file = File::open(path).map_err(|e| SegmentError::io(path, e))?;
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        Ok(match extension {
            "gz" => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file))),
            "zst" => Box::new(
                zstd::stream::read::Decoder::new(file).map_err(|e| SegmentError::io(path, e))?,
            ),
            "bz2" | "xz" | "zip" | "sz" | "lz4" => {
                return Err(SegmentError::io(
                    path,
                    io::Error::new(
                        ErrorKind::Unsupported,
                        format!(".{extension} input files are not supported yet (use .gz or .zst)"),
                    ),
                ));
            }
            _ => Box::new(file),
        })
    }
}

/// The items of `source`, in the order they are read.
pub fn list_inputs(source: &InputSource) -> Result<Vec<InputItem<'_>>> {
    match source {
        InputSource::Inline { data } => Ok(vec![InputItem::Inline(data)]),
        InputSource::Local {
            base_dir,
            filter,
            files,
        } => {
            let mut paths = Vec::new();
            if let Some(dir) = base_dir {
                let pattern = filter.as_deref().unwrap_or("*");
                let before = paths.len();
                walk(dir, pattern, 0, &mut paths)?;
                if paths.len() == before {
                    return Err(SegmentError::io(
                        dir,
                        io::Error::new(
                            ErrorKind::NotFound,
                            format!("no file matches filter '{pattern}'"),
                        ),
                    ));
                }
            }
            for file in files {
                let meta = fs::metadata(file).map_err(|e| SegmentError::io(file, e))?;
                if !meta.is_file() {
                    return Err(SegmentError::io(
                        file,
                        io::Error::new(ErrorKind::InvalidInput, "not a regular file"),
                    ));
                }
                paths.push(file.clone());
            }
            paths.sort();
            paths.dedup();
            Ok(paths.into_iter().map(InputItem::File).collect())
        }
    }
}

fn walk(dir: &Path, pattern: &str, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| SegmentError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SegmentError::io(dir, e))?;
        let path = entry.path();
        // Follows symlinks, as Druid does.
        let meta = fs::metadata(&path).map_err(|e| SegmentError::io(&path, e))?;
        if meta.is_dir() {
            if depth < DEPTH_MAX {
                walk(&path, pattern, depth + 1, out)?;
            }
        } else if entry
            .file_name()
            .to_str()
            .is_some_and(|n| wildcard_match(pattern, n))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters and `?` one
/// character (Druid's wildcard file filter; case-sensitive).
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and the name position it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.json", "a.json"));
        assert!(wildcard_match("*.json", ".json"));
        assert!(!wildcard_match("*.json", "a.json.gz"));
        assert!(wildcard_match("*.json*", "a.json.gz"));
        assert!(wildcard_match("wiki-??.json", "wiki-01.json"));
        assert!(!wildcard_match("wiki-??.json", "wiki-1.json"));
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("a*b*c", "aXXbYYbZc"));
        assert!(!wildcard_match("a*b*c", "aXXbYY"));
        assert!(wildcard_match("exact.csv", "exact.csv"));
        assert!(!wildcard_match("exact.csv", "Exact.csv"));
    }

    #[test]
    fn local_sources_are_sorted_recursive_and_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("sub")).unwrap();
        for name in ["b.json", "a.json", "c.csv", "sub/d.json"] {
            fs::write(root.join(name), "{}").unwrap();
        }
        let source = InputSource::Local {
            base_dir: Some(root.to_path_buf()),
            filter: Some("*.json".into()),
            files: vec![root.join("a.json"), root.join("c.csv")],
        };
        let names: Vec<PathBuf> = list_inputs(&source)
            .unwrap()
            .into_iter()
            .map(|i| match i {
                InputItem::File(p) => p.strip_prefix(root).unwrap().to_path_buf(),
                InputItem::Inline(_) => panic!("inline"),
            })
            .collect();
        let expected: Vec<PathBuf> = ["a.json", "b.json", "c.csv", "sub/d.json"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn missing_paths_are_io_errors_naming_them() {
        let source = InputSource::Local {
            base_dir: None,
            filter: None,
            files: vec![PathBuf::from("/nonexistent/grove/x.json")],
        };
        let err = list_inputs(&source).unwrap_err();
        assert!(matches!(err, SegmentError::Io { .. }), "{err}");
        assert!(
            err.to_string().contains("/nonexistent/grove/x.json"),
            "{err}"
        );
        let source = InputSource::Local {
            base_dir: Some(PathBuf::from("/nonexistent/grove")),
            filter: Some("*".into()),
            files: vec![],
        };
        let err = list_inputs(&source).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/grove"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let source = InputSource::Local {
            base_dir: Some(dir.path().to_path_buf()),
            filter: Some("*.json".into()),
            files: vec![],
        };
        let err = list_inputs(&source).unwrap_err();
        assert!(
            err.to_string().contains("no file matches filter '*.json'"),
            "{err}"
        );
    }
}
