//! System tables answered from the [`Catalog`]: `INFORMATION_SCHEMA.SCHEMATA`,
//! `INFORMATION_SCHEMA.TABLES`,
//! `INFORMATION_SCHEMA.COLUMNS` and `sys.segments`.
//!
//! A query over a system table is planned into a [`SystemPlan`]: the `WHERE` clause is translated
//! by the same code as for datasources (into a native filter JSON, [`super::filter`]) and
//! evaluated here row by row with SQL's three-valued logic; projection is columns, a single
//! `COUNT(*)` or `COUNT(*) <comparison> n` (SQLAlchemy's `has_table`); `ORDER BY` columns, `LIMIT` and `OFFSET`. Grouping is refused.

use std::cmp::Ordering;

use serde_json::{Value, json};
use sqlparser::ast::{BinaryOperator, Expr, FunctionArgExpr, FunctionArguments};

use super::clauses::{DRUID_SCHEMA, SelectQuery, item_reference};
use super::filter::{self, Kind, Operand, Operands};
use super::{Catalog, ColumnInfo, SqlResult, SqlType};
use crate::{QueryError, Result};

/// A system table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemTable {
    Schemata,
    Tables,
    Columns,
    Segments,
}

const ALL: [SystemTable; 4] = [
    SystemTable::Schemata,
    SystemTable::Columns,
    SystemTable::Tables,
    SystemTable::Segments,
];

impl SystemTable {
    /// The system table `schema.table` names; schema and table match case-insensitively.
    pub(crate) fn named(schema: &str, table: &str) -> Option<SystemTable> {
        ALL.into_iter().find(|t| {
            t.schema().eq_ignore_ascii_case(schema) && t.name().eq_ignore_ascii_case(table)
        })
    }

