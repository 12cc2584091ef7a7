//! crmdq-source: where bytes come from.
//!
//! Files ([`file`]): NDJSON (`.ndjson`, `.jsonl`, `.json`) and CSV, gzipped or not
//! (detected by magic bytes), read line by line with 1-based line numbers. Kafka
//! ([`kafka`]): an rdkafka `StreamConsumer` in a consumer group whose assignment starts
//! from positions the caller supplies (the warehouse commit log), never from the group's
//! committed offsets. Invariant: this crate hands out raw bytes with their position and
//! never interprets them.

pub mod file;
pub mod kafka;
pub mod stage;
pub mod tracker;

/// A source could not be opened or read (infrastructure, not data).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: unsupported input format (expected .ndjson, .jsonl, .json or .csv, optionally .gz)"
    )]
    Format { path: String },
    /// The source mapping cannot be compiled against the input's columns.
    #[error("{message}")]
    Mapping { message: String },
    #[error("kafka: {operation}: {source}")]
    Kafka {
        operation: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
}
