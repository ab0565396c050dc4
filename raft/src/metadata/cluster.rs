//! The cluster tables, after Druid's metadata tables: time-chunk task locks (`druid_tasklocks`),
//! load rules per datasource and the default (`druid_rules`), dynamic config (`druid_config`),
//! supervisors (`druid_supervisors`), the nodes of the cluster, desired segment assignments,
//! and the audit log (`druid_audit`) of every change to rules, config and supervisors.
//!
//! [`ClusterTables`] holds them in ordered maps (reads in key order, never hash order); every
//! table that can grow large is a [`ChunkedMap`], so the copy a snapshot starts with shares
//! their chunks instead of copying rows. The changes are made by [`super::apply::apply`],
//! which validates a whole command before its first write, so a refused command changes
//! nothing. Who and when come from the command ([`AuditInfo`], `changed_ms`): applying reads
//! no clock.
//!
//! Audit retention: the audit log keeps the newest [`AUDIT_ENTRIES_MAX_DEFAULT`] entries, and
//! none older than [`AUDIT_RETENTION_MS_DEFAULT`] before the newest; the dynamic config named
//! [`AUDIT_CONFIG`] (`{"maxEntries": N, "retentionMs": M}`, either optional) changes both. It is
//! replicated like any config, so every replica trims the same entries at the same command.
//!
//! Invariants:
//! - two live tasks never hold overlapping intervals of one datasource; a task's locks go
//!   with its end (FAILED, or SUCCESS by a publish), in the same transaction;
//! - every change to rules, config or supervisors appends one audit entry, numbered in apply
//!   order from 1 (numbers are never reused, also after older entries are trimmed);
//! - an assignment names only registered nodes and used segments; removing a node removes it
//!   from every assignment in the same transaction.

use std::collections::{BTreeMap, BTreeSet};

use grove_segment::id::SegmentId;
use grove_segment::time::Interval;
use serde::{Deserialize, Serialize};

use super::{MetadataError, Result};
use crate::replicated::chunked::ChunkedMap;

/// The datasource name under which the default rules are kept (Druid's `_default`).
pub const DEFAULT_RULES: &str = "_default";

/// The dynamic config that sets the audit log's retention: a JSON object with `maxEntries`
/// and `retentionMs`, positive integers, either optional.
pub const AUDIT_CONFIG: &str = "audit";

/// Audit entries kept when [`AUDIT_CONFIG`] does not say (the newest ones).
pub const AUDIT_ENTRIES_MAX_DEFAULT: u64 = 100_000;

/// How much older than the newest entry an audit entry may be when [`AUDIT_CONFIG`] does not
/// say: 90 days (Druid's `druid.coordinator.kill.audit.durationToRetain` default).
pub const AUDIT_RETENTION_MS_DEFAULT: i64 = 90 * 24 * 60 * 60 * 1000;

/// Who changed something, and why (Druid's `AuditInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditInfo {
    pub author: String,
    pub comment: String,
}

/// A time-chunk lock: `task_id` may write `interval` of `data_source`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskLock {
    pub task_id: String,
    pub data_source: String,
    pub interval: Interval,
    /// The version segments written under this lock carry.
    pub version: String,
    pub acquired_ms: i64,
}

/// The load/drop rules of one datasource (or of [`DEFAULT_RULES`]), in evaluation order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RulesRecord {
    pub data_source: String,
    /// Druid rule objects (`{"type": "loadByPeriod", ...}`), first match wins.
    #[serde(with = "super::json_text")]
    pub rules: Vec<serde_json::Value>,
    /// 1 for the first rules set, then one more per change.
    pub version: u64,
    pub updated_ms: i64,
}

/// A named dynamic config (a JSON object), versioned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigRecord {
    pub name: String,
    #[serde(with = "super::json_text")]
    pub value: serde_json::Value,
    /// 1 for the first value, then one more per change.
    pub version: u64,
    pub updated_ms: i64,
}

