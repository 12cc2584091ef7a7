//! The warehouse's views: entries (the first delivery of each record version) and the
//! views readers query (latest scores, trends, failing records). Kept as SQL text, so
//! `crmdq score --explain` and the docs can show exactly what a view is.

use crmdq_schema::RecordType;

/// Columns every record table shares, used to pool entries.
pub const COMMON: &str = "record_type, record_id, version, owner_id, entered_by, team_id, dt, \
    dq_complete, dq_valid, dq_on_time, dq_late_seconds, dq_missing_fields, dq_failed_checks, \
    dq_ingested_at, src_topic, src_partition, src_offset, src_file, src_line";

/// The order that decides which delivery of a record version is the first (each column
/// ascending, NULLs last: DataFusion's default).
pub const DELIVERY_ORDER: &str =
    "dq_ingested_at, src_topic, src_partition, src_offset, src_file, src_line";

/// Dedup a table to the first delivery of each (record_id, version) in source order.
pub fn dedup(table: &str, cols: &str) -> String {
    dedup_by(table, cols, &["record_id", "version"])
}

/// Dedup `table` to the first delivery (in [`DELIVERY_ORDER`]) of each `keys` value.
///
/// Equal to `ROW_NUMBER() OVER (PARTITION BY keys ORDER BY …) = 1` over the whole table,
/// but the window only sees the keys delivered more than once (about 1% of rows in a
/// typical warehouse); every other row passes through an anti join. DataFusion's window
/// operator keeps a state per partition, which made the plain form the slowest step of
/// scoring (see `docs/performance.md`). Keys compare NULL-equal, as PARTITION BY does.
pub fn dedup_by(table: &str, cols: &str, keys: &[&str]) -> String {
    let key_list = keys.join(", ");
    let (key_cols, on) = key_join(keys, "d", "k");
    let dup_keys =
        format!("(SELECT {key_cols} FROM \"{table}\" GROUP BY {key_list} HAVING COUNT(*) > 1)");
    format!(
        "SELECT {cols} FROM \"{table}\" d LEFT ANTI JOIN {dup_keys} k ON {on} \
         UNION ALL SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER (PARTITION BY {key_list} \
         ORDER BY {DELIVERY_ORDER}) AS crmdq_rn FROM \"{table}\" d LEFT SEMI JOIN {dup_keys} k ON {on}) \
         WHERE crmdq_rn = 1"
    )
}

