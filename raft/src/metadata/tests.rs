//! The apply step's rules, through [`MemoryTables`] (the one implementation of the tables; the
//! replicated store's tests check that a group applies the same).

use std::sync::Mutex;

use grove_segment::time::MS_PER_DAY;

use super::*;

#[path = "../../tests/common/fixtures.rs"]
mod fixtures;
use fixtures::{DAY0, publish, schema, segment, task};

use crate::metadata::{TaskReport, TaskState};
use crate::replicated::MemoryTables;

/// The tables behind the `MetadataStore` interface, applied in place.
#[derive(Default)]
struct Store(Mutex<MemoryTables>);

impl MetadataStore for Store {
    fn apply(&self, command: Command) -> Result<()> {
        apply::apply(&mut *self.0.lock().unwrap(), &command)
    }

    fn data_sources(&self) -> Result<Vec<DataSourceRecord>> {
        Ok(self.0.lock().unwrap().data_sources())
    }

    fn used_segments(&self, data_source: &str) -> Result<Vec<SegmentRecord>> {
        Ok(self.0.lock().unwrap().used_segments(data_source))
    }

    fn task(&self, id: &str) -> Result<TaskRecord> {
        self.0.lock().unwrap().task(id)
    }

    fn tasks(&self) -> Result<Vec<TaskRecord>> {
        Ok(self.0.lock().unwrap().tasks())
    }

    fn stream_offsets(&self, data_source: &str) -> Result<Option<StreamOffsets>> {
        Ok(self.0.lock().unwrap().stream_offsets(data_source))
    }

    fn rules(&self, data_source: &str) -> Result<Option<RulesRecord>> {
        Ok(self.0.lock().unwrap().cluster().rules(data_source))
    }

    fn all_rules(&self) -> Result<Vec<RulesRecord>> {
        Ok(self.0.lock().unwrap().cluster().all_rules())
    }

    fn audit(&self, audit_type: &str, key: Option<&str>) -> Result<Vec<AuditEntry>> {
        Ok(self.0.lock().unwrap().cluster().audit(audit_type, key))
    }
}

#[test]
fn publish_lists_records_in_key_order() {
    let store = Store::default();
    for (id, ds) in [("t2", "wiki"), ("t1", "ads")] {
        store
            .apply(Command::CreateTask { task: task(id, ds) })
            .unwrap();
    }
    store
        .apply(publish(
            "t2",
            "wiki",
            vec![segment("wiki", 1, "v1", 0), segment("wiki", 0, "v1", 0)],
        ))
        .unwrap();
    store
        .apply(publish("t1", "ads", vec![segment("ads", 0, "v1", 0)]))
        .unwrap();
    let names: Vec<String> = store
        .data_sources()
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["ads", "wiki"]);
    let wiki = store.used_segments("wiki").unwrap();
    assert_eq!(
        wiki.iter()
            .map(|s| s.id.interval.start_ms)
            .collect::<Vec<_>>(),
        [DAY0, DAY0 + MS_PER_DAY]
    );
    assert_eq!(store.all_used_segments().unwrap().len(), 3);
    let t2 = store.task("t2").unwrap();
    assert_eq!(t2.state, TaskState::Success);
    assert_eq!(t2.ended_ms, Some(3_000));
    assert_eq!(t2.report.unwrap().processed, 20);
    let ids: Vec<String> = store.tasks().unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(ids, ["t1", "t2"]);
    assert_eq!(store.data_sources().unwrap()[1].schema, schema("wiki"));
}