/// A supervisor's state, as Druid's supervisor API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SupervisorState {
    Running,
    Suspended,
    Terminated,
}

/// A supervisor and its spec (Druid's `druid_supervisors` keeps every spec version; the
/// audit log keeps the history here).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupervisorRecord {
    pub id: String,
    #[serde(with = "super::json_text")]
    pub spec: serde_json::Value,
    pub state: SupervisorState,
    /// 1 at its first submission, then one more per change (spec or state).
    pub version: u64,
    pub updated_ms: i64,
}

/// A node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    pub id: String,
    /// Where it is reached (`host:port`).
    pub address: String,
    /// Druid role names (`historical`, `broker`, ...), sorted, no duplicates.
    pub roles: BTreeSet<String>,
    /// The historical tier (`_default_tier` in Druid).
    pub tier: String,
    /// Bytes of segments it may hold.
    pub capacity_bytes: u64,
    /// The software version it runs.
    pub version: String,
}

/// The nodes one segment should be loaded on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentAssignment {
    pub segment: SegmentId,
    /// Node ids; empty: loaded nowhere (the assignment is removed).
    pub nodes: BTreeSet<String>,
}

/// One audited change (Druid's `druid_audit` row).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// 1, 2, ... in apply order.
    pub seq: u64,
    /// `rules`, `config` or `supervisor`.
    pub audit_type: String,
    /// The datasource, config name or supervisor id.
    pub key: String,
    pub audit: AuditInfo,
    /// The value after the change.
    #[serde(with = "super::json_text")]
    pub payload: serde_json::Value,
    pub created_ms: i64,
}

/// The cluster tables of one replica. Ordered maps, chunked where they can grow large;
/// serializable as the snapshot form.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterTables {
    /// Held locks by datasource, ordered by (interval, task id). Only running tasks hold
    /// locks, so this stays small.
    locks: BTreeMap<String, Vec<TaskLock>>,
    rules: ChunkedMap<String, RulesRecord>,
    configs: ChunkedMap<String, ConfigRecord>,
    supervisors: ChunkedMap<String, SupervisorRecord>,
    nodes: ChunkedMap<String, NodeRecord>,
    /// By segment id text (which starts with the datasource, so ids never collide).
    assignments: ChunkedMap<String, SegmentAssignment>,
    /// By sequence number, oldest first (trimmed by the retention).
    audit: ChunkedMap<u64, AuditEntry>,
    /// The sequence number of the last audit entry recorded.
    audit_seq: u64,
}

/// Reads.
impl ClusterTables {
    /// The locks `data_source` has held, by interval then task.
    pub fn locks(&self, data_source: &str) -> Vec<TaskLock> {
        self.locks.get(data_source).cloned().unwrap_or_default()
    }

    /// Every lock `task_id` holds, by datasource then interval.
    pub fn task_locks(&self, task_id: &str) -> Vec<TaskLock> {
        self.locks
            .values()
            .flatten()
            .filter(|lock| lock.task_id == task_id)
            .cloned()
            .collect()
    }

    /// The rules set for `data_source` ([`DEFAULT_RULES`] for the default), if any.
    pub fn rules(&self, data_source: &str) -> Option<RulesRecord> {
        self.rules.get(data_source).cloned()
    }

    /// The rules `data_source` is governed by: its own, then the default's (Druid's order).
    pub fn rules_with_default(&self, data_source: &str) -> Vec<serde_json::Value> {
        let own = self.rules.get(data_source).map(|r| r.rules.clone());
        let default = self.rules.get(DEFAULT_RULES).map(|r| r.rules.clone());
        own.into_iter().chain(default).flatten().collect()
    }

    /// Every rules record, by datasource (the default under [`DEFAULT_RULES`]).
    pub fn all_rules(&self) -> Vec<RulesRecord> {
        self.rules.values().cloned().collect()
    }

    pub fn config(&self, name: &str) -> Option<ConfigRecord> {
        self.configs.get(name).cloned()
    }

