//! Kafka ingest through librdkafka's in-process mock cluster: the same fixture as the file
//! test gives the same scores; a restart resumes from the commit log and adds nothing.

use std::path::Path;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};
use crmdq_config::Pipeline;
use crmdq_pipeline::demo::produce;
use crmdq_pipeline::run::{RunOptions, run};
use crmdq_pipeline::{FixedClock, query};
use crmdq_warehouse::Warehouse;
use rdkafka::mocking::MockCluster;
use tokio_util::sync::CancellationToken;

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn one_f64(b: &[RecordBatch]) -> f64 {
    b[0].column(0).as_primitive::<Float64Type>().value(0)
}

fn one_i64(b: &[RecordBatch]) -> i64 {
    b[0].column(0).as_primitive::<Int64Type>().value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_ingest_gives_the_file_numbers_and_restarts_add_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pipeline::load(&fixtures().join("pipeline.yaml")).unwrap();
    p.warehouse.path = dir.path().join("wh");
    let w = Warehouse::open(&p.warehouse.path).unwrap();
    let clock = FixedClock("2026-11-28T12:00:00Z".parse().unwrap());

    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("crm.records", 2, 1).unwrap();
    let lines: Vec<String> = std::fs::read_to_string(fixtures().join("small.ndjson"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    produce(&cluster.bootstrap_servers(), "crm.records", &lines).unwrap();

    let opts = RunOptions {
        brokers: Some(cluster.bootstrap_servers()),
        until_caught_up: true,
    };
    let s = run(&p, &w, &opts, &clock, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(s.messages, 15);
    assert_eq!((s.records, s.dead_letters), (13, 2));

    // Positions are in the log: one per partition, summing to the message count.
    let snap = w.snapshot().await.unwrap();
    assert_eq!(snap.kafka.values().sum::<i64>(), 15);

    crmdq_score::score(&p, &w, p.roster.as_deref(), clock.0.to_string())
        .await
        .unwrap();
    let ctx = query::session(&w, None).await.unwrap();
    let q = |sql: &'static str| {
        let ctx = ctx.clone();
        async move { ctx.sql(sql).await.unwrap().collect().await.unwrap() }
    };
    assert!(
        (one_f64(
            &q("SELECT score FROM person_daily WHERE person_id = 'amy' AND dt = '2026-11-26'")
                .await
        ) - 83.333_333_333_333_33)
            .abs()
            < 1e-9
    );
    assert!(
        (one_f64(
            &q("SELECT score FROM person_daily WHERE person_id = 'carl' AND dt = '2026-11-26'")
                .await
        ) - 62.5)
            .abs()
            < 1e-9
    );
    assert!(
        (one_f64(
            &q("SELECT score FROM team_daily WHERE team_id = 'north' AND dt = '2026-11-26'").await
        ) - 88.888_888_888_888_89)
            .abs()
            < 1e-9
    );
    assert_eq!(one_i64(&q("SELECT COUNT(*) FROM customer WHERE src_topic = 'crm.records' AND src_offset IS NOT NULL").await), 4);

    // A second run resumes from the commit log: nothing new, nothing doubled.
    let s2 = run(&p, &w, &opts, &clock, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(s2.messages, 0);
    let ctx = query::session(&w, None).await.unwrap();
    let n = ctx
        .sql("SELECT COUNT(*) FROM activity")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(one_i64(&n), 6);

    // More messages arrive: only they are consumed.
    produce(&cluster.bootstrap_servers(), "crm.records", &lines[..3]).unwrap();
    let s3 = run(&p, &w, &opts, &clock, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(s3.messages, 3);
}