    pub fn schema(self) -> &'static str {
        match self {
            SystemTable::Schemata | SystemTable::Tables | SystemTable::Columns => {
                "INFORMATION_SCHEMA"
            }
            SystemTable::Segments => "sys",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SystemTable::Schemata => "SCHEMATA",
            SystemTable::Tables => "TABLES",
            SystemTable::Columns => "COLUMNS",
            SystemTable::Segments => "segments",
        }
    }

    /// The table's columns, in Druid's order.
    pub fn columns(self) -> Vec<ColumnInfo> {
        use SqlType::{Bigint, Varchar};
        let names: &[(&str, SqlType)] = match self {
            SystemTable::Schemata => &[
                ("CATALOG_NAME", Varchar),
                ("SCHEMA_NAME", Varchar),
                ("SCHEMA_OWNER", Varchar),
                ("DEFAULT_CHARACTER_SET_CATALOG", Varchar),
                ("DEFAULT_CHARACTER_SET_SCHEMA", Varchar),
                ("DEFAULT_CHARACTER_SET_NAME", Varchar),
                ("SQL_PATH", Varchar),
            ],
            SystemTable::Tables => &[
                ("TABLE_CATALOG", Varchar),
                ("TABLE_SCHEMA", Varchar),
                ("TABLE_NAME", Varchar),
                ("TABLE_TYPE", Varchar),
                ("IS_JOINABLE", Varchar),
                ("IS_BROADCAST", Varchar),
            ],
            SystemTable::Columns => &[
                ("TABLE_CATALOG", Varchar),
                ("TABLE_SCHEMA", Varchar),
                ("TABLE_NAME", Varchar),
                ("COLUMN_NAME", Varchar),
                ("ORDINAL_POSITION", Bigint),
                ("COLUMN_DEFAULT", Varchar),
                ("IS_NULLABLE", Varchar),
                ("DATA_TYPE", Varchar),
                ("JDBC_TYPE", Bigint),
            ],
            SystemTable::Segments => &[
                ("segment_id", Varchar),
                ("datasource", Varchar),
                ("start", Varchar),
                ("end", Varchar),
                ("size", Bigint),
                ("version", Varchar),
                ("partition_num", Bigint),
                ("num_rows", Bigint),
                ("is_published", Bigint),
                ("is_available", Bigint),
            ],
        };
        names
            .iter()
            .map(|(name, sql_type)| ColumnInfo {
                name: name.to_string(),
                sql_type: sql_type.clone(),
            })
            .collect()
    }

    /// The table's rows, read from `catalog`, in [`SystemTable::columns`] order.
    pub fn rows(self, catalog: &dyn Catalog) -> Vec<Vec<Value>> {
        match self {
            SystemTable::Schemata => [DRUID_SCHEMA, "INFORMATION_SCHEMA", "sys"]
                .into_iter()
                .map(|schema| {
                    let mut row = vec![json!(DRUID_SCHEMA), json!(schema)];
                    row.extend(std::iter::repeat_n(Value::Null, 5));
                    row
                })
                .collect(),
            SystemTable::Tables => {
                let datasources = catalog
                    .tables()
                    .into_iter()
                    .map(|t| (DRUID_SCHEMA, t.name, "TABLE"));
                let system = ALL
                    .into_iter()
                    .map(|t| (t.schema(), t.name().to_string(), "SYSTEM_TABLE"));
                datasources
                    .chain(system)
                    .map(|(schema, name, kind)| {
                        vec![
                            json!(DRUID_SCHEMA),
                            json!(schema),
                            json!(name),
                            json!(kind),
                            json!("NO"),
                            json!("NO"),
                        ]
                    })
                    .collect()
            }
            SystemTable::Columns => {
                let datasources = catalog
                    .tables()
                    .into_iter()
                    .map(|t| (DRUID_SCHEMA, t.name, t.columns));
                let system = ALL
                    .into_iter()
                    .map(|t| (t.schema(), t.name().to_string(), t.columns()));
                let mut rows = Vec::new();
                for (schema, table, columns) in datasources.chain(system) {
                    for (position, column) in columns.iter().enumerate() {
                        let (nullable, jdbc_type) = match &column.sql_type {
                            SqlType::Timestamp => ("NO", 93),
                            SqlType::Varchar => ("YES", 12),
                            SqlType::Bigint => ("YES", -5),
                            SqlType::Double => ("YES", 8),
                            SqlType::Other(_) => ("YES", 1111),
                        };
                        rows.push(vec![
                            json!(DRUID_SCHEMA),
                            json!(schema),
                            json!(table),
                            json!(column.name),
                            json!(position + 1),
                            Value::Null,
                            json!(nullable),
                            json!(column.sql_type.name()),
                            json!(jdbc_type),
                        ]);
                    }
                }
                rows
            }
            SystemTable::Segments => catalog
                .segments()
                .into_iter()
                .map(|s| {
                    vec![
                        json!(s.segment_id),
                        json!(s.datasource),
                        json!(s.start),
                        json!(s.end),
                        json!(s.size),
                        json!(s.version),
                        json!(s.partition_num),
                        json!(s.num_rows),
                        json!(s.is_published as i64),
                        json!(s.is_available as i64),
                    ]
                })
                .collect(),
        }
    }
}

/// A query over a system table.
#[derive(Clone, Debug, PartialEq)]
pub struct SystemPlan {
    pub table: SystemTable,
    pub columns: Vec<ColumnInfo>,
    /// Per output column, its index in [`SystemTable::columns`]; `None` for `COUNT(*)`.
    projection: Option<Vec<usize>>,
    /// `COUNT(*) <op> n` (as SQLAlchemy's `has_table` asks `COUNT(*) > 0`): the comparison
    /// applied to the count, output as a boolean.
    count_test: Option<(BinaryOperator, i64)>,
    /// The `WHERE` clause as a native filter over the table's column names.
    filter: Option<Value>,
    /// Sort keys: a column index and whether descending.
    order: Vec<(usize, bool)>,
    offset: u64,
    limit: Option<u64>,
}