    pub fn supervisor(&self, id: &str) -> Option<SupervisorRecord> {
        self.supervisors.get(id).cloned()
    }

    /// Every supervisor, by id.
    pub fn supervisors(&self) -> Vec<SupervisorRecord> {
        self.supervisors.values().cloned().collect()
    }

    pub fn node(&self, id: &str) -> Option<NodeRecord> {
        self.nodes.get(id).cloned()
    }

    /// Every registered node, by id.
    pub fn nodes(&self) -> Vec<NodeRecord> {
        self.nodes.values().cloned().collect()
    }

    /// The nodes `segment` should be on (empty if unassigned).
    pub fn assignment(&self, segment: &SegmentId) -> BTreeSet<String> {
        self.assignments
            .get(&segment.to_string())
            .map(|a| a.nodes.clone())
            .unwrap_or_default()
    }

    /// Every assignment, by segment id text.
    pub fn assignments(&self) -> Vec<SegmentAssignment> {
        self.assignments.values().cloned().collect()
    }

    /// The audit entries of `audit_type` and `key`, oldest first (a rules history, a
    /// supervisor's history). `key: None` lists every key of the type.
    pub fn audit(&self, audit_type: &str, key: Option<&str>) -> Vec<AuditEntry> {
        self.audit
            .values()
            .filter(|e| e.audit_type == audit_type && key.is_none_or(|k| e.key == k))
            .cloned()
            .collect()
    }

    /// The audit log as retained, oldest first.
    pub fn audit_log(&self) -> Vec<AuditEntry> {
        self.audit.values().cloned().collect()
    }

    /// Up to `limit` rules records after datasource `after` (from the first for `None`), by
    /// datasource: a resync in parts.
    pub fn rules_after(&self, after: Option<&String>, limit: usize) -> Vec<RulesRecord> {
        self.rules
            .after(after)
            .take(limit)
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Up to `limit` assignments after segment id text `after`, by segment id text.
    pub fn assignments_after(
        &self,
        after: Option<&String>,
        limit: usize,
    ) -> Vec<SegmentAssignment> {
        self.assignments
            .after(after)
            .take(limit)
            .map(|(_, a)| a.clone())
            .collect()
    }

    /// Up to `limit` nodes after node id `after`, by id.
    pub fn nodes_after(&self, after: Option<&String>, limit: usize) -> Vec<NodeRecord> {
        self.nodes
            .after(after)
            .take(limit)
            .map(|(_, n)| n.clone())
            .collect()
    }
}

/// The changes [`super::apply::apply`] makes; each validates everything before it writes.
impl ClusterTables {
    /// Grants `task_id` a lock on `interval` of `data_source`, unless another task holds an
    /// overlapping one. The same task asking again for an interval it holds is granted (a
    /// retry); a task that ended cannot lock (the caller checked it is RUNNING).
    pub(crate) fn acquire_lock(&mut self, lock: TaskLock) -> Result<()> {
        if lock.interval.start_ms >= lock.interval.end_ms {
            return Err(MetadataError::Refused(format!(
                "task '{}': lock interval {} is empty",
                lock.task_id, lock.interval
            )));
        }
        let held = self
            .locks
            .get(&lock.data_source)
            .map_or(&[][..], Vec::as_slice);
        if let Some(other) = held
            .iter()
            .find(|h| h.task_id != lock.task_id && h.interval.overlaps(&lock.interval))
        {
            return Err(MetadataError::Refused(format!(
                "task '{}': interval {} of datasource '{}' overlaps {} locked by task '{}'",
                lock.task_id, lock.interval, lock.data_source, other.interval, other.task_id
            )));
        }
        if held
            .iter()
            .any(|h| h.task_id == lock.task_id && h.interval == lock.interval)
        {
            return Ok(());
        }
        let held = self.locks.entry(lock.data_source.clone()).or_default();
        let at = held.partition_point(|h| {
            (h.interval, h.task_id.as_str()) < (lock.interval, lock.task_id.as_str())
        });
        held.insert(at, lock);
        Ok(())
    }

