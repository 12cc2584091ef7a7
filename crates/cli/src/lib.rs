//! crmdq: the apps behind the binary's commands that are more than a call into a stage —
//! `run` as a value ([`app::RunApp`]), the demo (the whole pipeline on an in-process Kafka
//! mock cluster) and the Kafka benchmark. The binary (`main.rs`, `cmd/`) parses arguments
//! and prints.

pub mod app;
pub mod bench;
pub mod demo;
