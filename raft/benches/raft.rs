//! `cargo bench -p grove-raft --bench raft`: the replicated metadata store on three members
//! over QUIC on loopback (mutual TLS), every log append flushed to disk before it counts.
//!
//! Figures (written to `$CARGO_TARGET_DIR/grove-bench/raft.json`):
//! - `publishes_per_s_c1`, `publishes_per_s_c64`: segment-publish transactions per second
//!   (`Command::PublishSegments`, one segment each, for a task created beforehand and not
//!   timed) from 1 and 64 concurrent writers. Writers are clients on a follower, so every
//!   publish takes the forward hop a client on a non-leader takes.
//! - `p50_ms_c64`, `p99_ms_c64`: commit latency (submit to applied on the leader) at 64.
//! - `cpu_ms_per_publish_c64`, `cores_busy_c64`, `cpu_ms_per_publish_c1`: the process's CPU
//!   time (every member, transport and writer) per publish and on average during the phase;
//!   `publishes_per_entry_c64`: publishes per log entry (group commit at work);
//!   `cpu_steal_pct_c64`: the share of the machine's CPU a hypervisor gave to other guests
//!   meanwhile (reference: on a shared VM it moves every other figure).
//! - `failover_ms`: from killing the leader (Raft stopped, endpoint closed) to the next write
//!   committed by the survivors, issued right after the kill.
//! - `snapshot_1m_build_ms`, `snapshot_1m_install_ms`: building a snapshot of a state machine
//!   holding 1M segment rows (copy, encode, write and fsync to its file) and installing it into an
//!   empty one (decode, rebuild the tables, write and flush). Measured on the state machine
//!   directly; the transfer between members is not included. `snapshot_1m_apply_held_ms`:
//!   the part of the build the apply loop waits for (the copy of the state; openraft runs
//!   the rest on a task of its own).
//!
//! - `fdatasync_p50_ms`, `fdatasync_p99_ms`: one small write and `fdatasync` of a file on the
//!   same disk, the floor under every append (reference).
//!
//! Runs under mimalloc, the allocator of the `grove` binary that hosts a member.
//!
//! Reference in the same run: the issue's goals (5,000 publishes/s, p99 under 25 ms, failover
//! under 1 s) are printed beside the figures. `GROVE_BENCH_PUBLISHES` sets the publishes at
//! 64 writers (default 20,000; a tenth of it at 1 writer), `GROVE_BENCH_SEGMENTS` the
//! snapshot's rows (default 1,000,000).

// Shared with the segment benches; not every helper is used here.
#[allow(dead_code)]
#[path = "../../segment/benches/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grove_raft::metadata::{Command, SegmentRecord, TaskRecord, TaskReport, TaskState};
use grove_raft::replicated::{
    ClientRequest, FileDisk, GroveNode, PeerHook, RaftNode, RaftNodeConfig, RequestId,
    StateMachineStore, TypeConfig, WriteBatch,
};
use grove_rpc::tls::ClusterCa;
use grove_rpc::{NodeId, QuicConfig, QuicTransport, Router, Transport};
use grove_segment::id::SegmentId;
use grove_segment::schema::{DimensionSchema, MetricKind, MetricSchema, Schema};
use grove_segment::time::{Granularity, Interval, MS_PER_DAY};
use openraft::storage::RaftStateMachine;
use openraft::{Entry, EntryPayload, LogId, RaftSnapshotBuilder};

/// The allocator the `grove` binary runs the metadata store under.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CLUSTER: &str = "raft-bench";
const DAY0: i64 = 19_723 * MS_PER_DAY;

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn schema() -> Schema {
    Schema {
        data_source: "wiki".into(),
        dimensions: vec![
            DimensionSchema::string("page"),
            DimensionSchema::string("user"),
            DimensionSchema::string("country"),
        ],
        metrics: vec![MetricSchema {
            name: "count".into(),
            field_name: None,
            kind: MetricKind::Count,
        }],
        query_granularity: Granularity::named("hour").unwrap(),
        segment_granularity: Granularity::named("day").unwrap(),
        rollup: true,
        time_position: 0,
    }
}

fn task(id: &str) -> TaskRecord {
    TaskRecord {
        id: id.into(),
        task_type: "index_kafka".into(),
        data_source: "wiki".into(),
        spec: serde_json::json!({"type": "index_kafka", "id": id}),
        state: TaskState::Running,
        error: None,
        created_ms: 1_000,
        started_ms: Some(1_000),
        ended_ms: None,
        report: None,
    }
}