#[test]
fn publish_is_all_or_nothing() {
    let store = Store::default();
    store
        .apply(Command::CreateTask {
            task: task("t1", "wiki"),
        })
        .unwrap();
    store
        .apply(Command::CreateTask {
            task: task("t2", "wiki"),
        })
        .unwrap();
    store
        .apply(publish("t1", "wiki", vec![segment("wiki", 0, "v1", 0)]))
        .unwrap();
    // t2's second segment is already published: nothing of t2's publish may land.
    let err = store
        .apply(publish(
            "t2",
            "wiki",
            vec![segment("wiki", 1, "v1", 0), segment("wiki", 0, "v1", 0)],
        ))
        .unwrap_err();
    assert!(err.to_string().contains("already published"), "{err}");
    assert_eq!(store.used_segments("wiki").unwrap().len(), 1);
    assert_eq!(store.task("t2").unwrap().state, TaskState::Running);
    // A segment of another datasource is refused the same way.
    let err = store
        .apply(publish("t2", "wiki", vec![segment("ads", 1, "v2", 0)]))
        .unwrap_err();
    assert!(
        err.to_string().contains("not in the task's datasource"),
        "{err}"
    );
    assert!(store.used_segments("ads").unwrap().is_empty());
    // A task that ended cannot publish or change again.
    let err = store
        .apply(publish("t1", "wiki", vec![segment("wiki", 2, "v1", 0)]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "refused: task 't1' already ended with SUCCESS"
    );
    let mut failed = task("t1", "wiki");
    failed.state = TaskState::Failed;
    assert!(store.apply(Command::UpdateTask { task: failed }).is_err());
}

#[test]
fn unknown_ids_are_clear_errors() {
    let store = Store::default();
    let err = store.task("nope").unwrap_err();
    assert!(matches!(err, MetadataError::UnknownTask(_)));
    assert_eq!(err.to_string(), "unknown task 'nope'");
    let err = store
        .apply(publish("nope", "wiki", vec![segment("wiki", 0, "v1", 0)]))
        .unwrap_err();
    assert_eq!(err.to_string(), "unknown task 'nope'");
    let err = store
        .apply(Command::UpdateTask {
            task: task("nope", "wiki"),
        })
        .unwrap_err();
    assert_eq!(err.to_string(), "unknown task 'nope'");
    let missing = segment("wiki", 0, "v1", 0).id;
    let err = store
        .apply(Command::MarkSegmentsUnused {
            data_source: "wiki".into(),
            ids: vec![missing.clone()],
        })
        .unwrap_err();
    assert_eq!(err.to_string(), format!("unknown segment '{missing}'"));
    store
        .apply(Command::CreateTask {
            task: task("t1", "wiki"),
        })
        .unwrap();
    let err = store
        .apply(Command::CreateTask {
            task: task("t1", "wiki"),
        })
        .unwrap_err();
    assert_eq!(err.to_string(), "task 't1' already exists");
    assert!(store.used_segments("unknown").unwrap().is_empty());
}

#[test]
fn task_updates_and_unused_segments() {
    let store = Store::default();
    store
        .apply(Command::CreateTask {
            task: task("t1", "wiki"),
        })
        .unwrap();
    let old = segment("wiki", 0, "v1", 0);
    store
        .apply(publish("t1", "wiki", vec![old.clone()]))
        .unwrap();
    let mark = Command::MarkSegmentsUnused {
        data_source: "wiki".into(),
        ids: vec![old.id.clone()],
    };
    store.apply(mark.clone()).unwrap();
    assert!(store.used_segments("wiki").unwrap().is_empty());
    // Marking again is a no-op; the datasource record stays.
    store.apply(mark).unwrap();
    assert_eq!(store.data_sources().unwrap().len(), 1);

    store
        .apply(Command::CreateTask {
            task: task("t2", "wiki"),
        })
        .unwrap();
    let mut changed = task("t2", "ads");
    changed.state = TaskState::Failed;
    let err = store
        .apply(Command::UpdateTask { task: changed })
        .unwrap_err();
    assert!(err.to_string().contains("may not change"), "{err}");
    let mut failed = task("t2", "wiki");
    failed.state = TaskState::Failed;
    failed.error = Some("input missing".into());
    failed.ended_ms = Some(5_000);
    store
        .apply(Command::UpdateTask {
            task: failed.clone(),
        })
        .unwrap();
    assert_eq!(store.task("t2").unwrap(), failed);
}

fn offsets(stream: &str, partitions: &[(u32, i64)]) -> crate::metadata::StreamOffsets {
    crate::metadata::StreamOffsets {
        stream: stream.into(),
        partitions: partitions.iter().copied().collect(),
    }
}

fn stream_publish(
    task_id: &str,
    segments: Vec<SegmentRecord>,
    start: &[(u32, i64)],
    end: &[(u32, i64)],
) -> Command {
    Command::PublishSegmentsWithOffsets {
        task_id: task_id.into(),
        segments,
        schema: schema("wiki"),
        report: TaskReport::default(),
        ended_ms: 4_000,
        start_offsets: offsets("edits", start),
        end_offsets: offsets("edits", end),
    }
}

#[test]
fn stream_publish_moves_offsets_exactly_once() {
    let store = Store::default();
    for id in ["k1", "k1-replica", "k2", "k3", "k4"] {
        store
            .apply(Command::CreateTask {
                task: task(id, "wiki"),
            })
            .unwrap();
    }
    assert_eq!(store.stream_offsets("wiki").unwrap(), None);
    // First publish: no stored offsets yet, any start is accepted.
    store
        .apply(stream_publish(
            "k1",
            vec![segment("wiki", 0, "v1", 0)],
            &[(0, 0), (1, 0)],
            &[(0, 100), (1, 50)],
        ))
        .unwrap();
    assert_eq!(
        store.stream_offsets("wiki").unwrap(),
        Some(offsets("edits", &[(0, 100), (1, 50)]))
    );
    // A replica of k1 read the same range: refused, and nothing of it lands.
    let err = store
        .apply(stream_publish(
            "k1-replica",
            vec![segment("wiki", 0, "v1", 1)],
            &[(0, 0), (1, 0)],
            &[(0, 100), (1, 50)],
        ))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("partition 0 is stored at 100, the task started at 0"),
        "{err}"
    );
    assert_eq!(store.task("k1-replica").unwrap().state, TaskState::Running);
    assert_eq!(store.used_segments("wiki").unwrap().len(), 1);
    // The next range continues from the stored offsets; a new partition starts anywhere.
    store
        .apply(stream_publish(
            "k2",
            vec![segment("wiki", 1, "v1", 0)],
            &[(0, 100), (2, 7)],
            &[(0, 180), (2, 9)],
        ))
        .unwrap();
    assert_eq!(
        store.stream_offsets("wiki").unwrap(),
        Some(offsets("edits", &[(0, 180), (1, 50), (2, 9)]))
    );
    // Offsets never move back, and start and end name the same partitions.
    let back = stream_publish(
        "k3",
        vec![segment("wiki", 2, "v1", 0)],
        &[(1, 50)],
        &[(1, 40)],
    );
    assert!(
        store
            .apply(back)
            .unwrap_err()
            .to_string()
            .contains("move back")
    );
    let uneven = stream_publish(
        "k3",
        vec![segment("wiki", 2, "v1", 0)],
        &[(1, 50)],
        &[(1, 60), (3, 1)],
    );
    assert!(
        store
            .apply(uneven)
            .unwrap_err()
            .to_string()
            .contains("same, non-empty set of partitions")
    );
    // Another stream's offsets do not continue this one's.
    let mut other = stream_publish(
        "k4",
        vec![segment("wiki", 3, "v1", 0)],
        &[(1, 50)],
        &[(1, 60)],
    );
    if let Command::PublishSegmentsWithOffsets {
        start_offsets,
        end_offsets,
        ..
    } = &mut other
    {
        start_offsets.stream = "clicks".into();
        end_offsets.stream = "clicks".into();
    }
    assert!(
        store
            .apply(other)
            .unwrap_err()
            .to_string()
            .contains("stream 'edits'")
    );
    assert_eq!(store.used_segments("wiki").unwrap().len(), 2);
}

