//! crmdq: the apps behind the binary's commands that are more than a call into a stage —
//! the demo (the whole pipeline on an in-process Kafka mock cluster) and the Kafka
//! benchmark. The binary (`main.rs`) parses arguments and prints.

pub mod bench;
pub mod demo;
