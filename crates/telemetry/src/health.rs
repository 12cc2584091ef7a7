//! What `/readyz` checks in `crmdq run`: the consumer loop updates it, the HTTP server
//! reads it. Atomics; the two locks are taken only when something fails.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};

/// What `/readyz` checks in `crmdq run`, updated by the consumer loop.
#[derive(Debug)]
pub struct RunHealth {
    /// Partitions currently assigned to this consumer.
    pub assigned: AtomicUsize,
    /// Broker connections up, from the latest librdkafka statistics.
    pub brokers_up: AtomicUsize,
    /// Whether any statistics arrived yet.
    pub stats_seen: AtomicBool,
    /// Summed consumer lag over the assigned partitions.
    pub lag: AtomicI64,
    /// False after a failed warehouse write, until a commit succeeds again.
    pub warehouse_ok: AtomicBool,
    pub warehouse_error: Mutex<Option<String>>,
    pub max_lag: i64,
    /// Partitions stalled (lag > 0, no progress), as `topic/partition`.
    pub stalled: Mutex<Vec<String>>,
}

impl RunHealth {
    pub fn new(max_lag: i64) -> RunHealth {
        RunHealth {
            assigned: AtomicUsize::new(0),
            brokers_up: AtomicUsize::new(0),
            stats_seen: AtomicBool::new(false),
            lag: AtomicI64::new(0),
            warehouse_ok: AtomicBool::new(true),
            warehouse_error: Mutex::new(None),
            max_lag,
            stalled: Mutex::new(Vec::new()),
        }
    }

    pub fn set_warehouse(&self, result: Result<(), String>) {
        self.warehouse_ok.store(result.is_ok(), Ordering::Relaxed);
        if let Ok(mut e) = self.warehouse_error.lock() {
            *e = result.err();
        }
    }
}