    /// Releases `task_id`'s lock on exactly `interval` of `data_source`.
    pub(crate) fn release_lock(
        &mut self,
        task_id: &str,
        data_source: &str,
        interval: Interval,
    ) -> Result<()> {
        let held = self.locks.get_mut(data_source);
        let position = held.as_ref().and_then(|held| {
            held.iter()
                .position(|h| h.task_id == task_id && h.interval == interval)
        });
        match (held, position) {
            (Some(held), Some(at)) => {
                held.remove(at);
                if held.is_empty() {
                    self.locks.remove(data_source);
                }
                Ok(())
            }
            _ => Err(MetadataError::Refused(format!(
                "task '{task_id}' holds no lock on {interval} of datasource '{data_source}'"
            ))),
        }
    }

    /// Releases every lock of `task_id` (its end).
    pub(crate) fn release_task_locks(&mut self, task_id: &str) {
        for held in self.locks.values_mut() {
            held.retain(|h| h.task_id != task_id);
        }
        self.locks.retain(|_, held| !held.is_empty());
    }

    pub(crate) fn set_rules(
        &mut self,
        data_source: &str,
        rules: &[serde_json::Value],
        audit: &AuditInfo,
        changed_ms: i64,
    ) -> Result<()> {
        check_name("datasource", data_source)?;
        for (position, rule) in rules.iter().enumerate() {
            check_rule(rule).map_err(|why| {
                MetadataError::Refused(format!("rules of '{data_source}': rule {position}: {why}"))
            })?;
        }
        let version = self.rules.get(data_source).map_or(0, |r| r.version) + 1;
        let record = RulesRecord {
            data_source: data_source.to_owned(),
            rules: rules.to_vec(),
            version,
            updated_ms: changed_ms,
        };
        let payload = serde_json::Value::Array(record.rules.clone());
        self.rules.insert(data_source.to_owned(), record);
        self.record_audit("rules", data_source, audit, payload, changed_ms);
        Ok(())
    }

    pub(crate) fn set_config(
        &mut self,
        name: &str,
        value: &serde_json::Value,
        expected_version: Option<u64>,
        audit: &AuditInfo,
        changed_ms: i64,
    ) -> Result<()> {
        check_name("config", name)?;
        if !value.is_object() {
            return Err(MetadataError::Refused(format!(
                "config '{name}': the value must be a JSON object"
            )));
        }
        if name == AUDIT_CONFIG {
            audit_limits(Some(value))
                .map_err(|why| MetadataError::Refused(format!("config '{AUDIT_CONFIG}': {why}")))?;
        }
        let stored = self.configs.get(name).map_or(0, |c| c.version);
        if let Some(expected) = expected_version
            && expected != stored
        {
            return Err(MetadataError::Refused(format!(
                "config '{name}' is at version {stored}, the change expected version {expected}"
            )));
        }
        self.configs.insert(
            name.to_owned(),
            ConfigRecord {
                name: name.to_owned(),
                value: value.clone(),
                version: stored + 1,
                updated_ms: changed_ms,
            },
        );
        self.record_audit("config", name, audit, value.clone(), changed_ms);
        Ok(())
    }

    /// Creates supervisor `id` RUNNING, or replaces its spec (a suspended one stays
    /// suspended; a terminated one runs again, as Druid's resubmission does).
    pub(crate) fn submit_supervisor(
        &mut self,
        id: &str,
        spec: &serde_json::Value,
        audit: &AuditInfo,
        changed_ms: i64,
    ) -> Result<()> {
        check_name("supervisor", id)?;
        if !spec.is_object() {
            return Err(MetadataError::Refused(format!(
                "supervisor '{id}': the spec must be a JSON object"
            )));
        }
        let (state, version) = match self.supervisors.get(id) {
            Some(s) if s.state == SupervisorState::Suspended => (s.state, s.version + 1),
            Some(s) => (SupervisorState::Running, s.version + 1),
            None => (SupervisorState::Running, 1),
        };
        self.put_supervisor(
            SupervisorRecord {
                id: id.to_owned(),
                spec: spec.clone(),
                state,
                version,
                updated_ms: changed_ms,
            },
            audit,
        );
        Ok(())
    }

