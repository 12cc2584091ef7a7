//! The consumer loop's state as metrics and readiness: the sink's counters, lag per
//! partition (from the broker statistics), stalls, freshness.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crmdq_source::kafka::Tp;
use crmdq_source::stage::KafkaSource;
use crmdq_telemetry::metrics::{PartitionLabel, ReasonLabel};
use crmdq_telemetry::{InternalEvent, events};

use super::consume::Loop;
use crate::stall::StallChange;

impl Loop<'_> {
    /// Add the sink's counters since the last call to the metrics.
    pub(super) fn sync_sink_metrics(&mut self) {
        let now = self.sink.stats().clone();
        for (reason, n) in &now.files_rolled {
            let before = self
                .last_stats
                .files_rolled
                .get(reason)
                .copied()
                .unwrap_or(0);
            if *n > before {
                self.metrics
                    .files_rolled
                    .get_or_create(&ReasonLabel {
                        reason: reason.as_str().to_string(),
                    })
                    .inc_by(n - before);
            }
        }
        self.metrics
            .rows_written
            .inc_by(now.committed_rows - self.last_stats.committed_rows);
        self.metrics
            .bytes_written
            .inc_by(now.committed_bytes - self.last_stats.committed_bytes);
        self.metrics
            .open_writers
            .set(self.sink.open_writers() as i64);
        self.last_stats = now;
    }
    /// Lag, broker reachability and freshness, from the latest broker statistics.
    pub(super) fn update_gauges(&mut self, src: &KafkaSource) {
        let view = self.view.lock().map(|v| v.clone()).unwrap_or_default();
        let mut total = 0;
        let now = Instant::now();
        let held: Vec<(Tp, i64)> = src
            .partitions()
            .map(|tp| (tp.clone(), src.next(tp).unwrap_or(0)))
            .collect();
        for (tp, next) in &held {
            let next = *next;
            let Some(high) = view.high_watermarks.get(tp) else {
                continue;
            };
            let label = PartitionLabel {
                topic: tp.0.clone(),
                partition: tp.1.to_string(),
            };
            let lag = (high - next).max(0);
            total += lag;
            match self.stalls.observe(tp, next, lag, now) {
                Some(StallChange::Stalled {
                    next,
                    lag,
                    stuck_for,
                    ..
                }) => events::PartitionStalled {
                    topic: &tp.0,
                    partition: tp.1,
                    next_offset: next,
                    lag,
                    stuck_for,
                }
                .emit(&self.metrics),
                Some(StallChange::Resumed { stuck_for, .. }) => events::PartitionResumed {
                    topic: &tp.0,
                    partition: tp.1,
                    stuck_for,
                }
                .emit(&self.metrics),
                None => {}
            }
            self.metrics.consumer_lag.get_or_create(&label).set(lag);
            let committed = src.committed_next(tp);
            self.metrics
                .committed_lag
                .get_or_create(&label)
                .set((high - committed).max(0));
        }
        self.health.lag.store(total, Ordering::Relaxed);
        if let Ok(mut s) = self.health.stalled.lock() {
            *s = self.stalls.stalled();
        }
        self.health
            .brokers_up
            .store(view.brokers_up, Ordering::Relaxed);
        self.health
            .stats_seen
            .store(view.reports > 0, Ordering::Relaxed);
        self.health.assigned.store(src.len(), Ordering::Relaxed);
        self.metrics
            .open_writers
            .set(self.sink.open_writers() as i64);
        if let Some(us) = self.newest_event_us {
            let now = self.clock.now().as_microsecond();
            self.metrics.freshness.set((now - us) as f64 / 1e6);
        }
    }
}
