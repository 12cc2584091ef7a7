//! Prometheus metrics of a crmdq process, in the OpenMetrics text format.
//!
//! Counters are updated by `crmdq run` when a commit has made the data durable (so a
//! buffer discarded on a rebalance never counts); gauges describing the warehouse
//! (`crmdq_warehouse_rows`, `crmdq_warehouse_version`, freshness) are refreshed from the
//! commit log at scrape time, in `run` and in `serve` alike.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecordTypeLabel {
    pub record_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabel {
    pub record_type: String,
    pub check: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    pub topic: String,
    pub partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    pub table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

/// Every metric crmdq exports. Cheap to update (atomics); shared behind an `Arc`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Messages received from Kafka, per topic (before any decoding).
    pub consumed: Family<TopicLabel, Counter>,
    /// Record rows committed to the warehouse, per record type.
    pub written: Family<RecordTypeLabel, Counter>,
    /// Dead letters committed, per reason code.
    pub dead_letters: Family<ReasonLabel, Counter>,
    /// Committed records failing each check (a record can fail several).
    pub check_failures: Family<CheckLabel, Counter>,
    /// Committed records missing a key field, per record type.
    pub incomplete: Family<RecordTypeLabel, Counter>,
    /// Committed records entered after their deadline, per record type.
    pub late: Family<RecordTypeLabel, Counter>,
    /// Files closed, per reason (`bytes`, `rows`, `age`, `writers`, `commit`).
    pub files_rolled: Family<ReasonLabel, Counter>,
    pub bytes_written: Counter,
    pub rows_written: Counter,
    pub commits: Counter,
    pub commit_duration: Histogram,
    /// Newest offset on the broker minus the next offset this process will read.
    pub consumer_lag: Family<PartitionLabel, Gauge>,
    /// Newest offset on the broker minus the next offset committed to the warehouse.
    pub committed_lag: Family<PartitionLabel, Gauge>,
    /// Now minus the newest committed event time.
    pub freshness: Gauge<f64, AtomicU64>,
    pub open_writers: Gauge,
    pub rebalances: Family<KindLabel, Counter>,
    /// Kafka client errors seen by the consumer loop (librdkafka retries them).
    pub kafka_errors: Counter,
    /// Warehouse writes that failed and were retried.
    pub warehouse_errors: Counter,
    /// Offset resets librdkafka performed (auto.offset.reset after "offset out of range").
    pub offset_resets: Family<PartitionLabel, Counter>,
    /// Offsets never seen because a reset jumped over them (data removed by retention).
    pub offsets_skipped: Family<PartitionLabel, Counter>,
    /// 1 while a partition has messages waiting and its position has not moved for
    /// `serve.stall_seconds`; and how many stalls began.
    pub partition_stalled: Family<PartitionLabel, Gauge>,
    pub partition_stalls: Counter,
    /// Dead letters copied to the dead-letter topic, and copies that failed.
    pub dead_letter_topic_produced: Counter,
    pub dead_letter_topic_errors: Counter,
    /// Rows committed per warehouse table, from the commit log.
    pub warehouse_rows: Family<TableLabel, Gauge>,
    pub warehouse_files: Family<TableLabel, Gauge>,
    /// Version of the newest commit-log entry.
    pub warehouse_version: Gauge,
    /// Alert events awaiting delivery after `run`'s latest evaluation, and events given
    /// up undelivered (`alerts.max_pending_hours`).
    pub alerts_pending: Gauge,
    pub alerts_expired: Counter,
    /// 1 while ready (see `/readyz`), else 0.
    pub ready: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("crmdq");
        let consumed = Family::<TopicLabel, Counter>::default();
        r.register(
            "messages_consumed",
            "Messages received from Kafka (before decoding)",
            consumed.clone(),
        );
        let written = Family::<RecordTypeLabel, Counter>::default();
        r.register(
            "records_written",
            "Record rows committed to the warehouse",
            written.clone(),
        );
        let dead_letters = Family::<ReasonLabel, Counter>::default();
        r.register(
            "dead_letters",
            "Dead letters committed to the warehouse, by reason",
            dead_letters.clone(),
        );
        let check_failures = Family::<CheckLabel, Counter>::default();
        r.register(
            "check_failures",
            "Committed records failing a check, by rule",
            check_failures.clone(),
        );
        let incomplete = Family::<RecordTypeLabel, Counter>::default();
        r.register(
            "records_incomplete",
            "Committed records missing a key field",
            incomplete.clone(),
        );
        let late = Family::<RecordTypeLabel, Counter>::default();
        r.register(
            "records_late",
            "Committed records entered after their deadline",
            late.clone(),
        );
        let files_rolled = Family::<ReasonLabel, Counter>::default();
        r.register(
            "files_rolled",
            "Parquet files closed, by reason",
            files_rolled.clone(),
        );
        let bytes_written = Counter::default();
        r.register_with_unit(
            "written",
            "Parquet bytes committed",
            Unit::Bytes,
            bytes_written.clone(),
        );
        let rows_written = Counter::default();
        r.register(
            "rows_written",
            "Parquet rows committed (records and dead letters)",
            rows_written.clone(),
        );
        let commits = Counter::default();
        r.register(
            "commits",
            "Commit-log entries written by this process",
            commits.clone(),
        );
        let commit_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        r.register_with_unit(
            "commit_duration",
            "Time to close files, fsync and write the commit-log entry",
            Unit::Seconds,
            commit_duration.clone(),
        );
        let consumer_lag = Family::<PartitionLabel, Gauge>::default();
        r.register(
            "consumer_lag_messages",
            "High watermark minus the next offset this process reads",
            consumer_lag.clone(),
        );
        let committed_lag = Family::<PartitionLabel, Gauge>::default();
        r.register(
            "committed_lag_messages",
            "High watermark minus the next offset committed to the warehouse",
            committed_lag.clone(),
        );
        let freshness = Gauge::<f64, AtomicU64>::default();
        r.register_with_unit(
            "freshness",
            "Now minus the newest committed event time",
            Unit::Seconds,
            freshness.clone(),
        );
        let open_writers = Gauge::default();
        r.register(
            "open_writers",
            "Parquet files open for writing",
            open_writers.clone(),
        );
        let rebalances = Family::<KindLabel, Counter>::default();
        r.register(
            "rebalances",
            "Consumer-group rebalances seen (assign / revoke)",
            rebalances.clone(),
        );
        let kafka_errors = Counter::default();
        r.register(
            "kafka_errors",
            "Kafka client errors seen by the consumer loop",
            kafka_errors.clone(),
        );
        let warehouse_errors = Counter::default();
        r.register(
            "warehouse_errors",
            "Warehouse writes that failed (consumption pauses and retries)",
            warehouse_errors.clone(),
        );
        let offset_resets = Family::<PartitionLabel, Counter>::default();
        r.register(
            "offset_resets",
            "Offset resets after 'offset out of range' (auto.offset.reset applied)",
            offset_resets.clone(),
        );
        let partition_stalled = Family::<PartitionLabel, Gauge>::default();
        r.register(
            "partition_stalled",
            "1 while the partition has lag > 0 and its position has not moved for serve.stall_seconds",
            partition_stalled.clone(),
        );
        let partition_stalls = Counter::default();
        r.register(
            "partition_stalls",
            "Partition stalls detected (lag > 0, no progress for serve.stall_seconds)",
            partition_stalls.clone(),
        );
        let offsets_skipped = Family::<PartitionLabel, Counter>::default();
        r.register(
            "offsets_skipped",
            "Offsets jumped over by an offset reset (messages no longer on the broker)",
            offsets_skipped.clone(),
        );
        let dead_letter_topic_produced = Counter::default();
        r.register(
            "dead_letter_topic_produced",
            "Dead letters copied to the Kafka dead-letter topic",
            dead_letter_topic_produced.clone(),
        );
        let dead_letter_topic_errors = Counter::default();
        r.register(
            "dead_letter_topic_errors",
            "Dead letters that could not be copied to the Kafka dead-letter topic",
            dead_letter_topic_errors.clone(),
        );
        let warehouse_rows = Family::<TableLabel, Gauge>::default();
        r.register(
            "warehouse_rows",
            "Rows committed per table, from the commit log",
            warehouse_rows.clone(),
        );
        let warehouse_files = Family::<TableLabel, Gauge>::default();
        r.register(
            "warehouse_files",
            "Files committed per table, from the commit log",
            warehouse_files.clone(),
        );
        let warehouse_version = Gauge::default();
        r.register(
            "warehouse_version",
            "Version of the newest commit-log entry",
            warehouse_version.clone(),
        );
        let alerts_pending = Gauge::default();
        r.register(
            "alerts_pending",
            "Alert events awaiting delivery after the latest evaluation in this process",
            alerts_pending.clone(),
        );
        let alerts_expired = Counter::default();
        r.register(
            "alerts_expired",
            "Alert events given up undelivered (alerts.max_pending_hours)",
            alerts_expired.clone(),
        );
        let ready = Gauge::default();
        r.register("ready", "1 while /readyz reports ready", ready.clone());
        Metrics {
            registry: r,
            consumed,
            written,
            dead_letters,
            check_failures,
            incomplete,
            late,
            files_rolled,
            bytes_written,
            rows_written,
            commits,
            commit_duration,
            consumer_lag,
            committed_lag,
            freshness,
            open_writers,
            rebalances,
            kafka_errors,
            warehouse_errors,
            offset_resets,
            offsets_skipped,
            partition_stalled,
            partition_stalls,
            dead_letter_topic_produced,
            dead_letter_topic_errors,
            warehouse_rows,
            warehouse_files,
            warehouse_version,
            alerts_pending,
            alerts_expired,
            ready,
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Set the warehouse gauges from the commit log: its version, and per table the
    /// committed rows and files.
    pub fn observe_warehouse<'a>(
        &self,
        version: u64,
        tables: impl IntoIterator<Item = (&'a str, u64, usize)>,
    ) {
        self.warehouse_version.set(version as i64);
        for (table, rows, files) in tables {
            let label = TableLabel {
                table: table.to_string(),
            };
            self.warehouse_rows.get_or_create(&label).set(rows as i64);
            self.warehouse_files.get_or_create(&label).set(files as i64);
        }
    }

    /// Add what one commit made durable.
    pub fn observe_commit(&self, c: &CommitCounts) {
        for (rt, n) in &c.records {
            self.written
                .get_or_create(&RecordTypeLabel {
                    record_type: rt.clone(),
                })
                .inc_by(*n);
        }
        for (rt, n) in &c.incomplete {
            self.incomplete
                .get_or_create(&RecordTypeLabel {
                    record_type: rt.clone(),
                })
                .inc_by(*n);
        }
        for (rt, n) in &c.late {
            self.late
                .get_or_create(&RecordTypeLabel {
                    record_type: rt.clone(),
                })
                .inc_by(*n);
        }
        for ((rt, check), n) in &c.check_failures {
            self.check_failures
                .get_or_create(&CheckLabel {
                    record_type: rt.clone(),
                    check: check.clone(),
                })
                .inc_by(*n);
        }
        for (reason, n) in &c.dead_letters {
            self.dead_letters
                .get_or_create(&ReasonLabel {
                    reason: reason.clone(),
                })
                .inc_by(*n);
        }
    }
}

/// What a batch of checked records contributes to the counters, held until its commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitCounts {
    /// record type → rows.
    pub records: BTreeMap<String, u64>,
    pub incomplete: BTreeMap<String, u64>,
    pub late: BTreeMap<String, u64>,
    /// (record type, check) → failing rows.
    pub check_failures: BTreeMap<(String, String), u64>,
    /// reason → dead letters.
    pub dead_letters: BTreeMap<String, u64>,
    /// Newest event time (µs since the epoch) among the records.
    pub max_event_time_us: Option<i64>,
}

impl CommitCounts {
    pub fn merge(&mut self, o: CommitCounts) {
        for (k, v) in o.records {
            *self.records.entry(k).or_default() += v;
        }
        for (k, v) in o.incomplete {
            *self.incomplete.entry(k).or_default() += v;
        }
        for (k, v) in o.late {
            *self.late.entry(k).or_default() += v;
        }
        for (k, v) in o.check_failures {
            *self.check_failures.entry(k).or_default() += v;
        }
        for (k, v) in o.dead_letters {
            *self.dead_letters.entry(k).or_default() += v;
        }
        self.max_event_time_us = self.max_event_time_us.max(o.max_event_time_us);
    }

    pub fn total_records(&self) -> u64 {
        self.records.values().sum()
    }

    pub fn total_dead_letters(&self) -> u64 {
        self.dead_letters.values().sum()
    }
}
