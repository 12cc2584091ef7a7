//! `crmdq demo`: the whole pipeline on this machine with nothing installed — an
//! in-process Kafka mock cluster (librdkafka's), the synthetic CRM stream produced to it,
//! consumed by the real `run` path, scored, and a scoreboard.

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use crmdq_config::Pipeline;
use crmdq_warehouse::Warehouse;
use rdkafka::mocking::MockCluster;
use tokio_util::sync::CancellationToken;

use anyhow::Context as _;
use crmdq_pipeline::Clock;
use crmdq_pipeline::run::{RunOptions, RunSummary, run};
use crmdq_testkit::generate::{GenSpec, absences_csv, generate, roster_csv};
use crmdq_testkit::kafka::produce_to_mock;

/// The shipped pipeline, embedded so the demo needs no files.
pub const CRM_PIPELINE: &str = include_str!("../../../pipelines/crm.yaml");

/// What the demo did, for the caller to print.
#[derive(Debug)]
pub struct DemoReport {
    pub dir: PathBuf,
    pub produced: usize,
    /// Partitions of the demo topic (3, more for a stream past the mock's retention).
    pub partitions: i32,
    pub run: RunSummary,
    pub teams: Vec<RecordBatch>,
    pub people: Vec<RecordBatch>,
    pub dead_letters: Vec<RecordBatch>,
    /// The shipped alert rules on the latest scored day (dry run).
    pub alerts: crmdq_alerts::Report,
    /// The month's review, as lines to print.
    pub review: Vec<String>,
    /// The month's scorecards (`crmdq report`), written into `<dir>/report/<month>/`.
    pub report: Option<crmdq_report::Output>,
}

/// Run the demo in `dir` (emptied first if it holds an earlier demo).
pub async fn demo(
    dir: &Path,
    clock: &dyn Clock,
    days: u32,
    people: u32,
) -> anyhow::Result<DemoReport> {
    if dir
        .join("warehouse")
        .join(crmdq_warehouse::LOG_DIR)
        .exists()
    {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let today = clock
        .now()
        .to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap_or(jiff::tz::TimeZone::UTC))
        .date();
    let start = today - jiff::Span::new().days(i64::from(days) + 7);
    let spec = GenSpec {
        start,
        days,
        people,
        seed: 42,
        tz: jiff::tz::TimeZone::get("Asia/Shanghai").unwrap_or(jiff::tz::TimeZone::UTC),
        first_id: 0,
    };
    std::fs::write(dir.join("roster.csv"), roster_csv(&spec)).context("writing the roster")?;
    std::fs::write(dir.join("absences.csv"), absences_csv(&spec))
        .context("writing the absences")?;
    let pipeline_path = dir.join("pipeline.yaml");
    let text = CRM_PIPELINE.replace("path: ${CRMDQ_WAREHOUSE:-warehouse}", "path: warehouse")
        + "\nabsences: absences.csv\n";
    std::fs::write(&pipeline_path, &text).context("writing the pipeline file")?;
    let p = Pipeline::from_str_at(&text, &pipeline_path, &|k| std::env::var(k).ok())?;

    let cluster = MockCluster::new(1).context("starting the mock cluster")?;
    // The demo stream goes to crm.records only (record_type in each message).
    let mut p = p;
    if let Some(k) = p.source.kafka.as_mut() {
        k.topics.retain(|t, _| t == "crm.records");
    }
    let brokers = cluster.bootstrap_servers();
    let lines = generate(&spec);
    let partitions = produce_to_mock(&cluster, "crm.records", &lines, 3)?;

    let w = Warehouse::connect(&p.warehouse.location()).await?;
    let opts = RunOptions {
        brokers: Some(brokers),
        until_caught_up: true,
        telemetry: None,
    };
    let summary = run(&p, &w, &opts, clock, CancellationToken::new()).await?;
    crmdq_score::score(&p, &w, p.roster_path(), clock.now().to_string()).await?;

    let ctx = crmdq_catalog::open(&w, p.roster_path()).await?;
    let teams = ctx.sql(TEAMS_SQL).await?.collect().await?;
    let people = ctx.sql(PEOPLE_SQL).await?.collect().await?;
    let dead_letters = ctx.sql("SELECT reason, COUNT(*) AS messages FROM dead_letters GROUP BY reason ORDER BY messages DESC").await?.collect().await?;
    let (month, review) = month_review(&p, &ctx).await?;
    drop(cluster);
    // What the shipped alert rules say about the latest scored day (nothing is sent).
    let alerts = crmdq_alerts::evaluate(
        &p,
        &w,
        p.roster_path(),
        &crmdq_alerts::EvalOptions {
            dry_run: true,
            ..crmdq_alerts::EvalOptions::latest(clock.now())
        },
    )
    .await?;
    // The month's scorecards, as a manager would open them.
    let report = match month {
        Some(period) => Some(
            crmdq_report::report(
                &p,
                &w,
                p.roster_path(),
                &crmdq_report::Scope {
                    period: period.clone(),
                    team: None,
                    now: clock.now(),
                },
                p.report.lang,
                crmdq_report::Format::Html,
                &dir.join("report").join(&period),
            )
            .await?,
        ),
        None => None,
    };
    Ok(DemoReport {
        dir: p.warehouse.path.clone(),
        produced: lines.len(),
        partitions,
        run: summary,
        teams,
        people,
        dead_letters,
        alerts,
        review,
        report,
    })
}

