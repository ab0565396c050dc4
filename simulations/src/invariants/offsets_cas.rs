//! Exactly-once stream offsets. Source: Druid's Kafka indexing service (a publish moves the
//! stored offsets only from the start its task read; `SegmentTransactionalInsertAction`) and
//! Grove's design brief ("at most one publish per sequence succeeds"): the publishes the
//! log accepted, per datasource and partition, in log order (entry, then place in its
//! batch), chain exactly — each starts where the previous ended (the workload's first starts
//! at 0), so the offsets consumed have no gap, no overlap and no duplicate. The stored offsets after the last accepted publish equal its end.

use std::collections::BTreeMap;

use grove_raft::metadata::Command;

use super::Violation;
use super::oracle::Oracle;
use crate::history::Applied;

const NAME: &str = "offsets compare-and-set";

pub fn check(committed: &BTreeMap<u64, Applied>, oracle: &Oracle) -> Vec<Violation> {
    let mut violations = Vec::new();
    // Per datasource, per partition: where the accepted chain ends.
    let mut ends: BTreeMap<String, BTreeMap<u32, i64>> = BTreeMap::new();
    let publishes = committed.iter().flat_map(|(index, applied)| {
        applied
            .requests()
            .map(move |(slot, _, command)| ((*index, slot), command))
    });
    for (position, command) in publishes {
        let Command::PublishSegmentsWithOffsets {
            task_id,
            start_offsets,
            end_offsets,
            ..
        } = command
        else {
            continue;
        };
        let Some(verdict) = oracle.verdicts.get(&position) else {
            continue;
        };
        if verdict.result.is_err() || verdict.duplicate {
            continue;
        }
        let Ok(task) = oracle.state.tables.task(task_id) else {
            continue;
        };
        let data_source = task.data_source;
        let chain = ends.entry(data_source.clone()).or_default();
        for (partition, start) in &start_offsets.partitions {
            let previous = chain.get(partition).copied().unwrap_or(0);
            let end = end_offsets.partitions[partition];
            if *start != previous || end < *start {
                let kind = if *start > previous {
                    "gap"
                } else {
                    "overlap or duplicate"
                };
                violations.push(Violation::new(
                    NAME,
                    format!(
                        "position {position:?}: task {task_id} moved partition {partition} of \
                         {data_source} from {start} to {end}, but the accepted chain ended at \
                         {previous} ({kind})"
                    ),
                ));
            }
            chain.insert(*partition, end);
        }
    }
    for (data_source, chain) in &ends {
        let stored = oracle.offsets_at(data_source, oracle.last_index);
        if stored.as_ref() != Some(chain) {
            violations.push(Violation::new(
                NAME,
                format!(
                    "{data_source}: stored offsets {stored:?}, accepted chain ends at {chain:?}"
                ),
            ));
        }
    }
    violations
}
