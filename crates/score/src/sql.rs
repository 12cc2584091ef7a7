//! The scoring SQL, generated from the pipeline's scorecards. Kept as text so that
//! `crmdq score --explain` can print exactly what produced a number.

use std::fmt::Write as _;

use crmdq_catalog::views::entry_views;
use crmdq_config::{Pipeline, Scorecard};

/// The views the score tables are computed from, in creation order: the entry views
/// ([`crmdq_catalog::views::entry_views`]), then the roster at each date and the KPIs.
pub fn views() -> Vec<(String, String)> {
    let mut v = entry_views();
    v.extend([
        (
            // The roster with each row's position in it (ties below go to the first row).
            "roster_rows".to_string(),
            "SELECT *, ROW_NUMBER() OVER () AS crmdq_row FROM roster".to_string(),
        ),
        (
            // Everyone who entered or owns something on D, with their roster row at D
            // (inclusive dates; the later valid_from wins, NULL counting as earliest; of
            // rows equal in that, the first in the roster). Aggregates rather than a
            // window: DataFusion's window operator keeps a state per (person, day).
            "roster_at".to_string(),
            "SELECT x.person_id, x.dt, r.role, r.team_id, r.manager_id FROM ( \
               SELECT p.person_id, p.dt, \
                 first_value(r.crmdq_row ORDER BY r.valid_from DESC NULLS LAST, r.crmdq_row) AS crmdq_row \
               FROM (SELECT DISTINCT entered_by AS person_id, dt FROM entries UNION SELECT DISTINCT owner_id, dt FROM entries) p \
               JOIN roster_rows r ON r.person_id = p.person_id \
                 AND (r.valid_from IS NULL OR r.valid_from <= CAST(p.dt AS DATE)) \
                 AND (r.valid_to IS NULL OR CAST(p.dt AS DATE) <= r.valid_to) \
               GROUP BY p.person_id, p.dt) x \
             JOIN roster_rows r ON r.crmdq_row = x.crmdq_row"
                .to_string(),
        ),
        (
            // Each entry with its record team: its own team_id, else its owner's roster team.
            "entries_team".to_string(),
            "SELECT e.*, COALESCE(e.team_id, o.team_id) AS record_team \
             FROM entries e LEFT JOIN roster_at o ON o.person_id = e.owner_id AND o.dt = e.dt"
                .to_string(),
        ),
        (
            // How many of each person's entries on D carry each record team.
            "entered_teams".to_string(),
            "SELECT entered_by AS person_id, dt, record_team AS team_id, COUNT(*) AS n \
             FROM entries_team WHERE record_team IS NOT NULL GROUP BY entered_by, dt, record_team"
                .to_string(),
        ),
        (
            // Team of people not on the roster: the record team most of their entries carry (ties: smallest id).
            "offroster_team".to_string(),
            "SELECT c.person_id, c.dt, MIN(c.team_id) AS team_id FROM entered_teams c \
             JOIN (SELECT person_id, dt, MAX(n) AS n FROM entered_teams GROUP BY person_id, dt) m \
               ON m.person_id = c.person_id AND m.dt = c.dt AND m.n = c.n \
             GROUP BY c.person_id, c.dt"
                .to_string(),
        ),
        (
            "entry_quality".to_string(),
            "SELECT entered_by AS person_id, dt, COUNT(*) AS entries, \
               SUM(CASE WHEN dq_complete THEN 1 ELSE 0 END) AS complete_entries, \
               SUM(CASE WHEN dq_valid THEN 1 ELSE 0 END) AS valid_entries, \
               SUM(CASE WHEN dq_on_time THEN 1 ELSE 0 END) AS on_time_entries, \
               SUM(dq_late_seconds) AS late_seconds \
             FROM entries GROUP BY entered_by, dt"
                .to_string(),
        ),
        (
            "ticket_kpis".to_string(),
            // Tickets counted once per record id (one row per id first, then per owner
            // and day); the means are sums over counts of whole numbers, so exactly
            // AVG's result.
            "SELECT owner_id AS person_id, dt, COUNT(*) AS tickets, \
               SUM(sat_sum) / CAST(NULLIF(SUM(sat_n), 0) AS DOUBLE) AS mean_satisfaction, \
               SUM(complaint_sum) / CAST(NULLIF(SUM(complaint_n), 0) AS DOUBLE) AS complaint_rate \
             FROM (SELECT owner_id, dt, record_id, \
                 SUM(CASE WHEN satisfaction BETWEEN 1 AND 5 THEN CAST(satisfaction AS DOUBLE) END) AS sat_sum, \
                 COUNT(CASE WHEN satisfaction BETWEEN 1 AND 5 THEN 1 END) AS sat_n, \
                 SUM(CASE WHEN complaint THEN 1.0 WHEN NOT complaint THEN 0.0 END) AS complaint_sum, \
                 COUNT(complaint) AS complaint_n \
               FROM service_ticket_entries GROUP BY owner_id, dt, record_id) GROUP BY owner_id, dt"
                .to_string(),
        ),
        (
            "checkin_kpis".to_string(),
            "SELECT owner_id AS person_id, dt, COUNT(*) AS checkins, \
               AVG(CASE WHEN responded_at IS NOT NULL AND response_complete THEN 1.0 ELSE 0.0 END) AS checkin_response_rate \
             FROM checkin_entries GROUP BY owner_id, dt"
                .to_string(),
        ),
        (
            "opportunity_kpis".to_string(),
            "SELECT owner_id AS person_id, dt, \
               SUM(CASE WHEN lower(stage) IN ('won', 'lost') THEN 1 ELSE 0 END) AS opportunities_closed, \
               CAST(SUM(CASE WHEN lower(stage) = 'won' THEN 1 ELSE 0 END) AS DOUBLE) \
                 / NULLIF(SUM(CASE WHEN lower(stage) IN ('won', 'lost') THEN 1 ELSE 0 END), 0) AS win_rate \
             FROM opportunity_entries GROUP BY owner_id, dt"
                .to_string(),
        ),
    ]);
    v.push((
        // Who gets a person_daily row on D: everyone who entered something, and the owners
        // of role KPIs (tickets, check-ins, closed opportunities). `unassigned` is nobody.
        "people_days".to_string(),
        "SELECT person_id, dt FROM ( \
           SELECT DISTINCT entered_by AS person_id, dt FROM entries \
           UNION SELECT person_id, dt FROM ticket_kpis \
           UNION SELECT person_id, dt FROM checkin_kpis \
           UNION SELECT person_id, dt FROM opportunity_kpis WHERE opportunities_closed > 0) \
         WHERE person_id <> 'unassigned'"
            .to_string(),
    ));
    v.push((
        "person_base".to_string(),
        "SELECT p.dt, p.person_id, COALESCE(r.role, 'unknown') AS role, \
           COALESCE(r.team_id, o.team_id, 'unassigned') AS team_id, r.manager_id, \
           COALESCE(q.entries, 0) AS entries, COALESCE(q.complete_entries, 0) AS complete_entries, \
           COALESCE(q.valid_entries, 0) AS valid_entries, COALESCE(q.on_time_entries, 0) AS on_time_entries, \
           COALESCE(q.late_seconds, 0) AS late_seconds, \
           CAST(q.complete_entries AS DOUBLE) / NULLIF(q.entries, 0) AS completeness_rate, \
           CAST(q.valid_entries AS DOUBLE) / NULLIF(q.entries, 0) AS validity_rate, \
           CAST(q.on_time_entries AS DOUBLE) / NULLIF(q.entries, 0) AS timeliness_rate, \
           COALESCE(t.tickets, 0) AS tickets, t.mean_satisfaction, t.complaint_rate, \
           (t.mean_satisfaction - 1.0) / 4.0 AS satisfaction_rate, 1.0 - t.complaint_rate AS complaint_free_rate, \
           COALESCE(c.checkins, 0) AS checkins, c.checkin_response_rate, \
           COALESCE(k.opportunities_closed, 0) AS opportunities_closed, k.win_rate \
         FROM people_days p \
         LEFT JOIN roster_at r ON r.person_id = p.person_id AND r.dt = p.dt \
         LEFT JOIN offroster_team o ON o.person_id = p.person_id AND o.dt = p.dt \
         LEFT JOIN entry_quality q ON q.person_id = p.person_id AND q.dt = p.dt \
         LEFT JOIN ticket_kpis t ON t.person_id = p.person_id AND t.dt = p.dt \
         LEFT JOIN checkin_kpis c ON c.person_id = p.person_id AND c.dt = p.dt \
         LEFT JOIN opportunity_kpis k ON k.person_id = p.person_id AND k.dt = p.dt"
            .to_string(),
    ));
    v
}

