//! The scoring SQL, generated from the pipeline's scorecards. Kept as text: the score's
//! plan fingerprint (`incremental::Plans`) hashes it, so a changed scorecard or query
//! re-scores what it affects.

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
               FROM (SELECT DISTINCT entered_by AS person_id, dt FROM entries UNION SELECT DISTINCT owner_id, dt FROM entries \
                 UNION SELECT person_id, dt FROM review_daily) p \
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
            // Tickets counted once per record id and day (one row per id first, then per
            // owner and day), with the sums the means and rates are ratios of.
            "SELECT owner_id AS person_id, dt, COUNT(*) AS tickets, \
               SUM(sat_n) AS rated_tickets, SUM(sat_sum) AS satisfaction_sum, \
               SUM(complaint_sum) AS complaints, SUM(complaint_n) AS complaints_known \
             FROM (SELECT owner_id, dt, record_id, \
                 SUM(CASE WHEN satisfaction BETWEEN 1 AND 5 THEN CAST(satisfaction AS BIGINT) END) AS sat_sum, \
                 COUNT(CASE WHEN satisfaction BETWEEN 1 AND 5 THEN 1 END) AS sat_n, \
                 SUM(CASE WHEN complaint THEN 1 WHEN NOT complaint THEN 0 END) AS complaint_sum, \
                 COUNT(complaint) AS complaint_n \
               FROM service_ticket_entries GROUP BY owner_id, dt, record_id) GROUP BY owner_id, dt"
                .to_string(),
        ),
    ]);
    v.push((
        // Who gets a person_daily row on D: everyone who entered something, the owners of
        // tickets, and everyone the review pass counted something for (`review_daily`:
        // customers, opportunities, orders, check-ins, coverage). `unassigned` is nobody.
        "people_days".to_string(),
        "SELECT person_id, dt FROM ( \
           SELECT DISTINCT entered_by AS person_id, dt FROM entries \
           UNION SELECT person_id, dt FROM ticket_kpis \
           UNION SELECT person_id, dt FROM review_daily) \
         WHERE person_id <> 'unassigned'"
            .to_string(),
    ));
    let counts = COUNTS
        .iter()
        .map(|c| match *c {
            "entries" | "complete_entries" | "valid_entries" | "on_time_entries"
            | "late_seconds" => {
                format!("COALESCE(q.{c}, 0) AS {c}")
            }
            "tickets" | "rated_tickets" | "satisfaction_sum" | "complaints"
            | "complaints_known" => {
                format!("COALESCE(t.{c}, 0) AS {c}")
            }
            "opportunities_closed" => {
                "COALESCE(v.opportunities_won, 0) + COALESCE(v.opportunities_lost, 0) \
                AS opportunities_closed"
                    .to_string()
            }
            _ => format!("COALESCE(v.{c}, 0) AS {c}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    v.push((
        "person_base".to_string(),
        format!(
            "SELECT p.dt, p.person_id, COALESCE(r.role, 'unknown') AS role, \
               COALESCE(r.team_id, o.team_id, 'unassigned') AS team_id, r.manager_id, \
               {counts}, v.order_amount, v.checkin_response_minutes \
             FROM people_days p \
             LEFT JOIN roster_at r ON r.person_id = p.person_id AND r.dt = p.dt \
             LEFT JOIN offroster_team o ON o.person_id = p.person_id AND o.dt = p.dt \
             LEFT JOIN entry_quality q ON q.person_id = p.person_id AND q.dt = p.dt \
             LEFT JOIN ticket_kpis t ON t.person_id = p.person_id AND t.dt = p.dt \
             LEFT JOIN review_daily v ON v.person_id = p.person_id AND v.dt = p.dt"
        ),
    ));
    v
}

/// The counts of the daily and period tables, in column order (declared with the score
/// tables' schemas): every rate is a ratio of two of them, so a team's or a period's rate
/// is recomputed from their sums.
pub const COUNTS: [&str; 24] = crmdq_schema::SCORE_COUNTS;

