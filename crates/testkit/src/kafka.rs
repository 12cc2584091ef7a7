//! Putting a stream on Kafka for tests, the demo and benchmarks: a producer that waits
//! for every acknowledgement, and librdkafka's in-process mock cluster sized so it keeps
//! the whole stream.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

/// Setting up or filling a topic failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KafkaError(pub String);

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
) -> Result<i32, KafkaError> {
    let partitions = mock_partitions(lines, min);
    cluster
        .create_topic(topic, partitions, 1)
        .map_err(|e| KafkaError(format!("creating topic {topic}: {e}")))?;
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
) -> Result<(), KafkaError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| KafkaError(format!("creating a watermark probe: {e}")))?;
    let mut kept = 0i64;
    for p in 0..partitions {
        let (low, high) = probe
            .fetch_watermarks(topic, p, Duration::from_secs(30))
            .map_err(|e| KafkaError(format!("watermarks of {topic}[{p}]: {e}")))?;
        if low > 0 {
            return Err(KafkaError(format!(
                "the mock cluster dropped the first {low} messages of {topic}[{p}] \
                 (it keeps {MOCK_PARTITION_BYTES} bytes per partition)"
            )));
        }
        kept += high;
    }
    if usize::try_from(kept).ok() != Some(produced) {
        return Err(KafkaError(format!(
            "the mock cluster holds {kept} messages of {topic}, {produced} were produced"
        )));
    }
    Ok(())
}

/// Produce `lines` to `topic` (keyed by line number) and wait until all are acknowledged.
pub fn produce(brokers: &str, topic: &str, lines: &[String]) -> Result<(), KafkaError> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .map_err(|e| KafkaError(format!("creating producer: {e}")))?;
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
                        return Err(KafkaError(format!("producing: {e}")));
                    }
                }
            }
        }
    }
    producer
        .flush(Duration::from_mins(1))
        .map_err(|e| KafkaError(format!("flushing producer: {e}")))?;
    Ok(())
}
