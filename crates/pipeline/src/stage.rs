//! The Kafka loop's decode stage. Messages are copied into a raw batch as they arrive; a
//! full batch is decoded on a blocking thread while the loop checks and writes the batch
//! before it, so decoding and checking run on two cores (as file ingest's reader thread
//! does). Order is kept: batches come back in the order they were pushed.

use std::ops::Range;

use crmdq_decode::{Decoded, Decoder, SourcePos};
use crmdq_schema::RecordType;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use tokio::task::JoinHandle;

use crate::PipelineError;

/// One message as received: where its value sits in the batch's bytes (None: no value).
struct RawMsg {
    value: Option<Range<usize>>,
    pos: SourcePos,
    implied: Option<RecordType>,
    at: Timestamp,
}

/// Messages waiting to be decoded, their values back to back in one buffer.
#[derive(Default)]
struct RawBatch {
    bytes: Vec<u8>,
    msgs: Vec<RawMsg>,
}

impl RawBatch {
    fn decode_into(&self, d: &mut Decoder) {
        for m in &self.msgs {
            let value = m.value.clone().map(|r| &self.bytes[r]);
            d.push_json(value, &m.pos, m.implied, m.at);
        }
    }
}

type InFlight = JoinHandle<(Decoder, Decoded)>;

/// Raw messages → decoded batches, one batch decoding off the loop at a time.
pub struct DecodeStage {
    raw: RawBatch,
    /// Home when no batch is in flight.
    decoder: Option<Decoder>,
    /// The batch being decoded, with the epoch it was pushed in.
    in_flight: Option<(u64, InFlight)>,
    /// Bumped by [`DecodeStage::discard`]: a batch of an older epoch is dropped on return.
    epoch: u64,
    tz: TimeZone,
    max_message_bytes: usize,
}

impl DecodeStage {
    pub fn new(tz: TimeZone, max_message_bytes: usize) -> Self {
        DecodeStage {
            raw: RawBatch::default(),
            decoder: Some(Decoder::with(tz.clone(), max_message_bytes)),
            in_flight: None,
            epoch: 0,
            tz,
            max_message_bytes,
        }
    }

    /// Queue one message (its value is copied).
    pub fn push(
        &mut self,
        value: Option<&[u8]>,
        pos: SourcePos,
        implied: Option<RecordType>,
        at: Timestamp,
    ) {
        let value = value.map(|v| {
            let start = self.raw.bytes.len();
            self.raw.bytes.extend_from_slice(v);
            start..self.raw.bytes.len()
        });
        self.raw.msgs.push(RawMsg {
            value,
            pos,
            implied,
            at,
        });
    }

    /// Messages queued and not yet handed to the decoder.
    pub fn queued(&self) -> usize {
        self.raw.msgs.len()
    }

    /// Hand the queued messages to the decoder thread. Returns the batch decoded before
    /// them, if any, for the caller to check and write while these decode.
    pub async fn dispatch(&mut self) -> Result<Option<Decoded>, PipelineError> {
        let before = self.collect().await?;
        if self.raw.msgs.is_empty() {
            return Ok(before);
        }
        let raw = std::mem::take(&mut self.raw);
        let mut decoder = self
            .decoder
            .take()
            .unwrap_or_else(|| Decoder::with(self.tz.clone(), self.max_message_bytes));
        let handle = tokio::task::spawn_blocking(move || {
            raw.decode_into(&mut decoder);
            let decoded = decoder.finish();
            (decoder, decoded)
        });
        self.in_flight = Some((self.epoch, handle));
        Ok(before)
    }

    /// Everything queued, decoded: up to two batches, in order.
    pub async fn drain(&mut self) -> Result<Vec<Decoded>, PipelineError> {
        let mut out = Vec::with_capacity(2);
        out.extend(self.dispatch().await?);
        out.extend(self.collect().await?);
        Ok(out)
    }

    /// Forget everything queued; a batch in flight is dropped when it comes back.
    pub fn discard(&mut self) {
        self.raw = RawBatch::default();
        self.epoch += 1;
    }

    /// Wait for the batch in flight; None if there was none or it was discarded.
    async fn collect(&mut self) -> Result<Option<Decoded>, PipelineError> {
        let Some((epoch, handle)) = self.in_flight.take() else {
            return Ok(None);
        };
        let (decoder, decoded) = handle
            .await
            .map_err(|e| PipelineError::Other(format!("the decode thread failed: {e}")))?;
        self.decoder = Some(decoder);
        Ok((epoch == self.epoch).then_some(decoded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn pos(offset: i64) -> SourcePos {
        SourcePos::Kafka {
            topic: Arc::from("t"),
            partition: 0,
            offset,
        }
    }

    fn customer(i: i64) -> String {
        format!(
            r#"{{"record_type":"customer","record_id":"c{i}","owner_id":"a","entered_by":"a","event_time":"2026-11-01T10:00:00+08:00","entered_at":"2026-11-01T11:00:00+08:00","name":"n","phone":"13912345678","occupation":"x","age":30}}"#
        )
    }

    fn ids(d: &Decoded) -> Vec<String> {
        use arrow::array::AsArray;
        d.records
            .values()
            .flat_map(|b| {
                b.column_by_name("record_id")
                    .unwrap()
                    .as_string::<i32>()
                    .iter()
                    .map(|s| s.unwrap().to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Batches come back whole and in order, each one dispatch late; a tombstone is a
    /// dead letter; a discard drops both the queued and the in-flight messages.
    #[tokio::test]
    async fn batches_in_order_and_discard() {
        let at = Timestamp::UNIX_EPOCH;
        let mut s = DecodeStage::new(TimeZone::UTC, 1 << 20);
        for i in 0..3 {
            s.push(Some(customer(i).as_bytes()), pos(i), None, at);
        }
        assert_eq!(s.queued(), 3);
        assert!(s.dispatch().await.unwrap().is_none(), "nothing decoded yet");
        assert_eq!(s.queued(), 0);
        s.push(Some(customer(3).as_bytes()), pos(3), None, at);
        s.push(None, pos(4), None, at);
        let first = s.dispatch().await.unwrap().expect("the first batch");
        assert_eq!(ids(&first), ["c0", "c1", "c2"]);
        assert!(first.dead_letters.is_none());
        let rest = s.drain().await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(ids(&rest[0]), ["c3"]);
        assert_eq!(
            rest[0]
                .dead_letters
                .as_ref()
                .map(arrow::array::RecordBatch::num_rows),
            Some(1)
        );
        assert!(s.drain().await.unwrap().is_empty());

        // Discard: what is in flight and what is queued are both gone.
        s.push(Some(customer(5).as_bytes()), pos(5), None, at);
        assert!(s.dispatch().await.unwrap().is_none());
        s.push(Some(customer(6).as_bytes()), pos(6), None, at);
        s.discard();
        assert!(s.drain().await.unwrap().is_empty());
        // And the stage goes on afterwards.
        s.push(Some(customer(7).as_bytes()), pos(7), None, at);
        let after = s.drain().await.unwrap();
        assert_eq!(after.iter().map(ids).collect::<Vec<_>>(), [["c7"]]);
    }
}
