//! Merging N persisted parts (index snapshots or segments of one time chunk and schema) into one,
//! re-applying roll-up, as a real-time node does before hand-off and a batch task does with its
//! spills.
//!
//! Dictionaries are unioned, every row gets an order rank per dimension in the merged value space
//! (null first, multi-value rows ordered as lists, so the order equals the incremental index's),
//! rows are stably sorted by (time, ranks) in the schema's order (time first by default) — ties keep part order, then row order — and, with
//! roll-up, adjacent equal rows are combined with each metric's combining aggregator (a count's
//! partial counts are summed, sketches are unioned).
//!
//! Merging everything at once equals ingesting everything at once: the property test in
//! `tests/index.rs` checks it.

use std::collections::BTreeMap;

use crate::columns::{
    DimensionColumn, DimensionData, MetricColumn, MetricData, SegmentColumns, StringRows,
};
use crate::error::{Result, SegmentError};
use crate::index::{SortKeys, combine_double, combine_long, numeric_ranks};
use crate::schema::{Schema, ValueType};
use crate::sketch::HllSketch;

/// Merges `parts` (each laid out by `schema`) into one set of columns sorted in its order.
pub fn merge_columns(schema: &Schema, parts: &[SegmentColumns]) -> Result<SegmentColumns> {
    for (p, part) in parts.iter().enumerate() {
        check_part(schema, p, part)?;
    }
    if parts.iter().all(|p| p.num_rows() == 0) {
        return Ok(SegmentColumns::empty(schema));
    }
    // Global row g is (part, row) in part order.
    let origin: Vec<(u32, u32)> = parts
        .iter()
        .enumerate()
        .flat_map(|(p, part)| (0..part.num_rows() as u32).map(move |r| (p as u32, r)))
        .collect();
    let time: Vec<i64> = parts.iter().flat_map(|p| p.time.iter().copied()).collect();

    let mut plans = Vec::with_capacity(schema.dimensions.len());
    let mut ranks = Vec::with_capacity(schema.dimensions.len());
    for d in 0..schema.dimensions.len() {
        let (plan, rank) = DimensionPlan::new(parts, d, &origin);
        plans.push(plan);
        ranks.push(rank);
    }

    let keys = SortKeys::from_columns(&time, &ranks, schema.time_position);
    drop(ranks);
    let order = keys.stable_order();

    // Groups of equal rows (one row each without roll-up).
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    for i in 1..=order.len() {
        let boundary = i == order.len()
            || !schema.rollup
            || !keys.equal(order[start] as usize, order[i] as usize);
        if boundary {
            groups.push((start, i));
            start = i;
        }
    }

    let firsts: Vec<usize> = groups.iter().map(|&(s, _)| order[s] as usize).collect();
    let columns = SegmentColumns {
        time: firsts.iter().map(|&g| time[g]).collect(),
        dimensions: plans
            .into_iter()
            .enumerate()
            .map(|(d, plan)| DimensionColumn {
                name: schema.dimensions[d].name.clone(),
                data: plan.emit(parts, d, &origin, &firsts),
            })
            .collect(),
        metrics: schema
            .metrics
            .iter()
            .enumerate()
            .map(|(m, metric)| {
                Ok(MetricColumn {
                    name: metric.name.clone(),
                    kind: metric.kind,
                    data: merge_metric(parts, m, &origin, &order, &groups)?,
                })
            })
            .collect::<Result<_>>()?,
    };
    columns
        .validate(schema.time_sorted())
        .map_err(|e| SegmentError::Schema(format!("merge produced invalid columns: {e}")))?;
    Ok(columns)
}

fn check_part(schema: &Schema, p: usize, part: &SegmentColumns) -> Result<()> {
    // A part's row order does not matter: every row is sorted again.
    part.check_schema(schema)
        .and_then(|()| part.validate(false))
        .map_err(|e| SegmentError::Schema(format!("merge part {p}: {e}")))
}

enum DimensionPlan {
    String {
        /// Merged non-null values, sorted.
        values: Vec<String>,
        /// Per part: dictionary index → merged value index (`None` for a null entry).
        maps: Vec<Vec<Option<u32>>>,
    },
    Numeric(ValueType),
}