mod cluster_tables {
    use std::collections::BTreeSet;

    use grove_segment::time::Interval;
    use serde_json::json;

    use super::fixtures::{DAY0, publish, segment, task};
    use crate::metadata::apply::apply;
    use crate::metadata::{
        AuditInfo, Command, DEFAULT_RULES, MetadataError, NodeRecord, SegmentAssignment,
        SupervisorState, TaskRecord, TaskState,
    };
    use crate::replicated::MemoryTables;
    use grove_segment::time::MS_PER_DAY;

    fn days(from: i64, to: i64) -> Interval {
        Interval::new(DAY0 + from * MS_PER_DAY, DAY0 + to * MS_PER_DAY)
    }

    fn lock(task_id: &str, interval: Interval) -> Command {
        Command::AcquireTaskLock {
            task_id: task_id.into(),
            data_source: "wiki".into(),
            interval,
            version: "v1".into(),
            acquired_ms: 1_500,
        }
    }

    fn who(comment: &str) -> AuditInfo {
        AuditInfo {
            author: "ops".into(),
            comment: comment.into(),
        }
    }

    fn run(tables: &mut MemoryTables, command: Command) -> Result<(), MetadataError> {
        let before = tables.clone();
        let result = apply(tables, &command);
        if result.is_err() {
            assert!(
                *tables == before,
                "a refused {command:?} changed the tables"
            );
        }
        result
    }

