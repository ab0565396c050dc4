//! The native query model: Druid's query JSON as Grove accepts it, parsed with serde.
//!
//! Main types: [`Query`] (tagged by `queryType`), [`Aggregator`], [`PostAggregator`],
//! [`DimensionSpec`], [`LimitSpec`], [`Having`].
//!
//! Unknown properties follow Druid's JSON mapper: a property Grove does not know is ignored
//! (logged at debug level with its path), as Druid ignores it — clients rely on that (pydruid's
//! `count` aggregator sends a `fieldName`). A property Druid honours that Grove does not
//! implement, where ignoring it would change the answer, is refused with an error naming it
//! (context flags such as `finalize: false`, `alphaNumeric` bounds, lookups...), and a malformed
//! value of a known property is an error naming its path (`aggregations[0].fieldName: ...`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use grove_segment::filter::{ExtractionFn, Filter};
use grove_segment::time::Interval;

use crate::granularity::QueryGranularity;

use crate::error::{QueryError, Result};

/// A parsed native query.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "queryType", rename_all = "camelCase")]
pub enum Query {
    Timeseries(Timeseries),
    #[serde(rename = "topN")]
    TopN(TopN),
    GroupBy(GroupBy),
    Scan(Scan),
    Search(Search),
    TimeBoundary(TimeBoundary),
    SegmentMetadata(SegmentMetadata),
    DataSourceMetadata(DataSourceMetadata),
}

impl Query {
    /// Parses a query from its JSON, with errors naming the offending path.
    pub fn parse(json: &serde_json::Value) -> Result<Query> {
        let kind = json.get("queryType").and_then(|v| v.as_str());
        match kind {
            None => {
                return Err(QueryError::bad(
                    "query has no 'queryType' (one of timeseries, topN, groupBy, scan, search, \
                     timeBoundary, segmentMetadata, dataSourceMetadata)",
                ));
            }
            Some(
                "timeseries" | "topN" | "groupBy" | "scan" | "search" | "timeBoundary"
                | "segmentMetadata" | "dataSourceMetadata",
            ) => {}
            Some(other) => {
                return Err(QueryError::unsupported(format!(
                    "queryType '{other}' is not supported (supported: timeseries, topN, groupBy, \
                     scan, search, timeBoundary, segmentMetadata, dataSourceMetadata)"
                )));
            }
        }
        let query = match kind {
            Some("timeseries") => Query::Timeseries(deserialize(json)?),
            Some("topN") => Query::TopN(deserialize(json)?),
            Some("groupBy") => Query::GroupBy(deserialize(json)?),
            Some("scan") => Query::Scan(scan_order(deserialize(json)?)?),
            Some("search") => Query::Search(deserialize(json)?),
            Some("timeBoundary") => Query::TimeBoundary(deserialize(json)?),
            Some("segmentMetadata") => Query::SegmentMetadata(deserialize(json)?),
            _ => Query::DataSourceMetadata(deserialize(json)?),
        };
        query.context().check()?;
        let mut query = query;
        crate::virtual_columns::lower(&mut query)?;
        Ok(query)
    }

    /// The query's virtual columns (after [`Query::parse`], with the ones Grove derives).
    pub fn virtual_columns(&self) -> &[VirtualColumnSpec] {
        match self {
            Query::Timeseries(q) => &q.virtual_columns,
            Query::TopN(q) => &q.virtual_columns,
            Query::GroupBy(q) => &q.virtual_columns,
            Query::Scan(q) => &q.virtual_columns,
            Query::Search(q) => &q.virtual_columns,
            Query::TimeBoundary(q) => &q.virtual_columns,
            Query::SegmentMetadata(q) => &q.virtual_columns,
            Query::DataSourceMetadata(_) => &[],
        }
    }

    /// The query's context.
    pub fn context(&self) -> &QueryContext {
        match self {
            Query::Timeseries(q) => &q.context,
            Query::TopN(q) => &q.context,
            Query::GroupBy(q) => &q.context,
            Query::Scan(q) => &q.context,
            Query::Search(q) => &q.context,
            Query::TimeBoundary(q) => &q.context,
            Query::SegmentMetadata(q) => &q.context,
            Query::DataSourceMetadata(q) => &q.context,
        }
    }
}