/// For a join on `keys` against a subquery aliased `right` that selects `key_cols`:
/// (`key_cols`, the NULL-equal ON clause between `left` and `right`).
pub fn key_join(keys: &[&str], left: &str, right: &str) -> (String, String) {
    let cols = keys
        .iter()
        .map(|k| format!("{k} AS crmdq_k_{k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let on = keys
        .iter()
        .map(|k| format!("({left}.{k} IS NOT DISTINCT FROM {right}.crmdq_k_{k})"))
        .collect::<Vec<_>>()
        .join(" AND ");
    (cols, on)
}

/// Columns scoring reads from a record type's entries beyond [`COMMON`].
fn kpi_columns(rt: RecordType) -> &'static str {
    match rt {
        RecordType::ServiceTicket => ", satisfaction, complaint",
        RecordType::Checkin => ", responded_at, response_complete",
        RecordType::Opportunity => ", stage",
        _ => "",
    }
}

/// The columns of `<type>_entries`.
pub fn type_entry_columns(rt: RecordType) -> String {
    format!("{COMMON}{}", kpi_columns(rt))
}

/// The view holding the entries (first deliveries) of one record type.
pub fn type_entries_view(rt: RecordType) -> String {
    format!("{rt}_entries")
}

/// The entry views, in creation order: `all_deliveries` (every delivery, pooled),
/// `<type>_entries` (the first delivery of each record version of one type, with the
/// columns the role KPIs need) and `entries` (those pooled).
///
/// Deduplicating each type's table on (record_id, version) is the same as deduplicating
/// all deliveries on (record_type, record_id, version): a type's table holds exactly the
/// deliveries of that record_type.
pub fn entry_views() -> Vec<(String, String)> {
    let union = RecordType::ALL
        .iter()
        .map(|rt| format!("SELECT {COMMON} FROM \"{rt}\""))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let mut v = vec![("all_deliveries".to_string(), union)];
    for rt in RecordType::ALL {
        v.push((
            type_entries_view(rt),
            dedup(rt.as_str(), &type_entry_columns(rt)),
        ));
    }
    let entries = RecordType::ALL
        .iter()
        .map(|rt| format!("SELECT {COMMON} FROM {}", type_entries_view(*rt)))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    v.push(("entries".to_string(), entries));
    v
}

/// Views for people and BI tools on top of the tables and [`entry_views`]: the latest
/// scored date, 30-day trends, and every entry that cost its author something. Plain SQL
/// over the tables, so in `serve` they follow new commits as the tables do.
pub fn reading_views() -> Vec<(String, String)> {
    [
            (
                // The latest scored business date, per person.
                "person_latest",
                "SELECT * FROM person_daily WHERE dt = (SELECT max(dt) FROM person_daily)",
            ),
            (
                "team_latest",
                "SELECT * FROM team_daily WHERE dt = (SELECT max(dt) FROM team_daily)",
            ),
            (
                // Each person's last 30 scored business dates (ending at the latest one).
                "person_trend_30d",
                "SELECT * FROM person_daily WHERE CAST(dt AS DATE) > \
                   (SELECT max(CAST(dt AS DATE)) FROM person_daily) - INTERVAL '30 days'",
            ),
            (
                "team_trend_30d",
                "SELECT * FROM team_daily WHERE CAST(dt AS DATE) > \
                   (SELECT max(CAST(dt AS DATE)) FROM team_daily) - INTERVAL '30 days'",
            ),
            (
                // Every scored entry (first delivery) that cost its author something, with
                // the reasons in words and its source position.
                "failing_records",
                "SELECT dt, entered_by AS person_id, record_type, record_id, version, team_id, \
                   concat_ws('; ', \
                     CASE WHEN NOT dq_complete THEN concat('missing ', array_to_string(dq_missing_fields, ', ')) END, \
                     CASE WHEN NOT dq_valid THEN concat('failed ', array_to_string(dq_failed_checks, ', ')) END, \
                     CASE WHEN NOT dq_on_time THEN concat('late by ', CAST(dq_late_seconds AS VARCHAR), ' s') END) AS reasons, \
                   dq_complete, dq_missing_fields, dq_valid, dq_failed_checks, dq_on_time, dq_late_seconds, \
                   src_topic, src_partition, src_offset, src_file, src_line \
                 FROM entries WHERE NOT dq_complete OR NOT dq_valid OR NOT dq_on_time",
            ),
    ]
    .into_iter()
    .map(|(n, b)| (n.to_string(), b.to_string()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Int64Type};
    use datafusion::prelude::SessionContext;

    /// The plain window form `dedup_by` must equal.
    fn reference(table: &str, cols: &str, keys: &[&str]) -> String {
        format!(
            "SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER (PARTITION BY {} \
             ORDER BY {DELIVERY_ORDER}) AS crmdq_rn FROM \"{table}\") WHERE crmdq_rn = 1",
            keys.join(", ")
        )
    }

    async fn rows(ctx: &SessionContext, sql: &str) -> Vec<String> {
        let batches: Vec<RecordBatch> = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let mut out = Vec::new();
        for b in &batches {
            let text =
                |c: usize| datafusion::arrow::compute::cast(b.column(c), &DataType::Utf8).unwrap();
            let (t, id, pay) = (text(0), text(1), text(3));
            let (t, id, pay) = (
                t.as_string::<i32>(),
                id.as_string::<i32>(),
                pay.as_string::<i32>(),
            );
            let v = b.column(2).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                let get = |a: &datafusion::arrow::array::StringArray| {
                    a.is_valid(i).then(|| a.value(i).to_string())
                };
                out.push(format!(
                    "{:?} {:?} {} {:?}",
                    get(t),
                    get(id),
                    v.value(i),
                    get(pay)
                ));
            }
        }
        out.sort();
        out
    }

    /// Deliveries of the same version that differ in content, arrive in any order, three
    /// times, from files and Kafka, with NULL keys and NULL ordering columns: the anti-join
    /// form picks exactly the rows the window form picks.
    #[tokio::test]
    async fn dedup_by_equals_the_window_form() {
        let ctx = SessionContext::new();
        ctx.sql(
            "CREATE TABLE t (record_type VARCHAR, record_id VARCHAR, version BIGINT, payload VARCHAR, \
               dq_ingested_at BIGINT, src_topic VARCHAR, src_partition INT, src_offset BIGINT, \
               src_file VARCHAR, src_line BIGINT) AS VALUES \
             ('customer', 'c1', 1, 'only', 10, NULL, NULL, NULL, 'f', 1), \
             ('customer', 'c2', 1, 'later', 20, NULL, NULL, NULL, 'f', 2), \
             ('customer', 'c2', 1, 'first', 10, NULL, NULL, NULL, 'g', 9), \
             ('customer', 'c2', 2, 'v2', 10, NULL, NULL, NULL, 'g', 10), \
             ('order', 'c2', 1, 'other type', 30, NULL, NULL, NULL, 'g', 11), \
             ('order', 'o1', 1, 'k-late', 5, 'crm', 0, 7, NULL, NULL), \
             ('order', 'o1', 1, 'k-early', 5, 'crm', 0, 3, NULL, NULL), \
             ('order', 'o1', 1, 'k-other-partition', 5, 'crm', 1, 1, NULL, NULL), \
             ('order', 'o1', 1, 'no time', NULL, 'crm', 0, 1, NULL, NULL), \
             (NULL, 'n1', 1, 'null type a', 1, NULL, NULL, NULL, 'f', 5), \
             (NULL, 'n1', 1, 'null type b', 2, NULL, NULL, NULL, 'f', 6), \
             ('customer', NULL, 1, 'null id a', 3, NULL, NULL, NULL, 'f', 7), \
             ('customer', NULL, 1, 'null id b', 1, NULL, NULL, NULL, 'f', 8)",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
        let cols = "record_type, record_id, version, payload";
        for keys in [
            &["record_type", "record_id", "version"][..],
            &["record_id", "version"],
        ] {
            let fast = rows(&ctx, &dedup_by("t", cols, keys)).await;
            let slow = rows(&ctx, &reference("t", cols, keys)).await;
            assert_eq!(fast, slow, "keys {keys:?}");
        }
        // And the expectations, spelled out for the full key.
        let got = rows(
            &ctx,
            &dedup_by("t", cols, &["record_type", "record_id", "version"]),
        )
        .await;
        for want in [
            "first",
            "k-early",
            "null type a",
            "null id b",
            "only",
            "v2",
            "other type",
        ] {
            assert!(
                got.iter().any(|r| r.ends_with(&format!("{want:?})"))),
                "{want} not in {got:?}"
            );
        }
        assert_eq!(got.len(), 7, "{got:?}");
    }
}