    fn create(tables: &mut MemoryTables, id: &str) {
        run(
            tables,
            Command::CreateTask {
                task: task(id, "wiki"),
            },
        )
        .unwrap();
    }

    #[test]
    fn overlapping_locks_conflict_until_the_holder_ends() {
        let mut tables = MemoryTables::default();
        for id in ["a", "b", "c"] {
            create(&mut tables, id);
        }
        run(&mut tables, lock("a", days(0, 2))).unwrap();
        // Asking again for a held interval is granted once more (a retry), not doubled.
        run(&mut tables, lock("a", days(0, 2))).unwrap();
        let err = run(&mut tables, lock("b", days(1, 3))).unwrap_err();
        assert!(err.to_string().contains("locked by task 'a'"), "{err}");
        // Adjacent intervals do not overlap (half-open).
        run(&mut tables, lock("b", days(2, 3))).unwrap();
        assert_eq!(tables.cluster().locks("wiki").len(), 2);
        // Another datasource, an unknown task and an empty interval are refused.
        let mut other = lock("c", days(5, 6));
        if let Command::AcquireTaskLock { data_source, .. } = &mut other {
            *data_source = "ads".into();
        }
        assert!(run(&mut tables, other).is_err());
        assert!(matches!(
            run(&mut tables, lock("nope", days(5, 6))),
            Err(MetadataError::UnknownTask(_))
        ));
        assert!(run(&mut tables, lock("c", days(5, 5))).is_err());
        // a publishes (SUCCESS): its locks go in the same command.
        run(
            &mut tables,
            publish("a", "wiki", vec![segment("wiki", 0, "v1", 0)]),
        )
        .unwrap();
        assert!(tables.cluster().task_locks("a").is_empty());
        run(&mut tables, lock("c", days(1, 2))).unwrap();
        // b fails: its lock goes too; an ended task cannot lock again.
        let failed = TaskRecord {
            state: TaskState::Failed,
            ended_ms: Some(9),
            ..task("b", "wiki")
        };
        run(&mut tables, Command::UpdateTask { task: failed }).unwrap();
        assert!(tables.cluster().task_locks("b").is_empty());
        assert!(run(&mut tables, lock("b", days(7, 8))).is_err());
        // An explicit release frees exactly the interval named.
        let release = |interval| Command::ReleaseTaskLock {
            task_id: "c".into(),
            data_source: "wiki".into(),
            interval,
        };
        assert!(run(&mut tables, release(days(1, 3))).is_err());
        run(&mut tables, release(days(1, 2))).unwrap();
        assert!(tables.cluster().locks("wiki").is_empty());
    }

