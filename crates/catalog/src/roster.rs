//! The roster: who is whom, in which team, from when to when (contract section 4), read
//! from CSV (checked line by line), Parquet, or another table through the pipeline's
//! `roster.mapping`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use arrow::array::{Date32Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use crmdq_config::Pipeline;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use jiff::civil::Date;

use crate::CatalogError;

pub const ROLES: [&str; 4] = ["sales_rep", "sales_assistant", "service_agent", "manager"];

pub fn roster_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("person_id", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("role", DataType::Utf8, false),
            Field::new("team_id", DataType::Utf8, true),
            Field::new("manager_id", DataType::Utf8, true),
            Field::new("valid_from", DataType::Date32, true),
            Field::new("valid_to", DataType::Date32, true),
        ]))
    })
    .clone()
}

fn days(d: Date) -> i32 {
    (d - jiff::civil::date(1970, 1, 1)).get_days()
}

/// Read a roster CSV into one batch. Errors name the file and line.
pub fn load_csv(path: &Path) -> Result<RecordBatch, CatalogError> {
    let err = |line: u64, message: String| CatalogError::Roster {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| err(0, e.to_string()))?;
    let headers = rdr.headers().map_err(|e| err(1, e.to_string()))?.clone();
    let idx = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}') == name)
    };
    let need = |name: &str| idx(name).ok_or_else(|| err(1, format!("missing column `{name}`")));
    let (pid, role) = (need("person_id")?, need("role")?);
    let (name, team, mgr, from, to) = (
        idx("name"),
        idx("team_id"),
        idx("manager_id"),
        idx("valid_from"),
        idx("valid_to"),
    );
    let mut b = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        Date32Builder::new(),
        Date32Builder::new(),
    );
    for rec in rdr.records() {
        let rec =
            rec.map_err(|e| err(e.position().map_or(0, csv::Position::line), e.to_string()))?;
        let line = rec.position().map_or(0, csv::Position::line);
        let get = |i: Option<usize>| i.and_then(|i| rec.get(i)).filter(|s| !s.is_empty());
        let p = get(Some(pid)).ok_or_else(|| err(line, "empty person_id".into()))?;
        let r = get(Some(role)).ok_or_else(|| err(line, "empty role".into()))?;
        if !ROLES.contains(&r) {
            return Err(err(
                line,
                format!("role `{r}` is not one of {}", ROLES.join(", ")),
            ));
        }
        let date = |i: Option<usize>, what: &str| -> Result<Option<i32>, CatalogError> {
            get(i)
                .map(|s| {
                    s.parse::<Date>()
                        .map(days)
                        .map_err(|e| err(line, format!("{what} `{s}` is not YYYY-MM-DD: {e}")))
                })
                .transpose()
        };
        b.0.append_value(p);
        b.1.append_option(get(name));
        b.2.append_value(r);
        b.3.append_option(get(team));
        b.4.append_option(get(mgr));
        b.5.append_option(date(from, "valid_from")?);
        b.6.append_option(date(to, "valid_to")?);
    }
    Ok(RecordBatch::try_new(
        roster_schema(),
        vec![
            Arc::new(b.0.finish()),
            Arc::new(b.1.finish()),
            Arc::new(b.2.finish()),
            Arc::new(b.3.finish()),
            Arc::new(b.4.finish()),
            Arc::new(b.5.finish()),
            Arc::new(b.6.finish()),
        ],
    )
    .expect("roster columns match roster_schema"))
}

/// Load the roster (CSV, or Parquet by extension) as a batch; an absent roster is empty.
pub async fn load(path: Option<&Path>) -> Result<RecordBatch, CatalogError> {
    let Some(path) = path else {
        return Ok(RecordBatch::new_empty(roster_schema()));
    };
    if path.extension().is_some_and(|e| e == "parquet") {
        let ctx = SessionContext::new();
        let df = ctx
            .read_parquet(
                path.to_string_lossy().as_ref(),
                datafusion::prelude::ParquetReadOptions::default(),
            )
            .await
            .map_err(|e| CatalogError::Roster {
                path: path.to_path_buf(),
                line: 0,
                message: e.to_string(),
            })?;
        let batches = df.collect().await.map_err(|e| CatalogError::Roster {
            path: path.to_path_buf(),
            line: 0,
            message: e.to_string(),
        })?;
        let schema = batches
            .first()
            .map_or_else(roster_schema, RecordBatch::schema);
        let b = arrow::compute::concat_batches(&schema, &batches).map_err(|e| {
            CatalogError::Roster {
                path: path.to_path_buf(),
                line: 0,
                message: e.to_string(),
            }
        })?;
        return Ok(b);
    }
    load_csv(path)
}

