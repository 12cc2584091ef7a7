//! The roster: who is whom, in which team, from when to when, and which reps an assistant
//! enters for (contract sections 4 and 7), read from CSV (checked line by line), Parquet,
//! or another table through the pipeline's `roster.mapping`; and the absences file
//! (section 7), checked the same way.

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
            // The reps a sales assistant enters for: person_ids joined by `;`.
            Field::new("assists", DataType::Utf8, true),
        ]))
    })
    .clone()
}

fn days(d: Date) -> i32 {
    (d - jiff::civil::date(1970, 1, 1)).get_days()
}

/// A CSV reader (cells trimmed) and its header row; errors name the file.
fn open_csv(path: &Path) -> Result<(csv::Reader<std::fs::File>, csv::StringRecord), CatalogError> {
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
    Ok((rdr, headers))
}

/// The position of column `name` in `headers` (a byte-order mark before the first is
/// ignored).
fn column(headers: &csv::StringRecord, name: &str) -> Option<usize> {
    headers
        .iter()
        .position(|h| h.trim_start_matches('\u{feff}') == name)
}

/// Read a roster CSV into one batch. Errors name the file and line.
pub fn load_csv(path: &Path) -> Result<RecordBatch, CatalogError> {
    let err = |line: u64, message: String| CatalogError::Roster {
        path: path.to_path_buf(),
        line,
        message,
    };
    let (mut rdr, headers) = open_csv(path)?;
    let idx = |name: &str| column(&headers, name);
    let need = |name: &str| idx(name).ok_or_else(|| err(1, format!("missing column `{name}`")));
    let (pid, role) = (need("person_id")?, need("role")?);
    let (name, team, mgr, from, to, assists) = (
        idx("name"),
        idx("team_id"),
        idx("manager_id"),
        idx("valid_from"),
        idx("valid_to"),
        idx("assists"),
    );
    let mut b = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        Date32Builder::new(),
        Date32Builder::new(),
        StringBuilder::new(),
    );
    // (line, assisted id) to check once every person is known.
    let mut assisted: Vec<(u64, String)> = Vec::new();
    let mut people = std::collections::BTreeSet::new();
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
        let helps: Vec<&str> = get(assists)
            .map(|a| {
                a.split(';')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if !helps.is_empty() && r != "sales_assistant" {
            return Err(err(
                line,
                format!("`assists` is for sales_assistant rows, not {r}"),
            ));
        }
        assisted.extend(helps.iter().map(|h| (line, (*h).to_string())));
        people.insert(p.to_string());
        let from_d = date(from, "valid_from")?;
        let to_d = date(to, "valid_to")?;
        if let (Some(a), Some(z)) = (from_d, to_d)
            && z < a
        {
            return Err(err(line, "valid_to is before valid_from".into()));
        }
        b.0.append_value(p);
        b.1.append_option(get(name));
        b.2.append_value(r);
        b.3.append_option(get(team));
        b.4.append_option(get(mgr));
        b.5.append_option(from_d);
        b.6.append_option(to_d);
        b.7.append_option((!helps.is_empty()).then(|| helps.join(";")));
    }
    if let Some((line, id)) = assisted.iter().find(|(_, id)| !people.contains(id)) {
        return Err(err(
            *line,
            format!("assists `{id}`: not a person on the roster"),
        ));
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
            Arc::new(b.7.finish()),
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
        let b = arrow::compute::concat_batches(&schema, &batches)
            .and_then(|b| conform(&b))
            .map_err(|e| CatalogError::Roster {
                path: path.to_path_buf(),
                line: 0,
                message: e.to_string(),
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
        "SELECT person_id, name, COALESCE(role, 'unknown') AS role, team_id, manager_id, valid_from, valid_to, assists FROM (\
           SELECT CAST({} AS VARCHAR) AS person_id, CAST({} AS VARCHAR) AS name, CAST({} AS VARCHAR) AS role, \
             CAST({} AS VARCHAR) AS team_id, CAST({} AS VARCHAR) AS manager_id, \
             CAST({} AS DATE) AS valid_from, CAST({} AS DATE) AS valid_to, \
             CAST({} AS VARCHAR) AS assists FROM roster_source) \
         WHERE person_id IS NOT NULL",
        expr("person_id", "person_id"),
        expr("name", "NULL"),
        expr("role", "NULL"),
        expr("team_id", "NULL"),
        expr("manager_id", "NULL"),
        expr("valid_from", "NULL"),
        expr("valid_to", "NULL"),
        expr("assists", "NULL"),
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

/// `b` in [`roster_schema`]'s columns, by name: a column the file lacks (e.g. `assists` in
/// a roster written before it existed) is NULL.
fn conform(b: &RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    let schema = roster_schema();
    let mut cols = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        cols.push(match b.column_by_name(f.name()) {
            Some(c) => arrow::compute::cast(c, f.data_type())?,
            None => arrow::array::new_null_array(f.data_type(), b.num_rows()),
        });
    }
    RecordBatch::try_new(schema, cols)
}

pub fn absences_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("person_id", DataType::Utf8, false),
            Field::new("from", DataType::Date32, false),
            Field::new("to", DataType::Date32, false),
            Field::new("kind", DataType::Utf8, true),
        ]))
    })
    .clone()
}

