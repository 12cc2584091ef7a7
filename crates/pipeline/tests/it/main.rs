//! The pipeline crate's integration tests, one test binary (it links DataFusion and
//! librdkafka once): backfills over thousands of dates, the decode/check fuzzer, Kafka on
//! librdkafka's in-process mock cluster (faults included), and chunked scoring.

mod backfill;
mod fuzz_decode_check;
mod kafka_mock;
mod periods;
mod score_chunks;
