//! The roster: who is whom, in which team, from when to when (contract section 4).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use arrow::array::{Date32Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use jiff::civil::Date;

use crate::ScoreError;

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
pub fn load_csv(path: &Path) -> Result<RecordBatch, ScoreError> {
    let err = |line: u64, message: String| ScoreError::Roster {
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
        let date = |i: Option<usize>, what: &str| -> Result<Option<i32>, ScoreError> {
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