/// Folds a scan's `orderBy` into `order`: Grove orders scans by `__time` only.
fn scan_order(mut scan: Scan) -> Result<Scan> {
    let Some(keys) = scan.order_by.take() else {
        return Ok(scan);
    };
    match keys.as_slice() {
        [] => {}
        [key] if key.column_name == grove_segment::filter::TIME_COLUMN => {
            let order = key.order.unwrap_or(ScanOrder::Ascending);
            match scan.order {
                Some(existing) if existing != order => {
                    return Err(QueryError::bad(
                        "scan 'order' and 'orderBy' disagree; give one of them",
                    ));
                }
                _ => scan.order = Some(order),
            }
        }
        _ => {
            return Err(QueryError::unsupported(
                "scan orderBy other than one __time key is not supported (Grove orders scans \
                 by __time only)",
            ));
        }
    }
    Ok(scan)
}

/// Deserializes one query type from its JSON: errors name the path of the offending value,
/// properties nobody reads are ignored and logged (Druid's JSON mapper ignores them too).
fn deserialize<T: DeserializeOwned>(json: &serde_json::Value) -> Result<T> {
    let mut ignored: Vec<String> = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| {
        let path = path.to_string();
        if path != "queryType" {
            ignored.push(path);
        }
    };
    let tracked = serde_ignored::Deserializer::new(json, &mut record);
    let parsed = serde_path_to_error::deserialize(tracked).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            QueryError::bad(format!("malformed query: {inner}"))
        } else {
            QueryError::bad(format!("malformed query at '{path}': {inner}"))
        }
    })?;
    if !ignored.is_empty() {
        tracing::debug!(properties = ?ignored, "native query: ignored unknown properties");
    }
    Ok(parsed)
}

/// `"dataSource": "name"`, `{"type": "table", "name": "name"}`, or a query datasource
/// `{"type": "query", "query": {...}}` (then `.0` names the innermost table and `.1` holds the
/// inner query).
#[derive(Clone, Debug)]
pub struct DataSource(pub String, pub Option<Box<Query>>);

impl<'de> Deserialize<'de> for DataSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Name(String),
            Object(serde_json::Map<String, serde_json::Value>),
        }
        match Form::deserialize(d)? {
            Form::Name(n) => Ok(DataSource(n, None)),
            Form::Object(o) => match (o.get("type").and_then(|t| t.as_str()), o.get("name")) {
                (Some("table"), Some(serde_json::Value::String(n))) => {
                    Ok(DataSource(n.clone(), None))
                }
                (Some("query"), _) => {
                    let inner = o
                        .get("query")
                        .ok_or_else(|| D::Error::custom("a query dataSource needs its 'query'"))?;
                    let inner = Query::parse(inner)
                        .map_err(|e| D::Error::custom(format!("inner query: {e}")))?;
                    let table = match &inner {
                        Query::Timeseries(q) => &q.data_source.0,
                        Query::TopN(q) => &q.data_source.0,
                        Query::GroupBy(q) => &q.data_source.0,
                        Query::Scan(q) => &q.data_source.0,
                        Query::Search(q) => &q.data_source.0,
                        Query::TimeBoundary(q) => &q.data_source.0,
                        Query::SegmentMetadata(q) => &q.data_source.0,
                        Query::DataSourceMetadata(q) => &q.data_source.0,
                    }
                    .clone();
                    Ok(DataSource(table, Some(Box::new(inner))))
                }
                (Some(t), _) if t != "table" => Err(D::Error::custom(format!(
                    "dataSource type '{t}' is not supported (table or query datasources)"
                ))),
                _ => Err(D::Error::custom(
                    "dataSource must be a name or {\"type\":\"table\",\"name\":...}",
                )),
            },
        }
    }
}

/// `"intervals": ["a/b", ...]`, a single string, or `{"type":"intervals","intervals":[...]}`;
/// sorted and with overlaps joined.
#[derive(Clone, Debug)]
pub struct Intervals(pub Vec<Interval>);

impl<'de> Deserialize<'de> for Intervals {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(String),
            Many(Vec<String>),
            Object {
                #[serde(rename = "type")]
                kind: String,
                intervals: Vec<String>,
            },
        }
        let texts = match Form::deserialize(d)? {
            Form::One(s) => vec![s],
            Form::Many(v) => v,
            Form::Object { kind, intervals } if kind == "intervals" => intervals,
            Form::Object { kind, .. } => {
                return Err(D::Error::custom(format!(
                    "intervals type '{kind}' is not supported"
                )));
            }
        };
        let mut out = texts
            .iter()
            .map(|t| Interval::parse(t))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(D::Error::custom)?;
        out.sort();
        let mut joined: Vec<Interval> = Vec::with_capacity(out.len());
        for i in out {
            match joined.last_mut() {
                Some(last) if i.start_ms <= last.end_ms => last.end_ms = last.end_ms.max(i.end_ms),
                _ => joined.push(i),
            }
        }
        Ok(Intervals(joined))
    }
}

