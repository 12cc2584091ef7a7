//! `crmdq bench`'s Kafka measurement: a stream end to end through librdkafka's in-process
//! mock cluster, drained by a bare consumer (the ceiling) and by `run` (checked and
//! committed). The per-record kernels are in [`crmdq_testkit::kernels`].

use std::time::{Duration, Instant};

use anyhow::Context as _;
use crmdq_config::Pipeline;
use crmdq_pipeline::Clock;
use crmdq_testkit::kernels::Kernel;

/// Kafka end to end on the in-process mock cluster: `lines` produced to a topic of at
/// least 3 partitions (one per 3 MiB: the mock keeps 5 MiB per partition), then drained
/// by a bare consumer (the ceiling), then consumed, checked and committed by
/// `run --until-caught-up` into a fresh warehouse under `dir`.
pub async fn kafka_mock(
    p: &Pipeline,
    lines: &[String],
    dir: &std::path::Path,
    clock: &dyn Clock,
) -> anyhow::Result<Vec<Kernel>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let cluster = rdkafka::mocking::MockCluster::new(1).context("starting the mock cluster")?;
    let brokers = cluster.bootstrap_servers();
    let partitions = crmdq_testkit::kafka::produce_to_mock(&cluster, "crm.records", lines, 3)?;
    tracing::info!(partitions, "produced to the mock cluster");
    let n = lines.len() as u64;
    let bytes: u64 = lines.iter().map(|l| l.len() as u64).sum();

    let bare: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "bench-bare")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the bare consumer")?;
    bare.subscribe(&["crm.records"])
        .context("subscribing the bare consumer")?;
    let t = Instant::now();
    let mut got = 0u64;
    let mut sum = 0usize;
    let mut bare_first = None;
    while got < n {
        if let Some(Ok(m)) = bare.poll(Duration::from_millis(100)) {
            bare_first.get_or_insert_with(Instant::now);
            sum += rdkafka::Message::payload(&m).map_or(0, <[u8]>::len);
            got += 1;
        }
        if t.elapsed() > Duration::from_mins(10) {
            anyhow::bail!("bare consumer: timed out");
        }
    }
    let bare_secs = t.elapsed().as_secs_f64();
    let bare_drain = bare_first.map_or(bare_secs, |f| f.elapsed().as_secs_f64());
    drop(bare);
    tracing::debug!(sum, "drained bytes");

    let mut p = p.clone();
    p.warehouse
        .set_location(&crmdq_config::Location::Local(dir.join("kafka-wh")));
    if let Some(k) = p.source.kafka.as_mut() {
        k.topics = [("crm.records".to_string(), None)].into();
        k.group_id = "bench-crmdq".into();
    }
    let w = crmdq_warehouse::Warehouse::connect(&p.warehouse.location()).await?;
    let opts = crmdq_pipeline::run::RunOptions {
        brokers: Some(brokers),
        until_caught_up: true,
        telemetry: None,
    };
    let t = Instant::now();
    let s = crmdq_pipeline::run::run(
        &p,
        &w,
        &opts,
        clock,
        tokio_util::sync::CancellationToken::new(),
    )
    .await?;
    let run_secs = t.elapsed().as_secs_f64();
    // From the first message to the end of the last commit (not the consumer's close).
    let run_drain = match (s.first_message_at, s.ended_at) {
        (Some(f), Some(e)) => e.duration_since(f).as_secs_f64(),
        _ => run_secs,
    };
    if s.messages != n {
        anyhow::bail!("run consumed {} of {n} messages", s.messages);
    }
    Ok(vec![
        Kernel {
            name: "kafka (mock cluster): bare librdkafka consumer".into(),
            records: n,
            bytes,
            seconds: bare_secs,
        },
        Kernel {
            name: "kafka (mock cluster): crmdq run, checked and committed".into(),
            records: n,
            bytes,
            seconds: run_secs,
        },
        // The same two from their first message to the end: without the group join
        // (~3 s on the mock cluster, whatever the size).
        Kernel {
            name: "kafka (mock cluster): bare consumer, from its first message".into(),
            records: n,
            bytes,
            seconds: bare_drain,
        },
        Kernel {
            name: "kafka (mock cluster): crmdq run, from its first message to the last commit"
                .into(),
            records: n,
            bytes,
            seconds: run_drain,
        },
    ])
}
