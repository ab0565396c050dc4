//! The workload: clients that talk to random members, as Grove's overlord and indexer tasks
//! will.
//!
//! - **Replica writers** (several per datasource, competing like Kafka task replicas): read the
//!   datasource's stored offsets (linearizable read), create a task, then publish a segment
//!   with `PublishSegmentsWithOffsets` from the offsets read to a little further. Replicas race
//!   for the same start; now and then a writer publishes from an older read (a stale replica).
//!   The compare-and-set must accept exactly one publish per start.
//! - **Readers**: linearizable reads of the offsets.
//!
//! Writes without an answer are retried under the same request id (a few attempts through
//! random members), so a write that did commit is answered from the request log. Every
//! operation goes into the history with its invocation and completion times. Each client draws
//! from its own seeded stream.

use std::collections::BTreeMap;
use std::time::Duration;

use grove_raft::metadata::{
    Command, SegmentRecord, StreamOffsets, TaskRecord, TaskReport, TaskState,
};
use grove_raft::replicated::{ClientRequest, RaftNode, ReplicaError, RequestId};
use grove_segment::id::SegmentId;
use grove_segment::schema::{DimensionSchema, MetricKind, MetricSchema, Schema};
use grove_segment::time::{Granularity, Interval, MS_PER_DAY};
use tokio::task::JoinHandle;

use crate::cluster::Directory;
use crate::config::SimConfig;
use crate::history::{Outcome, Request, Shared};
use crate::rng::{SplitMix64, stream};

/// Partitions of every datasource's stream.
pub const PARTITIONS: [u32; 2] = [0, 1];
const STREAM: &str = "events";
/// Attempts per write (the first and its retries under one request id).
const WRITE_ATTEMPTS: u32 = 4;
/// Longest a client waits for one attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone)]
struct Client {
    id: u64,
    directory: Directory,
    recorder: Shared,
    members: u64,
    think_ms: u64,
}

/// Spawns every client of `config`; abort the handles to stop them.
pub fn spawn(config: &SimConfig, directory: &Directory, recorder: &Shared) -> Vec<JoinHandle<()>> {
    let client = |id: u64| Client {
        id,
        directory: directory.clone(),
        recorder: recorder.clone(),
        members: config.nodes as u64,
        think_ms: config.think_ms,
    };
    let mut handles = Vec::new();
    for ds in 0..config.data_sources {
        for replica in 0..config.replicas {
            let client = client(1_000 + ds as u64 * 10 + replica as u64);
            let rng = stream(config.seed, &format!("client-{}", client.id));
            let data_source = format!("ds{ds}");
            handles.push(tokio::spawn(writer(client, rng, data_source, replica)));
        }
    }
    for reader_index in 0..config.readers {
        let client = client(2_000 + reader_index as u64);
        let rng = stream(config.seed, &format!("client-{}", client.id));
        handles.push(tokio::spawn(reader(client, rng, config.data_sources)));
    }
    handles
}

impl Client {
    fn pick(&self, rng: &mut SplitMix64) -> Option<RaftNode> {
        let id = rng.between(1, self.members);
        self.directory.lock().expect("directory").get(&id).cloned()
    }

    async fn think(&self, rng: &mut SplitMix64) {
        let ms = rng.between(self.think_ms / 2, self.think_ms * 2);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    fn now_ms(&self) -> i64 {
        self.recorder.lock().expect("recorder").now().as_millis() as i64
    }

    /// A linearizable read of `data_source`'s offsets through a random member.
    async fn read(&self, rng: &mut SplitMix64, data_source: &str) -> Outcome {
        let op = self.recorder.lock().expect("recorder").invoke(
            self.id,
            Request::ReadOffsets {
                data_source: data_source.into(),
            },
        );
        let outcome = match self.pick(rng) {
            None => Outcome::Unknown("member down".into()),
            Some(node) => {
                self.recorder.lock().expect("recorder").event(
                    Some(node.id()),
                    "read-via",
                    op as u64,
                    String::new(),
                );
                let read = node.read(|tables| {
                    tables
                        .stream_offsets(data_source)
                        .map(|offsets| offsets.partitions)
                });
                match tokio::time::timeout(ATTEMPT_TIMEOUT, read).await {
                    Ok(Ok(offsets)) => Outcome::Read(offsets),
                    Ok(Err(e)) => Outcome::Unknown(e.to_string()),
                    Err(_) => Outcome::Unknown("timed out".into()),
                }
            }
        };
        self.recorder
            .lock()
            .expect("recorder")
            .complete(op, outcome.clone());
        outcome
    }

    /// Submits `command` under one request id, retrying through random members.
    async fn write(&self, rng: &mut SplitMix64, serial: u64, command: Command) -> Outcome {
        let id = RequestId {
            client: self.id,
            serial,
        };
        let op = self.recorder.lock().expect("recorder").invoke(
            self.id,
            Request::Write {
                id,
                command: Box::new(command.clone()),
            },
        );
        let request = ClientRequest::new(id, command);
        let mut outcome = Outcome::Unknown("no attempt".into());
        for attempt in 0..WRITE_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(rng.between(20, 200))).await;
            }
            let Some(node) = self.pick(rng) else {
                outcome = Outcome::Unknown("member down".into());
                continue;
            };
            match tokio::time::timeout(ATTEMPT_TIMEOUT, node.submit(request.clone())).await {
                Ok(Ok(verdict)) => {
                    outcome = Outcome::Acked(verdict.result);
                    break;
                }
                Ok(Err(ReplicaError::Command(e))) => {
                    // Refused before it was proposed: it never reaches the log.
                    outcome = Outcome::Unknown(format!("refused before the log: {e}"));
                    break;
                }
                Ok(Err(e)) => outcome = Outcome::Unknown(e.to_string()),
                Err(_) => outcome = Outcome::Unknown("timed out".into()),
            }
        }
        self.recorder
            .lock()
            .expect("recorder")
            .complete(op, outcome.clone());
        outcome
    }
}

