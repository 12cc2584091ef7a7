//! The optional Kafka dead-letter topic: every dead letter of a commit, copied with its
//! reason and source position as headers, at least once, before the warehouse commit.

use crmdq_source::kafka;
use crmdq_telemetry::{InternalEvent, events};

use super::consume::Loop;

impl Loop<'_> {
    /// Copy the buffered dead letters to the dead-letter topic (before the warehouse
    /// commit, so a crash in between re-reads and re-sends them: at least once). A copy
    /// that fails is logged and counted; the warehouse's `dead_letters` stays complete.
    pub(super) async fn copy_dead_letters(&mut self) {
        let batches = std::mem::take(&mut self.pending_dlq);
        let Some(dlq) = &self.dlq else {
            return;
        };
        let copies: Vec<kafka::DeadLetterCopy> =
            batches.iter().flat_map(dead_letter_copies).collect();
        if copies.is_empty() {
            return;
        }
        let (produced, failed, error) = match dlq.send(&copies).await {
            Ok(n) => (n, 0, None),
            Err((failed, e)) => (copies.len() as u64 - failed, failed, Some(e)),
        };
        events::DeadLettersCopied {
            topic: dlq.topic(),
            produced,
            failed,
            error: error.as_ref().map(|e| e as &dyn std::fmt::Display),
        }
        .emit(&self.metrics);
    }
}

/// The dead-letter topic copies of a written dead-letter batch: raw bytes, with the reason,
/// detail and source position as headers (`crmdq.reason`, `crmdq.detail`,
/// `crmdq.src_topic`, `crmdq.src_partition`, `crmdq.src_offset`).
fn dead_letter_copies(b: &arrow::array::RecordBatch) -> Vec<kafka::DeadLetterCopy> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int32Type, Int64Type};
    let raw = b
        .column_by_name("raw")
        .map(|c| c.as_binary::<i32>().clone());
    let text = |name: &str| b.column_by_name(name).map(|c| c.as_string::<i32>().clone());
    let (reason, detail, topic) = (text("reason"), text("detail"), text("src_topic"));
    let partition = b
        .column_by_name("src_partition")
        .map(|c| c.as_primitive::<Int32Type>().clone());
    let offset = b
        .column_by_name("src_offset")
        .map(|c| c.as_primitive::<Int64Type>().clone());
    (0..b.num_rows())
        .map(|i| {
            let mut headers = Vec::new();
            let mut put = |k: &'static str, v: Option<String>| {
                if let Some(v) = v {
                    headers.push((k, v));
                }
            };
            let s = |a: &Option<arrow::array::StringArray>| {
                a.as_ref()
                    .filter(|a| a.is_valid(i))
                    .map(|a| a.value(i).to_string())
            };
            put("crmdq.reason", s(&reason));
            put("crmdq.detail", s(&detail));
            put("crmdq.src_topic", s(&topic));
            put(
                "crmdq.src_partition",
                partition
                    .as_ref()
                    .filter(|a| a.is_valid(i))
                    .map(|a| a.value(i).to_string()),
            );
            put(
                "crmdq.src_offset",
                offset
                    .as_ref()
                    .filter(|a| a.is_valid(i))
                    .map(|a| a.value(i).to_string()),
            );
            kafka::DeadLetterCopy {
                payload: raw.as_ref().map_or_else(Vec::new, |r| r.value(i).to_vec()),
                headers,
            }
        })
        .collect()
}