impl DimensionPlan {
    /// The plan and the order rank of every global row for dimension `d`.
    fn new(parts: &[SegmentColumns], d: usize, origin: &[(u32, u32)]) -> (DimensionPlan, Vec<u64>) {
        let first = parts.first().map(|p| p.dimensions[d].data.value_type());
        match first {
            Some(ValueType::String) | None => {}
            Some(value_type) => {
                let bits: Vec<Option<u64>> = origin
                    .iter()
                    .map(|&(p, r)| numeric_bits(&parts[p as usize].dimensions[d].data, r))
                    .collect();
                let ranks = numeric_ranks(&bits, value_type == ValueType::Double);
                return (DimensionPlan::Numeric(value_type), ranks);
            }
        }
        let mut values: Vec<String> = parts
            .iter()
            .flat_map(|part| match &part.dimensions[d].data {
                DimensionData::String { dictionary, .. } => {
                    dictionary.iter().flatten().cloned().collect()
                }
                _ => Vec::new(),
            })
            .collect();
        values.sort_unstable();
        values.dedup();
        let maps: Vec<Vec<Option<u32>>> = parts
            .iter()
            .map(|part| match &part.dimensions[d].data {
                DimensionData::String { dictionary, .. } => dictionary
                    .iter()
                    .map(|v| {
                        v.as_ref()
                            .and_then(|v| values.binary_search(v).ok())
                            .map(|i| i as u32)
                    })
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        let plan = DimensionPlan::String { values, maps };
        let any_multi = parts.iter().any(|part| {
            matches!(
                &part.dimensions[d].data,
                DimensionData::String {
                    rows: StringRows::Multi { .. },
                    ..
                }
            )
        });
        let ranks = if any_multi {
            let lists: Vec<Vec<u32>> = origin
                .iter()
                .map(|&(p, r)| plan.row_values(parts, d, p, r))
                .collect();
            let mut distinct: BTreeMap<&[u32], u64> =
                lists.iter().map(|l| (l.as_slice(), 0)).collect();
            for (rank, slot) in distinct.values_mut().enumerate() {
                *slot = rank as u64;
            }
            lists.iter().map(|l| distinct[l.as_slice()]).collect()
        } else {
            origin
                .iter()
                .map(|&(p, r)| {
                    plan.row_values(parts, d, p, r)
                        .first()
                        .map_or(0, |&v| v as u64 + 1)
                })
                .collect()
        };
        (plan, ranks)
    }

    /// Merged value indexes of row `r` of part `p` (empty for null).
    fn row_values(&self, parts: &[SegmentColumns], d: usize, p: u32, r: u32) -> Vec<u32> {
        let DimensionPlan::String { maps, .. } = self else {
            return Vec::new();
        };
        let DimensionData::String { rows, .. } = &parts[p as usize].dimensions[d].data else {
            return Vec::new();
        };
        let map = &maps[p as usize];
        rows.row(r as usize)
            .iter()
            .filter_map(|&id| map[id as usize])
            .collect()
    }

    fn emit(
        self,
        parts: &[SegmentColumns],
        d: usize,
        origin: &[(u32, u32)],
        firsts: &[usize],
    ) -> DimensionData {
        match &self {
            DimensionPlan::Numeric(value_type) => DimensionData::numeric(
                firsts.iter().map(|&g| {
                    let (p, r) = origin[g];
                    numeric_bits(&parts[p as usize].dimensions[d].data, r)
                }),
                *value_type == ValueType::Double,
            ),
            DimensionPlan::String { values, .. } => {
                let lists: Vec<Vec<u32>> = firsts
                    .iter()
                    .map(|&g| {
                        let (p, r) = origin[g];
                        self.row_values(parts, d, p, r)
                    })
                    .collect();
                let multi = lists.iter().any(|l| l.len() > 1);
                let has_null = lists.iter().any(|l| l.is_empty());
                let lead = u32::from(!multi && has_null);
                let mut dictionary: Vec<Option<String>> = Vec::with_capacity(values.len() + 1);
                if lead == 1 {
                    dictionary.push(None);
                }
                dictionary.extend(values.iter().cloned().map(Some));
                let rows = if multi {
                    let mut offsets = Vec::with_capacity(lists.len() + 1);
                    let mut ids = Vec::new();
                    offsets.push(0);
                    for list in &lists {
                        ids.extend_from_slice(list);
                        offsets.push(ids.len() as u32);
                    }
                    StringRows::Multi { offsets, ids }
                } else {
                    StringRows::Single(
                        lists
                            .iter()
                            .map(|l| l.first().map_or(0, |&v| v + lead))
                            .collect(),
                    )
                };
                DimensionData::String { dictionary, rows }
            }
        }
    }
}

fn numeric_bits(data: &DimensionData, row: u32) -> Option<u64> {
    match data {
        DimensionData::Long { values, nulls } => {
            (!nulls.contains(row)).then(|| values[row as usize] as u64)
        }
        DimensionData::Double { values, nulls } => {
            (!nulls.contains(row)).then(|| values[row as usize].to_bits())
        }
        DimensionData::String { .. } => None,
    }
}

fn merge_metric(
    parts: &[SegmentColumns],
    m: usize,
    origin: &[(u32, u32)],
    order: &[u32],
    groups: &[(usize, usize)],
) -> Result<MetricData> {
    let Some(first) = parts.first() else {
        return Ok(MetricData::Long(Vec::new()));
    };
    let kind = first.metrics[m].kind.combining();
    let at = |i: usize| {
        let (p, r) = origin[order[i] as usize];
        (&parts[p as usize].metrics[m].data, r as usize)
    };
    Ok(match &first.metrics[m].data {
        MetricData::Long(_) => MetricData::Long(
            groups
                .iter()
                .map(|&(s, e)| {
                    (s..e)
                        .map(|i| match at(i) {
                            (MetricData::Long(v), r) => v[r],
                            _ => 0,
                        })
                        .reduce(|acc, v| combine_long(kind, acc, v))
                        .unwrap_or(0)
                })
                .collect(),
        ),
        MetricData::Double(_) => MetricData::Double(
            groups
                .iter()
                .map(|&(s, e)| {
                    (s..e)
                        .map(|i| match at(i) {
                            (MetricData::Double(v), r) => v[r],
                            _ => 0.0,
                        })
                        .reduce(|acc, v| combine_double(kind, acc, v))
                        .unwrap_or(0.0)
                })
                .collect(),
        ),
        MetricData::Sketch(_) => {
            let mut out = Vec::with_capacity(groups.len());
            for &(s, e) in groups {
                let bytes_of = |i: usize| match at(i) {
                    (MetricData::Sketch(v), r) => v[r].as_slice(),
                    _ => &[],
                };
                if e - s == 1 {
                    out.push(bytes_of(s).to_vec());
                    continue;
                }
                let mut union = HllSketch::from_bytes(bytes_of(s))?;
                for i in s + 1..e {
                    union.merge(&HllSketch::from_bytes(bytes_of(i))?);
                }
                out.push(union.to_bytes());
            }
            MetricData::Sketch(out)
        }
    })
}