    /// Suspends, resumes or terminates supervisor `id`. A terminated supervisor only runs
    /// again by a new submission.
    pub(crate) fn set_supervisor_state(
        &mut self,
        id: &str,
        state: SupervisorState,
        audit: &AuditInfo,
        changed_ms: i64,
    ) -> Result<()> {
        let Some(stored) = self.supervisors.get(id) else {
            return Err(MetadataError::Refused(format!("unknown supervisor '{id}'")));
        };
        if stored.state == SupervisorState::Terminated {
            return Err(MetadataError::Refused(format!(
                "supervisor '{id}' is terminated; submit its spec again to run it"
            )));
        }
        let record = SupervisorRecord {
            state,
            version: stored.version + 1,
            updated_ms: changed_ms,
            ..stored.clone()
        };
        self.put_supervisor(record, audit);
        Ok(())
    }

    fn put_supervisor(&mut self, record: SupervisorRecord, audit: &AuditInfo) {
        let payload = serde_json::json!({"spec": record.spec, "state": record.state});
        let (id, changed_ms) = (record.id.clone(), record.updated_ms);
        self.supervisors.insert(id.clone(), record);
        self.record_audit("supervisor", &id, audit, payload, changed_ms);
    }

    /// Registers `node`, or replaces its record.
    pub(crate) fn put_node(&mut self, node: &NodeRecord) -> Result<()> {
        check_name("node", &node.id)?;
        if node.address.is_empty() {
            return Err(MetadataError::Refused(format!(
                "node '{}': its address is empty",
                node.id
            )));
        }
        self.nodes.insert(node.id.clone(), node.clone());
        Ok(())
    }

    /// Unregisters node `id` and takes it out of every assignment.
    pub(crate) fn remove_node(&mut self, id: &str) -> Result<()> {
        if self.nodes.remove(&id.to_owned()).is_none() {
            return Err(MetadataError::Refused(format!("unknown node '{id}'")));
        }
        let touched: Vec<(String, SegmentAssignment)> = self
            .assignments
            .iter()
            .filter(|(_, a)| a.nodes.contains(id))
            .map(|(key, a)| (key.clone(), a.clone()))
            .collect();
        for (key, mut assignment) in touched {
            assignment.nodes.remove(id);
            if assignment.nodes.is_empty() {
                self.assignments.remove(&key);
            } else {
                self.assignments.insert(key, assignment);
            }
        }
        Ok(())
    }

    /// Replaces the node sets of the listed segments, all at once; `is_used` says whether a
    /// segment is published and used. Every node must be registered, every segment used and
    /// listed once.
    pub(crate) fn replace_assignments(
        &mut self,
        assignments: &[SegmentAssignment],
        is_used: impl Fn(&SegmentId) -> Result<bool>,
    ) -> Result<()> {
        let mut seen = BTreeSet::new();
        for assignment in assignments {
            let id = assignment.segment.to_string();
            if !seen.insert(id.clone()) {
                return Err(MetadataError::Refused(format!(
                    "segment '{id}' is assigned twice in one change"
                )));
            }
            if !assignment.nodes.is_empty() && !is_used(&assignment.segment)? {
                return Err(MetadataError::Refused(format!(
                    "segment '{id}' is not a used segment"
                )));
            }
            if let Some(node) = assignment
                .nodes
                .iter()
                .find(|n| self.nodes.get(*n).is_none())
            {
                return Err(MetadataError::Refused(format!(
                    "segment '{id}' is assigned to unknown node '{node}'"
                )));
            }
        }
        for assignment in assignments {
            let id = assignment.segment.to_string();
            if assignment.nodes.is_empty() {
                self.assignments.remove(&id);
            } else {
                self.assignments.insert(id, assignment.clone());
            }
        }
        Ok(())
    }

