//! Kafka consumption whose starting positions come from the caller (the commit log).
//!
//! On every assignment the [`PositionedContext`] asks its position function where each
//! partition resumes (None: a new partition, start at the earliest offset) and writes
//! those offsets into the assignment before applying it, so the group's committed
//! offsets are only informational (lag tools). Revocations are reported on a channel so
//! the consumer loop can discard the revoked partitions' buffers; nothing is flushed from
//! inside the callback.

use std::collections::BTreeMap;
use std::sync::Arc;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientContext, TopicPartitionList as Tpl};
use tokio::sync::mpsc::UnboundedSender;

use crate::SourceError;

/// (topic, partition).
pub type Tp = (String, i32);

/// Where each partition resumes: the next offset to read, None if never committed.
pub type PositionFn = Arc<dyn Fn() -> BTreeMap<Tp, i64> + Send + Sync>;

/// What the rebalance callback tells the consumer loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceEvent {
    /// Partitions assigned, with the offsets they start from.
    Assigned(Vec<(Tp, Option<i64>)>),
    Revoked(Vec<Tp>),
    Error(String),
}

/// What librdkafka's statistics (every `statistics.interval.ms`) say about the broker
/// side: each partition's high watermark and whether any broker connection is up.
#[derive(Debug, Clone, Default)]
pub struct BrokerView {
    /// (topic, partition) → high watermark (the offset the next produced message gets).
    pub high_watermarks: BTreeMap<Tp, i64>,
    /// Broker connections in state `UP` (bootstrap placeholders excluded).
    pub brokers_up: usize,
    /// Statistics received so far.
    pub reports: u64,
}

/// The latest [`BrokerView`], shared between librdkafka's thread and the consumer loop.
pub type BrokerViewSlot = Arc<std::sync::Mutex<BrokerView>>;

/// Consumer context: seeds assignments from the commit log, reports rebalances, keeps
/// the latest broker statistics.
pub struct PositionedContext {
    positions: PositionFn,
    events: UnboundedSender<RebalanceEvent>,
    view: BrokerViewSlot,
}

impl ClientContext for PositionedContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{message}");
            }
            L::Warning => tracing::warn!(target: "librdkafka", facility = fac, "{message}"),
            L::Notice | L::Info => {
                tracing::info!(target: "librdkafka", facility = fac, "{message}");
            }
            L::Debug => tracing::debug!(target: "librdkafka", facility = fac, "{message}"),
        }
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut high = BTreeMap::new();
        for (topic, t) in &statistics.topics {
            for (id, p) in &t.partitions {
                // -1 is librdkafka's internal "unassigned" partition.
                if *id >= 0 && p.hi_offset >= 0 {
                    high.insert((topic.clone(), *id), p.hi_offset);
                }
            }
        }
        let up = statistics
            .brokers
            .values()
            .filter(|b| b.nodeid >= 0 && b.state == "UP")
            .count();
        if let Ok(mut v) = self.view.lock() {
            v.high_watermarks = high;
            v.brokers_up = up;
            v.reports += 1;
        }
    }
}

fn tps(tpl: &TopicPartitionList) -> Vec<Tp> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl ConsumerContext for PositionedContext {
    fn rebalance(
        &self,
        base: &BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        use rdkafka::types::RDKafkaRespErr as E;
        let cooperative = matches!(
            base.rebalance_protocol(),
            rdkafka::consumer::RebalanceProtocol::Cooperative
        );
        match err {
            E::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let pos = (self.positions)();
                let mut assigned = Vec::new();
                for (topic, partition) in tps(tpl) {
                    let start = pos.get(&(topic.clone(), partition)).copied();
                    let offset = start.map_or(Offset::Beginning, Offset::Offset);
                    let _ = tpl.set_partition_offset(&topic, partition, offset);
                    assigned.push(((topic, partition), start));
                }
                let r = if cooperative {
                    base.incremental_assign(tpl)
                } else {
                    base.assign(tpl)
                };
                match r {
                    Ok(()) => {
                        let _ = self.events.send(RebalanceEvent::Assigned(assigned));
                    }
                    Err(e) => {
                        let _ = self
                            .events
                            .send(RebalanceEvent::Error(format!("assign failed: {e}")));
                    }
                }
            }
            E::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let _ = self.events.send(RebalanceEvent::Revoked(tps(tpl)));
                let r = if cooperative {
                    base.incremental_unassign(tpl)
                } else {
                    base.unassign()
                };
                if let Err(e) = r {
                    let _ = self
                        .events
                        .send(RebalanceEvent::Error(format!("unassign failed: {e}")));
                }
            }
            other => {
                let _ = self
                    .events
                    .send(RebalanceEvent::Error(format!("rebalance error: {other:?}")));
                let _ = base.unassign();
            }
        }
    }

    fn pre_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {}
}

