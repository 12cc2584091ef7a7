//! `entered_by_owner_side` (contract section 7): a customer record is on its owner's side
//! when the owner entered it, or a sales assistant whose roster `assists` lists the owner
//! did — by the roster row of the enterer in force on the record's business date (the
//! later `valid_from` wins, then the first row listed: the rule scoring uses). A customer
//! entered by anyone else is not the rep's exclusive customer.
//!
//! Without a roster at ingest the column is NULL (unless the owner entered the record),
//! and scoring decides it from the roster it has; record files are never rewritten.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, BooleanArray, BooleanBuilder, Date32Array, RecordBatch};
use arrow::datatypes::Date32Type;

/// One roster row of a person: its period (days since the epoch; None = open) and, for
/// a sales assistant, the reps it lists.
#[derive(Debug, Clone)]
struct Row {
    from: Option<i32>,
    to: Option<i32>,
    /// Position in the roster file (ties in `from` go to the first).
    pos: usize,
    assists: Option<Vec<String>>,
}

/// Who may enter for whom, from a roster batch (`crmdq_catalog::roster::roster_schema`).
#[derive(Debug, Clone, Default)]
pub struct OwnerSide {
    rows: HashMap<String, Vec<Row>>,
}

impl OwnerSide {
    pub fn new(roster: &RecordBatch) -> OwnerSide {
        let mut rows: HashMap<String, Vec<Row>> = HashMap::new();
        let (Some(pid), Some(role)) = (
            roster.column_by_name("person_id"),
            roster.column_by_name("role"),
        ) else {
            return OwnerSide::default();
        };
        let (pid, role) = (pid.as_string::<i32>(), role.as_string::<i32>());
        let date = |name: &str| {
            roster
                .column_by_name(name)
                .map(|c| c.as_primitive::<Date32Type>().clone())
        };
        let (from, to) = (date("valid_from"), date("valid_to"));
        let assists = roster
            .column_by_name("assists")
            .map(|c| c.as_string::<i32>().clone());
        let day = |a: &Option<arrow::array::PrimitiveArray<Date32Type>>, i: usize| {
            a.as_ref().filter(|a| a.is_valid(i)).map(|a| a.value(i))
        };
        for i in 0..roster.num_rows() {
            if !pid.is_valid(i) {
                continue;
            }
            let listed = assists
                .as_ref()
                .filter(|a| a.is_valid(i) && role.is_valid(i) && role.value(i) == "sales_assistant")
                .map(|a| {
                    a.value(i)
                        .split(';')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                });
            rows.entry(pid.value(i).to_string()).or_default().push(Row {
                from: day(&from, i),
                to: day(&to, i),
                pos: i,
                assists: listed,
            });
        }
        OwnerSide { rows }
    }

    /// Whether `entered_by` entering for `owner` on `date` (days since the epoch) is the
    /// owner's side: the enterer's roster row that day lists the owner.
    pub fn allows(&self, entered_by: &str, owner: &str, date: i32) -> bool {
        let Some(rows) = self.rows.get(entered_by) else {
            return false;
        };
        rows.iter()
            .filter(|r| r.from.is_none_or(|f| f <= date) && r.to.is_none_or(|t| date <= t))
            // The later valid_from wins (a missing one is the earliest), then the first.
            .max_by(|a, b| a.from.cmp(&b.from).then(b.pos.cmp(&a.pos)))
            .and_then(|r| r.assists.as_ref())
            .is_some_and(|list| list.iter().any(|x| x == owner))
    }
}

/// The `entered_by_owner_side` column of a checked customer batch.
pub fn column(side: Option<&OwnerSide>, batch: &RecordBatch, dates: &Date32Array) -> BooleanArray {
    let text = |name: &str| {
        batch
            .column_by_name(name)
            .map(|c| c.as_string::<i32>().clone())
    };
    let (by, owner) = (text("entered_by"), text("owner_id"));
    let mut out = BooleanBuilder::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        fn get(a: Option<&arrow::array::StringArray>, i: usize) -> Option<&str> {
            a.filter(|a| a.is_valid(i)).map(|a| a.value(i))
        }
        let v = match (get(by.as_ref(), i), get(owner.as_ref(), i)) {
            (Some(b), Some(o)) if b == o => Some(true),
            (Some(b), Some(o)) => side.map(|s| s.allows(b, o, dates.value(i))),
            // No owner: nobody's exclusive customer to protect.
            _ => side.map(|_| false),
        };
        out.append_option(v);
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Date32Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn d(s: &str) -> i32 {
        let d: jiff::civil::Date = s.parse().unwrap();
        (d - jiff::civil::date(1970, 1, 1)).get_days()
    }

    #[test]
    fn the_assistant_in_force_that_day_is_the_owners_side() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("person_id", DataType::Utf8, false),
            Field::new("role", DataType::Utf8, false),
            Field::new("valid_from", DataType::Date32, true),
            Field::new("valid_to", DataType::Date32, true),
            Field::new("assists", DataType::Utf8, true),
        ]));
        let roster = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["sam", "sam", "ted", "ann"])),
                Arc::new(StringArray::from(vec![
                    "sales_assistant",
                    "sales_assistant",
                    "sales_rep",
                    "sales_rep",
                ])),
                Arc::new(Date32Array::from(vec![
                    Some(d("2026-01-01")),
                    Some(d("2026-06-01")),
                    None,
                    None,
                ])),
                Arc::new(Date32Array::from(vec![None, None, None, None])),
                Arc::new(StringArray::from(vec![
                    Some("rita; ann"),
                    Some("ann"),
                    Some("rita"),
                    None,
                ])),
            ],
        )
        .unwrap();
        let s = OwnerSide::new(&roster);
        assert!(s.allows("sam", "rita", d("2026-03-01")));
        // From June the later row is in force: sam no longer assists rita.
        assert!(!s.allows("sam", "rita", d("2026-07-01")));
        assert!(s.allows("sam", "ann", d("2026-07-01")));
        // A rep's `assists` means nothing; nor does someone not on the roster.
        assert!(!s.allows("ted", "rita", d("2026-03-01")));
        assert!(!s.allows("zed", "rita", d("2026-03-01")));
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("entered_by", DataType::Utf8, false),
                Field::new("owner_id", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(StringArray::from(vec!["rita", "sam", "ted", "sam"])),
                Arc::new(StringArray::from(vec![
                    Some("rita"),
                    Some("rita"),
                    Some("rita"),
                    None,
                ])),
            ],
        )
        .unwrap();
        let dates = Date32Array::from(vec![d("2026-03-01"); 4]);
        let with = column(Some(&s), &batch, &dates);
        assert_eq!(
            with.iter().collect::<Vec<_>>(),
            [Some(true), Some(true), Some(false), Some(false)]
        );
        let without = column(None, &batch, &dates);
        assert_eq!(
            without.iter().collect::<Vec<_>>(),
            [Some(true), None, None, None]
        );
    }
}
