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