fn unsupported<T>(construct: impl std::fmt::Display) -> Result<T> {
    Err(QueryError::unsupported(format!(
        "SQL: {construct} is not supported on system tables"
    )))
}

/// Finds a system table column: exact name first, then ignoring case.
fn find(columns: &[ColumnInfo], name: &str) -> Option<usize> {
    columns.iter().position(|c| c.name == name).or_else(|| {
        columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    })
}

struct SystemColumns<'q, 'a> {
    query: &'q SelectQuery<'a>,
    columns: &'q [ColumnInfo],
}

impl SystemColumns<'_, '_> {
    /// The index of the column `expr` names, `None` if `expr` is not a column reference.
    fn index(&self, expr: &Expr) -> Result<Option<usize>> {
        match self.query.column_name(expr)? {
            None => Ok(None),
            Some(name) => find(self.columns, name)
                .map(Some)
                .ok_or_else(|| QueryError::bad(format!("Column '{name}' not found in any table"))),
        }
    }
}

impl Operands for SystemColumns<'_, '_> {
    fn operand(&mut self, expr: &Expr) -> Result<Operand> {
        match self.index(expr)? {
            Some(index) => Ok(Operand {
                name: self.columns[index].name.clone(),
                kind: Kind::of(&self.columns[index].sql_type),
            }),
            None => unsupported(format!("the condition operand {expr}")),
        }
    }

    fn in_lists(&self) -> &[Vec<super::value::Literal>] {
        self.query.in_lists
    }
}

pub(crate) fn plan(table: SystemTable, query: &SelectQuery<'_>) -> Result<SystemPlan> {
    if !query.group_by.is_empty() || query.having.is_some() || query.distinct {
        return unsupported("GROUP BY, HAVING or DISTINCT");
    }
    let table_columns = table.columns();
    let mut resolver = SystemColumns {
        query,
        columns: &table_columns,
    };
    let items = query.items(&table_columns)?;
    let mut count_test = None;
    let (columns, projection) = match items.as_slice() {
        [item] if is_count_star(&item.expr) => (
            vec![ColumnInfo {
                name: item.name.clone(),
                sql_type: SqlType::Bigint,
            }],
            None,
        ),
        [item] if count_comparison(&item.expr)?.is_some() => {
            count_test = count_comparison(&item.expr)?;
            (
                vec![ColumnInfo {
                    name: item.name.clone(),
                    sql_type: SqlType::Other("BOOLEAN".into()),
                }],
                None,
            )
        }
        _ => {
            let mut columns = Vec::with_capacity(items.len());
            let mut projection = Vec::with_capacity(items.len());
            for item in &items {
                let Some(index) = resolver.index(&item.expr)? else {
                    return unsupported(format!(
                        "{} (select columns or a single COUNT(*))",
                        item.expr
                    ));
                };
                columns.push(ColumnInfo {
                    name: item.name.clone(),
                    sql_type: table_columns[index].sql_type.clone(),
                });
                projection.push(index);
            }
            (columns, Some(projection))
        }
    };
    let filter = match query.selection {
        Some(condition) => Some(filter::filter(condition, &mut resolver)?),
        None => None,
    };
    let mut order = Vec::with_capacity(query.order_by.len());
    for key in &query.order_by {
        // ORDER BY: select-list aliases first.
        let by_item = item_reference(key.expr, &items, |_| false)?;
        let index = match (by_item, &projection) {
            (Some(item), Some(projection)) => Some(projection[item]),
            (Some(_), None) => None,
            (None, _) => resolver.index(key.expr)?,
        };
        match index {
            Some(index) => order.push((index, key.descending)),
            None => return unsupported(format!("ORDER BY {}", key.expr)),
        }
    }
    Ok(SystemPlan {
        table,
        columns,
        projection,
        count_test,
        filter,
        order,
        offset: query.offset,
        limit: query.limit,
    })
}