impl Default for Intervals {
    fn default() -> Self {
        Intervals(vec![Interval::ETERNITY])
    }
}

/// The `context` of a query. Fields that change execution are typed; everything else is kept
/// and ignored (Druid accepts arbitrary context keys).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryContext {
    /// Milliseconds; 0 means none.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub timeout: Option<u64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub priority: Option<i64>,
    #[serde(default)]
    pub query_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub use_cache: Option<bool>,
    #[serde(default)]
    pub lane: Option<String>,
    /// Timeseries: leave out buckets without rows.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub skip_empty_buckets: Option<bool>,
    /// topN: the fewest groups each segment keeps (default 1,000; raise it for more accuracy).
    #[serde(default, deserialize_with = "lenient_u64")]
    pub min_top_n_threshold: Option<u64>,
    /// groupBy: the most groups a query may build (default [`MAX_GROUPS_DEFAULT`]).
    #[serde(default, deserialize_with = "lenient_u64")]
    pub max_results: Option<u64>,
    /// Scan: the most rows it may return (default `QueryLimits::scan_rows_max`).
    #[serde(default, deserialize_with = "lenient_u64")]
    pub max_scan_rows: Option<u64>,
    /// Time-ordered scan: the most rows it may hold to order them, its offset + limit
    /// (Druid's; default `QueryLimits::rows_queued_for_ordering_max`).
    #[serde(default, deserialize_with = "lenient_u64")]
    pub max_rows_queued_for_ordering: Option<u64>,
    /// Time-ordered scan past `maxRowsQueuedForOrdering`: the most segments one time chunk
    /// may have (Druid's; default 50).
    #[serde(default, deserialize_with = "lenient_u64")]
    pub max_segment_partitions_ordered_in_memory: Option<u64>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// Context flags Druid honours that change an answer's content or shape, with the value that
/// needs no work (Druid's default); any other value is refused.
const CONTEXT_DEFAULTS: &[(&str, bool)] = &[
    ("finalize", true),
    ("serializeDateTimeAsLong", false),
    ("serializeDateTimeAsLongInner", false),
    ("grandTotal", false),
    ("sortByDimsFirst", false),
    ("resultAsArray", false),
];

