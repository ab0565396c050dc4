//! Batch ingestion: an ingestion spec's input, read and rolled up into one incremental index per
//! segment-granularity time chunk, spilled to intermediate segments whenever the rows or bytes held
//! reach `maxRowsInMemory` / `maxBytesInMemory`, then per chunk merged, cut into partitions of at
//! most `maxRowsPerSegment` rows, written and pushed to deep storage.
//!
//! The driver is the [`RowVisitor`] the readers call: it applies the transform filter and the
//! spec's intervals (rows dropped there are "thrown away"), adds the row to its chunk's index (a
//! value that does not fit its column is a parse error at the row's position) and enforces
//! `maxParseExceptions` through the [`ParseReport`]. Good rows are never lost because of a bad one.
//!
//! Everything here is synchronous and single-threaded; the node runs it on a task thread.
//! Known limit: the final merge of one time chunk materializes its spills in memory.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::columns::SegmentColumns;
use crate::deep_storage::{DeepStorage, LoadSpec};
use crate::error::{Result, SegmentError};
use crate::filter::RowMatcher;
use crate::format::{Segment, SegmentMeta, WriteOptions, write_segment};
use crate::id::SegmentId;
use crate::index::IncrementalIndex;
use crate::input::{ParseError, ParseReport, RowPosition, RowVisitor, read_input};
use crate::merge::merge_columns;
use crate::row::InputRow;
use crate::schema::Schema;
use crate::spec::IngestionSpec;
use crate::time::Interval;

/// Where and how a batch ingestion writes.
#[derive(Clone, Debug)]
pub struct BatchOptions {
    /// Scratch directory for spills and segments before they are pushed.
    pub work_dir: PathBuf,
    /// The version of every segment built (Druid uses the task's lock version, an ISO time).
    pub version: String,
    pub write: WriteOptions,
}

/// One segment built and pushed.
#[derive(Clone, Debug, PartialEq)]
pub struct BuiltSegment {
    pub meta: SegmentMeta,
    /// Partitions of this time chunk (the set is complete with all of them).
    pub core_partitions: u32,
    pub load_spec: LoadSpec,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BatchResult {
    pub segments: Vec<BuiltSegment>,
    pub report: ParseReport,
    /// How many times the in-memory indexes were spilled to disk.
    pub spills: u64,
}

/// Runs a batch ingestion spec to completion.
pub fn run_batch(
    spec: &IngestionSpec,
    deep_storage: &dyn DeepStorage,
    options: &BatchOptions,
) -> Result<BatchResult> {
    let schema = spec.data_schema.schema()?;
    let layout = spec.data_schema.row_layout()?;
    let matcher = spec
        .data_schema
        .transform_spec
        .filter
        .as_ref()
        .map(|f| f.compile(&layout))
        .transpose()?;
    let tuning = &spec.tuning_config;
    std::fs::create_dir_all(&options.work_dir)
        .map_err(|e| SegmentError::io(&options.work_dir, e))?;
    let mut driver = Driver {
        schema: &schema,
        matcher,
        intervals: spec.data_schema.granularity_spec.intervals.clone(),
        sinks: BTreeMap::new(),
        report: ParseReport::with_limits(tuning.max_parse_exceptions, tuning.errors_kept_max())
            .with_log_parse_exceptions(tuning.log_parse_exceptions),
        rows_in_memory: 0,
        rows_max: usize::try_from(tuning.max_rows_in_memory).unwrap_or(usize::MAX),
        bytes_max: tuning.max_bytes_in_memory,
        options,
        spills: 0,
    };
    let read = read_input(
        &spec.io_config,
        &layout,
        &spec.data_schema.timestamp_spec,
        &mut driver,
    );
    if let Err(e) = read {
        driver.remove_spills();
        return Err(e);
    }
    let rows_per_segment =
        usize::try_from(tuning.max_rows_per_segment.max(1)).unwrap_or(usize::MAX);
    let result = driver.finish(deep_storage, rows_per_segment);
    if result.is_err() {
        // `finish` consumed the sinks; spill files it did not reach are named by their paths.
        let _ = std::fs::remove_dir_all(options.work_dir.join("spills"));
    }
    result
}

/// Whether a row passes the transform filter and falls inside the spec's intervals.
fn admits(matcher: Option<&RowMatcher>, intervals: Option<&[Interval]>, row: &InputRow) -> bool {
    matcher.is_none_or(|m| m.matches(row))
        && intervals.is_none_or(|list| list.iter().any(|i| i.contains(row.timestamp_ms)))
}

struct Sink {
    interval: Interval,
    index: IncrementalIndex,
    spills: Vec<PathBuf>,
}

struct Driver<'a> {
    schema: &'a Schema,
    matcher: Option<RowMatcher>,
    intervals: Option<Vec<Interval>>,
    sinks: BTreeMap<i64, Sink>,
    report: ParseReport,
    rows_in_memory: usize,
    rows_max: usize,
    bytes_max: u64,
    options: &'a BatchOptions,
    spills: u64,
}

