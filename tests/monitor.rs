//! The HTTP monitor under hostile and heavy clients (SPEC section 9): probes must be answered while
//! hundreds of slow sockets are open, a burst of requests must be answered rather than closed, and
//! odd requests (HEAD, other methods, unknown paths, oversize or slow heads) get a well-defined
//! answer or a close.
//!
//! Everything here runs against a real `ferry run`; the finer behaviours (eviction with a small
//! connection limit, shutdown, the fuzz check) are unit tests in `src/monitor/`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::lifecycle_yaml;
use common::{http_get, parse_metrics, wait_until, Ferry, NatsServer};
use ferry::monitor::{MAX_CONNECTIONS, MAX_HEAD_BYTES, READ_TIMEOUT};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Sockets that connect and send nothing: more than the monitor serves at once, so it must evict
/// some of them to answer anyone.
const SILENT_CLIENTS: usize = MAX_CONNECTIONS + 64;
/// Sockets that send a request head one byte per second and never finish it.
const DRIBBLING_CLIENTS: usize = 64;
/// How long one probe may take to be answered while the slow sockets are open.
const PROBE_DEADLINE: Duration = Duration::from_secs(2);
/// Probe rounds, one every [`PROBE_PACE`]: together longer than the monitor's 5 s head timeout, so
/// the slow sockets are cut and reopened while probes run.
const PROBE_ROUNDS: usize = 28;
const PROBE_PACE: Duration = Duration::from_millis(250);
/// The burst: requests in all, and how many are in flight at once.
const BURST_REQUESTS: usize = 2_000;
const BURST_CONCURRENCY: usize = 64;

fn one_adapter_yaml(url: &str) -> String {
    lifecycle_yaml(Some("ferry-monitor-test"), "core", url, "")
}

/// Slow clients that keep `silent + dribbling` sockets open on `addr` until aborted: whenever the
/// server closes one, it is opened again, as an attacker would.
struct SlowClients {
    tasks: JoinSet<()>,
    /// How many client tasks have had their first socket open.
    connected_once: Arc<AtomicUsize>,
    total: usize,
}

impl SlowClients {
    fn start(addr: &str, silent: usize, dribbling: usize) -> SlowClients {
        let connected_once = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        for index in 0..silent + dribbling {
            let addr = addr.to_string();
            let connected_once = connected_once.clone();
            let dribble = index >= silent;
            tasks.spawn(async move {
                let mut first = true;
                loop {
                    let Ok(stream) = TcpStream::connect(&addr).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    if first {
                        first = false;
                        connected_once.fetch_add(1, Ordering::SeqCst);
                    }
                    hold(stream, dribble).await;
                }
            });
        }
        SlowClients {
            tasks,
            connected_once,
            total: silent + dribbling,
        }
    }

    async fn wait_all_connected(&self) {
        let connected = &self.connected_once;
        let total = self.total;
        wait_until(
            "every slow client to open its socket",
            Duration::from_secs(30),
            move || async move { connected.load(Ordering::SeqCst) == total },
        )
        .await;
    }
}

