//! ferry: a data adapter and stream replicator for NATS and JetStream.
//!
//! The binary in `main.rs` only parses the command line; everything else lives here so the
//! integration tests, the demo and the benchmarks drive the same code.

pub mod config;
pub mod subject;
