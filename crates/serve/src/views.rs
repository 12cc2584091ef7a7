//! Views the SQL endpoint and the JSON API add on top of the warehouse tables. They are
//! plain SQL over the live tables, so they follow new commits like the tables do.

/// (name, SQL body), in creation order.
pub fn views() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = crmdq_score::sql::entry_views();
    v.extend(
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
        .map(|(n, b)| (n.to_string(), b.to_string())),
    );
    v
}
