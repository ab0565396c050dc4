//! Watch streams on three-member groups (in-memory network, paused time): a subscriber sees
//! every change of its kinds exactly once, in log order, across a leader change, a dropped
//! subscription resumed on another member over `raft.watch`, and a resync when the events it
//! asks for are no longer retained.

mod common;

use std::collections::BTreeSet;
use std::pin::Pin;
use std::time::Duration;

use common::{Cluster, PATIENCE, create_task, schema, segment};
use futures::{Stream, StreamExt};
use grove_raft::metadata::{
    AuditInfo, Command, NodeRecord, SegmentAssignment, SegmentRecord, TaskReport,
};
use grove_raft::replicated::watch::RESYNC_ROWS_MAX;
use grove_raft::replicated::{Change, WatchItem, WatchKind, WatchState, watch_remote};
use grove_rpc::{Deadline, Transport};

fn all_kinds() -> BTreeSet<WatchKind> {
    [
        WatchKind::Segments,
        WatchKind::Rules,
        WatchKind::Assignments,
        WatchKind::Membership,
    ]
    .into()
}

fn publish(task: &str, segments: Vec<SegmentRecord>) -> Command {
    Command::PublishSegments {
        task_id: task.into(),
        segments,
        schema: schema(),
        report: TaskReport::default(),
        ended_ms: 10,
    }
}

fn rules(period: &str) -> Command {
    Command::SetRules {
        data_source: "wiki".into(),
        rules: vec![serde_json::json!({"type": "loadByPeriod", "period": period})],
        audit: AuditInfo {
            author: "ops".into(),
            comment: period.into(),
        },
        changed_ms: 20,
    }
}

fn node(id: &str) -> NodeRecord {
    NodeRecord {
        id: id.into(),
        address: format!("{id}:8083"),
        roles: ["historical".to_string()].into(),
        tier: "_default_tier".into(),
        capacity_bytes: 1 << 30,
        version: "0.1.0".into(),
    }
}

fn assign(segment: &SegmentRecord, nodes: &[&str]) -> Command {
    Command::ReplaceAssignments {
        assignments: vec![SegmentAssignment {
            segment: segment.id.clone(),
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
        }],
    }
}

/// The next item, or a failure naming what was awaited.
async fn next<S: Stream<Item = WatchItem> + Unpin>(stream: &mut S, what: &str) -> WatchItem {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .unwrap_or_else(|_| panic!("no watch item for {what}"))
        .unwrap_or_else(|| panic!("the watch ended before {what}"))
}