impl Drop for SlowClients {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// Keeps `stream` open until the server closes it: silent, or sending an endless request head one
/// byte per second.
async fn hold(mut stream: TcpStream, dribble: bool) {
    let head = b"GET /healthz HTTP/1.1\r\nX-Slow: ";
    let mut sent = 0usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut buffer = [0u8; 512];
    loop {
        tokio::select! {
            read = stream.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = tick.tick(), if dribble => {
                let byte = head.get(sent).copied().unwrap_or(b'a');
                sent += 1;
                if stream.write_all(&[byte]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// `GET path` that must be answered within [`PROBE_DEADLINE`]; the status code, or why not.
async fn probe(addr: &str, path: &str) -> Result<u16, String> {
    let started = Instant::now();
    match tokio::time::timeout(PROBE_DEADLINE, http_get(addr, path)).await {
        Ok(Ok((code, _))) => Ok(code),
        Ok(Err(error)) => Err(format!("{path}: {error} after {:?}", started.elapsed())),
        Err(_) => Err(format!("{path}: no answer within {PROBE_DEADLINE:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_a_burst_are_answered_while_hundreds_of_slow_sockets_are_open() {
    let server = NatsServer::start();
    let mut ferry = Ferry::start(&one_adapter_yaml(&server.url()));
    ferry.wait_ready().await;
    let addr = ferry.monitor_addr().to_string();

    let attack = SlowClients::start(&addr, SILENT_CLIENTS, DRIBBLING_CLIENTS);
    attack.wait_all_connected().await;

    let mut failures = Vec::new();
    let mut pace = tokio::time::interval(PROBE_PACE);
    for _ in 0..PROBE_ROUNDS {
        pace.tick().await;
        for path in ["/healthz", "/readyz"] {
            match probe(&addr, path).await {
                Ok(200) => {}
                Ok(code) => failures.push(format!("{path}: answered {code}")),
                Err(why) => failures.push(why),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} probes failed while {} slow sockets were open: {:?}",
        failures.len(),
        PROBE_ROUNDS * 2,
        SILENT_CLIENTS + DRIBBLING_CLIENTS,
        &failures[..failures.len().min(10)]
    );

    let paths = ["/healthz", "/readyz", "/status", "/metrics"];
    let outcomes: Vec<Result<(u16, String), String>> =
        futures_util::stream::iter(0..BURST_REQUESTS)
            .map(|index| {
                let addr = addr.clone();
                let path = paths[index % paths.len()];
                async move {
                    http_get(&addr, path)
                        .await
                        .map_err(|error| format!("{path}: {error}"))
                }
            })
            .buffer_unordered(BURST_CONCURRENCY)
            .collect()
            .await;
    let answered_ok = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Ok((200, _))))
        .count();
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            Ok((200, _)) => None,
            Ok((code, body)) => Some(format!("answered {code}: {body}")),
            Err(why) => Some(why.clone()),
        })
        .take(10)
        .collect();
    if answered_ok != BURST_REQUESTS {
        let unanswered = match http_get(&addr, "/metrics").await {
            Ok((_, body)) => body
                .lines()
                .filter(|line| line.starts_with("ferry_monitor_unanswered_total"))
                .collect::<Vec<_>>()
                .join(", "),
            Err(error) => error.to_string(),
        };
        panic!(
            "{answered_ok} of a burst of {BURST_REQUESTS} ({BURST_CONCURRENCY} at a time) \
             answered 200 beside the slow sockets; first failures: {failed:?}; {unanswered}"
        );
    }
    // More slow sockets than slots: the monitor made room by evicting idle ones, and said so.
    let metrics = parse_metrics(&http_get(&addr, "/metrics").await.unwrap().1);
    let evicted = metrics
        .get("ferry_monitor_unanswered_total", &[("reason", "evicted")])
        .unwrap_or_default();
    assert!(evicted >= 1.0, "no eviction counted");
    drop(attack);
    assert!(
        ferry.log().contains("monitor at its connection limit"),
        "no warning about the evictions in the log"
    );
}

/// Sends raw bytes, then reads whatever the server answers until it closes (bounded).
async fn raw(addr: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the monitor");
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(READ_TIMEOUT * 2, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_other_methods_unknown_paths_oversize_and_slow_heads() {
    let server = NatsServer::start();
    let mut ferry = Ferry::start(&one_adapter_yaml(&server.url()));
    ferry.wait_ready().await;
    let addr = ferry.monitor_addr().to_string();

    // HEAD on every path: the GET answer's status and headers, no body.
    for (path, status) in [
        ("/healthz", "200 OK"),
        ("/readyz", "200 OK"),
        ("/status", "200 OK"),
        ("/metrics", "200 OK"),
        ("/nope", "404 Not Found"),
    ] {
        let answer = raw(
            &addr,
            format!("HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "HEAD {path}: {answer}"
        );
        assert!(answer.contains("Content-Length: "), "HEAD {path}: {answer}");
        assert!(
            answer.ends_with("\r\n\r\n"),
            "HEAD {path} has a body: {answer}"
        );
    }
    let answer = raw(&addr, b"HEAD /healthz HTTP/1.1\r\n\r\n").await;
    assert!(answer.contains("Content-Length: 3\r\n"), "{answer}");

    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let answer = raw(
            &addr,
            format!("{method} /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 405 "), "{method}: {answer}");
        assert!(
            answer.contains("Allow: GET, HEAD\r\n"),
            "{method}: {answer}"
        );
    }
    let (code, body) = http_get(&addr, "/nope").await.unwrap();
    assert_eq!((code, body.as_str()), (404, "not found\n"));

    let mut oversize = b"GET /healthz HTTP/1.1\r\nX-Big: ".to_vec();
    oversize.resize(MAX_HEAD_BYTES + 1024, b'a');
    oversize.extend_from_slice(b"\r\n\r\n");
    let answer = raw(&addr, &oversize).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");

    // A head that never ends is cut after the head timeout, unanswered, and counted.
    let started = Instant::now();
    let answer = raw(&addr, b"GET /healthz HTTP/1.1\r\nX-Slow: ").await;
    assert_eq!(answer, "", "closed without an answer");
    let took = started.elapsed();
    assert!(
        took >= READ_TIMEOUT - Duration::from_millis(100) && took < READ_TIMEOUT * 2,
        "closed after {took:?}"
    );
    let metrics = parse_metrics(&http_get(&addr, "/metrics").await.unwrap().1);
    assert_eq!(
        metrics.get(
            "ferry_monitor_unanswered_total",
            &[("reason", "head_timeout")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metrics.get("ferry_monitor_unanswered_total", &[("reason", "evicted")]),
        Some(0.0)
    );
    let (code, _) = http_get(&addr, "/healthz").await.unwrap();
    assert_eq!(code, 200);
}
