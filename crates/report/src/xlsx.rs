//! One workbook for the period (`crmdq report --format xlsx`), for HR to sort and filter
//! in Excel or WPS: a `Teams` summary (one row per team), `People` (one row per person
//! and role, every KPI, targets, judged, rank), one sheet per team with its people, and
//! `About` naming the table column behind each header. Real number formats
//! (percentages, dates), the header row frozen, an autofilter on every sheet.

use std::collections::BTreeSet;

use crmdq_config::Lang;
use rust_xlsxwriter::{ExcelDateTime, Format, FormatAlign, Workbook, Worksheet};

use crate::ReportError;
use crate::fmt::Fmt;
use crate::labels::tr;
use crate::model::{Model, Row, Val};

fn err(e: impl std::fmt::Display) -> ReportError {
    ReportError::Other(format!("writing the workbook: {e}"))
}

/// The columns a sheet shows, identity first (the rest in table order); `dt` (the
/// partition) and `period_kind` (one per workbook) are left out.
fn columns(all: &[String], first: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = first
        .iter()
        .filter(|c| all.iter().any(|a| a == *c))
        .map(|c| (*c).to_string())
        .collect();
    for c in all {
        if !v.contains(c) && c != "dt" && c != "period_kind" {
            v.push(c.clone());
        }
    }
    v
}

const PEOPLE_FIRST: [&str; 13] = [
    "team_id",
    "person_id",
    "name",
    "role",
    "period",
    "period_start",
    "period_end",
    "judged",
    "rank_in_team",
    "score",
    "score_change",
    "targets_met",
    "targets_total",
];
const TEAM_FIRST: [&str; 9] = [
    "team_id",
    "period",
    "period_start",
    "period_end",
    "score",
    "score_change",
    "targets_met",
    "targets_total",
    "people",
];

/// Number format of a column in Excel's notation.
fn excel_format(column: &str) -> &'static str {
    match Fmt::of(column) {
        Fmt::Pct => "0.0%",
        Fmt::Int => "#,##0",
        Fmt::D1 => "0.0",
        Fmt::D2 => "#,##0.00",
        Fmt::S1 | Fmt::Pt => "+0.0;-0.0;0.0",
    }
}

struct Formats {
    header: Format,
    date: Format,
}

/// A header's text: the KPI's or column's name in `lang`, else the column name.
fn header(lang: Lang, column: &str) -> String {
    let t = tr(lang);
    match column {
        "team_id" => t.team.to_string(),
        "person_id" => t.person.to_string(),
        "period" => t.period_label.to_string(),
        "period_start" => t.period_start.to_string(),
        "period_end" => t.period_end.to_string(),
        "people" => t.people_count.to_string(),
        "targets_met" => t.targets.to_string(),
        "targets_total" => t.targets_total.to_string(),
        "manager_id" => t.manager.to_string(),
        "judged" => t.judged.to_string(),
        c => t.get(c).map_or_else(|| c.to_string(), str::to_string),
    }
}

fn sheet(
    ws: &mut Worksheet,
    name: &str,
    cols: &[String],
    rows: &[&Row],
    lang: Lang,
    f: &Formats,
) -> Result<(), ReportError> {
    ws.set_name(name).map_err(err)?;
    for (j, c) in cols.iter().enumerate() {
        let j = u16::try_from(j).map_err(err)?;
        ws.write_string_with_format(0, j, header(lang, c), &f.header)
            .map_err(err)?;
        ws.set_column_width(
            j,
            if c == "name" || c == "person_id" {
                18
            } else {
                13
            },
        )
        .map_err(err)?;
    }
    let number_formats: Vec<Format> = cols
        .iter()
        .map(|c| Format::new().set_num_format(excel_format(c)))
        .collect();
    for (i, r) in rows.iter().enumerate() {
        let i = u32::try_from(i + 1).map_err(err)?;
        for (j, c) in cols.iter().enumerate() {
            let jj = u16::try_from(j).map_err(err)?;
            match r.get(c) {
                Val::Null => {
                    // Empty, but formatted: a value typed in later reads right.
                    ws.write_blank(i, jj, &number_formats[j]).map_err(err)?;
                }
                Val::Int(v) => {
                    ws.write_number_with_format(i, jj, *v as f64, &number_formats[j])
                        .map_err(err)?;
                }
                Val::Float(v) => {
                    ws.write_number_with_format(i, jj, *v, &number_formats[j])
                        .map_err(err)?;
                }
                Val::Text(s) => {
                    ws.write_string(i, jj, s).map_err(err)?;
                }
                Val::Bool(b) => {
                    ws.write_boolean(i, jj, *b).map_err(err)?;
                }
                Val::Date(d) => {
                    let dt = ExcelDateTime::from_ymd(
                        u16::try_from(d.year()).map_err(err)?,
                        u8::try_from(d.month()).map_err(err)?,
                        u8::try_from(d.day()).map_err(err)?,
                    )
                    .map_err(err)?;
                    ws.write_datetime_with_format(i, jj, &dt, &f.date)
                        .map_err(err)?;
                }
            }
        }
    }
    let last_col = u16::try_from(cols.len().saturating_sub(1)).map_err(err)?;
    let last_row = u32::try_from(rows.len()).map_err(err)?;
    ws.set_freeze_panes(1, if cols.len() > 3 { 3 } else { 0 })
        .map_err(err)?;
    ws.autofilter(0, 0, last_row, last_col).map_err(err)?;
    Ok(())
}