impl QueryContext {
    /// Refuses context flags that would change the answer in a way Grove does not implement.
    pub fn check(&self) -> Result<()> {
        for (key, default) in CONTEXT_DEFAULTS {
            let Some(value) = self.other.get(*key) else {
                continue;
            };
            let set = value
                .as_bool()
                .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()));
            match set {
                None if value.is_null() => {}
                None => {
                    return Err(QueryError::bad(format!(
                        "malformed query at 'context.{key}': expected a boolean, got {value}"
                    )));
                }
                Some(v) if v == *default => {}
                Some(v) => {
                    return Err(QueryError::unsupported(format!(
                        "context.{key} = {v} is not supported by Grove (it would change the \
                         answer; leave it {default})"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// How many groups a groupBy may hold before it fails with a resource-limit error.
pub const MAX_GROUPS_DEFAULT: u64 = 5_000_000;

fn lenient<'de, D: Deserializer<'de>, T>(
    d: D,
    parse: impl Fn(&serde_json::Value) -> Option<T>,
    what: &str,
) -> std::result::Result<Option<T>, D::Error> {
    use serde::de::Error;
    let v = Option::<serde_json::Value>::deserialize(d)?;
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => parse(&v)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("expected {what}, got {v}"))),
    }
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
    lenient(
        d,
        |v| v.as_u64().or_else(|| v.as_str()?.trim().parse().ok()),
        "a non-negative integer",
    )
}

fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<i64>, D::Error> {
    lenient(
        d,
        |v| v.as_i64().or_else(|| v.as_str()?.trim().parse().ok()),
        "an integer",
    )
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<bool>, D::Error> {
    lenient(
        d,
        |v| v.as_bool().or_else(|| v.as_str()?.trim().parse().ok()),
        "a boolean",
    )
}

/// A virtual column: a column computed per query. Druid's `expression` type, plus the columns
/// Grove derives itself from extraction dimension specs and filters (never read from JSON).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum VirtualColumnSpec {
    #[serde(rename_all = "camelCase")]
    Expression {
        name: String,
        expression: String,
        #[serde(default)]
        output_type: Option<String>,
    },
    /// `dimension`'s values through an extraction function (a string column).
    #[serde(skip_deserializing)]
    Extraction {
        name: String,
        dimension: String,
        extraction_fn: ExtractionFn,
    },
}

impl VirtualColumnSpec {
    pub fn name(&self) -> &str {
        match self {
            VirtualColumnSpec::Expression { name, .. }
            | VirtualColumnSpec::Extraction { name, .. } => name,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeseries {
    pub data_source: DataSource,
    #[serde(default)]
    pub intervals: Intervals,
    #[serde(default = "granularity_all")]
    pub granularity: QueryGranularity,
    #[serde(default)]
    pub filter: Option<Filter>,
    #[serde(default)]
    pub aggregations: Vec<Aggregator>,
    #[serde(default)]
    pub post_aggregations: Vec<PostAggregator>,
    #[serde(default)]
    pub descending: bool,
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub virtual_columns: Vec<VirtualColumnSpec>,
    #[serde(default)]
    pub context: QueryContext,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopN {
    pub data_source: DataSource,
    #[serde(default)]
    pub intervals: Intervals,
    #[serde(default = "granularity_all")]
    pub granularity: QueryGranularity,
    #[serde(default)]
    pub filter: Option<Filter>,
    pub dimension: DimensionSpec,
    pub metric: TopNMetric,
    pub threshold: usize,
    #[serde(default)]
    pub aggregations: Vec<Aggregator>,
    #[serde(default)]
    pub post_aggregations: Vec<PostAggregator>,
    #[serde(default)]
    pub virtual_columns: Vec<VirtualColumnSpec>,
    #[serde(default)]
    pub context: QueryContext,
}

/// How topN ranks: by a metric (aggregator or post-aggregator output), by the dimension value,
/// or the inverse of either.
#[derive(Clone, Debug, PartialEq)]
pub enum TopNMetric {
    Numeric(String),
    Dimension {
        ordering: Ordering,
        previous_stop: Option<String>,
    },
    Inverted(Box<TopNMetric>),
}

impl<'de> Deserialize<'de> for TopNMetric {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Name(String),
            Object(Object),
        }
        #[derive(Deserialize)]
        #[serde(tag = "type", rename_all = "camelCase")]
        enum Object {
            Numeric {
                metric: String,
            },
            #[serde(alias = "lexicographic", alias = "alphaNumeric")]
            #[serde(rename_all = "camelCase")]
            Dimension {
                #[serde(default)]
                ordering: Option<Ordering>,
                #[serde(default)]
                previous_stop: Option<String>,
            },
            Inverted {
                metric: Box<TopNMetric>,
            },
        }
        match Form::deserialize(d).map_err(|_| {
            D::Error::custom(
                "topN metric must be a name or an object of type numeric, dimension or inverted",
            )
        })? {
            Form::Name(n) => Ok(TopNMetric::Numeric(n)),
            Form::Object(Object::Numeric { metric }) => Ok(TopNMetric::Numeric(metric)),
            Form::Object(Object::Dimension {
                ordering,
                previous_stop,
            }) => Ok(TopNMetric::Dimension {
                ordering: ordering.unwrap_or(Ordering::Lexicographic),
                previous_stop,
            }),
            Form::Object(Object::Inverted { metric }) => Ok(TopNMetric::Inverted(metric)),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupBy {
    pub data_source: DataSource,
    #[serde(default)]
    pub intervals: Intervals,
    #[serde(default = "granularity_all")]
    pub granularity: QueryGranularity,
    #[serde(default)]
    pub filter: Option<Filter>,
    #[serde(default)]
    pub dimensions: Vec<DimensionSpec>,
    #[serde(default)]
    pub aggregations: Vec<Aggregator>,
    #[serde(default)]
    pub post_aggregations: Vec<PostAggregator>,
    #[serde(default)]
    pub having: Option<Having>,
    #[serde(default)]
    pub limit_spec: Option<LimitSpec>,
    #[serde(default)]
    pub subtotals_spec: Option<Vec<Vec<String>>>,
    #[serde(default)]
    pub virtual_columns: Vec<VirtualColumnSpec>,
    #[serde(default)]
    pub context: QueryContext,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scan {
    pub data_source: DataSource,
    #[serde(default)]
    pub intervals: Intervals,
    #[serde(default)]
    pub filter: Option<Filter>,
    /// Empty: every column.
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub offset: Option<u64>,
    #[serde(default)]
    pub order: Option<ScanOrder>,
    /// Druid's newer spelling of `order`: `[{"columnName": "__time", "order": "descending"}]`;
    /// [`Query::parse`] folds it into `order` (ordering by other columns is refused).
    #[serde(default)]
    pub order_by: Option<Vec<ScanOrderBy>>,
    #[serde(default)]
    pub result_format: Option<String>,
    #[serde(default)]
    pub batch_size: Option<u64>,
    #[serde(default)]
    pub legacy: Option<bool>,
    #[serde(default)]
    pub column_types: Option<serde_json::Value>,
    #[serde(default)]
    pub virtual_columns: Vec<VirtualColumnSpec>,
    #[serde(default)]
    pub context: QueryContext,
}

/// One key of a scan's `orderBy`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanOrderBy {
    pub column_name: String,
    #[serde(default)]
    pub order: Option<ScanOrder>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ScanOrder {
    None,
    Ascending,
    Descending,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Search {
    pub data_source: DataSource,
    #[serde(default)]
    pub intervals: Intervals,
    #[serde(default = "granularity_all")]
    pub granularity: QueryGranularity,
    #[serde(default)]
    pub filter: Option<Filter>,
    /// Empty: every string dimension.
    #[serde(default)]
    pub search_dimensions: Vec<DimensionSpec>,
    pub query: SearchSpec,
    #[serde(default)]
    pub sort: Option<SearchSort>,
    #[serde(default = "search_limit")]
    pub limit: usize,
    #[serde(default)]
    pub virtual_columns: Vec<VirtualColumnSpec>,
    #[serde(default)]
    pub context: QueryContext,
}

fn search_limit() -> usize {
    1000
}

/// What a search query matches: Druid's search query spec (the model `search` filters share).
pub use grove_segment::filter::SearchQuerySpec as SearchSpec;

#[derive(Clone, Debug, Deserialize)]
pub struct SearchSort {
    #[serde(rename = "type")]
    pub ordering: Ordering,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeBoundary {
    pub data_source: DataSource,
    #[serde(default)]
    pub intervals: Intervals,
    #[serde(default)]
    pub bound: Option<String>,
    #[serde(default)]
    pub filter: Option<Filter>,
    #[serde(default)]
    pub virtual_columns: Vec<VirtualColumnSpec>,
    #[serde(default)]
    pub context: QueryContext,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentMetadata {
    pub data_source: DataSource,
    #[serde(default)]
    pub intervals: Intervals,
    #[serde(default)]
    pub to_include: Option<serde_json::Value>,
    #[serde(default)]
    pub merge: bool,
    #[serde(default)]
    pub analysis_types: Option<Vec<String>>,
    #[serde(default)]
    pub lenient_aggregator_merge: bool,
    #[serde(default)]
    pub aggregator_merge_strategy: Option<String>,
    #[serde(default)]
    pub virtual_columns: Vec<VirtualColumnSpec>,
    #[serde(default)]
    pub context: QueryContext,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataSourceMetadata {
    pub data_source: DataSource,
    #[serde(default)]
    pub intervals: Intervals,
    #[serde(default)]
    pub context: QueryContext,
}

fn granularity_all() -> QueryGranularity {
    QueryGranularity::ALL
}

/// A dimension to group on: `"name"`, `{"type":"default","dimension":..,"outputName":..}` or
/// `{"type":"extraction",...,"extractionFn":...}`.
#[derive(Clone, Debug, PartialEq)]
pub struct DimensionSpec {
    /// The input column (for an extraction spec, after [`Query::parse`]: the virtual column
    /// holding the extracted values).
    pub dimension: String,
    pub output_name: String,
    pub output_type: OutputType,
    /// An `extraction` spec's function (applied through a virtual column).
    pub extraction_fn: Option<ExtractionFn>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum OutputType {
    String,
    Long,
    Float,
    Double,
}

/// Dimension spec types Druid has and Grove refuses (they filter or look values up).
const REFUSED_DIMENSION_SPECS: &[&str] =
    &["listFiltered", "regexFiltered", "prefixFiltered", "lookup"];

impl<'de> Deserialize<'de> for DimensionSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Object {
            #[serde(rename = "type", default)]
            kind: Option<String>,
            dimension: String,
            #[serde(default)]
            output_name: Option<String>,
            #[serde(default)]
            output_type: Option<OutputType>,
            #[serde(default)]
            extraction_fn: Option<ExtractionFn>,
        }
        let value = serde_json::Value::deserialize(d)?;
        let object = match value {
            serde_json::Value::String(n) => {
                return Ok(DimensionSpec {
                    output_name: n.clone(),
                    dimension: n,
                    output_type: OutputType::String,
                    extraction_fn: None,
                });
            }
            serde_json::Value::Object(o) => o,
            other => {
                return Err(D::Error::custom(format!(
                    "a dimension must be a name or a dimension spec object, got {other}"
                )));
            }
        };
        match object.get("type").and_then(serde_json::Value::as_str) {
            Some(kind) if REFUSED_DIMENSION_SPECS.contains(&kind) => {
                return Err(D::Error::custom(format!(
                    "dimension spec type '{kind}' is not supported by Grove (use default or \
                     extraction, and a filter)"
                )));
            }
            _ => {}
        }
        let o: Object =
            serde_json::from_value(serde_json::Value::Object(object)).map_err(D::Error::custom)?;
        let extraction_fn = match (o.kind.as_deref(), o.extraction_fn) {
            (None | Some("default"), _) => None,
            (Some("extraction"), Some(f)) => Some(f),
            (Some("extraction"), None) => {
                return Err(D::Error::custom(
                    "an extraction dimension spec needs an extractionFn",
                ));
            }
            (Some(kind), _) => {
                return Err(D::Error::custom(format!(
                    "dimension spec type '{kind}' is not supported (default or extraction)"
                )));
            }
        };
        Ok(DimensionSpec {
            output_name: o.output_name.unwrap_or_else(|| o.dimension.clone()),
            dimension: o.dimension,
            output_type: o.output_type.unwrap_or(OutputType::String),
            extraction_fn,
        })
    }
}

/// String orderings of topN dimension metrics, limit specs and search results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Ordering {
    #[default]
    Lexicographic,
    Alphanumeric,
    Numeric,
    Strlen,
}

impl<'de> Deserialize<'de> for Ordering {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Name(String),
            Object {
                #[serde(rename = "type")]
                kind: String,
            },
        }
        let name = match Form::deserialize(d)? {
            Form::Name(n) => n,
            Form::Object { kind } => kind,
        };
        match name.to_ascii_lowercase().as_str() {
            "lexicographic" => Ok(Ordering::Lexicographic),
            "alphanumeric" => Ok(Ordering::Alphanumeric),
            "numeric" => Ok(Ordering::Numeric),
            "strlen" => Ok(Ordering::Strlen),
            _ => Err(D::Error::custom(format!(
                "unknown ordering '{name}' (lexicographic, alphanumeric, numeric, strlen)"
            ))),
        }
    }
}

/// An aggregator. `float*` aggregators compute in `f64` and are reported as doubles.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Aggregator {
    Count {
        name: String,
    },
    #[serde(rename_all = "camelCase")]
    LongSum {
        name: String,
        /// The input column; empty when `expression` is given instead.
        #[serde(default)]
        field_name: String,
        /// An inline expression instead of `fieldName` (read through a virtual column).
        #[serde(default)]
        expression: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    LongMin {
        name: String,
        /// The input column; empty when `expression` is given instead.
        #[serde(default)]
        field_name: String,
        /// An inline expression instead of `fieldName` (read through a virtual column).
        #[serde(default)]
        expression: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    LongMax {
        name: String,
        /// The input column; empty when `expression` is given instead.
        #[serde(default)]
        field_name: String,
        /// An inline expression instead of `fieldName` (read through a virtual column).
        #[serde(default)]
        expression: Option<String>,
    },
    #[serde(rename_all = "camelCase", alias = "floatSum")]
    DoubleSum {
        name: String,
        /// The input column; empty when `expression` is given instead.
        #[serde(default)]
        field_name: String,
        /// An inline expression instead of `fieldName` (read through a virtual column).
        #[serde(default)]
        expression: Option<String>,
    },
    #[serde(rename_all = "camelCase", alias = "floatMin", alias = "min")]
    DoubleMin {
        name: String,
        /// The input column; empty when `expression` is given instead.
        #[serde(default)]
        field_name: String,
        /// An inline expression instead of `fieldName` (read through a virtual column).
        #[serde(default)]
        expression: Option<String>,
    },
    #[serde(rename_all = "camelCase", alias = "floatMax", alias = "max")]
    DoubleMax {
        name: String,
        /// The input column; empty when `expression` is given instead.
        #[serde(default)]
        field_name: String,
        /// An inline expression instead of `fieldName` (read through a virtual column).
        #[serde(default)]
        expression: Option<String>,
    },
    /// `longAny` reads as `longFirst`: the earliest row's value is one of "any" values.
    #[serde(rename_all = "camelCase", alias = "longAny")]
    LongFirst {
        name: String,
        field_name: String,
        #[serde(default)]
        time_column: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    LongLast {
        name: String,
        field_name: String,
        #[serde(default)]
        time_column: Option<String>,
    },
    #[serde(
        rename_all = "camelCase",
        alias = "floatFirst",
        alias = "doubleAny",
        alias = "floatAny"
    )]
    DoubleFirst {
        name: String,
        field_name: String,
        #[serde(default)]
        time_column: Option<String>,
    },
    #[serde(rename_all = "camelCase", alias = "floatLast")]
    DoubleLast {
        name: String,
        field_name: String,
        #[serde(default)]
        time_column: Option<String>,
    },
    #[serde(rename_all = "camelCase", alias = "stringAny")]
    StringFirst {
        name: String,
        field_name: String,
        #[serde(default)]
        time_column: Option<String>,
        #[serde(default)]
        max_string_bytes: Option<usize>,
    },
    #[serde(rename_all = "camelCase")]
    StringLast {
        name: String,
        field_name: String,
        #[serde(default)]
        time_column: Option<String>,
        #[serde(default)]
        max_string_bytes: Option<usize>,
    },
    Filtered {
        #[serde(default)]
        name: Option<String>,
        filter: Filter,
        aggregator: Box<Aggregator>,
    },
    /// Distinct count of dimension values (or of value tuples with `byRow`) with an HLL sketch
    /// built at query time.
    #[serde(rename_all = "camelCase")]
    Cardinality {
        name: String,
        /// The dimensions (Druid's legacy `fieldNames`, a list of names, is read into it).
        #[serde(default, alias = "fieldNames")]
        fields: Vec<DimensionSpec>,
        #[serde(default)]
        by_row: bool,
        #[serde(default)]
        round: bool,
    },
    /// Merges the HLL sketches stored in a metric column (Druid's `hyperUnique` over a
    /// `hyperUnique` metric; in Grove sketch metrics are DataSketches HLL).
    #[serde(rename_all = "camelCase")]
    HyperUnique {
        name: String,
        field_name: String,
        #[serde(default)]
        is_input_hyper_unique: bool,
        #[serde(default)]
        round: bool,
    },
    /// Builds an HLL sketch of a dimension's values at query time.
    #[serde(rename = "HLLSketchBuild", rename_all = "camelCase")]
    HllSketchBuild {
        name: String,
        field_name: String,
        #[serde(default)]
        lg_k: Option<u8>,
        #[serde(default)]
        tgt_hll_type: Option<String>,
        #[serde(default)]
        round: bool,
        #[serde(default)]
        string_encoding: Option<String>,
        #[serde(default)]
        should_finalize: Option<bool>,
    },
    /// Merges HLL sketches stored in a metric column.
    #[serde(rename = "HLLSketchMerge", rename_all = "camelCase")]
    HllSketchMerge {
        name: String,
        field_name: String,
        #[serde(default)]
        lg_k: Option<u8>,
        #[serde(default)]
        tgt_hll_type: Option<String>,
        #[serde(default)]
        round: bool,
        #[serde(default)]
        should_finalize: Option<bool>,
    },
}

impl Aggregator {
    /// The output name.
    pub fn name(&self) -> &str {
        match self {
            Aggregator::Count { name }
            | Aggregator::LongSum { name, .. }
            | Aggregator::LongMin { name, .. }
            | Aggregator::LongMax { name, .. }
            | Aggregator::DoubleSum { name, .. }
            | Aggregator::DoubleMin { name, .. }
            | Aggregator::DoubleMax { name, .. }
            | Aggregator::LongFirst { name, .. }
            | Aggregator::LongLast { name, .. }
            | Aggregator::DoubleFirst { name, .. }
            | Aggregator::DoubleLast { name, .. }
            | Aggregator::StringFirst { name, .. }
            | Aggregator::StringLast { name, .. }
            | Aggregator::Cardinality { name, .. }
            | Aggregator::HyperUnique { name, .. }
            | Aggregator::HllSketchBuild { name, .. }
            | Aggregator::HllSketchMerge { name, .. } => name,
            Aggregator::Filtered {
                name, aggregator, ..
            } => name.as_deref().unwrap_or_else(|| aggregator.name()),
        }
    }
}

/// A post-aggregator: computed per result row from aggregator outputs.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum PostAggregator {
    Arithmetic {
        name: String,
        #[serde(rename = "fn")]
        function: String,
        fields: Vec<PostAggregator>,
        #[serde(default)]
        ordering: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    FieldAccess {
        #[serde(default)]
        name: Option<String>,
        field_name: String,
    },
    #[serde(rename_all = "camelCase")]
    FinalizingFieldAccess {
        #[serde(default)]
        name: Option<String>,
        field_name: String,
    },
    Constant {
        name: String,
        value: serde_json::Number,
    },
    #[serde(rename_all = "camelCase")]
    HyperUniqueCardinality {
        #[serde(default)]
        name: Option<String>,
        field_name: String,
    },
    #[serde(rename = "HLLSketchEstimate")]
    HllSketchEstimate {
        name: String,
        field: Box<PostAggregator>,
        #[serde(default)]
        round: bool,
    },
    DoubleGreatest {
        name: String,
        fields: Vec<PostAggregator>,
    },
    DoubleLeast {
        name: String,
        fields: Vec<PostAggregator>,
    },
    LongGreatest {
        name: String,
        fields: Vec<PostAggregator>,
    },
    LongLeast {
        name: String,
        fields: Vec<PostAggregator>,
    },
    /// A Druid expression over the row's aggregators, post-aggregators and dimensions.
    #[serde(rename_all = "camelCase")]
    Expression {
        name: String,
        expression: CompiledExpression,
        #[serde(default)]
        ordering: Option<String>,
        #[serde(default)]
        output_type: Option<String>,
    },
}

/// An expression compiled when the query is parsed (errors name it at parse time).
#[derive(Clone, Debug)]
pub struct CompiledExpression(pub crate::expr::Expr);

impl PartialEq for CompiledExpression {
    fn eq(&self, other: &Self) -> bool {
        self.0.text() == other.0.text()
    }
}

impl<'de> Deserialize<'de> for CompiledExpression {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let text = String::deserialize(d)?;
        crate::expr::Expr::compile(&text)
            .map(CompiledExpression)
            .map_err(|e| D::Error::custom(e.message))
    }
}

impl PostAggregator {
    pub fn name(&self) -> &str {
        match self {
            PostAggregator::Arithmetic { name, .. }
            | PostAggregator::Constant { name, .. }
            | PostAggregator::HllSketchEstimate { name, .. }
            | PostAggregator::DoubleGreatest { name, .. }
            | PostAggregator::DoubleLeast { name, .. }
            | PostAggregator::LongGreatest { name, .. }
            | PostAggregator::LongLeast { name, .. }
            | PostAggregator::Expression { name, .. } => name,
            PostAggregator::FieldAccess { name, field_name }
            | PostAggregator::FinalizingFieldAccess { name, field_name }
            | PostAggregator::HyperUniqueCardinality { name, field_name } => {
                name.as_deref().unwrap_or(field_name)
            }
        }
    }
}

/// groupBy's `limitSpec`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitSpec {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub columns: Vec<OrderByColumn>,
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub offset: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OrderByColumn {
    pub dimension: String,
    pub descending: bool,
    pub ordering: Ordering,
}

impl<'de> Deserialize<'de> for OrderByColumn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Name(String),
            Object(Object),
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Object {
            dimension: String,
            #[serde(default)]
            direction: Option<String>,
            #[serde(default)]
            dimension_order: Option<Ordering>,
        }
        match Form::deserialize(d)? {
            Form::Name(dimension) => Ok(OrderByColumn {
                dimension,
                descending: false,
                ordering: Ordering::Lexicographic,
            }),
            Form::Object(o) => {
                let descending = match o.direction.as_deref().map(str::to_ascii_lowercase) {
                    None => false,
                    Some(d) if d == "ascending" || d == "asc" => false,
                    Some(d) if d == "descending" || d == "desc" => true,
                    Some(d) => {
                        return Err(D::Error::custom(format!(
                            "unknown direction '{d}' (ascending or descending)"
                        )));
                    }
                };
                Ok(OrderByColumn {
                    dimension: o.dimension,
                    descending,
                    ordering: o.dimension_order.unwrap_or_default(),
                })
            }
        }
    }
}

/// groupBy's `having`: evaluated on result rows (after post-aggregators).
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Having {
    #[serde(rename_all = "camelCase")]
    GreaterThan { aggregation: String, value: f64 },
    #[serde(rename_all = "camelCase")]
    LessThan { aggregation: String, value: f64 },
    #[serde(rename_all = "camelCase")]
    EqualTo { aggregation: String, value: f64 },
    #[serde(rename_all = "camelCase")]
    DimSelector {
        dimension: String,
        #[serde(default)]
        value: Option<String>,
        #[serde(default)]
        extraction_fn: Option<ExtractionFn>,
    },
    /// A native filter over the result row's columns.
    Filter { filter: Filter },
    And {
        #[serde(rename = "havingSpecs")]
        having_specs: Vec<Having>,
    },
    Or {
        #[serde(rename = "havingSpecs")]
        having_specs: Vec<Having>,
    },
    Not {
        #[serde(rename = "havingSpec")]
        having_spec: Box<Having>,
    },
}
