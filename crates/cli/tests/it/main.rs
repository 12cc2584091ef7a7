//! crmdq's end-to-end tests, one test binary for the crate (it links DataFusion and
//! librdkafka once), one module per area. Most run the real `crmdq` binary; `apps` starts
//! `serve` and `run` in process. Tests that need a tool `.ci/run` installs (tansu, psql,
//! Python readers, the public data sets) are `#[ignore]`d with the reason; `.ci/run` runs
//! them with `--ignored`, where a missing tool fails the test.

mod alerts;
mod apps;
mod bench_harness;
mod cli;
mod common;
mod delta;
mod duckdb_review;
mod public_data;
mod real_broker;
mod report;
mod serve;
mod slt;