/// `COUNT(*) <comparison> <integer>`, as its operator and integer.
fn count_comparison(expr: &Expr) -> Result<Option<(BinaryOperator, i64)>> {
    let expr = match expr {
        Expr::Nested(inner) => inner.as_ref(),
        other => other,
    };
    let Expr::BinaryOp { left, op, right } = expr else {
        return Ok(None);
    };
    if !matches!(
        op,
        BinaryOperator::Gt
            | BinaryOperator::GtEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Eq
            | BinaryOperator::NotEq
    ) || !is_count_star(left)
    {
        return Ok(None);
    }
    match super::value::literal(right)? {
        Some(super::value::Literal::Long(n)) => Ok(Some((op.clone(), n))),
        _ => Ok(None),
    }
}

fn is_count_star(expr: &Expr) -> bool {
    let Expr::Function(function) = expr else {
        return false;
    };
    let FunctionArguments::List(list) = &function.args else {
        return false;
    };
    function.name.to_string().eq_ignore_ascii_case("COUNT")
        && function.over.is_none()
        && function.filter.is_none()
        && list.duplicate_treatment.is_none()
        && matches!(
            list.args.as_slice(),
            [sqlparser::ast::FunctionArg::Unnamed(
                FunctionArgExpr::Wildcard
            )]
        )
}

/// Runs a system table plan against the catalog.
pub(crate) fn run(plan: &SystemPlan, catalog: &dyn Catalog) -> Result<SqlResult> {
    let table_columns = plan.table.columns();
    let mut rows: Vec<Vec<Value>> = plan
        .table
        .rows(catalog)
        .into_iter()
        .filter(|row| {
            plan.filter
                .as_ref()
                .is_none_or(|f| evaluate(f, row, &table_columns) == Some(true))
        })
        .collect();
    let rows = match &plan.projection {
        None => {
            let count = rows.len() as i64;
            vec![vec![match &plan.count_test {
                None => json!(count),
                Some((op, n)) => json!(match op {
                    BinaryOperator::Gt => count > *n,
                    BinaryOperator::GtEq => count >= *n,
                    BinaryOperator::Lt => count < *n,
                    BinaryOperator::LtEq => count <= *n,
                    BinaryOperator::Eq => count == *n,
                    _ => count != *n,
                }),
            }]]
        }
        Some(projection) => {
            rows.sort_by(|a, b| {
                plan.order
                    .iter()
                    .map(|&(index, descending)| {
                        let ordering = compare(&a[index], &b[index]);
                        if descending {
                            ordering.reverse()
                        } else {
                            ordering
                        }
                    })
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal)
            });
            rows.into_iter()
                .map(|row| projection.iter().map(|&i| row[i].clone()).collect())
                .collect()
        }
    };
    let offset = usize::try_from(plan.offset).unwrap_or(usize::MAX);
    let limit = plan
        .limit
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    Ok(SqlResult {
        columns: plan.columns.clone(),
        rows: rows.into_iter().skip(offset).take(limit).collect(),
    })
}

