//! SQL: parsed with `sqlparser`, planned into a Druid native query, run by [`crate::run_native`]
//! and shaped into rows. System tables (`INFORMATION_SCHEMA.TABLES`, `INFORMATION_SCHEMA.COLUMNS`,
//! `sys.segments`) are answered from the [`Catalog`].

use serde::{Deserialize, Serialize};

use crate::{QueryControl, QueryError, Result, SegmentProvider};

/// What SQL can see: tables (datasources) with their columns, and segments for `sys.segments`.
pub trait Catalog: Send + Sync {
    /// Every datasource, sorted by name.
    fn tables(&self) -> Vec<TableInfo>;
    /// Every used segment, for `sys.segments`.
    fn segments(&self) -> Vec<SegmentInfo>;
}

#[derive(Clone, Debug, PartialEq)]
pub struct TableInfo {
    pub name: String,
    /// `__time` first, then dimensions, then metrics.
    pub columns: Vec<ColumnInfo>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ColumnInfo {
    pub name: String,
    pub sql_type: SqlType,
}

/// SQL column types as Druid reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SqlType {
    Timestamp,
    Varchar,
    Bigint,
    Double,
    /// A complex column (e.g. `COMPLEX<HLLSketch>`), named as Druid names it.
    Other(String),
}

/// One row of `sys.segments`.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentInfo {
    pub segment_id: String,
    pub datasource: String,
    /// ISO-8601.
    pub start: String,
    pub end: String,
    pub version: String,
    pub partition_num: i64,
    pub num_rows: i64,
    pub size: i64,
    pub is_published: bool,
    pub is_available: bool,
}

/// A SQL request as `POST /druid/v2/sql` carries it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SqlRequest {
    pub query: String,
    #[serde(default)]
    pub parameters: Vec<SqlParameter>,
    #[serde(default)]
    pub context: serde_json::Map<String, serde_json::Value>,
}

/// A `?` parameter: `{"type": "VARCHAR", "value": "x"}`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct SqlParameter {
    #[serde(rename = "type")]
    pub sql_type: String,
    pub value: serde_json::Value,
}

/// A SQL result: column names and types, and rows of JSON values in column order.
#[derive(Clone, Debug, PartialEq)]
pub struct SqlResult {
    pub columns: Vec<ColumnInfo>,
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// Plans and runs `request`.
pub fn execute(
    request: &SqlRequest,
    catalog: &dyn Catalog,
    provider: &dyn SegmentProvider,
    control: &dyn QueryControl,
) -> Result<SqlResult> {
    let _ = (request, catalog, provider, control);
    Err(QueryError::unsupported("the SQL planner is being built"))
}
