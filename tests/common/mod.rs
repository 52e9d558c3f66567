//! Shared integration-test harness for ferry.
//!
//! Every file under `tests/` is its own crate and pulls this in with `mod common;`. Each of them uses
//! a different subset of the helpers, hence the blanket `allow` below: without it every test crate
//! would warn (and `clippy -D warnings` fail) about the helpers it happens not to call.
//!
//! What is here, and why:
//! - [`NatsServer`]: a real `nats-server` (pinned 2.15.1, see `scripts/install-nats-server.sh`) per
//!   test, on free loopback ports with its own storage, because ferry's guarantees (acks, duplicate
//!   windows, reconnects, spooling during outages) can only be checked against the real thing.
//! - [`Ferry`] / [`ferry_command`]: the `ferry` binary under test as a child process, so signals,
//!   exit codes, the state-store lock and the HTTP monitor are exercised exactly as in production.
//! - [`http_get`], [`parse_metrics`]: a dependency-free HTTP/1.1 client and Prometheus text parser to
//!   read ferry's monitor endpoints.
//! - [`wait_until`]: the only way tests should wait. Fixed sleeps are either flaky (too short on a
//!   loaded 2-core CI box) or slow (too long everywhere else); polling a condition is neither.
//! - [`js_client`], [`stream_messages`]: read back what ferry wrote to JetStream.
//! - [`Proxy`]: a fault-injecting TCP proxy (latency, a cut link, a link down) to put between
//!   ferry and a server, for the faults a network between data centres has.
#![allow(dead_code, unused_imports)]

mod events;
mod ferry;
mod http;
mod jetstream;
mod metrics;
mod nats;
mod proxy;
mod raw_nats;
mod replication;
pub use replication::*;

pub use events::{alive_event, msg_id, publish_alive, ALIVE_SUBJECT};
pub use ferry::{ferry_bin, ferry_command, Ferry, FerryOptions};
pub use http::{http_get, http_get_blocking, parse_response};
pub use jetstream::{
    base64_decode, js_client, parse_header_block, stream_message_count, stream_messages,
    StoredMessage,
};
pub use metrics::{parse_metrics, Metrics, Sample};
pub use nats::{nats_server_bin, NatsServer, ServerOptions};
pub use proxy::{Link, Proxy};
pub use raw_nats::{RawNats, UNPARSEABLE_HEADER_BLOCKS};

use std::collections::HashSet;
use std::future::Future;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often [`wait_until`] re-evaluates its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `f` about every 50 ms until it returns `true`; panics mentioning `what` when `timeout`
/// passes first.
///
/// Each evaluation of `f` is itself bounded by the time left, so a condition that hangs (say, a
/// request to a server the test just stopped) still ends in the clear "timed out waiting for ..."
/// panic instead of hanging the test. `f` is therefore polled in a cancellable way: it should only
/// observe, not mutate state half-way.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    let deadline = start + timeout;
    loop {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(POLL_INTERVAL);
        if let Ok(true) = tokio::time::timeout(left, f()).await {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {:.1?} waiting for {what}", start.elapsed());
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Ports handed out by [`free_port`] in this test process, never handed out twice.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback TCP port that was free a moment ago.
///
/// The port is found by binding `127.0.0.1:0` and closing the listener, so another process can still
/// grab it before our child binds it; callers that start servers retry on "address in use". Within
/// this process the same port is never returned twice, so tests running in parallel (cargo runs the
/// tests of one file on several threads) do not race each other for it.
pub fn free_port() -> u16 {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let seen = guard.get_or_insert_with(HashSet::new);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0 to find a free port")
            .port();
        if seen.insert(port) {
            return port;
        }
    }
}

/// Runs blocking code (process waits, synchronous polling) from sync or async callers.
///
/// Tests use the multi-threaded tokio runtime; there `block_in_place` tells the scheduler this thread
/// is about to block, so other tasks (e.g. a client the test spawned) keep running meanwhile. On a
/// current-thread runtime `block_in_place` would panic, and outside any runtime it is unnecessary, so
/// then the closure simply runs.
pub(crate) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The last `lines` lines of a log file (lossy UTF-8, ANSI colour codes removed), for panic messages.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    tail(&read_log(path), lines)
}

/// Like [`log_tail`] without the client library's per-message debug lines, which would otherwise
/// fill the whole tail and hide what ferry itself said before a failure.
pub(crate) fn log_tail_of_ferry(path: &Path, lines: usize) -> String {
    let log = read_log(path);
    let ours: Vec<&str> = log
        .lines()
        .filter(|line| !line.contains(" async_nats"))
        .collect();
    ours[ours.len().saturating_sub(lines)..].join("\n")
}

pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Reads a child's log file as text. Missing file → empty (the child may not have written yet).
pub(crate) fn read_log(path: &Path) -> String {
    read_log_from(path, 0)
}

/// Like [`read_log`], from byte `offset` on: the output of the latest run of a restarted child (see
/// [`log_len`]), so an error logged by an earlier run is not mistaken for the current one's.
pub(crate) fn read_log_from(path: &Path, offset: u64) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            strip_ansi(&String::from_utf8_lossy(&bytes[start..]))
        }
        Err(_) => String::new(),
    }
}

/// Current size of a log file (0 if missing), to remember where a new run's output starts.
pub(crate) fn log_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Removes ANSI CSI escape sequences (colours) so assertions like `log.contains("...")` work whatever
/// the child decided about colouring its output.
pub(crate) fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            // Parameter and intermediate bytes, then one final byte in 0x40..=0x7e.
            for c in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Opens `path` for appending (creating it), for use as a child's stdout/stderr. Appending keeps the
/// log of every run of a restarted child in one file.
pub(crate) fn append_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open log file {}: {e}", path.display()))
}

/// Sends `signal` to a child that has not been reaped yet.
///
/// Only call this while the `Child` is still un-waited: until then its pid cannot be reused by another
/// process, so the signal cannot hit a stranger.
pub(crate) fn signal_child(child: &std::process::Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits in pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions; the pid belongs to our un-reaped child.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        // ESRCH: it is a zombie already (exited, not yet reaped): nothing to do.
        if err.raw_os_error() != Some(libc::ESRCH) {
            panic!("kill({pid}, {signal}): {err}");
        }
    }
}

/// Waits (blocking, polling) up to `timeout` for `child` to exit.
pub(crate) fn wait_child_blocking(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for child {}: {e}", child.id()),
        }
    }
}