/// Read the absences CSV (`person_id,from,to,kind`, inclusive dates) into one batch,
/// checked like the roster: errors name the file and line (bad dates, `to` before `from`,
/// a person not on `roster` when there is one, two absences of one person that overlap).
/// No file: an empty table.
pub fn load_absences(
    path: Option<&Path>,
    roster: &RecordBatch,
) -> Result<RecordBatch, CatalogError> {
    use arrow::array::AsArray;
    let Some(path) = path else {
        return Ok(RecordBatch::new_empty(absences_schema()));
    };
    let err = |line: u64, message: String| CatalogError::Roster {
        path: path.to_path_buf(),
        line,
        message,
    };
    let known: std::collections::BTreeSet<&str> = roster
        .column_by_name("person_id")
        .map(|c| c.as_string::<i32>().iter().flatten().collect())
        .unwrap_or_default();
    let (mut rdr, headers) = open_csv(path)?;
    let idx = |name: &str| {
        column(&headers, name).ok_or_else(|| err(1, format!("missing column `{name}`")))
    };
    let (pid, from, to) = (idx("person_id")?, idx("from")?, idx("to")?);
    let kind = idx("kind").ok();
    // person → (from, to, line) of the absences read so far.
    let mut periods: BTreeMap<String, Vec<(Date, Date, u64)>> = BTreeMap::new();
    let (mut p_b, mut f_b, mut t_b, mut k_b) = (
        StringBuilder::new(),
        Date32Builder::new(),
        Date32Builder::new(),
        StringBuilder::new(),
    );
    for rec in rdr.records() {
        let rec =
            rec.map_err(|e| err(e.position().map_or(0, csv::Position::line), e.to_string()))?;
        let line = rec.position().map_or(0, csv::Position::line);
        let get = |i: usize| rec.get(i).filter(|s| !s.is_empty());
        let p = get(pid).ok_or_else(|| err(line, "empty person_id".into()))?;
        if !known.is_empty() && !known.contains(p) {
            return Err(err(line, format!("`{p}` is not a person on the roster")));
        }
        let date = |i: usize, what: &str| -> Result<Date, CatalogError> {
            let s = get(i).ok_or_else(|| err(line, format!("empty {what}")))?;
            s.parse::<Date>()
                .map_err(|e| err(line, format!("{what} `{s}` is not YYYY-MM-DD: {e}")))
        };
        let (a, z) = (date(from, "from")?, date(to, "to")?);
        if z < a {
            return Err(err(line, "`to` is before `from`".into()));
        }
        let mine = periods.entry(p.to_string()).or_default();
        if let Some((_, _, other)) = mine.iter().find(|(a2, z2, _)| a <= *z2 && *a2 <= z) {
            return Err(err(
                line,
                format!("overlaps the absence of `{p}` on line {other}"),
            ));
        }
        mine.push((a, z, line));
        p_b.append_value(p);
        f_b.append_value(days(a));
        t_b.append_value(days(z));
        k_b.append_option(kind.and_then(get));
    }
    Ok(RecordBatch::try_new(
        absences_schema(),
        vec![
            Arc::new(p_b.finish()),
            Arc::new(f_b.finish()),
            Arc::new(t_b.finish()),
            Arc::new(k_b.finish()),
        ],
    )
    .expect("absence columns match absences_schema"))
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};

    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn roster_err(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        load_csv(&write(dir.path(), "r.csv", text))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn assists_are_read_and_checked_like_the_roster() {
        let head = "person_id,role,team_id,valid_from,valid_to,assists\n";
        let dir = tempfile::tempdir().unwrap();
        let ok = write(
            dir.path(),
            "r.csv",
            &format!(
                "{head}amy,sales_rep,e,,,\nbob,sales_assistant,e,,, amy ; cy \ncy,sales_rep,e,,,\n"
            ),
        );
        let b = load_csv(&ok).unwrap();
        let assists = b.column_by_name("assists").unwrap().as_string::<i32>();
        assert_eq!(assists.value(1), "amy;cy");
        assert!(assists.is_null(0));
        let e = roster_err(&format!(
            "{head}amy,sales_rep,e,,,bob\nbob,sales_assistant,e,,,\n"
        ));
        assert!(
            e.contains(":2:") && e.contains("for sales_assistant rows"),
            "{e}"
        );
        let e = roster_err(&format!("{head}bob,sales_assistant,e,,,zed\n"));
        assert!(
            e.contains(":2:") && e.contains("`zed`: not a person on the roster"),
            "{e}"
        );
        let e = roster_err(&format!(
            "{head}bob,sales_assistant,e,2026-05-01,2026-04-01,\n"
        ));
        assert!(e.contains(":2:") && e.contains("before valid_from"), "{e}");
    }

    #[test]
    fn absences_name_file_and_line_when_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let roster = load_csv(&write(
            dir.path(),
            "r.csv",
            "person_id,role\namy,sales_rep\nbob,sales_rep\n",
        ))
        .unwrap();
        let load = |text: &str| {
            let p = write(dir.path(), "a.csv", text);
            load_absences(Some(&p), &roster)
                .map(|b| b.num_rows())
                .map_err(|e| e.to_string())
        };
        let head = "person_id,from,to,kind\n";
        assert_eq!(
            load(&format!(
                "{head}amy,2026-01-01,2026-01-03,leave\namy,2026-01-04,2026-01-04,\nbob,2026-01-02,2026-01-02,sick\n"
            )),
            Ok(3)
        );
        let e = load(&format!(
            "{head}amy,2026-01-01,2026-01-03,leave\namy,2026-01-03,2026-01-05,travel\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("a.csv:3:") && e.contains("overlaps") && e.contains("line 2"),
            "{e}"
        );
        let e = load(&format!("{head}zed,2026-01-01,2026-01-01,leave\n")).unwrap_err();
        assert!(
            e.contains(":2:") && e.contains("not a person on the roster"),
            "{e}"
        );
        let e = load(&format!("{head}amy,2026-02-30,2026-03-01,leave\n")).unwrap_err();
        assert!(e.contains(":2:") && e.contains("not YYYY-MM-DD"), "{e}");
        let e = load(&format!("{head}amy,2026-03-02,2026-03-01,leave\n")).unwrap_err();
        assert!(e.contains(":2:") && e.contains("before `from`"), "{e}");
        let e = load("person_id,from\namy,2026-01-01\n").unwrap_err();
        assert!(
            e.contains(":1:") && e.contains("missing column `to`"),
            "{e}"
        );
        assert_eq!(load_absences(None, &roster).unwrap().num_rows(), 0);
    }
}