/// The roster for a pipeline: `path` (the pipeline's roster unless overridden), derived
/// through the pipeline's `roster.mapping` when `path` is the pipeline's own roster.
pub async fn load_for_pipeline(
    p: &Pipeline,
    path: Option<&Path>,
) -> Result<RecordBatch, CatalogError> {
    match (path, &p.roster) {
        (Some(path), Some(own)) if !own.mapping.is_empty() && own.path == path => {
            load_mapped(path, &own.mapping).await
        }
        _ => load(path).await,
    }
}

/// A roster derived from another table (CSV with a header): each roster column is a SQL
/// expression over that table's columns (e.g. `team_id: manager`, `role: "'sales_rep'"`).
pub async fn load_mapped(
    path: &Path,
    mapping: &BTreeMap<String, String>,
) -> Result<RecordBatch, CatalogError> {
    use arrow::array::{ArrayRef, StringArray};
    use arrow::datatypes::{DataType, Field};
    let bad = |line: u64, message: String| CatalogError::Roster {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .from_path(path)
        .map_err(|e| bad(0, e.to_string()))?;
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| bad(1, e.to_string()))?
        .iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}').to_string())
        .collect();
    let mut cols: Vec<Vec<Option<String>>> = vec![Vec::new(); headers.len()];
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| bad(i as u64 + 2, e.to_string()))?;
        for (c, col) in cols.iter_mut().enumerate() {
            let v = rec.get(c).unwrap_or("").trim();
            col.push((!v.is_empty()).then(|| v.to_string()));
        }
    }
    let schema = Arc::new(Schema::new(
        headers
            .iter()
            .map(|h| Field::new(h, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let arrays: Vec<ArrayRef> = cols
        .into_iter()
        .map(|c| Arc::new(c.into_iter().collect::<StringArray>()) as ArrayRef)
        .collect();
    let src = RecordBatch::try_new(schema.clone(), arrays).map_err(|e| bad(0, e.to_string()))?;
    let mut cfg = SessionConfig::new();
    cfg.options_mut().sql_parser.enable_ident_normalization = false;
    let ctx = SessionContext::new_with_config(cfg);
    ctx.register_table(
        "roster_source",
        Arc::new(MemTable::try_new(schema, vec![vec![src]]).map_err(|e| bad(0, e.to_string()))?),
    )
    .map_err(|e| bad(0, e.to_string()))?;
    let expr = |c: &str, default: &str| mapping.get(c).map_or(default.to_string(), Clone::clone);
    let sql = format!(
        "SELECT person_id, name, COALESCE(role, 'unknown') AS role, team_id, manager_id, valid_from, valid_to FROM (\
           SELECT CAST({} AS VARCHAR) AS person_id, CAST({} AS VARCHAR) AS name, CAST({} AS VARCHAR) AS role, \
             CAST({} AS VARCHAR) AS team_id, CAST({} AS VARCHAR) AS manager_id, \
             CAST({} AS DATE) AS valid_from, CAST({} AS DATE) AS valid_to FROM roster_source) \
         WHERE person_id IS NOT NULL",
        expr("person_id", "person_id"),
        expr("name", "NULL"),
        expr("role", "NULL"),
        expr("team_id", "NULL"),
        expr("manager_id", "NULL"),
        expr("valid_from", "NULL"),
        expr("valid_to", "NULL"),
    );
    let batches = ctx
        .sql(&sql)
        .await
        .map_err(|e| bad(0, format!("roster.mapping: {e}")))?
        .collect()
        .await
        .map_err(|e| bad(0, format!("roster.mapping: {e}")))?;
    let out_schema = roster_schema();
    let mut columns: Vec<ArrayRef> = Vec::new();
    let all = if batches.is_empty() {
        return Ok(RecordBatch::new_empty(out_schema));
    } else {
        arrow::compute::concat_batches(&batches[0].schema(), &batches)
            .map_err(|e| bad(0, e.to_string()))?
    };
    for (i, f) in out_schema.fields().iter().enumerate() {
        columns.push(
            arrow::compute::cast(all.column(i), f.data_type())
                .map_err(|e| bad(0, e.to_string()))?,
        );
    }
    RecordBatch::try_new(out_schema, columns).map_err(|e| bad(0, e.to_string()))
}
