//! Three-member groups on the in-memory network, with paused tokio time: election and
//! replication, a leader killed mid-write, a follower restarted from its directory, a
//! lagging member caught up by snapshot, membership changes during writes, and retried
//! request ids applied once.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{Cluster, PATIENCE, create_task, member, segment};
use grove_raft::metadata::{AuditInfo, Command, MetadataError};
use grove_raft::replicated::{ClientRequest, ReplicaError, RequestId};

fn ids(prefix: &str, range: std::ops::Range<u32>) -> Vec<String> {
    let mut ids: Vec<String> = range.map(|i| format!("{prefix}-{i:03}")).collect();
    ids.sort();
    ids
}

#[tokio::test(start_paused = true)]
async fn three_members_elect_a_leader_and_replicate_from_any_member() {
    let mut cluster = Cluster::new(1);
    cluster.start_group(&[1, 2, 3]).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(leader);
    for i in 0..10 {
        cluster
            .node(leader)
            .write(create_task(&format!("t-{i:03}")))
            .await
            .unwrap();
        // A follower's write is forwarded to the leader.
        cluster
            .node(follower)
            .write(create_task(&format!("t-{:03}", 10 + i)))
            .await
            .unwrap();
    }
    for id in [1, 2, 3] {
        assert_eq!(cluster.task_ids(id).await, ids("t", 0..20), "member {id}");
    }
    cluster.converge(leader).await;
    // A refusal is the apply step's, on every member alike.
    let refused = cluster.node(follower).write(create_task("t-000")).await;
    assert_eq!(
        refused,
        Err(ReplicaError::Command(MetadataError::TaskExists(
            "t-000".into()
        )))
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_leader_commits_after_the_leader_is_killed_mid_write() {
    let mut cluster = Cluster::new(2);
    cluster.start_group(&[1, 2, 3]).await;
    let old_leader = cluster.leader().await;
    let writer = cluster.node(cluster.other_than(old_leader)).clone();
    let writes = tokio::spawn(async move {
        for i in 0..40 {
            writer.write(create_task(&format!("w-{i:03}"))).await?;
        }
        Ok::<_, ReplicaError>(())
    });
    // Kill the leader once part of the writes are in.
    cluster.wait_applied(old_leader, 12).await;
    cluster.kill(old_leader).await;
    writes.await.unwrap().unwrap();
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, old_leader);
    // Every write applied exactly once (a second application would have been refused as
    // TaskExists, and a lost one would be missing).
    for id in cluster.running() {
        assert_eq!(cluster.task_ids(id).await, ids("w", 0..40), "member {id}");
    }
    cluster.converge(new_leader).await;
    assert!(cluster.node(new_leader).metrics().current_term > 1);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_follower_recovers_from_disk_and_catches_up() {
    let mut cluster = Cluster::new(3);
    cluster.start_group(&[1, 2, 3]).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(leader);
    for i in 0..10 {
        cluster
            .node(leader)
            .write(create_task(&format!("r-{i:03}")))
            .await
            .unwrap();
    }
    cluster.converge(leader).await;
    let applied_before = cluster.node(follower).applied_index().unwrap();
    cluster.kill(follower).await;
    for i in 10..30 {
        cluster
            .node(leader)
            .write(create_task(&format!("r-{i:03}")))
            .await
            .unwrap();
    }
    // Cut the restarted member off at first: what it has then came from its own disk.
    cluster.net.isolate(&common::rpc_name(follower));
    let restarted = cluster.start(follower).await;
    cluster.wait_applied(follower, applied_before).await;
    assert_eq!(
        restarted.read_local(|t| t.tasks().len()),
        10,
        "the restarted member replays its own log"
    );
    cluster.net.heal_all();
    cluster.converge(leader).await;
    assert_eq!(cluster.task_ids(follower).await, ids("r", 0..30));
}

#[tokio::test(start_paused = true)]
async fn a_lagging_member_is_caught_up_by_snapshot() {
    let mut cluster = Cluster::new(4);
    common::snapshot_often(&mut cluster.raft, 10);
    cluster.start_group(&[1, 2, 3]).await;
    let leader = cluster.leader().await;
    let lagging = cluster.other_than(leader);
    cluster.net.isolate(&common::rpc_name(lagging));
    for i in 0..50 {
        cluster
            .node(leader)
            .write(create_task(&format!("s-{i:03}")))
            .await
            .unwrap();
    }
    // Cluster tables too: a lock, rules with their audit entry.
    let lock = Command::AcquireTaskLock {
        task_id: "s-007".into(),
        data_source: "wiki".into(),
        interval: segment(0, 0).id.interval,
        version: "v1".into(),
        acquired_ms: 5,
    };
    cluster.node(leader).write(lock).await.unwrap();
    let rules = Command::SetRules {
        data_source: "wiki".into(),
        rules: vec![serde_json::json!({"type": "loadByPeriod", "period": "P1M"})],
        audit: AuditInfo {
            author: "ops".into(),
            comment: "a month".into(),
        },
        changed_ms: 6,
    };
    cluster.node(leader).write(rules).await.unwrap();
    // The leader has snapshotted and purged the entries the lagging member lacks.
    cluster
        .node(leader)
        .raft()
        .wait(Some(PATIENCE))
        .metrics(|m| m.purged.is_some_and(|p| p.index >= 40), "purged")
        .await
        .unwrap();
    let lagging_applied = cluster.node(lagging).applied_index().unwrap_or(0);
    assert!(
        lagging_applied < 10,
        "the lagging member applied {lagging_applied}"
    );
    cluster.net.heal_all();
    cluster.converge(leader).await;
    let metrics = cluster.node(lagging).metrics();
    assert!(
        metrics.snapshot.is_some_and(|s| s.index >= 40),
        "the lagging member installed a snapshot: {:?}",
        metrics.snapshot
    );
    assert_eq!(cluster.task_ids(lagging).await, ids("s", 0..50));
    let (locks, history) = cluster.node(lagging).read_local(|t| {
        (
            t.cluster().task_locks("s-007").len(),
            t.cluster().audit("rules", Some("wiki")).len(),
        )
    });
    assert_eq!((locks, history), (1, 1));
    // The installed snapshot is on its disk: a restart restores it without the leader.
    cluster.kill(lagging).await;
    cluster.net.isolate(&common::rpc_name(lagging));
    let restarted = cluster.start(lagging).await;
    assert!(restarted.applied_index().is_some_and(|i| i >= 40));
    assert!(restarted.read_local(|t| t.tasks().len()) >= 40);
}

#[tokio::test(start_paused = true)]
async fn membership_changes_during_writes() {
    let mut cluster = Cluster::new(5);
    cluster.start_group(&[1, 2, 3]).await;
    let leader = cluster.leader().await;
    let writer = cluster.node(leader).clone();
    let writes = tokio::spawn(async move {
        for i in 0..60 {
            writer.write(create_task(&format!("m-{i:03}"))).await?;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok::<_, ReplicaError>(())
    });
    cluster.start(4).await;
    let follower = cluster.other_than(leader);
    // Asked of a follower: carried to the leader.
    cluster
        .node(follower)
        .add_learner(4, member(4))
        .await
        .unwrap();
    cluster.node(follower).promote_voter(4).await.unwrap();
    let removed = *cluster
        .running()
        .iter()
        .find(|id| **id != leader && **id != 4)
        .unwrap();
    cluster.node(leader).remove_voter(removed).await.unwrap();
    writes.await.unwrap().unwrap();
    let voters: BTreeSet<u64> = cluster
        .node(leader)
        .metrics()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    let expected: BTreeSet<u64> = [1, 2, 3, 4]
        .into_iter()
        .filter(|id| *id != removed)
        .collect();
    assert_eq!(voters, expected);
    cluster.kill(removed).await;
    assert_eq!(cluster.task_ids(4).await, ids("m", 0..60));
    cluster.converge(leader).await;
    // Promoting a member that is not a learner is refused, not retried forever.
    let refused = cluster.node(leader).promote_voter(9).await;
    assert!(
        matches!(refused, Err(ReplicaError::Membership(_))),
        "{refused:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retried_request_id_is_applied_once() {
    let mut cluster = Cluster::new(6);
    cluster.start_group(&[1, 2, 3]).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(leader);
    let request = ClientRequest::new(
        RequestId {
            client: 77,
            serial: 1,
        },
        create_task("d-1"),
    );
    let first = cluster
        .node(follower)
        .submit(request.clone())
        .await
        .unwrap();
    assert_eq!((first.result.clone(), first.duplicate), (Ok(()), false));
    // The retry goes through another member; it gets the first verdict, not TaskExists.
    let retry = cluster.node(leader).submit(request.clone()).await.unwrap();
    assert_eq!((retry.result, retry.duplicate), (Ok(()), true));
    // A new request id with the same command is a new write, refused by the apply step.
    let fresh = ClientRequest {
        id: RequestId {
            client: 77,
            serial: 2,
        },
        ..request
    };
    let refused = cluster.node(leader).submit(fresh.clone()).await.unwrap();
    assert_eq!(refused.result, Err(MetadataError::TaskExists("d-1".into())));
    let refused_again = cluster.node(follower).submit(fresh).await.unwrap();
    assert_eq!(
        (refused_again.result, refused_again.duplicate),
        (Err(MetadataError::TaskExists("d-1".into())), true)
    );
    assert_eq!(cluster.task_ids(follower).await, vec!["d-1".to_string()]);
    // The request log survives a leader change (it is replicated state).
    cluster.kill(leader).await;
    let new_leader = cluster.leader().await;
    let request = ClientRequest::new(
        RequestId {
            client: 77,
            serial: 1,
        },
        create_task("d-1"),
    );
    let after = cluster
        .node(new_leader)
        .submit(request.clone())
        .await
        .unwrap();
    assert_eq!((after.result, after.duplicate), (Ok(()), true));
    // The same id with another command is refused, nothing changed: it is not a retry.
    let reused = ClientRequest {
        command: create_task("d-other"),
        ..request
    };
    let refused = cluster.node(new_leader).submit(reused).await.unwrap();
    assert_eq!(
        refused.result,
        Err(MetadataError::RequestIdReused {
            id: "000000000000004d/1".into()
        })
    );
    assert_eq!(cluster.task_ids(new_leader).await, vec!["d-1".to_string()]);
}

#[tokio::test(start_paused = true)]
async fn a_write_fenced_by_an_old_leader_term_is_refused_after_a_leader_change() {
    let mut cluster = Cluster::new(12);
    cluster.start_group(&[1, 2, 3]).await;
    let leader = cluster.leader().await;
    let old_term = cluster.node(leader).current_term();
    let follower = cluster.other_than(leader);
    // In the observed term, a fenced write applies (through a follower, forwarded).
    cluster
        .node(follower)
        .write_in_term(create_task("f-1"), old_term)
        .await
        .unwrap();
    cluster.kill(leader).await;
    let new_leader = cluster.leader().await;
    let new_term = cluster.node(new_leader).current_term();
    assert!(new_term > old_term, "{new_term} after {old_term}");
    // A writer still acting on the old term is refused, and nothing changes.
    let before = cluster.node(new_leader).read(|t| t.clone()).await.unwrap();
    let error = cluster
        .node(follower)
        .write_in_term(create_task("f-2"), old_term)
        .await
        .unwrap_err();
    assert_eq!(
        error,
        ReplicaError::Command(MetadataError::StaleTerm {
            observed: old_term,
            committed: new_term
        })
    );
    let after = cluster.node(new_leader).read(|t| t.clone()).await.unwrap();
    assert!(after == before, "a stale write changed the tables");
    // Having observed the new term, it writes.
    cluster
        .node(follower)
        .write_in_term(create_task("f-2"), new_term)
        .await
        .unwrap();
    assert_eq!(cluster.task_ids(new_leader).await, ["f-1", "f-2"]);
    cluster.converge(new_leader).await;
}

#[tokio::test(start_paused = true)]
async fn without_a_quorum_a_write_fails_with_a_clear_error() {
    let mut cluster = Cluster::new(7);
    cluster.start_group(&[1, 2, 3]).await;
    let leader = cluster.leader().await;
    let survivor = cluster.other_than(leader);
    for id in cluster.running() {
        if id != survivor {
            cluster.kill(id).await;
        }
    }
    let error = cluster
        .node(survivor)
        .write(create_task("q-1"))
        .await
        .unwrap_err();
    assert!(matches!(error, ReplicaError::NotLeader { .. }), "{error:?}");
    assert!(error.to_string().contains("no leader reachable"), "{error}");
    // Behind the blocking store interface it is "unavailable" (the node answers 503).
    assert!(
        matches!(MetadataError::from(error), MetadataError::Unavailable(_)),
        "a lost quorum is not reported as unavailable"
    );
    let started = tokio::time::Instant::now();
    let read = cluster.node(survivor).read(|t| t.tasks().len()).await;
    assert!(
        matches!(read, Err(ReplicaError::NotLeader { .. })),
        "{read:?}"
    );
    assert!(started.elapsed() <= Duration::from_secs(11), "a read hung");
}

#[tokio::test(start_paused = true)]
async fn a_partitioned_leader_loses_its_place_and_its_write_applies_once_after_healing() {
    let mut cluster = Cluster::new(8);
    cluster.start_group(&[1, 2, 3]).await;
    let old_leader = cluster.leader().await;
    cluster
        .node(old_leader)
        .write(create_task("p-000"))
        .await
        .unwrap();
    cluster.net.isolate(&common::rpc_name(old_leader));
    // A write on the cut-off leader cannot commit while it is cut off; it keeps trying.
    let cut_off = cluster.node(old_leader).clone();
    let stranded = tokio::spawn(async move { cut_off.write(create_task("p-001")).await });
    // The majority elects a new leader and commits without it.
    let majority: Vec<u64> = cluster
        .running()
        .into_iter()
        .filter(|id| *id != old_leader)
        .collect();
    let new_leader = loop {
        let leader = cluster.node(majority[0]).current_leader();
        if let Some(leader) = leader.filter(|l| *l != old_leader)
            && cluster.node(majority[1]).current_leader() == Some(leader)
        {
            break leader;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    cluster
        .node(new_leader)
        .write(create_task("p-002"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !stranded.is_finished(),
        "a write without a quorum must not complete"
    );
    cluster.net.heal_all();
    // After healing, the old leader steps down, its uncommitted entry is replaced, and its
    // retried write reaches the new leader and applies once.
    stranded.await.unwrap().unwrap();
    assert_eq!(cluster.leader().await, new_leader);
    for id in cluster.running() {
        assert_eq!(cluster.task_ids(id).await, ids("p", 0..3), "member {id}");
    }
    cluster.converge(new_leader).await;
}

#[tokio::test(start_paused = true)]
async fn of_two_task_replicas_publishing_one_offset_range_exactly_one_succeeds() {
    use common::{offsets, publish_offsets_0_to_100 as publish};
    let mut cluster = Cluster::new(9);
    cluster.start_group(&[1, 2, 3]).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(leader);
    for task in ["replica-a", "replica-b"] {
        cluster.node(leader).write(create_task(task)).await.unwrap();
    }
    // Both replicas read offsets 0..100 and publish at once, through different members.
    let (a, b) = tokio::join!(
        cluster.node(leader).write(publish("replica-a", 0)),
        cluster.node(follower).write(publish("replica-b", 1)),
    );
    assert!(
        a.is_ok() != b.is_ok(),
        "exactly one publish succeeds: {a:?} {b:?}"
    );
    let refused = a.err().or(b.err()).unwrap();
    assert!(
        refused.to_string().contains("a stale or duplicate publish"),
        "{refused}"
    );
    for id in cluster.running() {
        let (stored, segments) = cluster
            .node(id)
            .read(|t| (t.stream_offsets("wiki"), t.used_segments("wiki").len()))
            .await
            .unwrap();
        assert_eq!(stored, Some(offsets(100)), "member {id}");
        assert_eq!(segments, 1, "member {id}");
    }
}

#[tokio::test(start_paused = true)]
async fn five_members_commit_with_two_of_them_lost() {
    let mut cluster = Cluster::new(10);
    cluster.start_group(&[1, 2, 3, 4, 5]).await;
    let leader = cluster.leader().await;
    for i in 0..10 {
        cluster
            .node(leader)
            .write(create_task(&format!("f-{i:03}")))
            .await
            .unwrap();
    }
    // Lose the leader and one follower: three of five still make a quorum.
    let follower = cluster.other_than(leader);
    cluster.kill(leader).await;
    cluster.kill(follower).await;
    let writer = cluster.running()[0];
    for i in 10..20 {
        cluster
            .node(writer)
            .write(create_task(&format!("f-{i:03}")))
            .await
            .unwrap();
    }
    let new_leader = cluster.leader().await;
    for id in cluster.running() {
        assert_eq!(cluster.task_ids(id).await, ids("f", 0..20), "member {id}");
    }
    cluster.converge(new_leader).await;
}

#[tokio::test(start_paused = true)]
async fn a_command_that_cannot_be_read_back_is_refused_before_it_reaches_the_log() {
    use grove_raft::metadata::{Command, TaskReport};
    let mut cluster = Cluster::new(11);
    cluster.start_group(&[1, 2, 3]).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(leader);
    cluster
        .node(leader)
        .write(create_task("x-1"))
        .await
        .unwrap();
    // A zero-length bucket serializes as the period `P`, which does not read back.
    let mut schema = common::schema();
    schema.query_granularity = grove_segment::time::Granularity::Fixed {
        period_ms: 0,
        origin_ms: 0,
    };
    let poison = Command::PublishSegments {
        task_id: "x-1".into(),
        segments: vec![common::segment(0, 0)],
        schema,
        report: TaskReport::default(),
        ended_ms: 5,
    };
    for id in [leader, follower] {
        let error = cluster.node(id).write(poison.clone()).await.unwrap_err();
        assert!(
            error.to_string().contains("cannot be stored in the log"),
            "{error}"
        );
    }
    // Every member still applies writes.
    cluster
        .node(follower)
        .write(create_task("x-2"))
        .await
        .unwrap();
    for id in cluster.running() {
        assert_eq!(cluster.task_ids(id).await, ["x-1", "x-2"], "member {id}");
    }
}

#[tokio::test(start_paused = true)]
async fn concurrent_writes_share_entries_and_each_gets_its_own_verdict() {
    let mut cluster = Cluster::new(41);
    cluster.start_group(&[1, 2, 3]).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(leader);
    cluster
        .node(leader)
        .write(create_task("taken"))
        .await
        .unwrap();
    let applied_before = cluster.node(leader).applied_index().unwrap();
    // 32 writers at once through a follower; one of them asks for a task that exists.
    let writes = (0..32u32).map(|i| {
        let node = cluster.node(follower).clone();
        let id = if i == 17 {
            "taken".to_string()
        } else {
            format!("b-{i:03}")
        };
        async move { (i, node.write(create_task(&id)).await) }
    });
    for (i, result) in futures::future::join_all(writes).await {
        if i == 17 {
            assert_eq!(
                result,
                Err(ReplicaError::Command(MetadataError::TaskExists(
                    "taken".into()
                ))),
                "the refused writer gets its own refusal"
            );
        } else {
            assert_eq!(result, Ok(()), "writer {i}");
        }
    }
    // Group commit: the 32 writes took far fewer than 32 entries.
    let entries = cluster.node(leader).applied_index().unwrap() - applied_before;
    assert!(entries < 16, "32 concurrent writes took {entries} entries");
    let mut expected: Vec<String> = (0..32u32)
        .filter(|i| *i != 17)
        .map(|i| format!("b-{i:03}"))
        .chain(["taken".to_string()])
        .collect();
    expected.sort();
    cluster.converge(leader).await;
    for id in [1, 2, 3] {
        assert_eq!(cluster.task_ids(id).await, expected, "member {id}");
    }
}

/// Found by grove-sim (seed 2, 100 steps): a client holding the handle of a member that was
/// crashed kept retrying its write without ever letting virtual time pass (the stopped Raft's
/// metrics channel was closed, so "wait for a leader change" returned at once), and the whole
/// simulation froze. A stopped member now answers `Stopped` at once.
#[tokio::test(start_paused = true)]
async fn a_write_through_a_stopped_member_fails_at_once_instead_of_spinning() {
    let mut cluster = Cluster::new(8);
    cluster.start_group(&[1, 2, 3]).await;
    let leader = cluster.leader().await;
    let handle = cluster.node(leader).clone();
    cluster.kill(leader).await;
    let started = tokio::time::Instant::now();
    let error = handle.write(create_task("s-1")).await.unwrap_err();
    assert!(matches!(error, ReplicaError::Stopped(_)), "{error:?}");
    assert!(
        matches!(MetadataError::from(error), MetadataError::Unavailable(_)),
        "a stopped member is reported as unavailable"
    );
    assert!(started.elapsed() < Duration::from_millis(100), "it waited");
}

/// openraft 0.9 gives an append call one heartbeat (50 ms), and a follower answers only after
/// syncing the call's new entries. Followers that sync 12 times slower than that (600 ms)
/// slow commits down to their pace, but cause no election and no failed write: the timed-out
/// calls are re-sent, the leader keeps at most two entries in flight, and nothing makes a
/// follower campaign. (A leader whose own sync stalls past the followers' election timeout
/// does cause one: openraft 0.9 waits for the leader's append before it sends heartbeats; see
/// ARCHITECTURE.md, Known limits.)
#[tokio::test(start_paused = true)]
async fn followers_syncing_far_slower_than_an_append_call_may_take_slow_commits_but_churn_nothing()
{
    let mut cluster = Cluster::new(21);
    let mut delays = std::collections::BTreeMap::new();
    for id in [1u64, 2, 3] {
        let delay = Arc::new(std::sync::atomic::AtomicU64::new(0));
        delays.insert(id, Arc::clone(&delay));
        cluster
            .start_on(id, |disk| {
                Arc::new(common::SlowSyncs {
                    inner: disk,
                    delay_ms: delay,
                })
            })
            .await;
    }
    let members = [1, 2, 3].iter().map(|&id| (id, member(id))).collect();
    assert!(cluster.node(1).bootstrap(members).await.unwrap());
    let leader = cluster.leader().await;
    let term = cluster.node(leader).current_term();
    for id in cluster.running() {
        if id != leader {
            delays[&id].store(600, std::sync::atomic::Ordering::Relaxed);
        }
    }
    // Eight writers, five writes each, one after another: new entries keep coming.
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let node = cluster.node(leader).clone();
            tokio::spawn(async move {
                let mut failures = Vec::new();
                for i in 0..5 {
                    if let Err(e) = node.write(create_task(&format!("w{writer}-{i}"))).await {
                        failures.push(e.to_string());
                    }
                }
                failures
            })
        })
        .collect();
    for writer in writers {
        let failures = writer.await.unwrap();
        assert!(failures.is_empty(), "writes failed: {failures:?}");
    }
    for id in cluster.running() {
        assert_eq!(
            cluster.node(id).current_term(),
            term,
            "member {id} saw an election"
        );
    }
    assert_eq!(cluster.task_ids(leader).await.len(), 40);
}

#[tokio::test(start_paused = true)]
async fn a_command_over_the_size_limit_is_refused_before_it_is_proposed() {
    let mut cluster = Cluster::new(12);
    cluster.start_group(&[1, 2, 3]).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(leader);
    cluster
        .node(leader)
        .write(create_task("small"))
        .await
        .unwrap();
    let last_index = cluster.node(leader).metrics().last_log_index;
    let mut task = common::fixtures::task("huge", "wiki");
    task.spec =
        serde_json::json!({"padding": "x".repeat(grove_raft::replicated::COMMAND_BYTES_MAX)});
    let huge = Command::CreateTask { task };
    for id in [leader, follower] {
        match cluster.node(id).write(huge.clone()).await {
            Err(ReplicaError::Command(MetadataError::CommandTooLarge { bytes, max })) => {
                assert!(bytes > max, "{bytes} > {max}");
            }
            other => panic!("member {id}: {other:?}"),
        }
    }
    assert_eq!(
        cluster.node(leader).metrics().last_log_index,
        last_index,
        "nothing reached the log"
    );
}

/// What `raft.client_writes` carried before the leader measured requests itself: each
/// request with a size its sender claimed.
struct ClaimedSizes;
impl grove_rpc::Method for ClaimedSizes {
    const NAME: &'static str = "raft.client_writes";
    type Request = grove_rpc::codec::bincode::serde::Compat<Vec<(ClientRequest, usize)>>;
    type Response = grove_rpc::codec::bincode::serde::Compat<Vec<()>>;
}

#[tokio::test(start_paused = true)]
async fn a_forwarded_batch_claiming_huge_sizes_does_not_poison_the_leader() {
    use grove_rpc::TransportExt;
    let mut cluster = Cluster::new(13);
    cluster.start_group(&[1, 2, 3]).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(leader);
    // Two requests each claiming usize::MAX bytes: summing the claims overflowed inside the
    // leader's batch queue lock, and every later write through the leader failed.
    let forged: Vec<(ClientRequest, usize)> = (1..=2)
        .map(|serial| {
            let id = RequestId { client: 99, serial };
            (
                ClientRequest::new(id, create_task(&format!("forged-{serial}"))),
                usize::MAX,
            )
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let _ = cluster
        .transport(follower)
        .call::<ClaimedSizes>(
            &common::rpc_name(leader),
            &grove_rpc::codec::bincode::serde::Compat(forged),
            deadline,
        )
        .await;
    for id in [leader, follower] {
        cluster
            .node(id)
            .write(create_task(&format!("after-{id}")))
            .await
            .unwrap_or_else(|e| panic!("a write through member {id} failed: {e}"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_chunk_far_past_what_arrived_is_refused_before_anything_is_allocated() {
    use grove_raft::replicated::network::{InstallSnapshot, InstallSnapshotFailure};
    use grove_rpc::TransportExt;
    use grove_rpc::codec::bincode::serde::Compat;
    use openraft::raft::InstallSnapshotRequest;
    let mut cluster = Cluster::new(14);
    cluster.start_group(&[1, 2, 3]).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(leader);
    let metrics = cluster.node(leader).metrics();
    let chunk = |offset: u64, data: Vec<u8>| {
        Compat(
            InstallSnapshotRequest::<grove_raft::replicated::TypeConfig> {
                vote: metrics.vote,
                meta: openraft::SnapshotMeta {
                    last_log_id: Some(openraft::LogId::new(
                        openraft::CommittedLeaderId::new(metrics.current_term, leader),
                        1_000,
                    )),
                    last_membership: metrics.membership_config.as_ref().clone(),
                    snapshot_id: "forged".into(),
                },
                offset,
                data,
                done: false,
            },
        )
    };
    let send = |request| {
        let transport = cluster.transport(leader);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        async move {
            transport
                .call::<InstallSnapshot>(&common::rpc_name(follower), &request, deadline)
                .await
                .unwrap()
                .0
        }
    };
    // The first chunk is taken; one at 2^40 bytes would have grown the receive buffer to a
    // terabyte (the process aborts on the allocation).
    assert!(send(chunk(0, vec![1; 16])).await.is_ok());
    match send(chunk(1 << 40, vec![2; 16])).await {
        Err(InstallSnapshotFailure::Mismatch(mismatch)) => {
            assert_eq!(mismatch.expect.offset, 16);
            assert_eq!(mismatch.got.offset, 1 << 40);
        }
        other => panic!("{other:?}"),
    }
    // A chunk continuing where the last one ended, or re-sending it, is taken.
    assert!(send(chunk(16, vec![3; 16])).await.is_ok());
    assert!(send(chunk(16, vec![3; 16])).await.is_ok());
    // The group is unharmed.
    cluster
        .node(follower)
        .write(create_task("after"))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_member_that_missed_the_changes_adding_the_leader_is_admitted_to_it_by_another_member() {
    let mut cluster = Cluster::new(15);
    cluster.start_group(&[1, 2, 3]).await;
    let leader = cluster.leader().await;
    assert_ne!(
        leader, 3,
        "seed 15 elects 1 or 2 (member 3 is cut off below)"
    );
    // Member 3 misses everything from here on: 4 and 5 join, 1 and 2 leave.
    cluster.net.isolate(&common::rpc_name(3));
    let via = 1;
    for id in [4, 5] {
        cluster.start(id).await;
        cluster.node(via).add_learner(id, member(id)).await.unwrap();
        cluster.node(via).promote_voter(id).await.unwrap();
    }
    for id in [1, 2] {
        cluster.node(4).remove_voter(id).await.unwrap();
    }
    cluster
        .node(4)
        .write(create_task("after-change"))
        .await
        .unwrap();
    let index = cluster.node(4).applied_index().unwrap();
    // Member 3 knows {1, 2, 3} only: it refuses 4 and 5 until 1 or 2 (still running, and
    // knowing them) vouches for the leader; then it catches up.
    cluster.net.heal_all();
    cluster.wait_applied(3, index).await;
    let ids: Vec<String> = cluster
        .node(3)
        .read_local(|t| t.tasks().into_iter().map(|task| task.id).collect());
    assert_eq!(ids, ["after-change"]);
}