/// A segment row the size of a Druid one: id, a local load spec, counts.
fn segment(n: u64) -> SegmentRecord {
    let day = (n / 64) as i64;
    let start = DAY0 + day * MS_PER_DAY;
    SegmentRecord {
        id: SegmentId::new(
            "wiki",
            None,
            Interval::new(start, start + MS_PER_DAY),
            "2024-06-01T00:00:00.000Z",
            (n % 64) as u32,
        ),
        core_partitions: 64,
        load_spec: serde_json::json!({
            "type": "local",
            "path": format!("/var/grove/deep-storage/wiki/{day}/{}/index.grove", n % 64)
        }),
        num_rows: 5_000_000,
        size_bytes: 512 << 20,
        used: true,
        created_ms: 2_000,
    }
}

fn publish(task_id: &str, segments: Vec<SegmentRecord>) -> Command {
    Command::PublishSegments {
        task_id: task_id.into(),
        segments,
        schema: schema(),
        report: TaskReport {
            processed: 5_000_000,
            segments: 1,
            ..TaskReport::default()
        },
        ended_ms: 3_000,
    }
}

struct Member {
    node: RaftNode,
    transport: QuicTransport,
}

async fn start_group(root: &std::path::Path) -> BTreeMap<u64, Member> {
    let ca = ClusterCa::generate(CLUSTER, 1).unwrap();
    let mut transports = BTreeMap::new();
    let mut members = BTreeMap::new();
    for id in 1..=3u64 {
        let name = NodeId::new(&format!("m{id}")).unwrap();
        let config = QuicConfig::new(
            ca.issue(&name, 1).unwrap(),
            CLUSTER,
            "127.0.0.1:0".parse().unwrap(),
        );
        let transport = QuicTransport::bind(config).unwrap();
        members.insert(
            id,
            GroveNode::new(name.as_str(), transport.local_addr().to_string()),
        );
        transports.insert(id, transport);
    }
    let mut group = BTreeMap::new();
    for (id, transport) in transports {
        let quic = transport.clone();
        let hook: PeerHook = Arc::new(move |peer: &NodeId, node: &GroveNode| {
            if let Ok(address) = node.address.parse::<SocketAddr>() {
                quic.add_peer(peer.clone(), address);
            }
        });
        let mut config = RaftNodeConfig::new(id, members[&id].clone(), root.join(format!("m{id}")));
        config.rng_seed = 1;
        let shared: Arc<dyn Transport> = Arc::new(transport.clone());
        let node = RaftNode::start(config, Arc::clone(&shared), Some(hook))
            .await
            .unwrap();
        shared.serve(node.routes(Router::new()));
        group.insert(id, Member { node, transport });
    }
    assert!(group[&1].node.bootstrap(members).await.unwrap());
    group
}

async fn agreed_leader(group: &BTreeMap<u64, Member>) -> u64 {
    loop {
        let leaders: Vec<_> = group.values().map(|m| m.node.current_leader()).collect();
        if let Some(Some(leader)) = leaders.first()
            && group.contains_key(leader)
            && leaders.iter().all(|l| l == &Some(*leader))
        {
            return *leader;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Creates tasks `prefix-0 .. prefix-count` (64 writers, not timed).
async fn create_tasks(node: &RaftNode, prefix: &str, count: usize) {
    let prefix = prefix.to_string();
    run_writers(node, 64, count, move |i| Command::CreateTask {
        task: task(&format!("{prefix}-{i}")),
    })
    .await;
}

/// `count` writes from `writers` concurrent writers; returns each write's latency.
async fn run_writers(
    node: &RaftNode,
    writers: usize,
    count: usize,
    command: impl Fn(usize) -> Command + Send + Sync + 'static,
) -> Vec<Duration> {
    let command = Arc::new(command);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..writers {
        let (node, command, next) = (node.clone(), Arc::clone(&command), Arc::clone(&next));
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return latencies;
                }
                let started = Instant::now();
                node.write(command(i)).await.expect("write");
                latencies.push(started.elapsed());
            }
        }));
    }
    let mut all = Vec::with_capacity(count);
    for handle in handles {
        all.extend(handle.await.unwrap());
    }
    all
}

/// The reference: p50 and p99 of one small write plus `fdatasync` of a file on the disk the
/// members use (what every log append on every member pays at least once).
fn fdatasync_ms(root: &std::path::Path) -> (f64, f64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::create(root.join("fdatasync-reference")).unwrap();
    let mut latencies = Vec::new();
    for i in 0..500u64 {
        let started = Instant::now();
        file.write_all_at(&[7u8; 256], i * 256).unwrap();
        file.sync_data().unwrap();
        latencies.push(started.elapsed());
    }
    latencies.sort();
    (
        percentile_ms(&latencies, 0.50),
        percentile_ms(&latencies, 0.99),
    )
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}