    /// Appends an audit entry, then trims the log to its retention (see the module docs).
    fn record_audit(
        &mut self,
        audit_type: &str,
        key: &str,
        audit: &AuditInfo,
        payload: serde_json::Value,
        created_ms: i64,
    ) {
        self.audit_seq += 1;
        let seq = self.audit_seq;
        self.audit.insert(
            seq,
            AuditEntry {
                seq,
                audit_type: audit_type.to_owned(),
                key: key.to_owned(),
                audit: audit.clone(),
                payload,
                created_ms,
            },
        );
        // The config was checked when it was set.
        let (entries_max, retention_ms) =
            audit_limits(self.configs.get(AUDIT_CONFIG).map(|c| &c.value))
                .unwrap_or((AUDIT_ENTRIES_MAX_DEFAULT, AUDIT_RETENTION_MS_DEFAULT));
        let oldest_kept_ms = created_ms.saturating_sub(retention_ms);
        while let Some((_, oldest)) = self.audit.first() {
            if self.audit.len() as u64 <= entries_max && oldest.created_ms >= oldest_kept_ms {
                break;
            }
            self.audit.pop_first();
        }
    }
}

/// The audit retention `value` (the [`AUDIT_CONFIG`] config) sets, defaults filled in.
fn audit_limits(value: Option<&serde_json::Value>) -> std::result::Result<(u64, i64), String> {
    let Some(value) = value else {
        return Ok((AUDIT_ENTRIES_MAX_DEFAULT, AUDIT_RETENTION_MS_DEFAULT));
    };
    let object = value.as_object().ok_or("the value must be a JSON object")?;
    if let Some(unknown) = object
        .keys()
        .find(|k| *k != "maxEntries" && *k != "retentionMs")
    {
        return Err(format!(
            "unknown field '{unknown}' (known: maxEntries, retentionMs)"
        ));
    }
    let positive = |field: &str| -> std::result::Result<Option<u64>, String> {
        match object.get(field) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 && n <= i64::MAX as u64 => Ok(Some(n)),
                _ => Err(format!("'{field}' must be a positive integer, not {v}")),
            },
        }
    };
    Ok((
        positive("maxEntries")?.unwrap_or(AUDIT_ENTRIES_MAX_DEFAULT),
        positive("retentionMs")?.map_or(AUDIT_RETENTION_MS_DEFAULT, |ms| ms as i64),
    ))
}

/// Names usable as keys: not empty, no NUL.
fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.contains('\0') {
        return Err(MetadataError::Refused(format!(
            "a {what} name must not be empty or contain a NUL character"
        )));
    }
    Ok(())
}

/// The rule types Druid's coordinator knows.
const RULE_TYPES: [&str; 9] = [
    "loadForever",
    "loadByInterval",
    "loadByPeriod",
    "dropForever",
    "dropByInterval",
    "dropByPeriod",
    "dropBeforeByPeriod",
    "broadcastForever",
    "broadcastByPeriod",
];

