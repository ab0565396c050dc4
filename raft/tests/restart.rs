//! What the vote read-back does to a restarted leader (`LogStore::read_vote`), in production
//! mode (the member's own log store, `RaftNode::start`).
//!
//! Why it exists: openraft 0.9 restores a member whose stored vote is committed and names
//! itself as leader straight into leadership (`Engine::startup`), in the same term and
//! without a new blank entry. Such a leader answers read-index requests from its stored
//! commit index, which Grove writes without a sync of its own: a crash may have set it back,
//! and a read would then miss a write it acknowledged (grove-sim found it: about one seed in
//! 100 read stale offsets). So a member's own committed vote reads back uncommitted: it
//! restarts as a follower of nobody, keeps its vote for that term, and leads again only by
//! winning an election in a later term, whose blank entry every read index then covers.
//!
//! This relies on openraft 0.9 internals (how `startup` treats a committed vote): the test
//! pins it, so an upgrade that changes it fails here instead of in the simulator's sweeps.

mod common;

use common::{Cluster, create_task};

#[tokio::test(start_paused = true)]
async fn a_restarted_leader_leads_again_only_by_winning_a_later_term_with_a_blank_entry() {
    let mut cluster = Cluster::new(31);
    cluster.start_group(&[1]).await;
    assert_eq!(cluster.leader().await, 1);
    cluster.node(1).write(create_task("before")).await.unwrap();
    let before = cluster.node(1).metrics();
    assert!(before.vote.is_committed());
    let (term, last) = (before.current_term, before.last_log_index.unwrap());
    cluster.kill(1).await;

    let node = cluster.start(1).await;
    // Restored as the leader it was, it would lead the same term again, with no new entry.
    // It leads again by an election: a later term, whose first entry is a new blank one.
    assert_eq!(cluster.leader().await, 1);
    let after = node.metrics();
    assert!(
        after.current_term > term,
        "{} after {term}",
        after.current_term
    );
    cluster.wait_applied(1, last + 1).await;
    let blank = node.metrics().last_applied.unwrap();
    assert_eq!(blank.index, last + 1, "one new entry before any write");
    assert!(blank.leader_id.term > term, "{blank} after term {term}");
    node.write(create_task("after")).await.unwrap();
    assert_eq!(cluster.task_ids(1).await, ["after", "before"]);
}
