//! ferry: a data adapter and stream replicator for NATS and JetStream.
//!
//! The binary in `main.rs` only parses the command line; everything else lives here so the
//! integration tests, the demo and the benchmarks drive the same code.

pub mod adapter;
pub mod app;
pub mod build_info;
pub mod choria;
pub mod config;
pub mod connect;
pub mod fault;
pub mod fields;
pub mod filter;
pub mod jetstream;
pub mod lab;
pub mod logging;
pub mod metrics;
pub mod migrate;
pub mod monitor;
pub mod replicator;
pub mod retry;
pub mod shutdown;
pub mod state;
pub mod status;
pub mod subject;
pub mod supervisor;
