//! Members over real QUIC on loopback (mutual TLS from a test cluster CA): they elect a
//! leader, replicate writes sent to a follower, and after the leader is killed a new leader
//! commits; one member follows another's watch stream; a member restarted from disk and a new
//! learner are caught up by snapshots sent in chunks over QUIC, the learner is promoted during
//! writes, and of two replicas publishing one offset range through two members exactly one
//! succeeds. Members learn each other's addresses from the membership (the peer hook), not
//! from the test. Real time: QUIC's timers are the OS's.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::create_task;
use futures::StreamExt;
use grove_raft::replicated::{
    Change, GroveNode, PeerHook, RaftNode, RaftNodeConfig, WatchItem, WatchKind, watch_remote,
};
use grove_rpc::tls::ClusterCa;
use grove_rpc::{Deadline, NodeId, QuicConfig, QuicTransport, Router, Transport};

const CLUSTER: &str = "raft-test";

async fn agreed_leader(nodes: &BTreeMap<u64, RaftNode>) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let leaders: Vec<_> = nodes.values().map(|n| n.current_leader()).collect();
        if let Some(Some(leader)) = leaders.first()
            && nodes.contains_key(leader)
            && leaders.iter().all(|l| l == &Some(*leader))
        {
            return *leader;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no agreed leader: {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A QUIC endpoint for member `id` at `address` (port 0: any), and how the group names it.
fn quic_endpoint(ca: &ClusterCa, id: u64, address: SocketAddr) -> (QuicTransport, GroveNode) {
    let name = NodeId::new(&format!("q{id}")).unwrap();
    let identity = ca.issue(&name, 1).unwrap();
    let mut config = QuicConfig::new(identity, CLUSTER, address);
    config.connect_timeout = Duration::from_millis(500);
    config.backoff_min = Duration::from_millis(20);
    config.backoff_max = Duration::from_millis(300);
    config.idle_timeout = Duration::from_secs(3);
    config.keep_alive_interval = Duration::from_millis(500);
    config.shutdown_grace = Duration::from_secs(2);
    let transport = QuicTransport::bind(config).unwrap();
    let member = GroveNode::new(name.as_str(), transport.local_addr().to_string());
    (transport, member)
}

/// Starts member `id` on `transport` with its log under `dir`, serving its Raft routes; peers'
/// addresses come from the membership through the peer hook.
async fn start_member(
    id: u64,
    member: &GroveNode,
    transport: &QuicTransport,
    dir: &std::path::Path,
    raft: openraft::Config,
) -> RaftNode {
    let quic = transport.clone();
    let hook: PeerHook = Arc::new(move |peer: &NodeId, node: &GroveNode| {
        if let Ok(address) = node.address.parse::<SocketAddr>() {
            quic.add_peer(peer.clone(), address);
        }
    });
    let mut config = RaftNodeConfig::new(id, member.clone(), dir.join(format!("q{id}")));
    config.rng_seed = 5;
    config.raft = raft;
    let dyn_transport: Arc<dyn Transport> = Arc::new(transport.clone());
    let node = RaftNode::start(config, Arc::clone(&dyn_transport), Some(hook))
        .await
        .unwrap();
    dyn_transport.serve(node.routes(Router::new()));
    node
}

/// Members 1–3 on fresh endpoints, started with `raft` and bootstrapped as one group.
async fn start_group(
    ca: &ClusterCa,
    dir: &std::path::Path,
    raft: &openraft::Config,
) -> (
    BTreeMap<u64, QuicTransport>,
    BTreeMap<u64, GroveNode>,
    BTreeMap<u64, RaftNode>,
) {
    let mut transports = BTreeMap::new();
    let mut members = BTreeMap::new();
    for id in 1..=3u64 {
        let (transport, member) = quic_endpoint(ca, id, "127.0.0.1:0".parse().unwrap());
        members.insert(id, member);
        transports.insert(id, transport);
    }
    let mut nodes = BTreeMap::new();
    for (id, transport) in &transports {
        let node = start_member(*id, &members[id], transport, dir, raft.clone()).await;
        nodes.insert(*id, node);
    }
    assert!(nodes[&1].bootstrap(members.clone()).await.unwrap());
    (transports, members, nodes)
}

/// Waits until `node` has applied `count` tasks (it reads its own state).
async fn wait_for_tasks(node: &RaftNode, count: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let have = node.read_local(|t| t.tasks().len());
        if have == count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "member {} has {have} of {count} tasks",
            node.id()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_over_quic_replicate_and_survive_losing_the_leader() {
    let ca = ClusterCa::generate(CLUSTER, 1).unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let raft = grove_raft::replicated::default_raft_config();
    let (mut transports, members, mut nodes) = start_group(&ca, dirs.path(), &raft).await;
    let leader = agreed_leader(&nodes).await;
    let follower = *nodes.keys().find(|id| **id != leader).unwrap();
    for i in 0..20 {
        nodes[&follower]
            .write(create_task(&format!("a-{i:02}")))
            .await
            .unwrap();
    }
    for node in nodes.values() {
        let count = node.read(|t| t.tasks().len()).await.unwrap();
        assert_eq!(count, 20, "member {}", node.id());
    }

    // Kill the leader: its Raft stops and its endpoint closes.
    let old = nodes.remove(&leader).unwrap();
    old.shutdown().await.unwrap();
    transports.remove(&leader).unwrap().shutdown().await;
    let new_leader = agreed_leader(&nodes).await;
    assert_ne!(new_leader, leader);
    for i in 20..30 {
        nodes[&follower]
            .write(create_task(&format!("a-{i:02}")))
            .await
            .unwrap();
    }
    for node in nodes.values() {
        let ids: Vec<String> = node
            .read(|t| t.tasks().into_iter().map(|task| task.id).collect())
            .await
            .unwrap();
        let expected: Vec<String> = (0..30).map(|i| format!("a-{i:02}")).collect();
        assert_eq!(ids, expected, "member {}", node.id());
    }
    // A member follows another's watch stream over QUIC: the group's first membership.
    let other = *nodes.keys().find(|id| **id != follower).unwrap();
    let peer = NodeId::new(&members[&other].name).unwrap();
    let mut watch = watch_remote(
        &transports[&follower],
        &peer,
        0,
        &[WatchKind::Membership],
        Deadline::after(Duration::from_secs(10)),
    );
    let first = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("a watch item in time")
        .expect("a watch item")
        .expect("no transport error");
    match first {
        WatchItem::Change(event) => assert_eq!(
            event.changes,
            [Change::RaftMembership {
                voters: vec![1, 2, 3],
                learners: vec![]
            }]
        ),
        item => panic!("expected the first membership, got {item:?}"),
    }
    drop(watch);
    for (id, node) in &nodes {
        node.shutdown().await.unwrap();
        transports[id].shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_quic_a_restarted_member_and_a_learner_catch_up_by_snapshot_and_offsets_publish_once()
{
    let ca = ClusterCa::generate(CLUSTER, 1).unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let mut raft = grove_raft::replicated::default_raft_config();
    common::snapshot_often(&mut raft, 20);
    let (mut transports, members, mut nodes) = start_group(&ca, dirs.path(), &raft).await;
    let leader = agreed_leader(&nodes).await;
    let stopped = *nodes.keys().find(|id| **id != leader).unwrap();
    let task = |i: usize| create_task(&format!("s-{i:03}"));
    for i in 0..10 {
        nodes[&leader].write(task(i)).await.unwrap();
    }

    // A follower stops; the others move on past several snapshots and purge their logs.
    let address = transports[&stopped].local_addr();
    nodes.remove(&stopped).unwrap().shutdown().await.unwrap();
    transports.remove(&stopped).unwrap().shutdown().await;
    for i in 10..70 {
        nodes[&leader].write(task(i)).await.unwrap();
    }
    // It restarts from its directory at its old address (once the old endpoint's socket is
    // released) and is sent a snapshot.
    let rebind = tokio::time::Instant::now() + Duration::from_secs(10);
    while std::net::UdpSocket::bind(address).is_err() {
        assert!(
            tokio::time::Instant::now() < rebind,
            "{address} stays bound"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (transport, _) = quic_endpoint(&ca, stopped, address);
    let node = start_member(
        stopped,
        &members[&stopped],
        &transport,
        dirs.path(),
        raft.clone(),
    )
    .await;
    transports.insert(stopped, transport);
    nodes.insert(stopped, node);
    wait_for_tasks(&nodes[&stopped], 70).await;

    // A new member joins as a learner (caught up by snapshot) and is promoted during writes.
    let (transport, member) = quic_endpoint(&ca, 4, "127.0.0.1:0".parse().unwrap());
    let node = start_member(4, &member, &transport, dirs.path(), raft.clone()).await;
    transports.insert(4, transport);
    nodes.insert(4, node);
    let writer = nodes[&leader].clone();
    let writes = tokio::spawn(async move {
        for i in 70..90 {
            writer.write(task(i)).await.unwrap();
        }
    });
    nodes[&stopped].add_learner(4, member).await.unwrap();
    nodes[&stopped].promote_voter(4).await.unwrap();
    writes.await.unwrap();
    for node in nodes.values() {
        let ids: Vec<String> = node
            .read(|t| t.tasks().into_iter().map(|task| task.id).collect())
            .await
            .unwrap();
        let expected: Vec<String> = (0..90).map(|i| format!("s-{i:03}")).collect();
        assert_eq!(ids, expected, "member {}", node.id());
    }
    let voters = nodes[&4]
        .metrics()
        .membership_config
        .membership()
        .voter_ids()
        .count();
    assert_eq!(voters, 4);

    // Two replicas of a stream task publish the same offset range through two members.
    use common::{offsets, publish_offsets_0_to_100 as publish};
    for replica in ["replica-a", "replica-b"] {
        nodes[&leader].write(create_task(replica)).await.unwrap();
    }
    let (a, b) = tokio::join!(
        nodes[&stopped].write(publish("replica-a", 0)),
        nodes[&4].write(publish("replica-b", 1)),
    );
    assert!(a.is_ok() != b.is_ok(), "exactly one publish: {a:?} {b:?}");
    for node in nodes.values() {
        let stored = node.read(|t| t.stream_offsets("wiki")).await.unwrap();
        assert_eq!(stored, Some(offsets(100)), "member {}", node.id());
    }
    for (id, node) in &nodes {
        node.shutdown().await.unwrap();
        transports[id].shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_certified_by_the_cluster_but_not_a_member_may_follow_but_not_send_raft_calls() {
    use grove_raft::replicated::access::NOT_A_MEMBER;
    use grove_raft::replicated::network::{
        Admin, AdminRequest, AppendEntries, ClientWrites, ReadIndex, Vote,
    };
    use grove_raft::replicated::{ClientRequest, RequestId, TypeConfig};
    use grove_rpc::codec::bincode::serde::Compat;
    use grove_rpc::{RpcError, TransportExt};
    let ca = ClusterCa::generate(CLUSTER, 1).unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let raft = grove_raft::replicated::default_raft_config();
    let (transports, members, nodes) = start_group(&ca, dirs.path(), &raft).await;
    let leader = agreed_leader(&nodes).await;
    nodes[&leader].write(create_task("before")).await.unwrap();
    // A data node: its certificate is the cluster's, its name is in no membership.
    let (intruder, _) = quic_endpoint(&ca, 9, "127.0.0.1:0".parse().unwrap());
    let target = NodeId::new(&members[&leader].name).unwrap();
    intruder.add_peer(target.clone(), members[&leader].address.parse().unwrap());
    let metrics = nodes[&leader].metrics();
    let deadline = || Deadline::after(Duration::from_secs(5));
    let refused = |result: Result<(), RpcError>, method: &str| match result {
        Err(RpcError::Remote { code, message }) => {
            assert_eq!(code, NOT_A_MEMBER, "{method}: {message}");
            assert!(message.contains("q9"), "{method}: {message}");
        }
        other => panic!("{method} from a non-member: {other:?}"),
    };
    let vote = openraft::raft::VoteRequest::new(
        openraft::Vote::new(metrics.current_term + 100, 9),
        metrics.last_applied,
    );
    refused(
        intruder
            .call::<Vote>(&target, &Compat(vote), deadline())
            .await
            .map(|_| ()),
        "raft.vote",
    );
    let append = openraft::raft::AppendEntriesRequest::<TypeConfig> {
        vote: openraft::Vote::new_committed(metrics.current_term + 100, 9),
        prev_log_id: None,
        leader_commit: None,
        entries: Vec::new(),
    };
    refused(
        intruder
            .call::<AppendEntries>(&target, &Compat(append), deadline())
            .await
            .map(|_| ()),
        "raft.append_entries",
    );
    refused(
        intruder
            .call::<Admin>(
                &target,
                &Compat(AdminRequest::RemoveVoter { id: leader }),
                deadline(),
            )
            .await
            .map(|_| ()),
        "raft.admin",
    );
    let write = ClientRequest::new(
        RequestId {
            client: 9,
            serial: 1,
        },
        create_task("forged"),
    );
    refused(
        intruder
            .call::<ClientWrites>(&target, &Compat(vec![write]), deadline())
            .await
            .map(|_| ()),
        "raft.client_writes",
    );
    refused(
        intruder
            .call::<ReadIndex>(&target, &(), deadline())
            .await
            .map(|_| ()),
        "raft.read_index",
    );
    // Nothing changed: same leader, same term, three voters, no forged task.
    assert_eq!(agreed_leader(&nodes).await, leader);
    let after = nodes[&leader].metrics();
    assert_eq!(after.current_term, metrics.current_term);
    assert_eq!(after.membership_config.membership().voter_ids().count(), 3);
    let ids: Vec<String> = nodes[&leader]
        .read(|t| t.tasks().into_iter().map(|task| task.id).collect())
        .await
        .unwrap();
    assert_eq!(ids, ["before"]);
    // Following the metadata is open to every certified node.
    let mut watch = watch_remote(
        &intruder,
        &target,
        0,
        &[WatchKind::Membership],
        Deadline::after(Duration::from_secs(10)),
    );
    let first = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("a watch item in time")
        .expect("a watch item");
    assert!(first.is_ok(), "{first:?}");
    drop(watch);
    intruder.shutdown().await;
    for (id, node) in &nodes {
        node.shutdown().await.unwrap();
        transports[id].shutdown().await;
    }
}
