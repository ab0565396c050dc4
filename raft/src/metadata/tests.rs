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