/// A short name for a change, to compare sequences.
fn label(change: &Change) -> String {
    match change {
        Change::SegmentsPublished { segments } => format!("published {}", segments.len()),
        Change::SegmentsUnused { ids, .. } => format!("unused {}", ids.len()),
        Change::RulesSet { rules } => format!("rules v{} {}", rules.version, rules.rules[0]),
        Change::AssignmentsReplaced { assignments } => {
            format!("assigned {:?}", assignments[0].nodes)
        }
        Change::NodePut { node } => format!("node {}", node.id),
        Change::NodeRemoved { id } => format!("removed {id}"),
        Change::RaftMembership { voters, .. } => format!("voters {voters:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_sees_every_change_once_in_order_across_a_leader_change_and_a_resume() {
    let mut cluster = Cluster::new(31);
    cluster.start_group(&[1, 2, 3]).await;
    let leader = cluster.leader().await;
    let watched = cluster.other_than(leader);
    let mut stream: Pin<Box<dyn Stream<Item = WatchItem> + Send>> =
        Box::pin(cluster.node(watched).watch(0, all_kinds()));

    let (s0, s1) = (segment(0, 0), segment(0, 1));
    let before_failover = vec![
        create_task("w1"), // no watched change
        publish("w1", vec![s0.clone(), s1.clone()]),
        rules("P1M"),
        Command::PutNode { node: node("h1") },
        assign(&s0, &["h1"]),
        assign(&s1, &["h9"]), // refused: unknown node, no event
    ];
    for command in before_failover {
        let _ = cluster.node(watched).write(command).await;
    }
    let mut seen = Vec::new();
    let mut last_index = None;
    // The group's first membership, then four changes (an event holds the changes of one
    // entry; sequential writes each get their own).
    while seen.len() < 5 {
        let what = seen.len();
        let WatchItem::Change(event) = next(&mut stream, &format!("change {what}")).await else {
            panic!("a resync on a fresh subscription");
        };
        assert!(last_index < Some(event.index), "out of order: {event:?}");
        last_index = Some(event.index);
        seen.extend(event.changes.iter().map(label));
    }
    // The subscriber disconnects; the leader dies; more changes commit under a new leader.
    drop(stream);
    cluster.kill(leader).await;
    let new_leader = cluster.leader().await;
    let other = cluster.other_than(new_leader);
    for command in [
        rules("P3M"),
        Command::MarkSegmentsUnused {
            data_source: "wiki".into(),
            ids: vec![s1.id.clone()],
        },
        Command::RemoveNode { id: "h1".into() },
    ] {
        cluster.node(other).write(command).await.unwrap();
    }
    // It resumes from the last index it saw, on another member, over grove-rpc.
    let client = cluster.net.node("watcher").unwrap();
    let peer = common::rpc_name(if other == watched { new_leader } else { other });
    let mut remote = watch_remote(
        &client,
        &peer,
        last_index.unwrap() + 1,
        &all_kinds().into_iter().collect::<Vec<_>>(),
        Deadline::after(PATIENCE),
    )
    .map(|item| item.expect("a watch item"))
    .boxed();
    while seen.len() < 8 {
        let what = seen.len();
        let WatchItem::Change(event) = next(&mut remote, &format!("resumed change {what}")).await
        else {
            panic!("a resync though every event is retained");
        };
        assert!(last_index < Some(event.index), "out of order: {event:?}");
        last_index = Some(event.index);
        seen.extend(event.changes.iter().map(label));
    }
    assert_eq!(
        seen,
        [
            "voters [1, 2, 3]",
            "published 2",
            r#"rules v1 {"period":"P1M","type":"loadByPeriod"}"#,
            "node h1",
            r#"assigned {"h1"}"#,
            r#"rules v2 {"period":"P3M","type":"loadByPeriod"}"#,
            "unused 1",
            "removed h1",
        ]
    );
    // Nothing more arrives: no change is delivered twice.
    let extra = tokio::time::timeout(Duration::from_secs(2), remote.next()).await;
    assert!(extra.is_err(), "an extra item: {extra:?}");
    drop(remote);
    client.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_behind_what_is_retained_gets_a_resync_then_the_changes() {
    let mut cluster = Cluster::new(32);
    common::snapshot_often(&mut cluster.raft, 10);
    cluster.start_group(&[1, 2, 3]).await;
    let leader = cluster.leader().await;
    let lagging = cluster.other_than(leader);
    // The lagging member misses everything and is caught up by a snapshot, so it has no
    // events before the snapshot's index.
    cluster.net.isolate(&common::rpc_name(lagging));
    cluster.node(leader).write(create_task("r1")).await.unwrap();
    // More segments than one resync part holds.
    let published: Vec<SegmentRecord> = (0..(RESYNC_ROWS_MAX as u32 * 3 / 2))
        .map(|partition| segment(1, partition))
        .collect();
    cluster
        .node(leader)
        .write(publish("r1", published.clone()))
        .await
        .unwrap();
    for i in 0..20 {
        let command = if i % 2 == 0 {
            rules("P1M")
        } else {
            rules("P2M")
        };
        cluster.node(leader).write(command).await.unwrap();
    }
    cluster
        .node(leader)
        .raft()
        .wait(Some(PATIENCE))
        .metrics(|m| m.purged.is_some_and(|p| p.index >= 15), "purged")
        .await
        .unwrap();
    cluster.net.heal_all();
    cluster.converge(leader).await;
    assert!(cluster.node(lagging).metrics().snapshot.is_some());

    let kinds: BTreeSet<_> = [WatchKind::Segments, WatchKind::Rules].into();
    let mut stream = Box::pin(cluster.node(lagging).watch(0, kinds));
    // The resync comes in parts of at most RESYNC_ROWS_MAX rows, all as of one index.
    let mut state = WatchState::default();
    let mut parts = 0;
    let index = loop {
        let WatchItem::Resync { index, part, last } = next(&mut stream, "the resync").await else {
            panic!("no resync for events that are gone");
        };
        let rows =
            part.segments.as_ref().map_or(0, Vec::len) + part.rules.as_ref().map_or(0, Vec::len);
        assert!(rows <= RESYNC_ROWS_MAX, "a part of {rows} rows");
        assert!(
            part.segments.is_some() && part.rules.is_some(),
            "every part names what it holds"
        );
        state.extend(*part);
        parts += 1;
        if last {
            break index;
        }
    };
    assert!(parts >= 2, "{parts} parts");
    assert_eq!(Some(index), cluster.node(lagging).applied_index());
    let segments = state.segments.expect("segments were asked for");
    let mut expected = published;
    expected.sort_by_key(|s| s.id_text());
    assert_eq!(segments, expected);
    let rules_now = state.rules.expect("rules were asked for");
    assert_eq!(rules_now[0].version, 20);
    assert!(state.assignments.is_none() && state.nodes.is_none());
    // Changes continue after the resync's index.
    cluster.node(leader).write(rules("P9M")).await.unwrap();
    let WatchItem::Change(event) = next(&mut stream, "the change after the resync").await else {
        panic!("a second resync");
    };
    assert!(event.index > index);
    assert_eq!(
        event.changes.iter().map(label).collect::<Vec<_>>(),
        [r#"rules v21 {"period":"P9M","type":"loadByPeriod"}"#]
    );
    // From an index it still retains, the leader sends the changes alone.
    let mut from_leader = Box::pin(
        cluster
            .node(leader)
            .watch(event.index, [WatchKind::Rules].into()),
    );
    let WatchItem::Change(same) = next(&mut from_leader, "the leader's change").await else {
        panic!("a resync from a retained index");
    };
    assert_eq!(same, event);
}
