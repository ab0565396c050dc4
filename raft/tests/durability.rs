//! Power-loss durability, observed from outside the process: the parent test runs one test of
//! this binary (the child) under `strace -f`, which records every write, `fdatasync`,
//! `fsync` and rename the child makes. The child appends log entries, saves a vote and builds
//! a snapshot on a member's [`FileDisk`], writing a marker line before each operation and
//! another once it is acknowledged (the append's callback reported it flushed; `save_vote`
//! and the snapshot build returned). The parent checks that between the two markers the data
//! reached its file and a sync of that file started after the write ended and ended before
//! the acknowledgement: the sync calls of the real system calls, not a count of our own.
//!
//! Needs `strace` (installed by `.ci/install.sh`).

// openraft's storage traits fix `StorageError` (large) as the error type of every method.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use grove_raft::replicated::{
    ClientRequest, Disk, FileDisk, LogStore, RequestId, StateMachineStore, TypeConfig, WriteBatch,
};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder, Vote};

mod common;

const CHILD_DIR: &str = "GROVE_DURABILITY_CHILD_DIR";
const APPENDS: u64 = 5;

fn entry(index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(WriteBatch {
            requests: vec![ClientRequest::new(
                RequestId {
                    client: 7,
                    serial: index,
                },
                common::create_task(&format!("task-{index}")),
            )],
        }),
    }
}

/// The child: runs only when the parent names its directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_child_process() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let mut markers = std::fs::File::create(dir.join("markers")).unwrap();
    let mut mark = |line: String| {
        markers.write_all(format!("{line}\n").as_bytes()).unwrap();
    };
    let disk: Arc<dyn Disk> = Arc::new(FileDisk::open(&dir.join("member")).unwrap());
    let mut log = LogStore::on_disk(Arc::clone(&disk)).of_member(1);
    for index in 1..=APPENDS {
        mark(format!("begin append-{index}"));
        log.blocking_append([entry(index)]).await.unwrap();
        mark(format!("acked append-{index}"));
    }
    mark("begin vote".into());
    log.save_vote(&Vote::new(3, 1)).await.unwrap();
    mark("acked vote".into());

    let mut machine = StateMachineStore::on_disk(disk, None).unwrap();
    machine.apply((1..=APPENDS).map(entry)).await.unwrap();
    mark("begin snapshot".into());
    let mut builder = machine.get_snapshot_builder().await;
    builder.build_snapshot().await.unwrap();
    mark("acked snapshot".into());
}

/// One system call from the trace: where it started and ended (line numbers), its name, the
/// path of its first argument (strace `-y`), and for a marker write the marker text.
#[derive(Debug, Clone)]
struct Call {
    start: usize,
    end: usize,
    name: String,
    path: String,
    result: String,
    marker: Option<String>,
}

/// Parses `strace -f -y` output, joining `<unfinished ...>` and `<... resumed>` halves.
fn parse_trace(text: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut pending: BTreeMap<String, (usize, String, String)> = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some((name, tail)) = resumed.split_once(" resumed>") else {
                continue;
            };
            if let Some((start, pending_name, head)) = pending.remove(pid)
                && pending_name == name
            {
                calls.push(call(start, number, name, &format!("{head}{tail}")));
            }
            continue;
        }
        let Some((name, args)) = rest.split_once('(') else {
            continue;
        };
        if let Some(head) = args.strip_suffix(" <unfinished ...>") {
            pending.insert(
                pid.to_string(),
                (number, name.to_string(), head.to_string()),
            );
        } else {
            calls.push(call(number, number, name, args));
        }
    }
    calls
}

fn call(start: usize, end: usize, name: &str, args: &str) -> Call {
    let path = args
        .split_once('<')
        .and_then(|(_, after)| after.split_once('>'))
        .map(|(path, _)| path.to_string())
        .unwrap_or_default();
    let result = args
        .rsplit_once(" = ")
        .map(|(_, result)| result.trim().to_string())
        .unwrap_or_default();
    let marker = (name == "write" && path.ends_with("/markers"))
        .then(|| {
            args.split_once('"')
                .and_then(|(_, text)| text.split_once("\\n"))
                .map(|(text, _)| text.to_string())
        })
        .flatten();
    Call {
        start,
        end,
        name: name.to_string(),
        path,
        result,
        marker,
    }
}

