//! The pipeline crate's integration tests, one test binary (it links DataFusion and
//! librdkafka once): backfills over thousands of dates, the decode/check fuzzer, Kafka on
//! librdkafka's in-process mock cluster (faults included), chunked and incremental scoring.

mod backfill;
mod fuzz_decode_check;
mod incremental;
mod kafka_mock;
mod periods;
mod score_chunks;
