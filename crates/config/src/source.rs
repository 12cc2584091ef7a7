//! `source`: where records come from (Kafka topics, CSV and NDJSON files) and how a file's
//! own columns become the contract's fields.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crmdq_schema::RecordType;
use serde::Deserialize;

use crate::error::{ConfigError, Ctx};
use crate::values::{OneByte, Ordered, Positive, Seconds, TypeName};

/// Defaults of the `source` section.
pub mod default {
    use std::time::Duration;
    pub const BOOTSTRAP_SERVERS: &str = "localhost:9092";
    pub const GROUP_ID: &str = "crmdq";
    pub const COMMIT_INTERVAL: Duration = Duration::from_secs(5);
    /// Larger messages are `too_large` dead letters.
    pub const MAX_MESSAGE_BYTES: u64 = 16 << 20;
    pub const CSV_DELIMITER: u8 = b',';
    pub const CSV_QUOTE: u8 = b'"';
    pub const CSV_HAS_HEADER: bool = true;
    pub const KEEP_UNMAPPED: bool = true;
}

// ---- as written --------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub kafka: Option<RawKafka>,
    /// Options for CSV input files.
    #[serde(default)]
    pub csv: RawCsv,
    /// Messages larger than this many bytes become `too_large` dead letters. Default 16 MiB.
    pub max_message_bytes: Option<Positive>,
    /// Format of file inputs, `csv` or `ndjson` (default: from the file name).
    pub format: Option<DeclaredFormat>,
    /// Contract field → SQL expression over the input's own columns (file inputs), in file
    /// order.
    #[serde(default)]
    pub mapping: Ordered<String>,
    /// Input values that mean "missing" (compared after trimming), replaced by NULL before
    /// the mapping.
    #[serde(default)]
    pub placeholders: Vec<String>,
    /// With a mapping, keep the input's unmapped columns (they land in `extra`). Default true.
    pub keep_unmapped: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawKafka {
    /// Comma-separated `host:port` list; `--brokers` overrides it.
    pub bootstrap_servers: Option<String>,
    /// Consumer group id. Default `crmdq`.
    pub group_id: Option<String>,
    /// Topic → record type. An empty value (`~`) means record_type is in each message.
    #[serde(default)]
    pub topics: BTreeMap<String, Option<String>>,
    /// Any librdkafka property, passed through (e.g. `security.protocol`, `sasl.mechanism`).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// How often `run` commits what it has buffered, in seconds. Default 5.
    pub commit_interval_seconds: Option<Seconds>,
    /// Also produce every dead letter (its raw bytes, with the reason and source position
    /// as headers) to this topic, at least once. Unset: the warehouse table only.
    pub dead_letter_topic: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCsv {
    /// Field delimiter, one byte. Default `,`.
    pub delimiter: Option<OneByte>,
    /// Whether the first row is a header. Default true.
    pub has_header: Option<bool>,
    /// Record type of CSV rows without a record_type column.
    pub record_type: Option<TypeName>,
    /// Quote character, one byte. Default `"`.
    pub quote: Option<OneByte>,
}

// ---- validated ---------------------------------------------------------------------------

/// The validated `source` section.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub kafka: Option<KafkaConfig>,
    pub csv: CsvOptions,
    /// `source.format`: None = by file name.
    pub format: Option<DeclaredFormat>,
    pub mapping: SourceMapping,
    pub max_message_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub group_id: String,
    /// Topic → record type implied by the topic (None: in each message).
    pub topics: BTreeMap<String, Option<RecordType>>,
    pub properties: BTreeMap<String, String>,
    pub commit_interval: Duration,
    /// Dead letters are also produced to this topic (at least once).
    pub dead_letter_topic: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CsvOptions {
    pub delimiter: u8,
    pub quote: u8,
    pub has_header: bool,
    pub record_type: Option<RecordType>,
}

/// A declared file-input format (`source.format`), overriding the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeclaredFormat {
    Csv,
    #[serde(alias = "jsonl", alias = "json")]
    Ndjson,
}

/// How a file input's own columns become the contract's fields.
#[derive(Debug, Clone, Default)]
pub struct SourceMapping {
    /// (field, SQL expression over the input's columns), in file order. The pseudo column
    /// `_line` is the input line number.
    pub fields: Vec<(String, String)>,
    /// Input values that mean missing (trimmed, exact), NULL before mapping.
    pub placeholders: BTreeSet<String>,
    pub keep_unmapped: bool,
}

impl SourceMapping {
    pub fn is_active(&self) -> bool {
        !self.fields.is_empty() || !self.placeholders.is_empty()
    }
}

pub(crate) fn validate(raw: RawSource, cx: &Ctx<'_>) -> Result<SourceConfig, ConfigError> {
    let kafka = raw.kafka.map(|k| kafka(k, cx)).transpose()?;
    for (field, sql) in &raw.mapping.0 {
        if sql.trim().is_empty() {
            return Err(cx.err(&format!("source.mapping.{field}"), "empty expression"));
        }
    }
    Ok(SourceConfig {
        kafka,
        csv: CsvOptions {
            delimiter: raw.csv.delimiter.map_or(default::CSV_DELIMITER, |b| b.0),
            quote: raw.csv.quote.map_or(default::CSV_QUOTE, |b| b.0),
            has_header: raw.csv.has_header.unwrap_or(default::CSV_HAS_HEADER),
            record_type: raw.csv.record_type.map(|t| t.0),
        },
        format: raw.format,
        mapping: SourceMapping {
            fields: raw.mapping.0,
            placeholders: raw
                .placeholders
                .iter()
                .map(|v| v.trim().to_string())
                .collect(),
            keep_unmapped: raw.keep_unmapped.unwrap_or(default::KEEP_UNMAPPED),
        },
        max_message_bytes: raw
            .max_message_bytes
            .map_or(default::MAX_MESSAGE_BYTES, |n| n.0) as usize,
    })
}

fn kafka(k: RawKafka, cx: &Ctx<'_>) -> Result<KafkaConfig, ConfigError> {
    let mut topics = BTreeMap::new();
    for (topic, rt) in k.topics {
        let rt = match rt.as_deref() {
            None | Some("") => None,
            Some(s) => Some(
                s.parse::<RecordType>()
                    .map_err(|e| cx.err(&format!("source.kafka.topics.{topic}"), e.to_string()))?,
            ),
        };
        topics.insert(topic, rt);
    }
    if topics.is_empty() {
        return Err(cx.err("source.kafka.topics", "at least one topic is required"));
    }
    if let Some(t) = &k.dead_letter_topic
        && (t.trim().is_empty() || topics.contains_key(t))
    {
        return Err(cx.err(
            "source.kafka.dead_letter_topic",
            format!("`{t}` must be a topic name that is not consumed by this pipeline"),
        ));
    }
    Ok(KafkaConfig {
        bootstrap_servers: k
            .bootstrap_servers
            .unwrap_or_else(|| default::BOOTSTRAP_SERVERS.into()),
        group_id: k.group_id.unwrap_or_else(|| default::GROUP_ID.into()),
        topics,
        properties: k.properties,
        commit_interval: k
            .commit_interval_seconds
            .map_or(default::COMMIT_INTERVAL, |s| s.0),
        dead_letter_topic: k.dead_letter_topic,
    })
}
