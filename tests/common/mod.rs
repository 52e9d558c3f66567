//! Shared integration-test harness for ferry.
//!
//! Every file under `tests/` is its own crate and pulls this in with `mod common;`. Each of them uses
//! a different subset of the helpers, hence the blanket `allow` below: without it every test crate
//! would warn (and `clippy -D warnings` fail) about the helpers it happens not to call.
//!
//! What is here, and why:
//! - [`NatsServer`] (from `ferry-testkit`): a real `nats-server` (pinned 2.15.1, see
//!   `scripts/install-nats-server.sh`) per test, on ports it picks itself, with its own storage,
//!   because ferry's guarantees (acks, duplicate windows, reconnects, spooling during outages) can
//!   only be checked against the real thing.
//! - [`Ferry`] / [`ferry_command`]: the `ferry` binary under test as a child process (driven by the
//!   testkit's `FerryChild`), so signals, exit codes, the state-store lock and the HTTP monitor are
//!   exercised exactly as in production.
//! - [`http_get`], [`parse_metrics`] (from `ferry-testkit`): a dependency-free HTTP/1.1 client and
//!   Prometheus text parser to read ferry's monitor endpoints.
//! - [`wait_until`] (from `ferry-testkit`): the only way tests should wait. Fixed sleeps are either
//!   flaky (too short on a loaded 2-core CI box) or slow (too long everywhere else); polling a
//!   condition is neither.
//! - [`js_client`], [`stream_messages`]: read back what ferry wrote to JetStream.
//! - [`Proxy`]: a fault-injecting TCP proxy (latency, a cut link, a link down) to put between
//!   ferry and a server, for the faults a network between data centres has.
#![allow(dead_code, unused_imports)]

mod configs;
mod events;
mod ferry;
mod jetstream;
mod proxy;
mod raw_nats;
mod replication;
pub use replication::*;

pub use configs::{copy_yaml, lifecycle_yaml, two_connections_yaml, PASSTHROUGH_RAW};
pub use events::{alive_event, msg_id, publish_alive, ALIVE_SUBJECT};
pub use ferry::{ferry_bin, ferry_command, Ferry, FerryOptions};
pub use ferry_testkit::{
    blocking, http_get, http_get_blocking, parse_metrics, parse_response, wait_until, Metrics,
    NatsServer, Sample, ServerOptions, POLL_INTERVAL,
};
pub use jetstream::{
    base64_decode, js_client, parse_header_block, stream_message_count, stream_messages,
    stream_with_state, StoredMessage,
};
pub use proxy::{Link, Proxy};
pub use raw_nats::{RawNats, UNPARSEABLE_HEADER_BLOCKS};

use std::path::PathBuf;

/// The nats-server binary the tests run; panics with how to install it when there is none, so a
/// missing binary is one obvious failure instead of every test timing out.
pub fn nats_server_bin() -> PathBuf {
    ferry_testkit::nats_server_bin().unwrap_or_else(|error| panic!("{error}"))
}

/// A loopback port for ferry's monitor (ferry cannot pick its own): see `ferry_testkit::free_port`.
pub fn free_port() -> u16 {
    ferry_testkit::free_port()
        .unwrap_or_else(|error| panic!("finding a free loopback port: {error}"))
}
