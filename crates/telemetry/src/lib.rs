//! crmdq-telemetry: what a crmdq process says about itself — its Prometheus metrics
//! ([`metrics`]), the typed internal events that write a log line and move its counters
//! together ([`events`]), and the readiness state of the consumer loop ([`health`]).
//!
//! A floor below the stages: the write path (`pipeline`'s consumer loop) updates it and
//! the read path (`serve`'s HTTP server) exposes it, and neither depends on the other.
//! Invariant: this crate depends on no other crmdq crate.

pub mod events;
pub mod health;
pub mod metrics;

pub use events::InternalEvent;
pub use health::RunHealth;
pub use metrics::{CommitCounts, Metrics};