async fn writer(client: Client, mut rng: SplitMix64, data_source: String, replica: usize) {
    let mut older: Option<BTreeMap<u32, i64>> = None;
    let mut serial = 0;
    for round in 0u64.. {
        client.think(&mut rng).await;
        let Outcome::Read(current) = client.read(&mut rng, &data_source).await else {
            continue;
        };
        // Now and then a replica publishes from an older read (a stale replica's retry).
        let start = if rng.chance(0.15) {
            older.clone()
        } else {
            current.clone()
        };
        older = current;
        let start = start.unwrap_or_else(|| PARTITIONS.iter().map(|&p| (p, 0)).collect());
        let task_id = format!("{data_source}-r{replica}-{round}");
        let now_ms = client.now_ms();
        serial += 1;
        let created = client
            .write(
                &mut rng,
                serial,
                create_task(&task_id, &data_source, now_ms),
            )
            .await;
        if created != Outcome::Acked(Ok(())) {
            continue;
        }
        let end = start
            .iter()
            .map(|(&partition, &offset)| (partition, offset + rng.between(1, 4) as i64))
            .collect();
        serial += 1;
        let publish = publish(&task_id, &data_source, round, start, end, client.now_ms());
        client.write(&mut rng, serial, publish).await;
    }
}

async fn reader(client: Client, mut rng: SplitMix64, data_sources: usize) {
    loop {
        client.think(&mut rng).await;
        let ds = rng.between(0, data_sources as u64 - 1);
        client.read(&mut rng, &format!("ds{ds}")).await;
    }
}

fn schema(data_source: &str) -> Schema {
    Schema {
        data_source: data_source.into(),
        dimensions: vec![DimensionSchema::string("page")],
        metrics: vec![MetricSchema {
            name: "count".into(),
            field_name: None,
            kind: MetricKind::Count,
        }],
        query_granularity: Granularity::HOUR,
        segment_granularity: Granularity::DAY,
        rollup: true,
        time_position: 0,
    }
}

pub(crate) fn create_task(task_id: &str, data_source: &str, now_ms: i64) -> Command {
    Command::CreateTask {
        task: TaskRecord {
            id: task_id.into(),
            task_type: "index_kafka".into(),
            data_source: data_source.into(),
            spec: serde_json::json!({"type": "index_kafka", "id": task_id}),
            state: TaskState::Running,
            error: None,
            created_ms: now_ms,
            started_ms: Some(now_ms),
            ended_ms: None,
            report: None,
        },
    }
}

pub(crate) fn publish(
    task_id: &str,
    data_source: &str,
    round: u64,
    start: BTreeMap<u32, i64>,
    end: BTreeMap<u32, i64>,
    now_ms: i64,
) -> Command {
    let day_ms = 19_723 * MS_PER_DAY + round as i64 * MS_PER_DAY;
    let segment = SegmentRecord {
        id: SegmentId::new(
            data_source,
            None,
            Interval::new(day_ms, day_ms + MS_PER_DAY),
            task_id,
            0,
        ),
        core_partitions: 1,
        load_spec: serde_json::json!({"type": "local", "path": format!("/deep/{task_id}")}),
        num_rows: 10,
        size_bytes: 100,
        used: true,
        created_ms: now_ms,
    };
    let offsets = |partitions| StreamOffsets {
        stream: STREAM.into(),
        partitions,
    };
    Command::PublishSegmentsWithOffsets {
        task_id: task_id.into(),
        segments: vec![segment],
        schema: schema(data_source),
        report: TaskReport {
            processed: 10,
            segments: 1,
            ..TaskReport::default()
        },
        ended_ms: now_ms,
        start_offsets: offsets(start),
        end_offsets: offsets(end),
    }
}