/// `score` (0–100): the weighted mean of the scorecard's metrics that are not NULL.
fn score_expr(card: &Scorecard) -> String {
    let num = card
        .iter()
        .map(|(m, w)| format!("COALESCE({w:?} * {m}, 0.0)"))
        .collect::<Vec<_>>()
        .join(" + ");
    let den = card
        .iter()
        .map(|(m, w)| format!("CASE WHEN {m} IS NULL THEN 0.0 ELSE {w:?} END"))
        .collect::<Vec<_>>()
        .join(" + ");
    format!("100.0 * ({num}) / NULLIF({den}, 0.0)")
}

pub fn person_daily(p: &Pipeline) -> String {
    let mut cases = String::from("CASE role");
    for (role, card) in &p.scoring.scorecards {
        if role != "default" && role != "team" {
            let _ = write!(cases, " WHEN '{role}' THEN {}", score_expr(card));
        }
    }
    let _ = write!(cases, " ELSE {} END", score_expr(p.scorecard("default")));
    format!(
        "SELECT dt, person_id, role, team_id, manager_id, entries, complete_entries, valid_entries, on_time_entries, late_seconds, \
             completeness_rate, validity_rate, timeliness_rate, tickets, mean_satisfaction, complaint_rate, checkins, \
             checkin_response_rate, opportunities_closed, win_rate, {cases} AS score \
             FROM person_base ORDER BY dt, person_id, role"
    )
}

