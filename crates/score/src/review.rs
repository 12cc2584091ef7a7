//! The record-level KPIs of the performance review (contract section 7), computed once per
//! `crmdq score` over the whole warehouse, before the daily chunks.
//!
//! Entry-quality rates count entries (every record version) and are computed a chunk of
//! dates at a time. The review's KPIs count *records*, each once, in the state of its
//! latest version as of the day — which may lie on a date in another chunk (an
//! opportunity's previous stage, a customer's first version, an order a week after a
//! win). So they are computed here from the first delivery of every version of the
//! customer, opportunity, order and check-in tables (only the columns they need), into:
//!
//! - `review_daily`: one row per (person_id, dt) with the counts of section 7, joined into
//!   `person_daily` by each chunk;
//! - `checkin_facts`: one row per counted check-in (owner, dt, answered minutes), for the
//!   medians of days, teams and periods.
//!
//! Readings chosen where the contract is silent (documented in `schemas/README.md`):
//! an opportunity's first version moves it from the first stage (so one entered at
//! `qualified` advanced, one entered at `lead` did not move); a check-in and an order
//! count on the business date of their first version, in the state of their latest
//! version of that date; an order counts for a win when its first version's business
//! date is within `orders_within_days` days after the win (the win's own date included);
//! a pair of an assistant and an assisted rep is expected on a working day on which
//! neither is absent.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use crmdq_config::Pipeline;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

/// `CASE stage …`: the rank of a (lower-cased) stage in the pipeline's order, NULL for a
/// stage outside it (`lost` included).
fn stage_rank(p: &Pipeline, col: &str) -> String {
    let mut s = format!("CASE {col}");
    for (i, st) in p.scoring.opportunity_stages.iter().enumerate() {
        let _ = write!(s, " WHEN '{}' THEN {i}", st.replace('\'', "''"));
    }
    s.push_str(" END");
    s
}

/// The roster row in force on `dt` for each (person_id, dt) of `source` (the same rule as
/// scoring's `roster_at`: the later valid_from wins, then the first row listed).
pub fn roster_at(source: &str) -> String {
    format!(
        "SELECT x.person_id, x.dt, r.role, r.team_id, r.manager_id, r.name, r.assists FROM ( \
           SELECT p.person_id, p.dt, \
             first_value(r.crmdq_row ORDER BY r.valid_from DESC NULLS LAST, r.crmdq_row) AS crmdq_row \
           FROM ({source}) p \
           JOIN roster_rows r ON r.person_id = p.person_id \
             AND (r.valid_from IS NULL OR r.valid_from <= CAST(p.dt AS DATE)) \
             AND (r.valid_to IS NULL OR CAST(p.dt AS DATE) <= r.valid_to) \
           GROUP BY p.person_id, p.dt) x \
         JOIN roster_rows r ON r.crmdq_row = x.crmdq_row"
    )
}

/// Each record of `versions` once, on the business date of its first version, with `cols`
/// as its latest version of that date has them (so a version 2 the same day that answers
/// a check-in counts, one days later does not).
fn first_day_state(versions: &str, cols: &[&str]) -> String {
    let cols = cols
        .iter()
        .map(|c| format!("last_value(v.{c} ORDER BY v.version) AS {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT v.record_id, v.dt, {cols} FROM {versions} v \
         JOIN (SELECT record_id, MIN(dt) AS dt FROM {versions} GROUP BY record_id) f \
           ON f.record_id = v.record_id AND f.dt = v.dt \
         GROUP BY v.record_id, v.dt"
    )
}

/// One record type's versions, each once (its first delivery), as the review reads them:
/// `name` holds `cols` of `table`'s deliveries of one bucket of record ids.
pub struct Versions {
    pub name: &'static str,
    pub table: &'static str,
    pub cols: &'static [&'static str],
}

/// What becomes of a bucket's output once the bucket is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Counts per (person_id, dt) or rows per check-in, large as the warehouse: written
    /// to a temporary Parquet file sorted by `dt` (one per bucket), from which each chunk
    /// of dates reads its own dates.
    Spill,
    /// One row per won opportunity, per order day, per check-in pair: held in memory
    /// (appended bucket after bucket) for the cross-record `finish` views.
    Hold,
}

