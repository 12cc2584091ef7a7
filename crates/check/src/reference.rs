//! Reference tables (`reference_tables` in the pipeline file: CSV with a header) in user
//! checks. A check may say `product IN (SELECT product FROM products)`: checks are
//! compiled into per-batch expressions, which cannot run subqueries, so the subquery is
//! expanded once, at compile time, into the literal list of the table's column values.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

/// A loaded reference table: column → its distinct values.
#[derive(Debug, Clone, Default)]
pub struct RefTable {
    pub columns: BTreeMap<String, BTreeSet<String>>,
}

/// Load a reference table: Parquet by extension, else CSV with a header.
pub fn load(path: &Path) -> Result<RefTable, String> {
    if path.extension().is_some_and(|e| e == "parquet") {
        load_parquet(path)
    } else {
        load_csv(path)
    }
}

/// Load a Parquet reference table (every column, as text; nulls skipped).
pub fn load_parquet(path: &Path) -> Result<RefTable, String> {
    use arrow::array::{Array, AsArray};
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let bad = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let f = std::fs::File::open(path).map_err(|e| bad(&e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| bad(&e))?
        .build()
        .map_err(|e| bad(&e))?;
    let mut t = RefTable::default();
    for batch in reader {
        let batch = batch.map_err(|e| bad(&e))?;
        for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
            let text = arrow::compute::cast(col, &arrow::datatypes::DataType::Utf8)
                .map_err(|e| bad(&e))?;
            let text = text.as_string::<i32>();
            let set = t.columns.entry(field.name().clone()).or_default();
            for i in 0..text.len() {
                if text.is_valid(i) {
                    set.insert(text.value(i).to_string());
                }
            }
        }
    }
    Ok(t)
}

/// Load a CSV reference table (header row; empty cells skipped).
pub fn load_csv(path: &Path) -> Result<RefTable, String> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}').to_string())
        .collect();
    let mut t = RefTable::default();
    for h in &headers {
        t.columns.entry(h.clone()).or_default();
    }
    for rec in rdr.records() {
        let rec = rec.map_err(|e| format!("{}: {e}", path.display()))?;
        for (h, v) in headers.iter().zip(rec.iter()) {
            if !v.is_empty() {
                t.columns
                    .get_mut(h)
                    .expect("header column")
                    .insert(v.to_string());
            }
        }
    }
    Ok(t)
}

static SUBQUERY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)\bIN\s*\(\s*SELECT\s+(?:DISTINCT\s+)?"?([A-Za-z_][A-Za-z0-9_]*)"?\s+FROM\s+"?([A-Za-z_][A-Za-z0-9_]*)"?\s*\)"#,
    )
    .expect("static regex")
});

/// Expand `IN (SELECT col FROM table)` over the reference tables into `IN ('v1', …)`.
pub fn expand(sql: &str, tables: &BTreeMap<String, RefTable>) -> Result<String, String> {
    let mut err = None;
    let out = SUBQUERY.replace_all(sql, |c: &regex::Captures<'_>| {
        let (col, table) = (&c[1], &c[2]);
        let Some(t) = tables.get(table) else {
            err.get_or_insert_with(|| {
                format!("`{table}` is not a reference table (reference_tables)")
            });
            return String::new();
        };
        let Some(values) = t.columns.get(col) else {
            err.get_or_insert_with(|| format!("reference table `{table}` has no column `{col}`"));
            return String::new();
        };
        if values.is_empty() {
            // Nothing is in an empty table.
            return "IN (NULL)".to_string();
        }
        let list: Vec<String> = values
            .iter()
            .map(|v| format!("'{}'", v.replace('\'', "''")))
            .collect();
        format!("IN ({})", list.join(", "))
    });
    match err {
        Some(e) => Err(e),
        None => Ok(out.into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parquet_and_csv_tables_load_alike() {
        use arrow::array::{Int64Array, RecordBatch, StringArray};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("p.csv");
        std::fs::write(&csv, "product,price\nGTX Pro,4821\nMG Special,55\n").unwrap();
        let pq = dir.path().join("p.parquet");
        let batch = RecordBatch::try_from_iter(vec![
            (
                "product",
                Arc::new(StringArray::from(vec!["GTX Pro", "MG Special"])) as _,
            ),
            ("price", Arc::new(Int64Array::from(vec![4821, 55])) as _),
        ])
        .unwrap();
        let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&pq).unwrap(),
            batch.schema(),
            None,
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let (a, b) = (load(&csv).unwrap(), load(&pq).unwrap());
        assert_eq!(a.columns, b.columns);
        assert!(a.columns["price"].contains("4821"));
    }

    #[test]
    fn subqueries_become_literal_lists() {
        let mut t = RefTable::default();
        t.columns.insert(
            "product".into(),
            ["GTX Pro".to_string(), "O'Neil".to_string()].into(),
        );
        let tables: BTreeMap<String, RefTable> = [("products".to_string(), t)].into();
        assert_eq!(
            expand("product IN (SELECT product FROM products)", &tables).unwrap(),
            "product IN ('GTX Pro', 'O''Neil')"
        );
        assert_eq!(
            expand(
                "x NOT in ( select distinct \"product\" from products )",
                &tables
            )
            .unwrap(),
            "x NOT IN ('GTX Pro', 'O''Neil')"
        );
        assert!(expand("x IN (SELECT p FROM products)", &tables).is_err());
        assert!(expand("x IN (SELECT product FROM nope)", &tables).is_err());
        assert_eq!(expand("a = 1", &tables).unwrap(), "a = 1");
    }
}