pub fn team_daily(p: &Pipeline) -> String {
    let card = p.scorecard("team");
    format!(
        "SELECT dt, team_id, people, entries, complete_entries, valid_entries, on_time_entries, \
           completeness_rate, validity_rate, timeliness_rate, {} AS score FROM ( \
           SELECT dt, team_id, CAST(COUNT(*) AS BIGINT) AS people, SUM(entries) AS entries, SUM(complete_entries) AS complete_entries, \
             SUM(valid_entries) AS valid_entries, SUM(on_time_entries) AS on_time_entries, \
             CAST(SUM(complete_entries) AS DOUBLE) / NULLIF(SUM(entries), 0) AS completeness_rate, \
             CAST(SUM(valid_entries) AS DOUBLE) / NULLIF(SUM(entries), 0) AS validity_rate, \
             CAST(SUM(on_time_entries) AS DOUBLE) / NULLIF(SUM(entries), 0) AS timeliness_rate \
           FROM person_base WHERE entries > 0 GROUP BY dt, team_id) ORDER BY dt, team_id",
        score_expr(card)
    )
}

pub fn rule_daily() -> String {
    "SELECT r.dt, r.person_id, b.role, b.team_id, r.rule, CAST(COUNT(*) AS BIGINT) AS entries FROM ( \
       SELECT dt, entered_by AS person_id, concat('missing.', f) AS rule FROM (SELECT dt, entered_by, unnest(dq_missing_fields) AS f FROM entries) \
       UNION ALL SELECT dt, entered_by AS person_id, c AS rule FROM (SELECT dt, entered_by, unnest(dq_failed_checks) AS c FROM entries) \
       UNION ALL SELECT dt, entered_by AS person_id, 'late' AS rule FROM entries WHERE NOT dq_on_time \
     ) r JOIN person_base b ON b.person_id = r.person_id AND b.dt = r.dt \
     GROUP BY r.dt, r.person_id, b.role, b.team_id, r.rule ORDER BY r.dt, r.person_id, r.rule"
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::DataType;
    use datafusion::prelude::SessionContext;

    /// The roster row at D: the later valid_from wins, a missing one counts as earliest,
    /// periods are inclusive, and of periods equal in valid_from the first listed wins.
    #[tokio::test]
    async fn roster_at_picks_the_later_period_then_the_first_listed() {
        let ctx = SessionContext::new();
        for sql in [
            "CREATE TABLE entries (entered_by VARCHAR, owner_id VARCHAR, dt VARCHAR) AS VALUES \
               ('ann', 'ann', '2026-03-10'), ('bob', 'ann', '2026-03-10'), ('bob', 'bob', '2026-03-01'), \
               ('cy', 'cy', '2026-03-10'), ('dee', 'dee', '2026-03-10')",
            "CREATE TABLE roster (person_id VARCHAR, role VARCHAR, team_id VARCHAR, manager_id VARCHAR, \
               valid_from DATE, valid_to DATE) AS VALUES \
               ('ann', 'sales_rep', 'open', NULL, NULL, NULL), \
               ('ann', 'sales_rep', 'later', NULL, DATE '2026-03-10', NULL), \
               ('bob', 'sales_rep', 'old', NULL, DATE '2026-01-01', DATE '2026-03-01'), \
               ('bob', 'sales_rep', 'new', NULL, DATE '2026-03-02', NULL), \
               ('cy', 'sales_rep', 'first', NULL, DATE '2026-01-01', NULL), \
               ('cy', 'sales_rep', 'second', NULL, DATE '2026-01-01', NULL), \
               ('dee', 'sales_rep', 'none', NULL, DATE '2026-04-01', NULL)",
        ] {
            ctx.sql(sql).await.unwrap().collect().await.unwrap();
        }
        for (name, body) in views() {
            if name == "roster_rows" || name == "roster_at" {
                ctx.sql(&format!("CREATE VIEW {name} AS {body}"))
                    .await
                    .unwrap();
            }
        }
        let b = ctx
            .sql("SELECT person_id || ' ' || dt || ' ' || team_id AS r FROM roster_at ORDER BY r")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let got: Vec<String> = b
            .iter()
            .flat_map(|b| {
                let c = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8).unwrap();
                let c = c.as_string::<i32>();
                (0..b.num_rows())
                    .map(|i| c.value(i).to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(
            got,
            [
                "ann 2026-03-10 later",
                "bob 2026-03-01 old",
                "bob 2026-03-10 new",
                "cy 2026-03-10 first"
            ]
        );
    }
}
