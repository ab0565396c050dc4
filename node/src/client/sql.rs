//! `grove sql "SELECT ..."`: runs a query on a running server and prints the rows as a table.

use anyhow::Context;
use comfy_table::{Table, presets};
use serde_json::Value;

use super::Client;

pub fn sql(query: &str, url: &str) -> anyhow::Result<()> {
    let request = serde_json::json!({
        "query": query,
        "resultFormat": "array",
        "header": true,
    });
    let answer = Client::new(url).post("/druid/v2/sql", &request.to_string())?;
    let mut rows = answer
        .as_array()
        .context("the server's SQL answer is not an array of rows")?
        .iter();
    let mut table = Table::new();
    table.load_preset(presets::UTF8_FULL_CONDENSED);
    if let Some(header) = rows.next() {
        table.set_header(cells(header));
    }
    let mut count = 0;
    for row in rows {
        table.add_row(cells(row));
        count += 1;
    }
    println!("{table}");
    println!("({count} row{})", if count == 1 { "" } else { "s" });
    Ok(())
}

fn cells(row: &Value) -> Vec<String> {
    row.as_array()
        .into_iter()
        .flatten()
        .map(|value| match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}
