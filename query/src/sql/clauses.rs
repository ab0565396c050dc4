//! The shape of a query Grove plans: one `SELECT` from one table, with `WHERE`, `GROUP BY`,
//! `HAVING`, `ORDER BY`, `LIMIT` and `OFFSET`. [`SelectQuery::from_statement`] refuses everything
//! else with an error naming the construct; the planners only see what this module lets through.
//! Also: resolving the table name, naming output columns (alias, column name, or `EXPR$n` as
//! Druid does) and resolving `ORDER BY`/`GROUP BY` ordinals and aliases.

use std::borrow::Cow;

use sqlparser::ast::{
    Expr, GroupByExpr, Ident, LimitClause, ObjectName, OrderByKind, OrderBySort, SelectItem,
    SetExpr, Statement, TableFactor,
};

use super::system::SystemTable;
use super::value::{Literal, literal};
use super::{Catalog, ColumnInfo, TableInfo};
use crate::{QueryError, Result};

/// The schema datasources live in.
pub(crate) const DRUID_SCHEMA: &str = "druid";

/// A `SELECT` Grove can plan, borrowed from the parsed statement.
pub(crate) struct SelectQuery<'a> {
    pub table: &'a ObjectName,
    /// The table's alias (`FROM wiki w`), for qualified column names.
    pub table_alias: Option<&'a str>,
    pub projection: &'a [SelectItem],
    pub distinct: bool,
    pub selection: Option<&'a Expr>,
    pub group_by: &'a [Expr],
    pub having: Option<&'a Expr>,
    pub order_by: Vec<OrderItem<'a>>,
    pub limit: Option<u64>,
    pub offset: u64,
    /// The literal `IN` lists lifted out of the statement by the parser front end.
    pub in_lists: &'a [Vec<Literal>],
}

/// One `ORDER BY` key.
pub(crate) struct OrderItem<'a> {
    pub expr: &'a Expr,
    pub descending: bool,
}

/// One output column of the select list, wildcards expanded. Borrowed from the statement
/// (cloning would recurse through arbitrarily long operator chains).
pub(crate) struct Item<'a> {
    pub name: String,
    pub expr: Cow<'a, Expr>,
}

fn unsupported<T>(construct: &str) -> Result<T> {
    Err(QueryError::unsupported(format!(
        "SQL: {construct} is not supported"
    )))
}