    #[test]
    fn rules_config_and_supervisors_are_versioned_and_audited() {
        let mut tables = MemoryTables::default();
        let set_rules = |ds: &str, rules, comment: &str, at| Command::SetRules {
            data_source: ds.into(),
            rules,
            audit: who(comment),
            changed_ms: at,
        };
        let forever = json!({"type": "loadForever", "tieredReplicants": {"_default_tier": 2}});
        let month = json!({"type": "loadByPeriod", "period": "P1M"});
        run(
            &mut tables,
            set_rules(DEFAULT_RULES, vec![forever.clone()], "default", 10),
        )
        .unwrap();
        run(
            &mut tables,
            set_rules("wiki", vec![month.clone()], "keep a month", 20),
        )
        .unwrap();
        let drop = json!({"type": "dropForever"});
        run(
            &mut tables,
            set_rules("wiki", vec![month.clone(), drop.clone()], "then drop", 30),
        )
        .unwrap();
        let err = run(
            &mut tables,
            set_rules("wiki", vec![json!({"type": "keep"})], "bad", 40),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown rule type 'keep'"),
            "{err}"
        );
        let wiki = tables.cluster().rules("wiki").unwrap();
        assert_eq!((wiki.version, wiki.updated_ms), (2, 30));
        assert_eq!(
            tables.cluster().rules_with_default("wiki"),
            [month.clone(), drop, forever.clone()]
        );
        assert_eq!(tables.cluster().rules_with_default("ads"), [forever]);
        let history = tables.cluster().audit("rules", Some("wiki"));
        assert_eq!(
            history
                .iter()
                .map(|e| (e.seq, e.audit.comment.as_str(), e.created_ms))
                .collect::<Vec<_>>(),
            [(2, "keep a month", 20), (3, "then drop", 30)]
        );
        assert_eq!(history[0].payload, json!([month]));

        let set_config = |value, expected, at| Command::SetDynamicConfig {
            name: "coordinator.config".into(),
            value,
            expected_version: expected,
            audit: who("tune"),
            changed_ms: at,
        };
        run(
            &mut tables,
            set_config(json!({"maxSegmentsToMove": 5}), Some(0), 50),
        )
        .unwrap();
        run(
            &mut tables,
            set_config(json!({"maxSegmentsToMove": 9}), None, 60),
        )
        .unwrap();
        let err = run(
            &mut tables,
            set_config(json!({"maxSegmentsToMove": 1}), Some(1), 70),
        )
        .unwrap_err();
        assert!(err.to_string().contains("is at version 2"), "{err}");
        assert!(run(&mut tables, set_config(json!([1]), None, 70)).is_err());
        let config = tables.cluster().config("coordinator.config").unwrap();
        assert_eq!(
            (config.version, config.value["maxSegmentsToMove"].as_i64()),
            (2, Some(9))
        );

        let spec = json!({"type": "kafka", "spec": {"dataSchema": {"dataSource": "wiki"}}});
        let submit = Command::SubmitSupervisor {
            id: "wiki".into(),
            spec: spec.clone(),
            audit: who("start"),
            changed_ms: 80,
        };
        let state = |state, at| Command::SetSupervisorState {
            id: "wiki".into(),
            state,
            audit: who("operate"),
            changed_ms: at,
        };
        run(&mut tables, submit.clone()).unwrap();
        run(&mut tables, state(SupervisorState::Suspended, 90)).unwrap();
        // A new spec keeps a suspended supervisor suspended.
        run(&mut tables, submit.clone()).unwrap();
        assert_eq!(
            tables.cluster().supervisor("wiki").unwrap().state,
            SupervisorState::Suspended
        );
        run(&mut tables, state(SupervisorState::Terminated, 100)).unwrap();
        assert!(run(&mut tables, state(SupervisorState::Running, 110)).is_err());
        run(&mut tables, submit).unwrap();
        let supervisor = tables.cluster().supervisor("wiki").unwrap();
        assert_eq!(
            (supervisor.state, supervisor.version),
            (SupervisorState::Running, 5)
        );
        assert_eq!(tables.cluster().audit("supervisor", None).len(), 5);
        // One audit log, numbered in apply order.
        let seqs: Vec<u64> = tables.cluster().audit_log().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    }

