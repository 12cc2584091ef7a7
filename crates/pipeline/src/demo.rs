//! `crmdq demo`: the whole pipeline on this machine with nothing installed — an
//! in-process Kafka mock cluster (librdkafka's), the synthetic CRM stream produced to it,
//! consumed by the real `run` path, scored, and a scoreboard.

use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::array::RecordBatch;
use crmdq_config::Pipeline;
use crmdq_warehouse::Warehouse;
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use tokio_util::sync::CancellationToken;

use crate::generate::{GenSpec, generate, roster_csv};
use crate::run::{RunOptions, RunSummary, run};
use crate::{Clock, PipelineError};

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

/// What librdkafka's mock cluster keeps of one partition: it drops the oldest message
/// sets past 5 MiB (`max_size` in `rdkafka_mock.c`, not configurable), so a bigger
/// stream on too few partitions silently loses its head and a consumer waiting for all
/// of it waits forever.
pub const MOCK_PARTITION_BYTES: u64 = 5 * 1024 * 1024;

/// Partitions for `lines` on the mock cluster: at least `min`, and one per 3 MiB of
/// payload (keys and batch headers ride on top; the retention check catches the rest).
#[must_use]
pub fn mock_partitions(lines: &[String], min: i32) -> i32 {
    let bytes: u64 = lines.iter().map(|l| l.len() as u64 + 32).sum();
    let per = 3 * 1024 * 1024;
    i32::try_from(bytes.div_ceil(per))
        .unwrap_or(i32::MAX)
        .max(min)
}

/// Create `topic` on the mock cluster with enough partitions for `lines` (at least
/// `min`), produce them, and check the cluster kept every one (low watermarks 0, high
/// watermarks summing to the count). Returns the partition count.
pub fn produce_to_mock<C: rdkafka::ClientContext>(
    cluster: &MockCluster<'_, C>,
    topic: &str,
    lines: &[String],
    min: i32,
) -> Result<i32, PipelineError> {
    let partitions = mock_partitions(lines, min);
    cluster
        .create_topic(topic, partitions, 1)
        .map_err(|e| PipelineError::Other(format!("creating topic {topic}: {e}")))?;
    let brokers = cluster.bootstrap_servers();
    produce(&brokers, topic, lines)?;
    check_retained(&brokers, topic, partitions, lines.len())?;
    Ok(partitions)
}

/// Check that `topic`'s `partitions` still hold all `produced` messages from offset 0
/// (the mock cluster drops the oldest past [`MOCK_PARTITION_BYTES`]).
pub fn check_retained(
    brokers: &str,
    topic: &str,
    partitions: i32,
    produced: usize,
) -> Result<(), PipelineError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| PipelineError::Other(format!("creating a watermark probe: {e}")))?;
    let mut kept = 0i64;
    for p in 0..partitions {
        let (low, high) = probe
            .fetch_watermarks(topic, p, Duration::from_secs(30))
            .map_err(|e| PipelineError::Other(format!("watermarks of {topic}[{p}]: {e}")))?;
        if low > 0 {
            return Err(PipelineError::Other(format!(
                "the mock cluster dropped the first {low} messages of {topic}[{p}] \
                 (it keeps {MOCK_PARTITION_BYTES} bytes per partition)"
            )));
        }
        kept += high;
    }
    if usize::try_from(kept).ok() != Some(produced) {
        return Err(PipelineError::Other(format!(
            "the mock cluster holds {kept} messages of {topic}, {produced} were produced"
        )));
    }
    Ok(())
}

/// Produce `lines` to `topic` (keyed by line number) and wait until all are acknowledged.
pub fn produce(brokers: &str, topic: &str, lines: &[String]) -> Result<(), PipelineError> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .map_err(|e| PipelineError::Other(format!("creating producer: {e}")))?;
    for (i, line) in lines.iter().enumerate() {
        let key = i.to_string();
        let mut rec = BaseRecord::to(topic)
            .payload(line.as_bytes())
            .key(key.as_bytes());
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((e, r)) => {
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ) {
                        std::thread::sleep(Duration::from_millis(5));
                        rec = r;
                    } else {
                        return Err(PipelineError::Other(format!("producing: {e}")));
                    }
                }
            }
        }
    }
    producer
        .flush(Duration::from_mins(1))
        .map_err(|e| PipelineError::Other(format!("flushing producer: {e}")))?;
    Ok(())
}

/// Run the demo in `dir` (emptied first if it holds an earlier demo).
pub async fn demo(
    dir: &Path,
    clock: &dyn Clock,
    days: u32,
    people: u32,
) -> Result<DemoReport, PipelineError> {
    if dir
        .join("warehouse")
        .join(crmdq_warehouse::LOG_DIR)
        .exists()
    {
        std::fs::remove_dir_all(dir)
            .map_err(|e| PipelineError::Other(format!("clearing {}: {e}", dir.display())))?;
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| PipelineError::Other(format!("creating {}: {e}", dir.display())))?;
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
    std::fs::write(dir.join("roster.csv"), roster_csv(&spec))
        .map_err(|e| PipelineError::Other(e.to_string()))?;
    let pipeline_path = dir.join("pipeline.yaml");
    let text = CRM_PIPELINE.replace("path: ${CRMDQ_WAREHOUSE:-warehouse}", "path: warehouse");
    std::fs::write(&pipeline_path, &text).map_err(|e| PipelineError::Other(e.to_string()))?;
    let p = Pipeline::from_str_at(&text, &pipeline_path, &|k| std::env::var(k).ok())
        .map_err(|e| PipelineError::Other(e.to_string()))?;

    let cluster = MockCluster::new(1)
        .map_err(|e| PipelineError::Other(format!("starting the mock cluster: {e}")))?;
    // The demo stream goes to crm.records only (record_type in each message).
    let mut p = p;
    if let Some(k) = p.kafka.as_mut() {
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
    crmdq_score::score(&p, &w, p.roster.as_deref(), clock.now().to_string()).await?;

    let ctx = crmdq_catalog::open(&w, p.roster.as_deref()).await?;
    let teams = ctx.sql(TEAMS_SQL).await?.collect().await?;
    let people = ctx.sql(PEOPLE_SQL).await?.collect().await?;
    let dead_letters = ctx.sql("SELECT reason, COUNT(*) AS messages FROM dead_letters GROUP BY reason ORDER BY messages DESC").await?.collect().await?;
    drop(cluster);
    // What the shipped alert rules say about the latest scored day (nothing is sent).
    let alerts = crmdq_alerts::evaluate(
        &p,
        &w,
        p.roster.as_deref(),
        &crmdq_alerts::EvalOptions {
            dry_run: true,
            ..crmdq_alerts::EvalOptions::latest(clock.now())
        },
    )
    .await
    .map_err(|e| PipelineError::Other(e.to_string()))?;
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
