//! Real processes for ferry's tests, `ferry demo` and `ferry bench`.
//!
//! - [`NatsServer`]: a throwaway `nats-server` on ports the server picks itself (no "find a free
//!   port, then hope nobody takes it" race), with its own directory, stopped and removed on drop;
//! - [`FerryChild`]: a `ferry run` child process with its log, signals and readiness;
//! - [`http_get`]: a dependency-free HTTP/1.1 GET for the monitor endpoints;
//! - [`Metrics`]: a strict Prometheus text parser;
//! - [`wait_until`] / [`wait_for`]: polling with a deadline, the only way to wait for a process.
//!
//! Setup steps come in two flavours: `try_*` returning an error that names what failed and how to
//! fix it (for the demo and benchmarks, which report to a user), and a panicking one for tests,
//! where a failed setup should stop the test with the same message.

mod files;
mod http;
mod metrics;
mod process;
mod server;

pub use files::{
    append_file, log_len, log_tail, log_tail_of_ferry, note, read_log, read_log_from, strip_ansi,
    tail, unique_temp_dir, WorkDir,
};
pub use http::{http_get, http_get_blocking, parse_response};
pub use metrics::{parse_metrics, Metrics, MetricsError, Sample};
pub use process::{peak_rss_bytes, signal_child, wait_child_blocking, ChildError, FerryChild};
pub use server::{nats_server_bin, NatsServer, ServerError, ServerOptions};

use std::collections::HashSet;
use std::future::Future;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often [`wait_until`] and [`wait_for`] re-evaluate their condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `f` about every 50 ms until it returns `true`; panics mentioning `what` when `timeout`
/// passes first.
///
/// Each evaluation of `f` is itself bounded by the time left, so a condition that hangs (say, a
/// request to a server the test just stopped) still ends in the clear "timed out waiting for ..."
/// panic instead of hanging the test. `f` is therefore polled in a cancellable way: it should only
/// observe, not mutate state half-way.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    if let Err(elapsed) = wait_for(timeout, f).await {
        panic!("timed out after {elapsed:.1?} waiting for {what}");
    }
}

/// Like [`wait_until`], returning how long it waited as the error instead of panicking.
pub async fn wait_for<F, Fut>(timeout: Duration, mut f: F) -> Result<(), Duration>
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
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(start.elapsed());
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Ports handed out by [`free_port`] in this process, never handed out twice.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback TCP port that was free a moment ago, for listeners that cannot pick their own port
/// and report it, such as ferry's monitor (its `listen` address is a fixed config value).
///
/// The port is found by binding `127.0.0.1:0` and closing the listener, so another process can
/// still grab it before the child binds it: callers retry on "address in use". Within this process
/// the same port is never returned twice, so tests running in parallel do not race each other.
pub fn free_port() -> std::io::Result<u16> {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let seen = guard.get_or_insert_with(HashSet::new);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if seen.insert(port) {
            return Ok(port);
        }
    }
}

/// Runs blocking code (process waits, synchronous polling) from sync or async callers.
///
/// On the multi-threaded tokio runtime `block_in_place` tells the scheduler this thread is about
/// to block, so other tasks keep running meanwhile. On a current-thread runtime `block_in_place`
/// would panic, and outside any runtime it is unnecessary, so then the closure simply runs.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_not_repeated() {
        let mut ports: Vec<u16> = (0..50).map(|_| free_port().unwrap()).collect();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 50);
    }

    #[tokio::test]
    async fn wait_for_reports_the_time_waited() {
        let waited = wait_for(Duration::from_millis(120), || async { false })
            .await
            .unwrap_err();
        assert!(waited >= Duration::from_millis(120), "{waited:?}");
        let mut calls = 0;
        wait_for(Duration::from_secs(5), || {
            calls += 1;
            std::future::ready(calls == 3)
        })
        .await
        .unwrap();
        assert_eq!(calls, 3);
    }
}