    #[test]
    fn assignments_name_registered_nodes_and_used_segments() {
        let mut tables = MemoryTables::default();
        let node = |id: &str| NodeRecord {
            id: id.into(),
            address: format!("{id}:8083"),
            roles: BTreeSet::from(["historical".to_string()]),
            tier: "_default_tier".into(),
            capacity_bytes: 1 << 30,
            version: "0.1.0".into(),
        };
        for id in ["h1", "h2"] {
            run(&mut tables, Command::PutNode { node: node(id) }).unwrap();
        }
        create(&mut tables, "t1");
        let (s0, s1) = (segment("wiki", 0, "v1", 0), segment("wiki", 1, "v1", 0));
        run(
            &mut tables,
            publish("t1", "wiki", vec![s0.clone(), s1.clone()]),
        )
        .unwrap();
        let assign = |pairs: &[(&SegmentId, &[&str])]| Command::ReplaceAssignments {
            assignments: pairs
                .iter()
                .map(|(segment, nodes)| SegmentAssignment {
                    segment: (*segment).clone(),
                    nodes: nodes.iter().map(|n| n.to_string()).collect(),
                })
                .collect(),
        };
        run(
            &mut tables,
            assign(&[(&s0.id, &["h1", "h2"]), (&s1.id, &["h1"])]),
        )
        .unwrap();
        // One unknown node refuses the whole change.
        let err = run(&mut tables, assign(&[(&s0.id, &["h1"]), (&s1.id, &["h9"])])).unwrap_err();
        assert!(err.to_string().contains("unknown node 'h9'"), "{err}");
        let missing = segment("wiki", 5, "v1", 0).id;
        assert!(run(&mut tables, assign(&[(&missing, &["h1"])])).is_err());
        assert!(run(&mut tables, assign(&[(&s0.id, &["h1"]), (&s0.id, &["h2"])])).is_err());
        // Removing h1 takes it out of every assignment at once; s1 is left on no node.
        run(&mut tables, Command::RemoveNode { id: "h1".into() }).unwrap();
        assert_eq!(
            tables.cluster().assignment(&s0.id),
            BTreeSet::from(["h2".to_string()])
        );
        assert!(tables.cluster().assignment(&s1.id).is_empty());
        assert_eq!(tables.cluster().assignments().len(), 1);
        run(&mut tables, assign(&[(&s0.id, &[])])).unwrap();
        assert!(tables.cluster().assignments().is_empty());
        assert_eq!(tables.cluster().nodes(), [node("h2")]);
    }

    use grove_segment::id::SegmentId;

    #[test]
    fn cluster_tables_travel_in_the_snapshot_rows() {
        let mut tables = MemoryTables::default();
        create(&mut tables, "a");
        run(&mut tables, lock("a", days(0, 1))).unwrap();
        run(
            &mut tables,
            Command::SetRules {
                data_source: "wiki".into(),
                rules: vec![json!({"type": "loadForever"})],
                audit: who("x"),
                changed_ms: 1,
            },
        )
        .unwrap();
        let text = serde_json::to_string(&tables.clone().into_rows()).unwrap();
        let back = MemoryTables::from_rows(serde_json::from_str(&text).unwrap()).unwrap();
        assert!(back == tables);
        assert_eq!(back.cluster().locks("wiki").len(), 1);
        // A snapshot written before the cluster tables existed still reads.
        let old = r#"{"tasks": [], "segments": [], "dataSources": [], "offsets": []}"#;
        let old = MemoryTables::from_rows(serde_json::from_str(old).unwrap()).unwrap();
        assert!(old == MemoryTables::default());
    }
}

