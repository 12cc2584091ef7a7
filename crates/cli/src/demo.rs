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
use crmdq_testkit::generate::{GenSpec, generate, roster_csv};
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
    let pipeline_path = dir.join("pipeline.yaml");
    let text = CRM_PIPELINE.replace("path: ${CRMDQ_WAREHOUSE:-warehouse}", "path: warehouse");
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

    let w = Warehouse::open(&p.warehouse.path)?;
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
    Ok(DemoReport {
        dir: p.warehouse.path.clone(),
        produced: lines.len(),
        partitions,
        run: summary,
        teams,
        people,
        dead_letters,
        alerts,
    })
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