impl RowVisitor for Driver<'_> {
    fn row(&mut self, row: &InputRow, position: &RowPosition) -> Result<()> {
        if !admits(self.matcher.as_ref(), self.intervals.as_deref(), row) {
            self.report.thrown_away += 1;
            return Ok(());
        }
        let granularity = self.schema.segment_granularity;
        let chunk = granularity.truncate(row.timestamp_ms);
        let schema = self.schema;
        let sink = self.sinks.entry(chunk).or_insert_with(|| Sink {
            interval: granularity.bucket(row.timestamp_ms),
            index: IncrementalIndex::new(schema),
            spills: Vec::new(),
        });
        let before = sink.index.len();
        if let Err(e) = sink.index.add(row) {
            return self.unparseable(ParseError {
                position: position.clone(),
                message: e.0,
            });
        }
        self.report.processed += 1;
        self.rows_in_memory += sink.index.len() - before;
        // Byte estimates are cheap but not free: check them every 1024 rows.
        let check_bytes = self.report.processed.is_multiple_of(1024);
        if self.rows_in_memory >= self.rows_max
            || sink.index.is_full()
            || (check_bytes && self.bytes_in_memory() >= self.bytes_max)
        {
            self.spill()?;
        }
        Ok(())
    }

    fn unparseable(&mut self, error: ParseError) -> Result<()> {
        if self.report.log_parse_exceptions {
            // `logParseExceptions`: Druid logs each one as it happens; a batch run's log is stderr.
            eprintln!("parse exception: {error}");
        }
        if self.report.record(error) {
            return Err(SegmentError::TooManyParseErrors(Box::new(
                self.report.clone(),
            )));
        }
        Ok(())
    }
}

impl Driver<'_> {
    fn bytes_in_memory(&self) -> u64 {
        self.sinks.values().map(|s| s.index.bytes()).sum()
    }

    fn meta(&self, interval: Interval, partition: u32, columns: &SegmentColumns) -> SegmentMeta {
        let (time_min_ms, time_max_ms) = columns.time_bounds();
        SegmentMeta {
            id: SegmentId {
                data_source: self.schema.data_source.clone(),
                namespace: None,
                interval,
                version: self.options.version.clone(),
                partition,
            },
            schema: self.schema.clone(),
            num_rows: columns.num_rows() as u64,
            time_min_ms,
            time_max_ms,
        }
    }

    /// Persists every non-empty index as an intermediate segment and starts it afresh.
    fn spill(&mut self) -> Result<()> {
        let dir = self.options.work_dir.join("spills");
        std::fs::create_dir_all(&dir).map_err(|e| SegmentError::io(&dir, e))?;
        let chunks: Vec<i64> = self.sinks.keys().copied().collect();
        for chunk in chunks {
            let sink = &self.sinks[&chunk];
            if sink.index.is_empty() {
                continue;
            }
            let columns = sink.index.to_columns();
            let meta = self.meta(sink.interval, sink.spills.len() as u32, &columns);
            let path = dir.join(format!("spill-{}.grove", self.spills));
            write_segment(&path, &meta, &columns, &WriteOptions::default())?;
            self.spills += 1;
            let sink = self.sinks.get_mut(&chunk).expect("chunk listed above");
            sink.spills.push(path);
            sink.index = IncrementalIndex::new(self.schema);
        }
        self.rows_in_memory = 0;
        Ok(())
    }

    fn remove_spills(&self) {
        for sink in self.sinks.values() {
            for path in &sink.spills {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    fn finish(
        mut self,
        deep_storage: &dyn DeepStorage,
        rows_per_segment: usize,
    ) -> Result<BatchResult> {
        let sinks = std::mem::take(&mut self.sinks);
        let mut segments = Vec::new();
        for sink in sinks.into_values() {
            // A chunk whose rows all failed to parse has nothing to publish: an empty segment
            // would overshadow older data for its interval.
            if sink.spills.is_empty() && sink.index.is_empty() {
                continue;
            }
            let mut parts = Vec::with_capacity(sink.spills.len() + 1);
            for path in &sink.spills {
                parts.push(Segment::open(path)?.to_columns()?);
            }
            if !sink.index.is_empty() {
                parts.push(sink.index.to_columns());
            }
            let merged = if parts.len() == 1 {
                parts.pop().expect("one part")
            } else {
                merge_columns(self.schema, &parts)?
            };
            drop(parts);
            for path in &sink.spills {
                let _ = std::fs::remove_file(path);
            }
            let rows = merged.num_rows();
            let partitions = rows.div_ceil(rows_per_segment).max(1);
            for partition in 0..partitions {
                let start = partition * rows_per_segment;
                let end = (start + rows_per_segment).min(rows);
                let columns = if partitions == 1 {
                    None
                } else {
                    Some(merged.slice(start, end))
                };
                let columns = columns.as_ref().unwrap_or(&merged);
                let meta = self.meta(sink.interval, partition as u32, columns);
                let path = self.options.work_dir.join(format!(
                    "segment-{}-{partition}.grove",
                    sink.interval.start_ms
                ));
                write_segment(&path, &meta, columns, &self.options.write)?;
                let pushed = deep_storage.push(&meta.id, &path);
                let _ = std::fs::remove_file(&path);
                let (load_spec, bytes) = pushed?;
                segments.push(BuiltSegment {
                    meta,
                    core_partitions: partitions as u32,
                    load_spec,
                    bytes,
                });
            }
        }
        Ok(BatchResult {
            segments,
            report: self.report,
            spills: self.spills,
        })
    }
}