/// Tables whose reads fail from the `fail_at`-th on (counting from 0), counting reads and
/// writes: a command must read and validate everything before its first write.
struct FailingReads {
    tables: MemoryTables,
    reads: std::cell::Cell<usize>,
    fail_at: usize,
    writes: usize,
}

impl FailingReads {
    fn read(&self) -> Result<()> {
        let read = self.reads.get();
        self.reads.set(read + 1);
        if read >= self.fail_at {
            return Err(MetadataError::Storage(format!(
                "injected failure of read {read}"
            )));
        }
        Ok(())
    }
}

impl apply::Tables for FailingReads {
    fn task(&self, id: &str) -> Result<Option<TaskRecord>> {
        self.read()?;
        apply::Tables::task(&self.tables, id)
    }
    fn put_task(&mut self, task: &TaskRecord) {
        self.writes += 1;
        self.tables.put_task(task)
    }
    fn segment(&self, data_source: &str, id: &str) -> Result<Option<SegmentRecord>> {
        self.read()?;
        self.tables.segment(data_source, id)
    }
    fn put_segment(&mut self, segment: &SegmentRecord) {
        self.writes += 1;
        self.tables.put_segment(segment)
    }
    fn put_data_source(&mut self, data_source: &DataSourceRecord) {
        self.writes += 1;
        self.tables.put_data_source(data_source)
    }
    fn offsets(&self, data_source: &str) -> Result<Option<StreamOffsets>> {
        self.read()?;
        apply::Tables::offsets(&self.tables, data_source)
    }
    fn put_offsets(&mut self, data_source: &str, offsets: &StreamOffsets) {
        self.writes += 1;
        self.tables.put_offsets(data_source, offsets)
    }
    fn cluster_mut(&mut self) -> &mut ClusterTables {
        self.tables.cluster_mut()
    }
}

