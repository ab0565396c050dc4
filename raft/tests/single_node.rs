//! A single-member group (the quickstart shape) behind the blocking `MetadataStore` interface:
//! it accepts and refuses exactly what the apply step does over bare tables for the same
//! commands, and a restart from its directory keeps everything. Real time on a multi-thread runtime,
//! since `MetadataStore` calls block (they run on blocking threads, as the server runs them).

use std::sync::Arc;

use grove_raft::metadata::{
    Command, MetadataStore, SegmentRecord, StreamOffsets, TaskReport, apply::apply,
};
mod common;

use common::fixtures::{publish, schema, segment, task};
use grove_raft::replicated::{
    GroveNode, MemoryTables, RaftNode, RaftNodeConfig, ReplicatedMetadataStore,
};
use grove_rpc::{MemoryNetwork, Router, Transport};

/// A stream publish of one segment reading partition 0 from `start` to `end`.
fn stream_publish(task_id: &str, segment: SegmentRecord, start: i64, end: i64) -> Command {
    let offsets = |at: i64| StreamOffsets {
        stream: "edits".into(),
        partitions: [(0, at)].into(),
    };
    Command::PublishSegmentsWithOffsets {
        task_id: task_id.into(),
        segments: vec![segment],
        schema: schema("wiki"),
        report: TaskReport::default(),
        ended_ms: 4_000,
        start_offsets: offsets(start),
        end_offsets: offsets(end),
    }
}

/// Accepted and refused commands of every kind.
fn commands() -> Vec<Command> {
    vec![
        Command::CreateTask {
            task: task("t1", "wiki"),
        },
        Command::CreateTask {
            task: task("t2", "wiki"),
        },
        Command::CreateTask {
            task: task("t1", "wiki"),
        }, // exists
        publish(
            "t1",
            "wiki",
            vec![segment("wiki", 0, "v1", 0), segment("wiki", 1, "v1", 0)],
        ),
        publish("t1", "wiki", vec![segment("wiki", 2, "v1", 0)]), // t1 ended
        publish("t2", "wiki", vec![segment("wiki", 1, "v1", 0)]), // already published
        publish("t2", "wiki", vec![segment("wiki", 0, "v2", 0)]),
        Command::MarkSegmentsUnused {
            data_source: "wiki".into(),
            ids: vec![segment("wiki", 0, "v1", 0).id],
        },
        Command::MarkSegmentsUnused {
            data_source: "wiki".into(),
            ids: vec![segment("wiki", 5, "v1", 0).id], // unknown
        },
        Command::UpdateTask {
            task: task("nope", "wiki"),
        }, // unknown task
        Command::CreateTask {
            task: task("k1", "wiki"),
        },
        Command::CreateTask {
            task: task("k1-replica", "wiki"),
        },
        stream_publish("k1", segment("wiki", 10, "v1", 0), 0, 100),
        // The replica read the same range: the offsets moved, so it is refused.
        stream_publish("k1-replica", segment("wiki", 11, "v1", 0), 0, 100),
        Command::CreateTask {
            task: task("k2", "wiki"),
        },
        stream_publish("k2", segment("wiki", 11, "v1", 0), 100, 150),
    ]
}

/// What the bare tables hold, printed as [`snapshot`] prints a store.
fn oracle_snapshot(tables: &MemoryTables) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        tables.stream_offsets("wiki"),
        tables.data_sources(),
        tables.used_segments("wiki"),
        tables.tasks(),
        tables.task("missing").unwrap_err()
    )
}

fn snapshot(store: &dyn MetadataStore) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        store.stream_offsets("wiki").unwrap(),
        store.data_sources().unwrap(),
        store.all_used_segments().unwrap(),
        store.tasks().unwrap(),
        store.task("missing").unwrap_err()
    )
}

/// Starts the member with the default config: its writer id is drawn at start.
async fn start_member(net: &MemoryNetwork, dir: &std::path::Path) -> RaftNode {
    let transport: Arc<dyn Transport> = Arc::new(net.node("solo").unwrap());
    let config = RaftNodeConfig::new(1, GroveNode::new("solo", ""), dir);
    let node = RaftNode::start(config, Arc::clone(&transport), None)
        .await
        .unwrap();
    transport.serve(node.routes(Router::new()));
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_member_group_matches_the_apply_step_and_survives_restart() {
    let dirs = tempfile::tempdir().unwrap();
    let net = MemoryNetwork::new(11);
    let node = start_member(&net, &dirs.path().join("raft")).await;
    assert!(
        node.bootstrap([(1, GroveNode::new("solo", ""))].into())
            .await
            .unwrap()
    );
    // A second bootstrap (the next start of quickstart) does nothing.
    assert!(
        !node
            .bootstrap([(1, GroveNode::new("solo", ""))].into())
            .await
            .unwrap()
    );

    let replicated = ReplicatedMetadataStore::new(node.clone(), tokio::runtime::Handle::current());
    let (replicated_text, expected_text) = tokio::task::spawn_blocking(move || {
        let mut oracle = MemoryTables::default();
        for command in commands() {
            let expected = apply(&mut oracle, &command);
            let got = replicated.apply(command.clone());
            assert_eq!(
                got.as_ref().map_err(|e| e.to_string()),
                expected.as_ref().map_err(|e| e.to_string()),
                "{command:?}"
            );
        }
        (snapshot(&replicated), oracle_snapshot(&oracle))
    })
    .await
    .unwrap();
    assert_eq!(replicated_text, expected_text);
    assert!(replicated_text.contains("v2"), "{replicated_text}");
    assert!(replicated_text.contains("{0: 150}"), "{replicated_text}");

    node.shutdown().await.unwrap();
    net.crash(&grove_rpc::NodeId::new("solo").unwrap());
    let node = start_member(&net, &dirs.path().join("raft")).await;
    let first_id = node.next_request_id();
    let replicated = ReplicatedMetadataStore::new(node.clone(), tokio::runtime::Handle::current());
    let after_restart = tokio::task::spawn_blocking(move || {
        let text = snapshot(&replicated);
        // The restarted process writes under a new writer id: its first writes are new
        // writes, not retries of the previous run's first writes (whose ids its serials,
        // counted from 0 again, would repeat under a fixed writer id).
        for task in ["after-restart-1", "after-restart-2"] {
            replicated.apply(common::create_task(task)).unwrap();
        }
        (text, replicated.task("after-restart-2").map(|t| t.id))
    })
    .await
    .unwrap();
    assert_eq!(after_restart.0, expected_text);
    assert_eq!(after_restart.1, Ok("after-restart-2".to_string()));
    assert_ne!(first_id.client, 1, "not the member id");
    node.shutdown().await.unwrap();
}