/// The review pass as SQL, in five steps (run by `passes::review_pass` and, per chunk
/// of dates, `passes::register_review`):
///
/// 1. `setup`, once: the roster's rows and the absent days;
/// 2. per *bucket* of record ids (a stable hash of `record_id`, so every version of a
///    record is in one bucket, and memory follows the bucket rather than the warehouse):
///    the [`Versions`] of each record type, then the `bucket` views over them;
/// 3. each of the `outputs` (bucket views) kept as [`Keep`] says;
/// 4. `finish`, once, over the held outputs: what crosses records (a won opportunity's
///    order within days, an assistant's coverage); the `finish_spilled` ones are spilled;
/// 5. `range`, per chunk of dates, over the spilled tables restricted to the chunk's
///    dates: the sums over buckets, the medians, `review_daily` and `checkin_facts`.
pub struct Plan {
    pub setup: Vec<(String, String)>,
    pub versions: Vec<Versions>,
    pub bucket: Vec<(String, String)>,
    pub outputs: Vec<(&'static str, Keep)>,
    pub finish: Vec<(String, String)>,
    pub finish_spilled: Vec<&'static str>,
    pub range: Vec<(String, String)>,
}

/// The review pass ([`Plan`]). Its SQL reads the record tables (every committed file),
/// `roster`, `absences`, `working_days (dt)` and `all_dates (dt)`.
pub fn plan(p: &Pipeline) -> Plan {
    let v = |name: &str, sql: String| (name.to_string(), sql);
    let within = p.scoring.orders_within_days;
    let rank = stage_rank(p, "stage");
    let prev_rank = stage_rank(p, "prev");
    let setup = vec![
        v(
            "roster_rows",
            "SELECT *, ROW_NUMBER() OVER () AS crmdq_row FROM roster".into(),
        ),
        // Absent (person, dt): one row per day of each absence that a record date falls on.
        v(
            "absent_days",
            "SELECT DISTINCT a.person_id, w.dt FROM absences a \
             JOIN (SELECT dt FROM working_days UNION SELECT dt FROM all_dates) w \
               ON CAST(w.dt AS DATE) BETWEEN a.\"from\" AND a.\"to\""
                .into(),
        ),
    ];
    let versions = vec![
        Versions {
            name: "customer_versions",
            table: "customer",
            cols: &["owner_id", "entered_by", "entered_by_owner_side", "dt"],
        },
        Versions {
            name: "opportunity_versions",
            table: "opportunity",
            cols: &["owner_id", "customer_id", "stage", "dt"],
        },
        Versions {
            name: "order_versions",
            table: "order",
            cols: &["owner_id", "customer_id", "amount", "dt"],
        },
        Versions {
            name: "checkin_versions",
            table: "checkin",
            cols: &[
                "owner_id",
                "entered_by",
                "event_time",
                "responded_at",
                "response_complete",
                "dt",
            ],
        },
    ];
    let bucket = vec![
        // Customers: on the owner's side as decided at ingest (`entered_by_owner_side`),
        // or where ingest knew no roster, from the roster at its date: the owner, or an
        // assistant whose assists list it.
        v(
            "customer_enterers",
            roster_at(
                "SELECT DISTINCT entered_by AS person_id, dt FROM customer_versions \
                 WHERE entered_by IS DISTINCT FROM owner_id",
            ),
        ),
        v(
            "customer_sides",
            "SELECT c.owner_id, c.dt, \
               CASE WHEN c.entered_by_owner_side THEN 1 \
                    WHEN NOT c.entered_by_owner_side THEN 0 \
                    WHEN c.entered_by = c.owner_id THEN 1 \
                    WHEN r.role = 'sales_assistant' AND array_has(string_to_array(r.assists, ';'), c.owner_id) THEN 1 \
                    ELSE 0 END AS own_side \
             FROM customer_versions c \
             LEFT JOIN customer_enterers r ON r.person_id = c.entered_by AND r.dt = c.dt"
                .into(),
        ),
        v(
            "customer_kpis_part",
            "SELECT owner_id AS person_id, dt, COUNT(*) AS customer_entries, \
               SUM(own_side) AS own_side_entries FROM customer_sides GROUP BY owner_id, dt"
                .into(),
        ),
        v(
            "new_customer_kpis_part",
            "SELECT owner_id AS person_id, dt, COUNT(*) AS new_customers FROM ( \
               SELECT record_id, first_value(owner_id ORDER BY version) AS owner_id, \
                 first_value(dt ORDER BY version) AS dt \
               FROM customer_versions GROUP BY record_id) GROUP BY owner_id, dt"
                .into(),
        ),
        // Opportunities: the state at the end of each date a version was entered on
        // (its latest version of the date), kept where it is the newest version so far,
        // and compared with the state before. (`opportunity_moves` is run natively,
        // `moves.rs`; this SQL is its definition, held equal by a test.)
        v(
            "opportunity_days",
            "SELECT record_id, dt, \
               last_value(owner_id ORDER BY version) AS owner_id, \
               last_value(customer_id ORDER BY version) AS customer_id, \
               last_value(lower(trim(stage)) ORDER BY version) AS stage, \
               MAX(version) AS version \
             FROM opportunity_versions GROUP BY record_id, dt"
                .into(),
        ),
        v(
            "opportunity_moves",
            "SELECT record_id, dt, owner_id, customer_id, stage, \
               LAG(stage) OVER (PARTITION BY record_id ORDER BY dt) AS prev FROM ( \
               SELECT *, MAX(version) OVER (PARTITION BY record_id ORDER BY dt \
                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before \
               FROM opportunity_days) \
             WHERE before IS NULL OR version > before"
                .into(),
        ),
        v(
            "opportunity_changes",
            format!(
                "SELECT record_id, dt, owner_id, customer_id, \
                   CASE WHEN stage = 'lost' AND prev IS DISTINCT FROM 'lost' THEN 1 ELSE 0 END AS lost, \
                   CASE WHEN ({rank}) > COALESCE(({prev_rank}), 0) \
                        AND (prev IS NULL OR ({prev_rank}) IS NOT NULL) THEN 1 ELSE 0 END AS advanced, \
                   CASE WHEN stage = 'won' AND prev IS DISTINCT FROM 'won' THEN 1 ELSE 0 END AS won \
                 FROM opportunity_moves"
            ),
        ),
        v(
            "opportunity_counts_part",
            "SELECT owner_id AS person_id, dt, SUM(advanced) AS opportunities_advanced, \
               SUM(lost) AS opportunities_lost, SUM(won) AS opportunities_won \
             FROM opportunity_changes GROUP BY owner_id, dt"
                .into(),
        ),
        v(
            "wins_part",
            "SELECT record_id, owner_id AS person_id, customer_id, dt \
             FROM opportunity_changes WHERE won = 1"
                .into(),
        ),
        // Orders: each once, on its first version's date, as of that date.
        v(
            "order_firsts",
            first_day_state("order_versions", &["owner_id", "customer_id", "amount"]),
        ),
        v(
            "order_kpis_part",
            "SELECT owner_id AS person_id, dt, COUNT(*) AS orders, \
               SUM(CAST(amount AS DOUBLE)) AS order_amount FROM order_firsts GROUP BY owner_id, dt"
                .into(),
        ),
        v(
            "order_days_part",
            "SELECT DISTINCT customer_id, dt FROM order_firsts WHERE customer_id IS NOT NULL"
                .into(),
        ),
        // Check-ins: each once, on its first version's date, as of that date; not counted
        // when the rep is absent that day.
        v(
            "checkin_firsts",
            first_day_state(
                "checkin_versions",
                &["owner_id", "event_time", "responded_at", "response_complete"],
            ),
        ),
        v(
            "checkin_rows_part",
            "SELECT c.owner_id AS person_id, c.dt, \
               CASE WHEN c.responded_at IS NOT NULL THEN 1 ELSE 0 END AS answered, \
               CASE WHEN c.responded_at IS NOT NULL AND c.response_complete THEN 1 ELSE 0 END AS complete, \
               CASE WHEN c.responded_at IS NOT NULL THEN \
                 CAST(date_part('epoch', c.responded_at) - date_part('epoch', c.event_time) AS DOUBLE) / 60.0 END AS minutes \
             FROM checkin_firsts c \
             LEFT ANTI JOIN absent_days a ON a.person_id = c.owner_id AND a.dt = c.dt"
                .into(),
        ),
        v(
            "checkin_pairs_part",
            "SELECT DISTINCT entered_by, owner_id, dt FROM checkin_versions".into(),
        ),
    ];
    let outputs = vec![
        ("customer_kpis_part", Keep::Spill),
        ("new_customer_kpis_part", Keep::Spill),
        ("opportunity_counts_part", Keep::Spill),
        ("wins_part", Keep::Hold),
        ("order_kpis_part", Keep::Spill),
        ("order_days_part", Keep::Hold),
        ("checkin_rows_part", Keep::Spill),
        ("checkin_pairs_part", Keep::Hold),
    ];
    let finish = vec![
        // A win counts as without order unless an order for its customer was first
        // entered within `orders_within_days` days from the win's date.
        v(
            "won_orders",
            format!(
                "SELECT w.person_id, w.dt, COUNT(*) AS won_without_order FROM wins_part w \
                 LEFT ANTI JOIN (SELECT DISTINCT w.record_id FROM wins_part w \
                   JOIN order_days_part f ON f.customer_id = w.customer_id \
                     AND CAST(f.dt AS DATE) >= CAST(w.dt AS DATE) \
                     AND CAST(f.dt AS DATE) <= CAST(w.dt AS DATE) + INTERVAL '{within} days') o \
                   ON o.record_id = w.record_id \
                 GROUP BY w.person_id, w.dt"
            ),
        ),
        // Coverage: (assistant, assisted rep, working day) with neither absent; covered
        // when the assistant entered a check-in about the rep that day.
        v(
            "assistant_days",
            roster_at(
                "SELECT r.person_id, w.dt FROM (SELECT DISTINCT person_id FROM roster \
                   WHERE role = 'sales_assistant' AND assists IS NOT NULL) r CROSS JOIN working_days w",
            ),
        ),
        v(
            "coverage_pairs",
            "SELECT a.person_id, a.dt, trim(u.rep) AS rep FROM ( \
               SELECT person_id, dt, unnest(string_to_array(assists, ';')) AS rep FROM assistant_days \
               WHERE role = 'sales_assistant' AND assists IS NOT NULL) u \
             JOIN assistant_days a ON a.person_id = u.person_id AND a.dt = u.dt \
             LEFT ANTI JOIN absent_days x ON x.person_id = u.person_id AND x.dt = u.dt \
             LEFT ANTI JOIN absent_days y ON y.person_id = trim(u.rep) AND y.dt = u.dt"
                .into(),
        ),
        v(
            "coverage_kpis",
            "SELECT c.person_id, c.dt, COUNT(*) AS coverage_pairs, \
               SUM(CASE WHEN k.owner_id IS NULL THEN 0 ELSE 1 END) AS covered_pairs \
             FROM coverage_pairs c \
             LEFT JOIN (SELECT DISTINCT entered_by, owner_id, dt FROM checkin_pairs_part) k \
               ON k.entered_by = c.person_id AND k.owner_id = c.rep AND k.dt = c.dt \
             GROUP BY c.person_id, c.dt"
                .into(),
        ),
    ];
    // Per chunk of dates: each spilled table holds only the chunk's dates here.
    let range = vec![
        v(
            "customer_kpis",
            "SELECT person_id, dt, SUM(customer_entries) AS customer_entries, \
               SUM(own_side_entries) AS own_side_entries FROM customer_kpis_part GROUP BY person_id, dt"
                .into(),
        ),
        v(
            "new_customer_kpis",
            "SELECT person_id, dt, SUM(new_customers) AS new_customers \
             FROM new_customer_kpis_part GROUP BY person_id, dt"
                .into(),
        ),
        // Both keys NULL-safe (`dt` is never NULL): DataFusion makes a join whose keys mix
        // `=` and `IS NOT DISTINCT FROM` a hash join on the `=` keys alone with the other
        // as a filter — every person of a date against every other — which took 0.17 s of
        // an incremental score; with both it is one hash join on both, NULLs equal.
        v(
            "opportunity_kpis",
            "SELECT c.person_id, c.dt, c.opportunities_advanced, c.opportunities_lost, \
               c.opportunities_won, COALESCE(n.won_without_order, 0) AS won_without_order \
             FROM (SELECT person_id, dt, SUM(opportunities_advanced) AS opportunities_advanced, \
                 SUM(opportunities_lost) AS opportunities_lost, SUM(opportunities_won) AS opportunities_won \
               FROM opportunity_counts_part GROUP BY person_id, dt) c \
             LEFT JOIN won_orders n \
               ON (n.person_id IS NOT DISTINCT FROM c.person_id) AND (n.dt IS NOT DISTINCT FROM c.dt)"
                .into(),
        ),
        v(
            "order_kpis",
            "SELECT person_id, dt, SUM(orders) AS orders, SUM(order_amount) AS order_amount \
             FROM order_kpis_part GROUP BY person_id, dt"
                .into(),
        ),
        v(
            "checkin_kpis",
            "SELECT person_id, dt, COUNT(*) AS checkins, SUM(answered) AS checkins_answered, \
               SUM(complete) AS checkins_complete, median(minutes) AS checkin_response_minutes \
             FROM checkin_rows_part GROUP BY person_id, dt"
                .into(),
        ),
        v(
            "checkin_facts",
            "SELECT person_id, dt, minutes FROM checkin_rows_part".into(),
        ),
        v(
            "review_daily",
            "SELECT k.person_id, k.dt, \
               COALESCE(nc.new_customers, 0) AS new_customers, \
               COALESCE(cu.customer_entries, 0) AS customer_entries, \
               COALESCE(cu.own_side_entries, 0) AS own_side_entries, \
               COALESCE(op.opportunities_advanced, 0) AS opportunities_advanced, \
               COALESCE(op.opportunities_lost, 0) AS opportunities_lost, \
               COALESCE(op.opportunities_won, 0) AS opportunities_won, \
               COALESCE(op.won_without_order, 0) AS won_without_order, \
               COALESCE(od.orders, 0) AS orders, od.order_amount, \
               COALESCE(ci.checkins, 0) AS checkins, \
               COALESCE(ci.checkins_answered, 0) AS checkins_answered, \
               COALESCE(ci.checkins_complete, 0) AS checkins_complete, \
               ci.checkin_response_minutes, \
               COALESCE(cv.coverage_pairs, 0) AS coverage_pairs, \
               COALESCE(cv.covered_pairs, 0) AS covered_pairs \
             FROM ( \
               SELECT person_id, dt FROM new_customer_kpis UNION SELECT person_id, dt FROM customer_kpis \
               UNION SELECT person_id, dt FROM opportunity_kpis WHERE opportunities_advanced + opportunities_lost + opportunities_won > 0 \
               UNION SELECT person_id, dt FROM order_kpis UNION SELECT person_id, dt FROM checkin_kpis \
               UNION SELECT person_id, dt FROM coverage_kpis) k \
             LEFT JOIN new_customer_kpis nc ON nc.person_id = k.person_id AND nc.dt = k.dt \
             LEFT JOIN customer_kpis cu ON cu.person_id = k.person_id AND cu.dt = k.dt \
             LEFT JOIN opportunity_kpis op ON op.person_id = k.person_id AND op.dt = k.dt \
             LEFT JOIN order_kpis od ON od.person_id = k.person_id AND od.dt = k.dt \
             LEFT JOIN checkin_kpis ci ON ci.person_id = k.person_id AND ci.dt = k.dt \
             LEFT JOIN coverage_kpis cv ON cv.person_id = k.person_id AND cv.dt = k.dt \
             WHERE k.person_id IS NOT NULL"
                .into(),
        ),
    ];
    Plan {
        setup,
        versions,
        bucket,
        outputs,
        finish,
        finish_spilled: vec!["won_orders", "coverage_kpis"],
        range,
    }
}

/// The business dates as a one-column table (`dt`, text).
pub fn dates_table(dates: &[String]) -> MemTable {
    let schema = Arc::new(Schema::new(vec![Field::new("dt", DataType::Utf8, false)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from_iter_values(dates.iter()))],
    )
    .expect("one text column");
    MemTable::try_new(schema, vec![vec![batch]]).expect("schema matches")
}

/// What the review pass hands to the chunks and the period pass.
pub struct Review {
    /// The spilled tables ([`Keep::Spill`] and `finish_spilled`), each a folder of
    /// Parquet files sorted by `dt`, removed with the value.
    pub(crate) dir: tempfile::TempDir,
    pub(crate) spilled: Vec<(String, arrow::datatypes::SchemaRef)>,
    /// [`Plan::range`].
    pub(crate) range: Vec<(String, String)>,
    /// When the spilled tables are small (a warehouse of a few million entries):
    /// `review_daily` and `checkin_facts` of every date, computed once and held, so that
    /// each chunk only filters them to its dates.
    pub(crate) whole: Option<(
        Arc<dyn datafusion::catalog::TableProvider>,
        Arc<dyn datafusion::catalog::TableProvider>,
    )>,
    /// How many buckets of record ids the pass took.
    pub buckets: u64,
}

/// Register `working_days` and `all_dates` for `dates` (the warehouse's business dates),
/// the working ones by the pipeline's calendar.
pub fn register_dates(
    ctx: &SessionContext,
    p: &Pipeline,
    dates: &[String],
) -> datafusion::error::Result<()> {
    let working: Vec<String> = dates
        .iter()
        .filter(|d| {
            d.parse::<jiff::civil::Date>()
                .is_ok_and(|d| p.checks.calendar.is_working_day(d))
        })
        .cloned()
        .collect();
    ctx.register_table("working_days", Arc::new(dates_table(&working)))?;
    ctx.register_table("all_dates", Arc::new(dates_table(dates)))?;
    Ok(())
}