/// SQL ordering of values: nulls first, numbers numerically, strings by code point.
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.total_cmp(&y)
        }
        _ => text(a).cmp(&text(b)),
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Evaluates a native filter (as [`filter::filter`] builds them) on one row: `Some(true)`,
/// `Some(false)` or `None` (unknown, a comparison with null).
fn evaluate(filter: &Value, row: &[Value], columns: &[ColumnInfo]) -> Option<bool> {
    let column = |key: &str| {
        let name = filter.get(key)?.as_str()?;
        find(columns, name).map(|index| &row[index])
    };
    match filter.get("type")?.as_str()? {
        kind @ ("and" | "or") => {
            // Kleene logic: a deciding value (false for AND, true for OR) wins over unknown.
            let deciding = kind == "or";
            let mut result = Some(!deciding);
            for field in filter.get("fields")?.as_array()? {
                match evaluate(field, row, columns) {
                    Some(b) if b == deciding => return Some(deciding),
                    Some(_) => {}
                    None => result = None,
                }
            }
            result
        }
        "not" => evaluate(filter.get("field")?, row, columns).map(|b| !b),
        "null" => Some(column("column")?.is_null()),
        "equals" => {
            let value = column("column")?;
            Some(compare_typed(value, filter.get("matchValue")?)? == Ordering::Equal)
        }
        "range" => {
            let value = column("column")?;
            let mut inside = Some(true);
            if let Some(lower) = filter.get("lower") {
                let open = filter.get("lowerOpen") == Some(&json!(true));
                let ordering = compare_typed(value, lower);
                inside = ordering.map(|o| o.is_gt() || (!open && o.is_eq()));
            }
            if inside == Some(true)
                && let Some(upper) = filter.get("upper")
            {
                let open = filter.get("upperOpen") == Some(&json!(true));
                let ordering = compare_typed(value, upper);
                inside = ordering.map(|o| o.is_lt() || (!open && o.is_eq()));
            }
            inside
        }
        "in" => {
            let value = column("dimension")?;
            let values = filter.get("values")?.as_array()?;
            if value.is_null() {
                return Some(values.iter().any(Value::is_null));
            }
            let value = text(value);
            Some(values.iter().any(|v| v.as_str() == Some(value.as_str())))
        }
        "like" => {
            let value = column("dimension")?;
            if value.is_null() {
                return None;
            }
            let pattern = filter.get("pattern")?.as_str()?;
            let escape = filter
                .get("escape")
                .and_then(Value::as_str)
                .and_then(|e| e.chars().next());
            Some(like(&text(value), pattern, escape))
        }
        _ => None,
    }
}

/// Compares a row value with a filter's match value: numerically when the match value is a
/// number, as text otherwise. `None` when the row value is null.
fn compare_typed(value: &Value, match_value: &Value) -> Option<Ordering> {
    if value.is_null() {
        return None;
    }
    match match_value {
        Value::Number(m) => {
            let v = match value {
                Value::Number(n) => n.as_f64()?,
                other => text(other).parse().ok()?,
            };
            Some(v.total_cmp(&m.as_f64()?))
        }
        other => Some(text(value).cmp(&text(other))),
    }
}

/// SQL `LIKE`: `%` any run of characters, `_` one character, `escape` quotes the next one.
/// Iterative, with one backtrack point (the last `%`), so it runs in O(text × pattern).
fn like(text: &str, pattern: &str, escape: Option<char>) -> bool {
    // Tokenize: Some(c) a literal, None for '_'; '%' as a separate marker.
    #[derive(Clone, Copy, PartialEq)]
    enum Token {
        Literal(char),
        One,
        Any,
    }
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            c if Some(c) == escape => Token::Literal(chars.next().unwrap_or(c)),
            '%' => Token::Any,
            '_' => Token::One,
            c => Token::Literal(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    let (mut t, mut p) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(Token::Any) => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(Token::One) => {
                t += 1;
                p += 1;
            }
            Some(Token::Literal(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            _ => match backtrack {
                Some((any, at)) => {
                    backtrack = Some((any, at + 1));
                    p = any + 1;
                    t = at + 1;
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(|token| *token == Token::Any)
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn like_matches_sql_patterns() {
        assert!(like("wikipedia", "wiki%", None));
        assert!(like("wikipedia", "%pedia", None));
        assert!(like("wikipedia", "w_k%a", None));
        assert!(!like("wikipedia", "wiki", None));
        assert!(like("", "%", None));
        assert!(!like("abc", "a_", None));
        assert!(like("50%", "50!%", Some('!')));
        assert!(!like("500", "50!%", Some('!')));
        assert!(like("aXbXc", "%X%X%", None));
    }
}