/// A rule is a JSON object whose `type` is one of [`RULE_TYPES`].
fn check_rule(rule: &serde_json::Value) -> std::result::Result<(), String> {
    let Some(kind) = rule.get("type").and_then(|t| t.as_str()) else {
        return Err("a rule is a JSON object with a string \"type\"".into());
    };
    if !RULE_TYPES.contains(&kind) {
        return Err(format!(
            "unknown rule type '{kind}' (one of {})",
            RULE_TYPES.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> AuditInfo {
        AuditInfo {
            author: "ops".into(),
            comment: "test".into(),
        }
    }

    fn rules(tables: &mut ClusterTables, ds: &str, at_ms: i64) {
        let rule = serde_json::json!({"type": "loadForever"});
        tables.set_rules(ds, &[rule], &who(), at_ms).unwrap();
    }

    fn seqs(tables: &ClusterTables) -> Vec<u64> {
        tables.audit_log().iter().map(|e| e.seq).collect()
    }

    #[test]
    fn the_audit_log_keeps_its_retention_by_count_and_age_and_numbers_on() {
        let mut tables = ClusterTables::default();
        for i in 0..5 {
            rules(&mut tables, &format!("ds{i}"), 1_000 + i);
        }
        assert_eq!(
            seqs(&tables),
            [1, 2, 3, 4, 5],
            "defaults keep everything here"
        );
        // At most three entries: applied at the change itself (which is audited too).
        let limits = serde_json::json!({"maxEntries": 3, "retentionMs": 10_000});
        tables
            .set_config(AUDIT_CONFIG, &limits, None, &who(), 2_000)
            .unwrap();
        assert_eq!(seqs(&tables), [4, 5, 6]);
        rules(&mut tables, "ds9", 3_000);
        assert_eq!(seqs(&tables), [5, 6, 7], "numbers are never reused");
        // Entries more than 10 s older than the newest go.
        rules(&mut tables, "ds9", 13_500);
        assert_eq!(seqs(&tables), [8]);
        // A retention config that would not parse is refused, nothing changed.
        for bad in [
            serde_json::json!({"maxEntries": 0}),
            serde_json::json!({"retentionMs": -5}),
            serde_json::json!({"maxEntrys": 5}),
        ] {
            let error = tables
                .set_config(AUDIT_CONFIG, &bad, None, &who(), 13_000)
                .unwrap_err();
            assert!(error.to_string().contains("config 'audit'"), "{error}");
        }
        assert_eq!(seqs(&tables), [8]);
        // The snapshot form keeps the numbering.
        let back: ClusterTables =
            crate::replicated::types::decode(&crate::replicated::types::encode(&tables).unwrap())
                .unwrap();
        assert_eq!(back, tables);
        let mut back = back;
        rules(&mut back, "ds9", 14_000);
        assert_eq!(seqs(&back), [8, 9]);
    }

    #[test]
    fn a_copy_of_large_cluster_tables_shares_their_rows() {
        let mut tables = ClusterTables::default();
        tables
            .put_node(&NodeRecord {
                id: "h1".into(),
                address: "10.0.0.1:8083".into(),
                roles: ["historical".to_string()].into(),
                tier: "_default_tier".into(),
                capacity_bytes: 1 << 30,
                version: "0".into(),
            })
            .unwrap();
        let assignments: Vec<SegmentAssignment> = (0..5_000)
            .map(|partition| SegmentAssignment {
                segment: SegmentId::new("wiki", None, Interval::new(0, 1), "v1", partition),
                nodes: ["h1".to_string()].into(),
            })
            .collect();
        tables
            .replace_assignments(&assignments, |_| Ok(true))
            .unwrap();
        for i in 0..5_000 {
            rules(&mut tables, "wiki", i);
        }
        let copy = tables.clone();
        let assignment_chunks = tables.assignments.shared_chunks(&tables.assignments);
        let audit_chunks = tables.audit.shared_chunks(&tables.audit);
        assert!(assignment_chunks >= 5_000 / crate::replicated::chunked::CHUNK_MAX);
        assert_eq!(
            tables.assignments.shared_chunks(&copy.assignments),
            assignment_chunks
        );
        assert_eq!(tables.audit.shared_chunks(&copy.audit), audit_chunks);
        // A change copies the one chunk it writes to (the last; an appended entry may also
        // start a new one).
        rules(&mut tables, "wiki", 5_000);
        assert!(tables.audit.shared_chunks(&copy.audit) >= audit_chunks - 1);
        assert!(tables.audit.shared_chunks(&copy.audit) < audit_chunks + 1);
        assert_eq!(copy.audit_log().len(), 5_000);
    }
}
