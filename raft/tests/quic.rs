//! Three members over real QUIC on loopback (mutual TLS from a test cluster CA): they elect a
//! leader, replicate writes sent to a follower, and after the leader is killed a new leader
//! commits. Members learn each other's addresses from the membership (the peer hook), not
//! from the test; one member follows another's watch stream. Real time: QUIC's timers are the
//! OS's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use grove_raft::metadata::{Command, TaskRecord, TaskState};
use grove_raft::replicated::{
    Change, GroveNode, PeerHook, RaftNode, RaftNodeConfig, WatchItem, WatchKind, watch_remote,
};
use grove_rpc::tls::ClusterCa;
use grove_rpc::{Deadline, NodeId, QuicConfig, QuicTransport, Router, Transport};

const CLUSTER: &str = "raft-test";

fn create_task(id: &str) -> Command {
    Command::CreateTask {
        task: TaskRecord {
            id: id.into(),
            task_type: "index_parallel".into(),
            data_source: "wiki".into(),
            spec: serde_json::json!({"type": "index_parallel"}),
            state: TaskState::Running,
            error: None,
            created_ms: 1,
            started_ms: None,
            ended_ms: None,
            report: None,
        },
    }
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_over_quic_replicate_and_survive_losing_the_leader() {
    let ca = ClusterCa::generate(CLUSTER, 1).unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let mut transports = BTreeMap::new();
    let mut members = BTreeMap::new();
    for id in 1..=3u64 {
        let name = NodeId::new(&format!("q{id}")).unwrap();
        let identity = ca.issue(&name, 1).unwrap();
        let mut config = QuicConfig::new(identity, CLUSTER, "127.0.0.1:0".parse().unwrap());
        config.connect_timeout = Duration::from_millis(500);
        config.backoff_min = Duration::from_millis(20);
        config.backoff_max = Duration::from_millis(300);
        config.idle_timeout = Duration::from_secs(3);
        config.keep_alive_interval = Duration::from_millis(500);
        config.shutdown_grace = Duration::from_secs(2);
        let transport = QuicTransport::bind(config).unwrap();
        members.insert(
            id,
            GroveNode::new(name.as_str(), transport.local_addr().to_string()),
        );
        transports.insert(id, transport);
    }
    let mut nodes = BTreeMap::new();
    for (id, transport) in &transports {
        let quic = transport.clone();
        let hook: PeerHook = Arc::new(move |peer: &NodeId, node: &GroveNode| {
            if let Ok(address) = node.address.parse::<SocketAddr>() {
                quic.add_peer(peer.clone(), address);
            }
        });
        let mut config =
            RaftNodeConfig::new(*id, members[id].clone(), dirs.path().join(format!("q{id}")));
        config.rng_seed = 5;
        let dyn_transport: Arc<dyn Transport> = Arc::new(transport.clone());
        let node = RaftNode::start(config, Arc::clone(&dyn_transport), Some(hook))
            .await
            .unwrap();
        dyn_transport.serve(node.routes(Router::new()));
        nodes.insert(*id, node);
    }
    assert!(nodes[&1].bootstrap(members.clone()).await.unwrap());
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