fn marker(calls: &[Call], text: &str) -> usize {
    calls
        .iter()
        .find(|c| c.marker.as_deref() == Some(text))
        .unwrap_or_else(|| panic!("marker {text:?} not in the trace"))
        .end
}

/// A call named one of `names` on a path accepted by `path`, started after `after` and ended
/// before `before`, that succeeded; the first such.
fn find<'a>(
    calls: &'a [Call],
    names: &[&str],
    path: impl Fn(&str) -> bool,
    after: usize,
    before: usize,
) -> Option<&'a Call> {
    calls.iter().find(|c| {
        names.contains(&c.name.as_str())
            && path(&c.path)
            && c.start > after
            && c.end < before
            && !c.result.starts_with('-')
    })
}

fn is_segment(path: &str) -> bool {
    Path::new(path)
        .file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with("wal-"))
}

/// Checks that an operation acknowledged at `acked` wrote a log segment after `begin` and
/// `fdatasync`ed it after the write and before the acknowledgement.
fn check_synced_log_write(calls: &[Call], what: &str) {
    let begin = marker(calls, &format!("begin {what}"));
    let acked = marker(calls, &format!("acked {what}"));
    let write = find(calls, &["pwrite64"], is_segment, begin, acked)
        .unwrap_or_else(|| panic!("{what}: no write to a log segment before it was acked"));
    let synced = find(
        calls,
        &["fdatasync", "fsync"],
        |p| p == write.path,
        write.end,
        acked,
    );
    assert!(
        synced.is_some(),
        "{what}: acknowledged with no fdatasync of {} after its write (line {}) and before the \
         acknowledgement (line {acked})",
        write.path,
        write.end
    );
}

#[test]
fn acknowledged_appends_votes_and_snapshots_were_synced_first() {
    let strace = Command::new("strace").arg("-V").output();
    assert!(
        strace.is_ok_and(|o| o.status.success()),
        "this test observes system calls with strace; install it (.ci/install.sh does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let child = Command::new("strace")
        .args(["-f", "-y", "-s", "64", "-o"])
        .arg(&trace)
        .args([
            "-e",
            "trace=write,pwrite64,fdatasync,fsync,rename,renameat,renameat2",
        ])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "durability_child_process",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_DIR, dir.path())
        .output()
        .unwrap();
    assert!(
        child.status.success(),
        "the child failed: {}\n{}{}",
        child.status,
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );
    let text = std::fs::read_to_string(&trace).unwrap();
    let calls = parse_trace(&text);

    for index in 1..=APPENDS {
        check_synced_log_write(&calls, &format!("append-{index}"));
    }
    check_synced_log_write(&calls, "vote");

    // The snapshot: its value written to a temporary file, that file fsynced, renamed into
    // place, then the directory fsynced, all before the build returned.
    let begin = marker(&calls, "begin snapshot");
    let acked = marker(&calls, "acked snapshot");
    let is_temporary = |p: &str| p.contains("/snap-") && p.ends_with(".tmp");
    let write = find(&calls, &["pwrite64", "write"], is_temporary, begin, acked)
        .expect("snapshot: no write to its temporary file");
    let synced = find(&calls, &["fsync"], |p| p == write.path, write.end, acked)
        .expect("snapshot: its file was not fsynced before the build returned");
    let renamed = calls
        .iter()
        .find(|c| c.name.starts_with("rename") && c.start > synced.end && c.end < acked)
        .expect("snapshot: not renamed into place after its fsync");
    let member = dir.path().join("member");
    let member = member.to_string_lossy();
    find(&calls, &["fsync"], |p| p == member, renamed.end, acked)
        .expect("snapshot: the directory was not fsynced after the rename");
}