/// The month's review as a manager reads it: per team, the judged people ranked (score,
/// change from the month before, targets met), then the people not judged and why; each
/// with the scorecard rate whose gap costs the most points, and how many. The month is
/// the one with the most entries (returned with the lines).
pub async fn month_review(
    p: &Pipeline,
    ctx: &datafusion::prelude::SessionContext,
) -> anyhow::Result<(Option<String>, Vec<String>)> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int64Type};
    let month = ctx
        .sql(
            "SELECT period FROM team_period WHERE period_kind = 'month' GROUP BY period \
             ORDER BY SUM(entries) DESC, period DESC LIMIT 1",
        )
        .await?
        .collect()
        .await?;
    let Some(month) = month
        .first()
        .filter(|b| b.num_rows() > 0)
        .map(|b| b.column(0).as_string::<i32>().value(0).to_string())
    else {
        return Ok((None, vec!["(nothing scored)".into()]));
    };
    let rates = crmdq_config::SCORE_METRICS.join(", ");
    let batches = ctx
        .sql(&format!(
            "SELECT team_id, person_id, role, entries, score, score_change, judged, rank_in_team, \
               targets_met, targets_total, {rates} FROM person_period \
             WHERE period_kind = 'month' AND period = '{month}' AND person_id <> 'unassigned' \
             ORDER BY team_id, judged DESC, role, rank_in_team, person_id"
        ))
        .await?
        .collect()
        .await?;
    let min = p.scoring.review.min_volume;
    let mut out = vec![format!(
        "Review of {month} (judged: {min}+ entries and {min}+ of each scorecard measure; ranked within team and role)"
    )];
    let mut team = String::new();
    for b in &batches {
        let text = |c: &str, i: usize| {
            b.column_by_name(c)
                .map(AsArray::as_string::<i32>)
                .filter(|a| a.is_valid(i))
                .map_or_else(String::new, |a| a.value(i).to_string())
        };
        let num = |c: &str, i: usize| {
            b.column_by_name(c)
                .map(AsArray::as_primitive::<Float64Type>)
                .filter(|a| a.is_valid(i))
                .map(|a| a.value(i))
        };
        let int = |c: &str, i: usize| {
            b.column_by_name(c)
                .map(AsArray::as_primitive::<Int64Type>)
                .filter(|a| a.is_valid(i))
                .map(|a| a.value(i))
        };
        for (i, row) in crmdq_report::model::rows(std::slice::from_ref(b))
            .iter()
            .enumerate()
        {
            let (t, person, role) = (text("team_id", i), text("person_id", i), text("role", i));
            if t != team {
                out.push(format!("Team {t}"));
                team = t;
            }
            // The scorecard rate whose gap to 1 costs the most points (as the person's
            // report page words it).
            let first = crmdq_report::view::gains(p, row, &role)
                .first()
                .map_or_else(
                    || "nothing to fix".to_string(),
                    |(m, v, gain)| format!("first: {m} {v:.2} (+{gain:.1} points at 1.00)"),
                );
            let entries = int("entries", i).unwrap_or(0);
            let judged = b
                .column_by_name("judged")
                .map(AsArray::as_boolean)
                .is_some_and(|a| a.is_valid(i) && a.value(i));
            let score = num("score", i).map_or_else(|| "-".into(), |s| format!("{s:.1}"));
            if judged {
                let change =
                    num("score_change", i).map_or_else(|| "new".into(), |c| format!("{c:+.1}"));
                out.push(format!(
                    "  {}. {person} ({role}): score {score} ({change}), targets {}/{}; {first}",
                    int("rank_in_team", i).unwrap_or(0),
                    int("targets_met", i).unwrap_or(0),
                    int("targets_total", i).unwrap_or(0),
                ));
            } else {
                out.push(format!(
                    "  not judged: {person} ({role}): {entries} entries{}; score {score}; {first}",
                    if entries < i64::try_from(min).unwrap_or(i64::MAX) {
                        format!(", needs {min}")
                    } else {
                        ", a scorecard measure has too few cases".to_string()
                    }
                ));
            }
        }
    }
    Ok((Some(month), out))
}