/// Every rate and mean: (column, numerator, denominator), each over [`COUNTS`]. The
/// denominator is also what `review.min_volume` is held against.
pub const RATES: [(&str, &str, &str); 13] = [
    ("completeness_rate", "complete_entries", "entries"),
    ("validity_rate", "valid_entries", "entries"),
    ("timeliness_rate", "on_time_entries", "entries"),
    ("checkin_response_rate", "checkins_answered", "checkins"),
    (
        "checkin_response_quality",
        "checkins_complete",
        "checkins_answered",
    ),
    ("checkin_coverage", "covered_pairs", "coverage_pairs"),
    ("mean_satisfaction", "satisfaction_sum", "rated_tickets"),
    // (mean − 1) / 4: the 1–5 scale as 0–1.
    (
        "satisfaction_rate",
        "(satisfaction_sum - rated_tickets) / 4.0",
        "rated_tickets",
    ),
    ("complaint_rate", "complaints", "complaints_known"),
    (
        "complaint_free_rate",
        "complaints_known - complaints",
        "complaints_known",
    ),
    ("win_rate", "opportunities_won", "opportunities_closed"),
    (
        "stage_success_rate",
        "opportunities_advanced",
        "opportunities_advanced + opportunities_lost",
    ),
    ("own_entry_rate", "own_side_entries", "customer_entries"),
];

/// The denominator of a scorecard metric ([`RATES`]), in the order of the declared
/// [`crmdq_schema::SCORE_RATES`] (a test holds the two equal).
pub fn denominator(metric: &str) -> Option<&'static str> {
    RATES.iter().find(|r| r.0 == metric).map(|r| r.2)
}

/// `SELECT` items computing every rate of [`RATES`] from the count columns in scope.
pub fn rate_columns() -> String {
    RATES
        .iter()
        .map(|(name, num, den)| {
            format!("CAST({num} AS DOUBLE) / CAST(NULLIF({den}, 0) AS DOUBLE) AS {name}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `SELECT` items summing every count of [`COUNTS`] (and `order_amount`).
pub fn summed_counts() -> String {
    let mut v: Vec<String> = COUNTS
        .iter()
        .map(|c| format!("CAST(SUM({c}) AS BIGINT) AS {c}"))
        .collect();
    v.push("SUM(order_amount) AS order_amount".to_string());
    v.join(", ")
}

/// The scorecard score per role: `CASE role WHEN … THEN … ELSE <default> END`.
pub fn role_score(p: &Pipeline) -> String {
    let mut cases = String::from("CASE role");
    for (role, card) in &p.scoring.scorecards {
        if role != "default" && role != "team" {
            let _ = write!(cases, " WHEN '{role}' THEN {}", score_expr(card));
        }
    }
    let _ = write!(cases, " ELSE {} END", score_expr(p.scorecard("default")));
    cases
}

/// `score` (0–100): the weighted mean of the scorecard's metrics that are not NULL.
pub fn score_expr(card: &Scorecard) -> String {
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

/// The counts as they stand in a table (for the column lists of selects).
fn count_list() -> String {
    COUNTS.join(", ")
}

pub fn person_daily(p: &Pipeline) -> String {
    format!(
        "SELECT dt, person_id, role, team_id, manager_id, {counts}, order_amount, \
           checkin_response_minutes, {rate_names}, {score} AS score FROM ( \
           SELECT *, {rates} FROM person_base) ORDER BY dt, person_id, role",
        counts = count_list(),
        rate_names = RATES.map(|r| r.0).join(", "),
        rates = rate_columns(),
        score = role_score(p),
    )
}

pub fn team_daily(p: &Pipeline) -> String {
    format!(
        "SELECT t.dt, t.team_id, t.people, {counts}, t.order_amount, m.checkin_response_minutes, \
           {rate_names}, t.score FROM ( \
           SELECT *, {score} AS score FROM ( \
             SELECT *, {rates} FROM ( \
               SELECT dt, team_id, CAST(SUM(CASE WHEN entries > 0 THEN 1 ELSE 0 END) AS BIGINT) AS people, \
                 {sums} FROM person_base WHERE person_id <> 'unassigned' GROUP BY dt, team_id))) t \
         LEFT JOIN (SELECT b.dt, b.team_id, median(f.minutes) AS checkin_response_minutes \
             FROM checkin_facts f JOIN person_base b ON b.person_id = f.person_id AND b.dt = f.dt \
             GROUP BY b.dt, b.team_id) m ON m.dt = t.dt AND m.team_id = t.team_id \
         ORDER BY t.dt, t.team_id",
        counts = COUNTS.map(|c| format!("t.{c}")).join(", "),
        rate_names = RATES.map(|r| format!("t.{}", r.0)).join(", "),
        rates = rate_columns(),
        sums = summed_counts(),
        score = score_expr(p.scorecard("team")),
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

    #[test]
    fn the_rates_are_the_declared_ones() {
        assert_eq!(RATES.map(|r| r.0), crmdq_schema::SCORE_RATES);
    }
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
            "CREATE TABLE review_daily (person_id VARCHAR, dt VARCHAR)",
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
