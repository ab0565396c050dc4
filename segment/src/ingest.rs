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
//! Everything here is synchronous. With [`BatchOptions::threads`] above 1, a large local JSON
//! file is cut at line boundaries into one piece per thread, each read and indexed by its own
//! driver (its own chunks, spills and a share of the memory limits); the drivers' chunks are
//! then put together (their indexes and spills become parts of one merge, as spills always
//! were), and time chunks are merged, written and pushed in parallel. Parse errors keep their
//! file's line numbers; `maxParseExceptions` is enforced per piece while reading and on the
//! sum at the end. Known limit: the final merge of one time chunk materializes its parts in
//! memory.

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
    /// Threads one ingestion may use (pieces of a large JSON file parsed and indexed at once,
    /// time chunks persisted at once); 1 runs everything on the caller's thread.
    pub threads: usize,
    /// A JSON file is cut into pieces for the threads only from this size on
    /// ([`SPLIT_BYTES_MIN`] unless a test wants small files cut).
    pub split_bytes_min: u64,
}

/// Files smaller than this are read by one thread by default.
pub const SPLIT_BYTES_MIN: u64 = 64 << 20;

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
    let pieces = split_input(spec, options.threads, options.split_bytes_min)?;
    let threads = pieces.as_ref().map_or(1, Vec::len);
    let new_driver = |n: usize| Driver {
        schema: &schema,
        matcher: matcher.clone(),
        intervals: spec.data_schema.granularity_spec.intervals.clone(),
        sinks: BTreeMap::new(),
        report: ParseReport::with_limits(tuning.max_parse_exceptions, tuning.errors_kept_max())
            .with_log_parse_exceptions(tuning.log_parse_exceptions),
        rows_in_memory: 0,
        rows_max: usize::try_from(tuning.max_rows_in_memory)
            .unwrap_or(usize::MAX)
            .div_ceil(threads)
            .max(1),
        bytes_max: (tuning.max_bytes_in_memory / threads as u64).max(1),
        options,
        spill_dir: options.work_dir.join(format!("spills-{n}")),
        spills: 0,
    };
    let driver = match pieces {
        None => {
            let mut driver = new_driver(0);
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
            driver
        }
        Some(pieces) => {
            let new_driver = &new_driver;
            let layout = &layout;
            let read: Vec<(Driver<'_>, Result<()>)> = std::thread::scope(|scope| {
                let handles: Vec<_> = pieces
                    .iter()
                    .enumerate()
                    .map(|(n, piece)| {
                        scope.spawn(move || {
                            let mut driver = new_driver(n);
                            let read =
                                piece.read(layout, &spec.data_schema.timestamp_spec, &mut driver);
                            (driver, read)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("an ingestion thread panicked"))
                    .collect()
            });
            let mut drivers = Vec::with_capacity(read.len());
            let mut failed = None;
            for (driver, result) in read {
                if let Err(e) = result {
                    failed.get_or_insert(e);
                }
                drivers.push(driver);
            }
            if let Some(e) = failed {
                drivers.iter().for_each(Driver::remove_spills);
                return Err(e);
            }
            let mut drivers = drivers.into_iter();
            let mut first = drivers.next().expect("one piece at least");
            for other in drivers {
                first.absorb(other);
            }
            if first.report.unparseable > first.report.max_parse_exceptions {
                first.remove_spills();
                return Err(SegmentError::TooManyParseErrors(Box::new(first.report)));
            }
            first
        }
    };
    let rows_per_segment =
        usize::try_from(tuning.max_rows_per_segment.max(1)).unwrap_or(usize::MAX);
    let result = driver.finish(deep_storage, rows_per_segment, options.threads.max(1));
    if result.is_err() {
        // `finish` consumed the sinks; spill files it did not reach are named by their paths.
        for n in 0..threads {
            let _ = std::fs::remove_dir_all(options.work_dir.join(format!("spills-{n}")));
        }
    }
    result
}

/// One thread's share of the input: a byte range of a JSON file, cut at line boundaries.
struct Piece {
    path: PathBuf,
    start: u64,
    end: u64,
    /// Lines of the file before `start`.
    lines_before: u64,
}

impl Piece {
    fn read(
        &self,
        layout: &crate::row::RowLayout,
        timestamp: &crate::spec::TimestampSpec,
        visitor: &mut dyn RowVisitor,
    ) -> Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file =
            std::fs::File::open(&self.path).map_err(|e| SegmentError::io(&self.path, e))?;
        file.seek(SeekFrom::Start(self.start))
            .map_err(|e| SegmentError::io(&self.path, e))?;
        let input = std::io::BufReader::with_capacity(1 << 20, file.take(self.end - self.start));
        crate::input::json::read_json_from(
            input,
            &self.path.display().to_string(),
            layout,
            timestamp,
            visitor,
            self.lines_before,
        )
    }
}