impl<'a> SelectQuery<'a> {
    pub(crate) fn from_statement(
        statement: &'a Statement,
        in_lists: &'a [Vec<Literal>],
    ) -> Result<SelectQuery<'a>> {
        let query = match statement {
            Statement::Query(query) => query,
            Statement::Insert(_) => return unsupported("INSERT"),
            Statement::Explain { .. } | Statement::ExplainTable { .. } => {
                return unsupported("EXPLAIN");
            }
            other => {
                let text = other.to_string();
                let keyword = text.split_whitespace().next().unwrap_or("this statement");
                return unsupported(&format!("{} statement", keyword.to_ascii_uppercase()));
            }
        };
        if query.with.is_some() {
            return unsupported("WITH");
        }
        if query.fetch.is_some() {
            return unsupported("FETCH");
        }
        if !query.locks.is_empty() {
            return unsupported("FOR UPDATE");
        }
        if !query.pipe_operators.is_empty()
            || query.for_clause.is_some()
            || query.settings.is_some()
            || query.format_clause.is_some()
        {
            return unsupported("this query clause");
        }
        let select = match query.body.as_ref() {
            SetExpr::Select(select) => select,
            SetExpr::SetOperation { op, .. } => {
                return unsupported(&op.to_string().to_ascii_uppercase());
            }
            SetExpr::Query(_) => return unsupported("a parenthesized subquery"),
            SetExpr::Values(_) => return unsupported("VALUES"),
            SetExpr::Insert(_) => return unsupported("INSERT"),
            SetExpr::Update(_) => return unsupported("UPDATE"),
            SetExpr::Delete(_) => return unsupported("DELETE"),
            SetExpr::Merge(_) => return unsupported("MERGE"),
            SetExpr::Table(_) => return unsupported("TABLE"),
        };
        if select.top.is_some() {
            return unsupported("TOP");
        }
        if select.into.is_some() {
            return unsupported("SELECT INTO");
        }
        if !select.named_window.is_empty() || select.qualify.is_some() {
            return unsupported("window functions");
        }
        if !select.lateral_views.is_empty()
            || select.prewhere.is_some()
            || !select.connect_by.is_empty()
            || !select.cluster_by.is_empty()
            || !select.distribute_by.is_empty()
            || !select.sort_by.is_empty()
            || select.exclude.is_some()
            || select.value_table_mode.is_some()
        {
            return unsupported("this SELECT clause");
        }
        let distinct = match &select.distinct {
            None | Some(sqlparser::ast::Distinct::All) => false,
            Some(sqlparser::ast::Distinct::Distinct) => true,
            Some(sqlparser::ast::Distinct::On(_)) => return unsupported("DISTINCT ON"),
        };
        let (table, table_alias) = from_table(select)?;
        let group_by = match &select.group_by {
            GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => exprs,
            GroupByExpr::Expressions(..) => return unsupported("GROUP BY modifiers"),
            GroupByExpr::All(_) => return unsupported("GROUP BY ALL"),
        };
        if group_by
            .iter()
            .any(|e| matches!(e, Expr::GroupingSets(_) | Expr::Cube(_) | Expr::Rollup(_)))
        {
            return unsupported("GROUPING SETS, CUBE and ROLLUP");
        }
        let mut order_by = Vec::new();
        if let Some(order) = &query.order_by {
            if order.interpolate.is_some() {
                return unsupported("INTERPOLATE");
            }
            let OrderByKind::Expressions(exprs) = &order.kind else {
                return unsupported("ORDER BY ALL");
            };
            for item in exprs {
                if item.with_fill.is_some() {
                    return unsupported("WITH FILL");
                }
                if item.options.nulls_first.is_some() {
                    return unsupported("NULLS FIRST/LAST");
                }
                let descending = match &item.options.sort {
                    None | Some(OrderBySort::Asc) => false,
                    Some(OrderBySort::Desc) => true,
                    Some(OrderBySort::Using(_)) => return unsupported("ORDER BY USING"),
                };
                order_by.push(OrderItem {
                    expr: &item.expr,
                    descending,
                });
            }
        }
        let (limit, offset) = match &query.limit_clause {
            None => (None, 0),
            Some(LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            }) => {
                if !limit_by.is_empty() {
                    return unsupported("LIMIT BY");
                }
                let limit = match limit {
                    Some(expr) => Some(super::value::count(expr, "LIMIT")?),
                    None => None,
                };
                let offset = match offset {
                    Some(offset) => super::value::count(&offset.value, "OFFSET")?,
                    None => 0,
                };
                (limit, offset)
            }
            Some(LimitClause::OffsetCommaLimit { offset, limit }) => (
                Some(super::value::count(limit, "LIMIT")?),
                super::value::count(offset, "OFFSET")?,
            ),
        };
        Ok(SelectQuery {
            table,
            table_alias,
            projection: &select.projection,
            distinct,
            selection: select.selection.as_ref(),
            group_by,
            having: select.having.as_ref(),
            order_by,
            limit,
            offset,
            in_lists,
        })
    }

    /// The select list with wildcards expanded over `columns`, each item named.
    pub(crate) fn items(&self, columns: &[ColumnInfo]) -> Result<Vec<Item<'a>>> {
        let mut items = Vec::with_capacity(self.projection.len());
        for (index, item) in self.projection.iter().enumerate() {
            match item {
                SelectItem::UnnamedExpr(expr) => items.push(Item {
                    name: output_name(index, expr),
                    expr: Cow::Borrowed(expr),
                }),
                SelectItem::ExprWithAlias { expr, alias } => items.push(Item {
                    name: alias.value.clone(),
                    expr: Cow::Borrowed(expr),
                }),
                SelectItem::Wildcard(options) => {
                    if options.opt_exclude.is_some()
                        || options.opt_except.is_some()
                        || options.opt_replace.is_some()
                        || options.opt_rename.is_some()
                        || options.opt_ilike.is_some()
                    {
                        return unsupported("wildcard options");
                    }
                    items.extend(columns.iter().map(|c| Item {
                        name: c.name.clone(),
                        expr: Cow::Owned(Expr::Identifier(Ident::new(&c.name))),
                    }));
                }
                SelectItem::QualifiedWildcard(..) => return unsupported("qualified wildcards"),
                SelectItem::ExprWithAliases { .. } => return unsupported("multiple aliases"),
            }
        }
        Ok(items)
    }

    /// The column `expr` names, when it is a (possibly qualified) column reference to this
    /// query's table.
    pub(crate) fn column_name<'e>(&self, expr: &'e Expr) -> Result<Option<&'e str>> {
        match expr {
            Expr::Identifier(ident) => Ok(Some(&ident.value)),
            Expr::Nested(inner) => self.column_name(inner),
            Expr::CompoundIdentifier(parts) => {
                let (column, qualifier) = parts.split_last().expect("compound has parts");
                let table = table_parts(self.table);
                let matches_table = qualifier.len() <= table.len()
                    && qualifier
                        .iter()
                        .rev()
                        .zip(table.iter().rev())
                        .all(|(q, t)| q.value == *t);
                let matches_alias =
                    qualifier.len() == 1 && Some(qualifier[0].value.as_str()) == self.table_alias;
                if matches_table || matches_alias {
                    Ok(Some(&column.value))
                } else {
                    let name: Vec<&str> = qualifier.iter().map(|q| q.value.as_str()).collect();
                    Err(QueryError::bad(format!(
                        "Table '{}' not found",
                        name.join(".")
                    )))
                }
            }
            _ => Ok(None),
        }
    }
}