/// Teams over the whole period.
pub const TEAMS_SQL: &str = "SELECT team_id, SUM(entries) AS entries, \
    ROUND(CAST(SUM(complete_entries) AS DOUBLE) / SUM(entries), 3) AS completeness, \
    ROUND(CAST(SUM(valid_entries) AS DOUBLE) / SUM(entries), 3) AS validity, \
    ROUND(CAST(SUM(on_time_entries) AS DOUBLE) / SUM(entries), 3) AS timeliness, \
    ROUND(AVG(score), 1) AS avg_score FROM team_daily GROUP BY team_id ORDER BY avg_score DESC, team_id";

/// People over the whole period, each with the two rules that cost them most.
pub const PEOPLE_SQL: &str = "WITH p AS (SELECT person_id, role, team_id, SUM(entries) AS entries, \
      ROUND(CAST(SUM(complete_entries) AS DOUBLE) / NULLIF(SUM(entries), 0), 3) AS completeness, \
      ROUND(CAST(SUM(valid_entries) AS DOUBLE) / NULLIF(SUM(entries), 0), 3) AS validity, \
      ROUND(CAST(SUM(on_time_entries) AS DOUBLE) / NULLIF(SUM(entries), 0), 3) AS timeliness, \
      ROUND(AVG(checkin_response_rate), 2) AS checkin_resp, ROUND(AVG(complaint_rate), 2) AS complaints, \
      ROUND(AVG(score), 1) AS avg_score FROM person_daily GROUP BY person_id, role, team_id), \
    r AS (SELECT person_id, rule, SUM(entries) AS n, ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY SUM(entries) DESC, rule) AS k \
      FROM rule_daily GROUP BY person_id, rule) \
    SELECT p.*, COALESCE(string_agg(CASE WHEN r.rule IS NOT NULL THEN concat(r.rule, ' (', CAST(r.n AS VARCHAR), ')') END, ', ' ORDER BY r.k), '') AS top_rules \
    FROM p LEFT JOIN r ON r.person_id = p.person_id AND r.k <= 2 \
    GROUP BY p.person_id, p.role, p.team_id, p.entries, p.completeness, p.validity, p.timeliness, p.checkin_resp, p.complaints, p.avg_score \
    ORDER BY p.avg_score DESC NULLS LAST, p.person_id";