/// What one publish phase measured.
struct Phase {
    per_s: f64,
    /// Sorted.
    latencies: Vec<Duration>,
    /// Process CPU (all three members, their transports, the writers) per publish.
    cpu_ms_per_publish: f64,
    /// Cores busy on average during the phase.
    cores_busy: f64,
    /// Publishes per log entry (the leader's group commit).
    per_entry: f64,
    /// Share of the machine's CPU time the hypervisor gave to other guests, in percent.
    steal_pct: f64,
}

async fn publishes(node: &RaftNode, prefix: &str, writers: usize, count: usize) -> Phase {
    create_tasks(node, prefix, count).await;
    let owned = prefix.to_string();
    let base = if prefix == "c1" { 0 } else { 1 << 20 };
    let cpu_before = common::process_cpu_seconds().unwrap_or(f64::NAN);
    let machine_before = common::machine_cpu_ticks();
    let index_before = node.metrics().last_log_index.unwrap_or(0);
    let started = Instant::now();
    let mut latencies = run_writers(node, writers, count, move |i| {
        publish(&format!("{owned}-{i}"), vec![segment(base + i as u64)])
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = common::process_cpu_seconds().unwrap_or(f64::NAN) - cpu_before;
    let entries = node.metrics().last_log_index.unwrap_or(0) - index_before;
    let steal_pct = match (machine_before, common::machine_cpu_ticks()) {
        (Some((stolen0, total0)), Some((stolen1, total1))) if total1 > total0 => {
            100.0 * (stolen1 - stolen0) as f64 / (total1 - total0) as f64
        }
        _ => f64::NAN,
    };
    latencies.sort();
    Phase {
        per_s: count as f64 / elapsed,
        latencies,
        cpu_ms_per_publish: cpu * 1e3 / count as f64,
        cores_busy: cpu / elapsed,
        per_entry: count as f64 / entries.max(1) as f64,
        steal_pct,
    }
}

/// Builds a snapshot of `rows` segment rows and installs it elsewhere; (build ms, of which
/// the apply loop waits, install ms).
async fn snapshot_figures(root: &std::path::Path, rows: usize) -> (f64, f64, f64) {
    let source_disk = FileDisk::open(&root.join("snapshot-source")).unwrap();
    let mut source = StateMachineStore::on_disk(Arc::new(source_disk), None).unwrap();
    let per_publish = 1_000usize;
    let mut index = 0u64;
    let mut entry = |command: Command| {
        index += 1;
        Entry::<TypeConfig> {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(WriteBatch {
                requests: vec![ClientRequest::new(
                    RequestId {
                        client: 1,
                        serial: index,
                    },
                    command,
                )],
            }),
        }
    };
    let mut published = 0usize;
    let mut batch = 0usize;
    while published < rows {
        let n = per_publish.min(rows - published);
        let task_id = format!("snapshot-{batch}");
        let segments = (published..published + n)
            .map(|i| segment(i as u64))
            .collect();
        let entries = vec![
            entry(Command::CreateTask {
                task: task(&task_id),
            }),
            entry(publish(&task_id, segments)),
        ];
        for verdict in source.apply(entries).await.unwrap().into_iter().flatten() {
            verdict.result.expect("snapshot fill");
        }
        published += n;
        batch += 1;
    }
    let started = Instant::now();
    let mut builder = source.get_snapshot_builder().await;
    // The part the apply loop waits for: openraft builds the rest on a task of its own.
    let copy_ms = started.elapsed().as_secs_f64() * 1e3;
    let snapshot = builder.build_snapshot().await.unwrap();
    let build_ms = started.elapsed().as_secs_f64() * 1e3;
    let bytes = snapshot.snapshot.get_ref().len();

    let target_disk = FileDisk::open(&root.join("snapshot-target")).unwrap();
    let mut target = StateMachineStore::on_disk(Arc::new(target_disk), None).unwrap();
    let started = Instant::now();
    let mut data = target.begin_receiving_snapshot().await.unwrap();
    data.get_mut()
        .extend_from_slice(snapshot.snapshot.get_ref());
    target.install_snapshot(&snapshot.meta, data).await.unwrap();
    let install_ms = started.elapsed().as_secs_f64() * 1e3;
    let installed = target.state().read().unwrap().tables.segment_count();
    assert_eq!(installed, rows, "installed snapshot holds every row");
    println!(
        "snapshot of {rows} segment rows: {:.1} MB, build {build_ms:.0} ms (apply loop held \
         {copy_ms:.0} ms), install {install_ms:.0} ms",
        bytes as f64 / 1e6
    );
    (build_ms, copy_ms, install_ms)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let root = tempfile::tempdir().unwrap();
        let count = env_count("GROVE_BENCH_PUBLISHES", 20_000);
        let rows = env_count("GROVE_BENCH_SEGMENTS", 1_000_000);

        let (flush_p50, flush_p99) = fdatasync_ms(root.path());
        let mut group = start_group(root.path()).await;
        let leader = agreed_leader(&group).await;
        let follower = *group.keys().find(|id| **id != leader).unwrap();
        let client = group[&follower].node.clone();

        let c1 = publishes(&client, "c1", 1, (count / 10).max(100)).await;
        let c64 = publishes(&client, "c64", 64, count).await;
        let (rate_c1, rate_c64) = (c1.per_s, c64.per_s);
        let p50 = percentile_ms(&c64.latencies, 0.50);
        let p99 = percentile_ms(&c64.latencies, 0.99);

        // Failover: kill the leader, then time the next write from the follower's client.
        let writer = client.clone();
        writer
            .write(Command::CreateTask {
                task: task("failover"),
            })
            .await
            .unwrap();
        let killed = group.remove(&leader).unwrap();
        let started = Instant::now();
        killed.node.shutdown().await.unwrap();
        killed.transport.shutdown().await;
        writer
            .write(publish("failover", vec![segment(3 << 20)]))
            .await
            .expect("write after failover");
        let failover_ms = started.elapsed().as_secs_f64() * 1e3;
        for member in group.values() {
            member.node.shutdown().await.unwrap();
            member.transport.shutdown().await;
        }

        let (build_ms, copy_ms, install_ms) = snapshot_figures(root.path(), rows).await;

        println!();
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let table: [(&str, f64, usize, String); 15] = [
            ("fdatasync p50 ms", flush_p50, 3, "reference".into()),
            ("fdatasync p99 ms", flush_p99, 3, "reference".into()),
            ("publishes/s, 1 writer", rate_c1, 0, "-".into()),
            ("publishes/s, 64 writers", rate_c64, 0, ">= 5000".into()),
            ("p50 ms, 64 writers", p50, 2, "-".into()),
            ("p99 ms, 64 writers", p99, 2, "< 25".into()),
            ("CPU ms/publish, 64", c64.cpu_ms_per_publish, 3, "-".into()),
            (
                "cores busy, 64 writers",
                c64.cores_busy,
                2,
                format!("of {cores}"),
            ),
            ("publishes/entry, 64", c64.per_entry, 1, "-".into()),
            ("CPU stolen %, 64", c64.steal_pct, 1, "reference".into()),
            ("CPU ms/publish, 1", c1.cpu_ms_per_publish, 3, "-".into()),
            ("failover ms", failover_ms, 0, "< 1000".into()),
            ("snapshot 1M build ms", build_ms, 0, "-".into()),
            ("snapshot 1M apply held ms", copy_ms, 0, "-".into()),
            ("snapshot 1M install ms", install_ms, 0, "-".into()),
        ];
        println!("{:<26} {:>12} {:>12}", "figure", "measured", "goal");
        for (name, value, decimals, goal) in table {
            println!("{name:<26} {value:>12.decimals$} {goal:>12}");
        }
        let path = common::write_bench_json(
            "raft",
            &[
                ("fdatasync_p50_ms", flush_p50),
                ("fdatasync_p99_ms", flush_p99),
                ("publishes_per_s_c1", rate_c1),
                ("publishes_per_s_c64", rate_c64),
                ("p50_ms_c64", p50),
                ("p99_ms_c64", p99),
                ("cpu_ms_per_publish_c64", c64.cpu_ms_per_publish),
                ("cores_busy_c64", c64.cores_busy),
                ("publishes_per_entry_c64", c64.per_entry),
                ("cpu_steal_pct_c64", c64.steal_pct),
                ("cpu_ms_per_publish_c1", c1.cpu_ms_per_publish),
                ("failover_ms", failover_ms),
                ("snapshot_1m_build_ms", build_ms),
                ("snapshot_1m_apply_held_ms", copy_ms),
                ("snapshot_1m_install_ms", install_ms),
            ],
        );
        println!("wrote {}", path.display());
    });
}