fn from_table(select: &sqlparser::ast::Select) -> Result<(&ObjectName, Option<&str>)> {
    let from = match select.from.as_slice() {
        [] => return unsupported("SELECT without FROM"),
        [from] => from,
        _ => return unsupported("JOIN"),
    };
    if !from.joins.is_empty() {
        return unsupported("JOIN");
    }
    match &from.relation {
        TableFactor::Table {
            name, alias, args, ..
        } => {
            if args.is_some() {
                return unsupported("table functions");
            }
            if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
                return unsupported("column aliases on a table");
            }
            Ok((name, alias.as_ref().map(|a| a.name.value.as_str())))
        }
        TableFactor::Derived { .. } => unsupported("subqueries"),
        TableFactor::NestedJoin { .. } => unsupported("JOIN"),
        TableFactor::UNNEST { .. } => unsupported("UNNEST"),
        TableFactor::TableFunction { .. } | TableFactor::Function { .. } => {
            unsupported("table functions")
        }
        _ => unsupported("this FROM clause"),
    }
}

fn table_parts(name: &ObjectName) -> Vec<&str> {
    name.0
        .iter()
        .map(|part| part.as_ident().map_or("", |ident| ident.value.as_str()))
        .collect()
}

/// What a `FROM` names.
pub(crate) enum TableRef {
    System(SystemTable),
    Datasource(TableInfo),
}

/// Resolves `tbl`, `druid.tbl`, `INFORMATION_SCHEMA.TABLES`, `INFORMATION_SCHEMA.COLUMNS` and
/// `sys.segments`.
pub(crate) fn resolve_table(name: &ObjectName, catalog: &dyn Catalog) -> Result<TableRef> {
    let parts = table_parts(name);
    let not_found = || QueryError::bad(format!("Object '{}' not found", parts.join(".")));
    let (schema, table) = match parts.as_slice() {
        [table] => (DRUID_SCHEMA, *table),
        [schema, table] => (*schema, *table),
        _ => return Err(not_found()),
    };
    if schema == DRUID_SCHEMA {
        return catalog
            .tables()
            .into_iter()
            .find(|t| t.name == table)
            .map(TableRef::Datasource)
            .ok_or_else(not_found);
    }
    SystemTable::named(schema, table)
        .map(TableRef::System)
        .ok_or_else(not_found)
}

/// Druid's name for an output column: a plain column keeps its name, any other unaliased
/// expression is `EXPR$<position>`.
fn output_name(index: usize, expr: &Expr) -> String {
    match expr {
        Expr::Identifier(ident) => ident.value.clone(),
        Expr::CompoundIdentifier(parts) => parts.last().expect("compound has parts").value.clone(),
        _ => format!("EXPR${index}"),
    }
}

/// The select-list position an `ORDER BY`/`GROUP BY` key refers to: a 1-based ordinal, or an
/// output name that is not also a column of the table (`is_column`).
pub(crate) fn item_reference(
    expr: &Expr,
    items: &[Item<'_>],
    is_column: impl Fn(&str) -> bool,
) -> Result<Option<usize>> {
    if let Some(Literal::Long(ordinal)) = literal(expr)? {
        return if ordinal >= 1 && (ordinal as usize) <= items.len() {
            Ok(Some(ordinal as usize - 1))
        } else {
            Err(QueryError::bad(format!(
                "SQL: ordinal {ordinal} is out of range: the select list has {} items",
                items.len()
            )))
        };
    }
    match expr {
        Expr::Identifier(ident) if !is_column(&ident.value) => {
            Ok(items.iter().position(|item| item.name == ident.value))
        }
        _ => Ok(None),
    }
}
