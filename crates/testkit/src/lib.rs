//! crmdq-testkit: what tests, the demo and the benchmarks are made of — the synthetic CRM
//! stream and its roster ([`generate`]), putting a stream on Kafka or librdkafka's
//! in-process mock cluster ([`kafka`]), and the per-record kernels `crmdq bench` times
//! ([`kernels`]). Nothing in the pipeline uses it; it depends only on the stages below.

pub mod generate;
pub mod kafka;
pub mod kernels;