/// A worksheet name Excel accepts: at most 31 characters, none of `[]:*?/\`, unique.
fn sheet_name(want: &str, used: &mut BTreeSet<String>) -> String {
    let clean: String = want
        .chars()
        .map(|c| if "[]:*?/\\'".contains(c) { '_' } else { c })
        .take(28)
        .collect();
    let mut name = clean.clone();
    let mut k = 2;
    while !used.insert(name.to_lowercase()) {
        name = format!("{clean}~{k}");
        k += 1;
    }
    name
}

/// The workbook of `m`'s period, as bytes.
pub fn workbook(m: &Model, lang: Lang) -> Result<Vec<u8>, ReportError> {
    let t = tr(lang);
    let period = m.period.label.as_str();
    let f = Formats {
        header: Format::new()
            .set_bold()
            .set_text_wrap()
            .set_align(FormatAlign::Top)
            .set_background_color("#E8EEF7"),
        date: Format::new().set_num_format("yyyy-mm-dd"),
    };
    let mut wb = Workbook::new();
    let mut used = BTreeSet::new();
    let team_cols = columns(&m.team_columns, &TEAM_FIRST);
    let people_cols = columns(&m.people_columns, &PEOPLE_FIRST);
    let teams: Vec<&Row> = m
        .teams
        .iter()
        .filter(|r| r.text("period") == Some(period))
        .collect();
    let mut people: Vec<&Row> = m
        .people
        .iter()
        .filter(|r| r.text("period") == Some(period))
        .collect();
    people.sort_by(|a, b| {
        (
            a.text("team_id"),
            a.text("role"),
            a.int("rank_in_team").unwrap_or(i64::MAX),
            a.text("person_id"),
        )
            .cmp(&(
                b.text("team_id"),
                b.text("role"),
                b.int("rank_in_team").unwrap_or(i64::MAX),
                b.text("person_id"),
            ))
    });
    let name = sheet_name(t.teams, &mut used);
    sheet(wb.add_worksheet(), &name, &team_cols, &teams, lang, &f)?;
    let name = sheet_name(t.people, &mut used);
    sheet(wb.add_worksheet(), &name, &people_cols, &people, lang, &f)?;
    for team in &teams {
        let Some(id) = team.text("team_id") else {
            continue;
        };
        let members: Vec<&Row> = people
            .iter()
            .filter(|r| r.text("team_id") == Some(id))
            .copied()
            .collect();
        let name = sheet_name(&format!("{} {id}", t.team), &mut used);
        sheet(wb.add_worksheet(), &name, &people_cols, &members, lang, &f)?;
    }
    // About: which table column each header is.
    let about = wb.add_worksheet();
    let name = sheet_name("About", &mut used);
    about.set_name(&name).map_err(err)?;
    for (j, h) in ["header", "table", "column"].iter().enumerate() {
        about
            .write_string_with_format(0, u16::try_from(j).map_err(err)?, *h, &f.header)
            .map_err(err)?;
    }
    let mut row = 1u32;
    for (table, cols) in [("team_period", &team_cols), ("person_period", &people_cols)] {
        for c in cols {
            about.write_string(row, 0, header(lang, c)).map_err(err)?;
            about.write_string(row, 1, table).map_err(err)?;
            about.write_string(row, 2, c).map_err(err)?;
            row += 1;
        }
    }
    about.set_column_width(0, 28).map_err(err)?;
    about.set_column_width(2, 26).map_err(err)?;
    about.set_freeze_panes(1, 0).map_err(err)?;
    about.autofilter(0, 0, row - 1, 2).map_err(err)?;
    wb.save_to_buffer().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheet_names_are_valid_and_unique() {
        let mut used = BTreeSet::new();
        assert_eq!(sheet_name("Team a/b", &mut used), "Team a_b");
        assert_eq!(sheet_name("Team a_b", &mut used), "Team a_b~2");
        let long = sheet_name(&"x".repeat(40), &mut used);
        assert!(long.chars().count() <= 31);
    }

    #[test]
    fn headers_differ_per_column() {
        for lang in Lang::ALL {
            let hs: BTreeSet<String> = PEOPLE_FIRST.iter().map(|c| header(lang, c)).collect();
            assert_eq!(
                hs.len(),
                PEOPLE_FIRST.len(),
                "{lang:?}: two columns share a header"
            );
        }
    }
}