/// The pieces to read on `threads` threads: `None` unless the input is one local,
/// uncompressed JSON file of at least `split_bytes_min` bytes.
fn split_input(
    spec: &IngestionSpec,
    threads: usize,
    split_bytes_min: u64,
) -> Result<Option<Vec<Piece>>> {
    use crate::input::source::{InputItem, list_inputs};
    use crate::spec::InputFormat;
    use std::io::{Read, Seek, SeekFrom};
    if threads <= 1 || !matches!(spec.io_config.input_format, InputFormat::Json(_)) {
        return Ok(None);
    }
    let items = list_inputs(&spec.io_config.input_source)?;
    let [InputItem::File(path)] = items.as_slice() else {
        return Ok(None);
    };
    if path.extension().and_then(|e| e.to_str()) != Some("json") {
        return Ok(None);
    }
    let io = |e| SegmentError::io(path, e);
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len < split_bytes_min.max(threads as u64) {
        return Ok(None);
    }
    // Each cut moves forward to just after the next newline.
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut cuts = vec![0u64];
    for k in 1..threads as u64 {
        let mut at = (len * k / threads as u64).max(*cuts.last().expect("a cut"));
        file.seek(SeekFrom::Start(at)).map_err(io)?;
        let mut buf = [0u8; 64 << 10];
        loop {
            let n = file.read(&mut buf).map_err(io)?;
            if n == 0 {
                at = len;
                break;
            }
            if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
                at += i as u64 + 1;
                break;
            }
            at += n as u64;
        }
        cuts.push(at);
    }
    cuts.push(len);
    // Lines before each cut: newlines counted once, piece by piece.
    let mut pieces = Vec::with_capacity(threads);
    let mut lines_before = 0u64;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    for w in cuts.windows(2) {
        let (start, end) = (w[0], w[1]);
        if start < end {
            pieces.push(Piece {
                path: path.clone(),
                start,
                end,
                lines_before,
            });
        }
        // Count the newlines of this piece for the next one.
        let mut left = end - start;
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            let take = left.min(buf.len() as u64) as usize;
            reader.read_exact(&mut buf[..take]).map_err(io)?;
            lines_before += memchr::memchr_iter(b'\n', &buf[..take]).count() as u64;
            left -= take as u64;
        }
    }
    Ok((pieces.len() > 1).then_some(pieces))
}

/// Whether a row passes the transform filter and falls inside the spec's intervals.
fn admits(matcher: Option<&RowMatcher>, intervals: Option<&[Interval]>, row: &InputRow) -> bool {
    matcher.is_none_or(|m| m.matches(row))
        && intervals.is_none_or(|list| list.iter().any(|i| i.contains(row.timestamp_ms)))
}

struct Sink {
    interval: Interval,
    index: IncrementalIndex,
    /// Indexes of the same chunk from other threads' drivers.
    more: Vec<IncrementalIndex>,
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
    /// Where this driver's spills go (one directory per driver).
    spill_dir: PathBuf,
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
            more: Vec::new(),
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
        let dir = self.spill_dir.clone();
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

    /// Takes over another driver's chunks (indexes and spills) and counts.
    fn absorb(&mut self, other: Driver<'_>) {
        for (chunk, sink) in other.sinks {
            match self.sinks.get_mut(&chunk) {
                None => {
                    self.sinks.insert(chunk, sink);
                }
                Some(mine) => {
                    mine.spills.extend(sink.spills);
                    if !sink.index.is_empty() {
                        mine.more.push(sink.index);
                    }
                    mine.more.extend(sink.more);
                }
            }
        }
        let (report, theirs) = (&mut self.report, other.report);
        report.processed += theirs.processed;
        report.unparseable += theirs.unparseable;
        report.thrown_away += theirs.thrown_away;
        report.errors.extend(theirs.errors);
        report.errors.truncate(report.errors_kept_max);
        self.spills += other.spills;
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
        threads: usize,
    ) -> Result<BatchResult> {
        let sinks: Vec<Sink> = std::mem::take(&mut self.sinks).into_values().collect();
        let this = &self;
        let persist = |sink: Sink| this.persist(sink, deep_storage, rows_per_segment);
        let built: Vec<Result<Vec<BuiltSegment>>> = if threads <= 1 || sinks.len() <= 1 {
            sinks.into_iter().map(persist).collect()
        } else {
            // Chunks dealt round-robin to the threads; results put back in chunk order.
            let mut shares: Vec<Vec<(usize, Sink)>> = (0..threads).map(|_| Vec::new()).collect();
            for (i, sink) in sinks.into_iter().enumerate() {
                shares[i % threads].push((i, sink));
            }
            let persist = &persist;
            let mut done: Vec<(usize, Result<Vec<BuiltSegment>>)> = std::thread::scope(|scope| {
                let handles: Vec<_> = shares
                    .into_iter()
                    .map(|share| {
                        scope.spawn(move || {
                            share
                                .into_iter()
                                .map(|(i, sink)| (i, persist(sink)))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("a persisting thread panicked"))
                    .collect()
            });
            done.sort_by_key(|(i, _)| *i);
            done.into_iter().map(|(_, r)| r).collect()
        };
        let mut segments = Vec::new();
        for b in built {
            segments.extend(b?);
        }
        Ok(BatchResult {
            segments,
            report: self.report,
            spills: self.spills,
        })
    }

    /// Merges one time chunk's parts, cuts it into partitions, writes and pushes them.
    fn persist(
        &self,
        sink: Sink,
        deep_storage: &dyn DeepStorage,
        rows_per_segment: usize,
    ) -> Result<Vec<BuiltSegment>> {
        let mut segments = Vec::new();
        // A chunk whose rows all failed to parse has nothing to publish: an empty segment
        // would overshadow older data for its interval.
        if sink.spills.is_empty() && sink.index.is_empty() && sink.more.is_empty() {
            return Ok(segments);
        }
        let mut parts = Vec::with_capacity(sink.spills.len() + 1 + sink.more.len());
        for path in &sink.spills {
            parts.push(Segment::open(path)?.to_columns()?);
        }
        if !sink.index.is_empty() {
            parts.push(sink.index.to_columns());
        }
        for index in sink.more.iter().filter(|i| !i.is_empty()) {
            parts.push(index.to_columns());
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
        Ok(segments)
    }
}