#[test]
fn a_failing_read_anywhere_in_a_command_leaves_nothing_written() {
    let audit = || AuditInfo {
        author: "ops".into(),
        comment: "test".into(),
    };
    // A state every command below applies to: running tasks, a published segment, stored
    // offsets, a held lock, a node and a supervisor.
    let mut prepared = MemoryTables::default();
    let setup = [
        Command::CreateTask {
            task: task("t-run", "wiki"),
        },
        Command::CreateTask {
            task: task("t-done", "wiki"),
        },
        Command::CreateTask {
            task: task("t-stream", "wiki"),
        },
        Command::CreateTask {
            task: task("t-stream-0", "wiki"),
        },
        Command::CreateTask {
            task: task("t-lock", "wiki"),
        },
        publish("t-done", "wiki", vec![segment("wiki", 0, "v1", 0)]),
        stream_publish(
            "t-stream-0",
            vec![segment("wiki", 9, "v1", 0)],
            &[(0, 0)],
            &[(0, 10)],
        ),
        Command::AcquireTaskLock {
            task_id: "t-lock".into(),
            data_source: "wiki".into(),
            interval: grove_segment::time::Interval::new(DAY0, DAY0 + MS_PER_DAY),
            version: "v1".into(),
            acquired_ms: 1,
        },
        Command::PutNode {
            node: NodeRecord {
                id: "h1".into(),
                address: "10.0.0.1:8083".into(),
                roles: ["historical".to_string()].into(),
                tier: "_default_tier".into(),
                capacity_bytes: 1 << 30,
                version: "0".into(),
            },
        },
        Command::SubmitSupervisor {
            id: "sup".into(),
            spec: serde_json::json!({"type": "kafka"}),
            audit: audit(),
            changed_ms: 1,
        },
    ];
    for command in setup {
        apply::apply(&mut prepared, &command).unwrap();
    }
    let seg0 = segment("wiki", 0, "v1", 0);
    let accepted = vec![
        Command::CreateTask {
            task: task("t-new", "wiki"),
        },
        Command::UpdateTask {
            task: TaskRecord {
                state: TaskState::Failed,
                ..task("t-run", "wiki")
            },
        },
        publish(
            "t-run",
            "wiki",
            vec![segment("wiki", 1, "v1", 0), segment("wiki", 1, "v1", 1)],
        ),
        stream_publish(
            "t-stream",
            vec![segment("wiki", 2, "v1", 0)],
            &[(0, 10)],
            &[(0, 20)],
        ),
        Command::MarkSegmentsUnused {
            data_source: "wiki".into(),
            ids: vec![seg0.id.clone()],
        },
        Command::AcquireTaskLock {
            task_id: "t-run".into(),
            data_source: "wiki".into(),
            interval: grove_segment::time::Interval::new(
                DAY0 + 3 * MS_PER_DAY,
                DAY0 + 4 * MS_PER_DAY,
            ),
            version: "v1".into(),
            acquired_ms: 2,
        },
        Command::ReleaseTaskLock {
            task_id: "t-lock".into(),
            data_source: "wiki".into(),
            interval: grove_segment::time::Interval::new(DAY0, DAY0 + MS_PER_DAY),
        },
        Command::SetRules {
            data_source: "wiki".into(),
            rules: vec![serde_json::json!({"type": "loadForever"})],
            audit: audit(),
            changed_ms: 2,
        },
        Command::SetDynamicConfig {
            name: "coordinator".into(),
            value: serde_json::json!({"maxSegmentsToMove": 5}),
            expected_version: None,
            audit: audit(),
            changed_ms: 2,
        },
        Command::SetSupervisorState {
            id: "sup".into(),
            state: SupervisorState::Suspended,
            audit: audit(),
            changed_ms: 2,
        },
        Command::ReplaceAssignments {
            assignments: vec![SegmentAssignment {
                segment: seg0.id.clone(),
                nodes: ["h1".to_string()].into(),
            }],
        },
        Command::RemoveNode { id: "h1".into() },
    ];
    let refused = vec![
        // The second segment is already published: refused after the first was checked.
        publish(
            "t-run",
            "wiki",
            vec![segment("wiki", 5, "v1", 0), seg0.clone()],
        ),
        // The stored offsets moved on: refused after the task and offsets were read.
        stream_publish(
            "t-stream",
            vec![segment("wiki", 6, "v1", 0)],
            &[(0, 0)],
            &[(0, 30)],
        ),
        Command::MarkSegmentsUnused {
            data_source: "wiki".into(),
            ids: vec![seg0.id.clone(), segment("wiki", 7, "v1", 0).id],
        },
    ];
    let run = |command: &Command, fail_at: usize| {
        let mut tables = FailingReads {
            tables: prepared.clone(),
            reads: Default::default(),
            fail_at,
            writes: 0,
        };
        let result = apply::apply(&mut tables, command);
        (result, tables)
    };
    for command in &accepted {
        let (result, tables) = run(command, usize::MAX);
        assert_eq!(result, Ok(()), "{command:?}");
        assert!(tables.tables != prepared, "{command:?} changed nothing");
        let reads = tables.reads.get();
        for fail_at in 0..reads {
            let (result, tables) = run(command, fail_at);
            assert!(
                matches!(result, Err(MetadataError::Storage(_))),
                "{command:?} with read {fail_at} failing: {result:?}"
            );
            assert_eq!(
                tables.writes, 0,
                "{command:?} wrote before read {fail_at} failed"
            );
            assert!(
                tables.tables == prepared,
                "{command:?} with read {fail_at} failing left a partial change"
            );
        }
    }
    for command in &refused {
        let (result, tables) = run(command, usize::MAX);
        assert!(
            matches!(
                result,
                Err(MetadataError::Refused(_) | MetadataError::UnknownSegment(_))
            ),
            "{command:?}: {result:?}"
        );
        assert_eq!(tables.writes, 0, "{command:?} wrote before it was refused");
        assert!(
            tables.tables == prepared,
            "a refused {command:?} changed the tables"
        );
        assert_eq!(tables.tables.cluster(), prepared.cluster());
    }
}