/// Settings for [`consumer`].
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub bootstrap_servers: String,
    pub group_id: String,
    pub topics: Vec<String>,
    /// librdkafka properties passed through (they override the defaults below).
    pub properties: BTreeMap<String, String>,
    /// Receives the broker statistics.
    pub view: BrokerViewSlot,
}

pub type CrmdqConsumer = StreamConsumer<PositionedContext>;

/// Create a subscribed consumer. Offsets are never auto-committed or auto-stored: the
/// caller commits after the warehouse commit.
pub fn consumer(
    s: &ConsumerSettings,
    positions: PositionFn,
    events: UnboundedSender<RebalanceEvent>,
) -> Result<CrmdqConsumer, SourceError> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &s.bootstrap_servers)
        .set("group.id", &s.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "10000")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("statistics.interval.ms", "2000");
    // librdkafka's warnings reach the context (and the log) whatever the `log` crate's
    // level is; offset resets are told from positions ([`crate::tracker`]), not from them.
    // A `debug` property asks for librdkafka's debug lines.
    cfg.set_log_level(if s.properties.contains_key("debug") {
        rdkafka::config::RDKafkaLogLevel::Debug
    } else {
        rdkafka::config::RDKafkaLogLevel::Warning
    });
    for (k, v) in &s.properties {
        cfg.set(k, v);
    }
    let c: CrmdqConsumer = cfg
        .create_with_context(PositionedContext {
            positions,
            events,
            view: s.view.clone(),
        })
        .map_err(|source| SourceError::Kafka {
            operation: "create consumer",
            source,
        })?;
    let topics: Vec<&str> = s.topics.iter().map(String::as_str).collect();
    c.subscribe(&topics).map_err(|source| SourceError::Kafka {
        operation: "subscribe",
        source,
    })?;
    Ok(c)
}

/// Commit `next offsets` to the group (informational: for lag tools).
pub fn commit_offsets(c: &CrmdqConsumer, next: &BTreeMap<Tp, i64>) -> KafkaResult<()> {
    if next.is_empty() {
        return Ok(());
    }
    let mut tpl = Tpl::new();
    for ((t, p), o) in next {
        tpl.add_partition_offset(t, *p, Offset::Offset(*o))?;
    }
    c.commit(&tpl, rdkafka::consumer::CommitMode::Async)
}

/// One dead letter to copy to the dead-letter topic: the raw bytes and headers saying why
/// and where from.
#[derive(Debug, Clone)]
pub struct DeadLetterCopy {
    pub payload: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// The optional Kafka dead-letter topic (`source.kafka.dead_letter_topic`).
pub struct DeadLetterTopic {
    producer: rdkafka::producer::FutureProducer,
    topic: String,
    timeout: std::time::Duration,
}

impl DeadLetterTopic {
    /// A producer on the same brokers, with the pipeline's librdkafka properties (security
    /// settings included; consumer-only properties are ignored by librdkafka).
    pub fn new(
        bootstrap_servers: &str,
        properties: &BTreeMap<String, String>,
        topic: &str,
    ) -> Result<Self, SourceError> {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", bootstrap_servers)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5");
        for (k, v) in properties {
            if !CONSUMER_ONLY.contains(&k.as_str()) {
                cfg.set(k, v);
            }
        }
        let producer = cfg.create().map_err(|source| SourceError::Kafka {
            operation: "create dead-letter producer",
            source,
        })?;
        Ok(DeadLetterTopic {
            producer,
            topic: topic.to_string(),
            timeout: std::time::Duration::from_secs(30),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Produce every copy and wait for the broker's acknowledgements. Returns how many
    /// were acknowledged, or the first error with the count that failed.
    pub async fn send(&self, copies: &[DeadLetterCopy]) -> Result<u64, (u64, String)> {
        use rdkafka::message::{Header, OwnedHeaders};
        use rdkafka::producer::FutureRecord;
        let mut pending = Vec::with_capacity(copies.len());
        for c in copies {
            let mut headers = OwnedHeaders::new_with_capacity(c.headers.len());
            for (k, v) in &c.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            let rec: FutureRecord<'_, (), Vec<u8>> = FutureRecord::to(&self.topic)
                .payload(&c.payload)
                .headers(headers);
            pending.push(self.producer.send(rec, self.timeout));
        }
        let mut ok = 0;
        let mut failed = 0;
        let mut first = None;
        for r in futures::future::join_all(pending).await {
            match r {
                Ok(_) => ok += 1,
                Err((e, _)) => {
                    failed += 1;
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
        match first {
            None => Ok(ok),
            Some(e) => Err((failed, e)),
        }
    }
}

/// Consumer properties a producer does not take (kept out of its configuration).
const CONSUMER_ONLY: &[&str] = &[
    "group.id",
    "group.instance.id",
    "auto.offset.reset",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "partition.assignment.strategy",
    "fetch.min.bytes",
    "fetch.max.bytes",
    "fetch.wait.max.ms",
    "max.partition.fetch.bytes",
    "isolation.level",
    "auto.commit.interval.ms",
    "queued.min.messages",
    "queued.max.messages.kbytes",
];
