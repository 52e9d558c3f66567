//! The HTTP monitor of SPEC section 9: `GET /metrics`, `/healthz`, `/readyz` and `/status`, plus
//! [`fetch`], the tiny client `ferry status` uses to ask a running instance.
//!
//! The server is a deliberately small HTTP/1.1 implementation on plain tokio sockets instead of
//! axum/hyper: it serves four fixed GET paths to scrapers and probes, answers every request with
//! `Connection: close`, and never reads a body, so a full HTTP stack would only add build time, binary
//! size and dependencies to audit. What it does implement is what keeps it safe on an exposed port:
//! - each connection runs in its own task, so one slow client cannot stall a scrape;
//! - the request head is capped at [`MAX_HEAD_BYTES`] (431 beyond) and must arrive within the read
//!   timeout (default [`READ_TIMEOUT`]; 408 after), which defeats slow-loris clients;
//! - at most [`MAX_CONNECTIONS`] connections are served at once, further ones are closed at once;
//! - malformed input gets a 400, never a panic; responses are written under a timeout too.
//!
//! Nothing served here is secret: `/status` is built from the [`StatusBoard`], which holds no
//! configuration.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

use crate::metrics::Metrics;
use crate::status::StatusBoard;

/// Longest request head (request line and headers) the server reads.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Default time a client has to send its whole request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed without an answer.
pub const MAX_CONNECTIONS: usize = 256;
/// How long in-flight responses may finish after shutdown before they are cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// How much unread request data is drained before closing (see [`linger`]).
const LINGER_BYTES: u64 = 64 * 1024;
/// How long draining unread request data may take.
const LINGER_TIME: Duration = Duration::from_millis(500);
/// Largest response [`fetch`] accepts: `/metrics` of a big instance fits many times over.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// A bound, not yet serving monitor; bind early so a busy port fails the start, not a later task.
pub struct Monitor {
    listener: TcpListener,
    local_addr: SocketAddr,
    read_timeout: Duration,
}

/// What every connection task needs.
struct Shared {
    metrics: Arc<Metrics>,
    board: Arc<StatusBoard>,
    read_timeout: Duration,
}

impl Monitor {
    /// Binds `listen` (`host:port`); the error names the address.
    pub async fn bind(listen: &str) -> io::Result<Monitor> {
        let listener = TcpListener::bind(listen).await.map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("monitor cannot listen on {listen}: {error}"),
            )
        })?;
        let local_addr = listener.local_addr()?;
        Ok(Monitor {
            listener,
            local_addr,
            read_timeout: READ_TIMEOUT,
        })
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Changes how long a client may take to send its request head.
    pub fn with_read_timeout(mut self, read_timeout: Duration) -> Monitor {
        self.read_timeout = read_timeout;
        self
    }

    /// Serves until `*shutdown` becomes true or its sender is dropped (nobody could stop it
    /// otherwise); in-flight responses then get [`SHUTDOWN_GRACE`] to finish.
    pub fn spawn(
        self,
        metrics: Arc<Metrics>,
        board: Arc<StatusBoard>,
        shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let shared = Arc::new(Shared {
            metrics,
            board,
            read_timeout: self.read_timeout,
        });
        tokio::spawn(serve(self.listener, shared, shutdown))
    }
}

/// The accept loop.
async fn serve(listener: TcpListener, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    while !*shutdown.borrow_and_update() {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) if connections.len() < MAX_CONNECTIONS => {
                    connections.spawn(handle(stream, shared.clone()));
                }
                Ok((stream, peer)) => {
                    tracing::debug!(%peer, "monitor busy, closing connection");
                    drop(stream);
                }
                Err(error) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "monitor cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(finished) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = finished {
                    tracing::warn!(%error, "monitor connection task ended abnormally");
                }
            }
        }
    }
    let drain = async { while connections.join_next().await.is_some() {} };
    let _ = timeout(SHUTDOWN_GRACE, drain).await;
    connections.shutdown().await;
}

/// A response; every one closes the connection.
struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn new(status: u16, content_type: &'static str, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
        }
    }

    fn text(status: u16, body: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", format!("{body}\n"))
    }

    fn json(status: u16, body: &serde_json::Value) -> Response {
        let mut text = serde_json::to_string_pretty(body).unwrap_or_default();
        text.push('\n');
        Response::new(status, "application/json", text)
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            head.push_str("Allow: GET\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(self.body.as_bytes());
        bytes
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Why no request could be read.
enum HeadError {
    /// The client closed the connection before sending anything: nothing to answer.
    Closed,
    TooLarge,
    Malformed,
}

/// Serves one connection: read the head, answer, close.
async fn handle(mut stream: TcpStream, shared: Arc<Shared>) {
    let response = match timeout(shared.read_timeout, read_head(&mut stream)).await {
        Ok(Ok(head)) => respond(&head, &shared),
        Ok(Err(HeadError::Closed)) => return,
        Ok(Err(HeadError::TooLarge)) => Response::text(431, "request head too large"),
        Ok(Err(HeadError::Malformed)) => Response::text(400, "bad request"),
        Err(_elapsed) => Response::text(408, "request timeout"),
    };
    let write = async {
        stream.write_all(&response.to_bytes()).await?;
        stream.shutdown().await
    };
    if timeout(WRITE_TIMEOUT, write).await.is_ok() {
        linger(&mut stream).await;
    }
}

/// Reads until the blank line ending the request head, at most [`MAX_HEAD_BYTES`].
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|_| HeadError::Closed)?;
        if read == 0 {
            return Err(if head.is_empty() {
                HeadError::Closed
            } else {
                HeadError::Malformed
            });
        }
        let searched_from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..read]);
        if let Some(end) = head_end(&head, searched_from) {
            if end > MAX_HEAD_BYTES {
                return Err(HeadError::TooLarge);
            }
            head.truncate(end);
            return Ok(head);
        }
        if head.len() > MAX_HEAD_BYTES {
            return Err(HeadError::TooLarge);
        }
    }
}

/// Where the head ends (`\r\n\r\n`, or `\n\n` from lenient clients), searching from `from`.
fn head_end(buffer: &[u8], from: usize) -> Option<usize> {
    let rest = buffer.get(from..)?;
    rest.windows(2).enumerate().find_map(|(index, pair)| {
        let at = from + index;
        match pair {
            b"\n\n" => Some(at),
            b"\r\n" if buffer.get(at + 2..at + 4) == Some(&b"\r\n"[..]) => Some(at),
            _ => None,
        }
    })
}

/// Answers a request head.
fn respond(head: &[u8], shared: &Shared) -> Response {
    let Some((method, target)) = parse_request_line(head) else {
        return Response::text(400, "bad request");
    };
    if method != "GET" {
        return Response::text(405, "only GET is supported");
    }
    let path = target.split(['?', '#']).next().unwrap_or_default();
    route(path, shared)
}

/// The method and target of an HTTP/1.x request line.
fn parse_request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = std::str::from_utf8(&head[..line_end])
        .ok()?
        .trim_end_matches('\r');
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next()?;
    let well_formed = parts.next().is_none()
        && !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_uppercase())
        && target.starts_with('/')
        && version.starts_with("HTTP/1.");
    well_formed.then_some((method, target))
}

fn route(path: &str, shared: &Shared) -> Response {
    match path {
        "/metrics" => Response::new(200, prometheus::TEXT_FORMAT, shared.metrics.encode()),
        "/healthz" => Response::text(200, "ok"),
        "/readyz" => readyz(&shared.board),
        "/status" => Response::json(200, &shared.board.to_json()),
        _ => Response::text(404, "not found"),
    }
}

fn readyz(board: &StatusBoard) -> Response {
    match board.readiness() {
        Ok(()) => Response::json(200, &serde_json::json!({ "ready": true })),
        Err(not_ready) => Response::json(
            503,
            &serde_json::json!({ "ready": false, "not_ready": not_ready }),
        ),
    }
}

/// Reads and discards what the client still sends (e.g. the rest of an oversized request) for a
/// moment before closing. Closing a socket with unread data makes the kernel send a reset, which can
/// destroy the response before the client reads it.
async fn linger(stream: &mut TcpStream) {
    let mut sink = tokio::io::sink();
    let mut unread = stream.take(LINGER_BYTES);
    let _ = timeout(LINGER_TIME, tokio::io::copy(&mut unread, &mut sink)).await;
}

/// `GET path` from the monitor at `addr` (`host:port`); returns status code and body. Used by
/// `ferry status`. A listen address on all interfaces (`0.0.0.0`, `[::]`) is asked on loopback.
/// Bodies must come with `Content-Length` or end with the connection, as this monitor sends them.
pub async fn fetch(addr: &str, path: &str, limit: Duration) -> io::Result<(u16, String)> {
    if !path.starts_with('/')
        || path
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid request path {path:?}"),
        ));
    }
    match timeout(limit, fetch_unbounded(addr, path)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("monitor at {addr} did not answer within {limit:?}"),
        )),
    }
}

async fn fetch_unbounded(addr: &str, path: &str) -> io::Result<(u16, String)> {
    let target = connect_target(addr);
    let mut stream = TcpStream::connect(target.as_str()).await.map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("cannot connect to monitor at {addr}: {error}"),
        )
    })?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: ferry/{}\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE_BYTES)
        .read_to_end(&mut response)
        .await?;
    parse_response(&response).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("monitor at {addr} sent a malformed HTTP response"),
        )
    })
}

/// Replaces an unspecified IP (a listen-on-all address) by loopback, which reaches the same server.
fn connect_target(addr: &str) -> String {
    match addr.parse::<SocketAddr>() {
        Ok(SocketAddr::V4(v4)) if v4.ip().is_unspecified() => format!("127.0.0.1:{}", v4.port()),
        Ok(SocketAddr::V6(v6)) if v6.ip().is_unspecified() => format!("[::1]:{}", v6.port()),
        _ => addr.to_string(),
    }
}

/// Status code and body of a complete response.
fn parse_response(response: &[u8]) -> Option<(u16, String)> {
    let end = head_end(response, 0)?;
    let head = std::str::from_utf8(&response[..end]).ok()?;
    let separator = if response.get(end..end + 4) == Some(&b"\r\n\r\n"[..]) {
        4
    } else {
        2
    };
    let mut body = &response[end + separator..];
    let mut lines = head.lines();
    let mut status_line = lines.next()?.split(' ');
    if !status_line.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = status_line.next()?.parse().ok()?;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("content-length") {
            let length: usize = value.trim().parse().ok()?;
            body = body.get(..length)?;
        }
    }
    Some((status, String::from_utf8_lossy(body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{PipelineKind, PipelineState};

    struct Running {
        addr: String,
        board: Arc<StatusBoard>,
        metrics: Arc<Metrics>,
        stop: watch::Sender<bool>,
        task: JoinHandle<()>,
    }

    async fn start(read_timeout: Duration) -> Running {
        let monitor = Monitor::bind("127.0.0.1:0")
            .await
            .unwrap()
            .with_read_timeout(read_timeout);
        let addr = monitor.local_addr().to_string();
        let metrics = Arc::new(Metrics::new());
        let board = Arc::new(StatusBoard::new("test-instance"));
        let (stop, shutdown) = watch::channel(false);
        let task = monitor.spawn(metrics.clone(), board.clone(), shutdown);
        Running {
            addr,
            board,
            metrics,
            stop,
            task,
        }
    }

    const LIMIT: Duration = Duration::from_secs(5);

    /// Sends raw bytes and returns whatever the server answers before closing.
    async fn raw(addr: &str, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let _ = stream.write_all(request).await;
        let _ = stream.shutdown().await;
        let mut answer = Vec::new();
        let _ = timeout(LIMIT, stream.read_to_end(&mut answer)).await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn routes() {
        let m = start(READ_TIMEOUT).await;
        m.metrics
            .adapter_received
            .with_label_values(&["lifecycle"])
            .inc();

        let (status, body) = fetch(&m.addr, "/metrics", LIMIT).await.unwrap();
        assert_eq!(status, 200);
        assert!(body.contains("ferry_adapter_received_total{pipeline=\"lifecycle\"} 1"));
        let (status, body) = fetch(&m.addr, "/healthz", LIMIT).await.unwrap();
        assert_eq!((status, body.as_str()), (200, "ok\n"));
        let (status, body) = fetch(&m.addr, "/readyz", LIMIT).await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["ready"],
            true
        );
        let (status, _) = fetch(&m.addr, "/nope", LIMIT).await.unwrap();
        assert_eq!(status, 404);
        let (status, _) = fetch(&m.addr, "/healthz?verbose=1", LIMIT).await.unwrap();
        assert_eq!(status, 200);

        m.board.register("lifecycle", PipelineKind::Adapter);
        m.board.set_state(
            "lifecycle",
            PipelineState::Disconnected,
            Some("east down".into()),
        );
        let (status, body) = fetch(&m.addr, "/readyz", LIMIT).await.unwrap();
        assert_eq!(status, 503);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["ready"], false);
        assert_eq!(json["not_ready"][0]["pipeline"], "lifecycle");
        assert_eq!(json["not_ready"][0]["state"], "disconnected");
        assert_eq!(json["not_ready"][0]["reason"], "east down");

        let (status, body) = fetch(&m.addr, "/status", LIMIT).await.unwrap();
        assert_eq!(status, 200);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["instance"], "test-instance");
        assert_eq!(json["pipelines"][0]["name"], "lifecycle");

        let _ = m.stop.send(true);
        timeout(LIMIT, m.task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn headers_and_methods() {
        let m = start(READ_TIMEOUT).await;
        let answer = raw(&m.addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("Content-Type: text/plain; version=0.0.4"));
        assert!(answer.contains("Connection: close\r\n"));
        let answer = raw(
            &m.addr,
            b"POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
        assert!(answer.contains("Allow: GET\r\n"));
        let answer = raw(&m.addr, b"HEAD /healthz HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
        let answer = raw(&m.addr, b"GET /healthz HTTP/1.0\n\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        let answer = raw(&m.addr, b"GET /status HTTP/1.1\r\n\r\n").await;
        assert!(
            answer.contains("Content-Type: application/json"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn garbage_gets_400_and_the_server_survives() {
        let m = start(READ_TIMEOUT).await;
        for garbage in [
            &b"\x00\xff\xfe garbage\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"GET /x\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"get /healthz HTTP/1.1\r\n\r\n",
            b"GET /healthz SPDY/3\r\n\r\n",
            b"GET  /healthz HTTP/1.1\r\n\r\n",
            b"GET /h\xffz HTTP/1.1\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: x",
        ] {
            let answer = raw(&m.addr, garbage).await;
            assert!(answer.starts_with("HTTP/1.1 400 "), "{garbage:?}: {answer}");
        }
        // Connect and close without a byte: no answer, no harm.
        drop(TcpStream::connect(&m.addr).await.unwrap());
        let (status, _) = fetch(&m.addr, "/healthz", LIMIT).await.unwrap();
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn huge_heads_are_refused() {
        let m = start(READ_TIMEOUT).await;
        let mut request = b"GET /healthz HTTP/1.1\r\nX-Big: ".to_vec();
        request.extend(std::iter::repeat_n(b'a', 64 * 1024));
        request.extend_from_slice(b"\r\n\r\n");
        let answer = raw(&m.addr, &request).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431 "),
            "{answer}"
        );
        // Just under the cap is fine.
        let mut request = b"GET /healthz HTTP/1.1\r\nX-Big: ".to_vec();
        request.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES - 100));
        request.extend_from_slice(b"\r\n\r\n");
        let answer = raw(&m.addr, &request).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        let (status, _) = fetch(&m.addr, "/healthz", LIMIT).await.unwrap();
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn slow_clients_time_out_without_blocking_others() {
        let m = start(Duration::from_millis(300)).await;
        let mut slow = TcpStream::connect(&m.addr).await.unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        // Another client is served while the slow one dawdles.
        let (status, _) = fetch(&m.addr, "/healthz", LIMIT).await.unwrap();
        assert_eq!(status, 200);
        let mut answer = Vec::new();
        timeout(LIMIT, slow.read_to_end(&mut answer))
            .await
            .expect("server closes the slow connection")
            .unwrap();
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408 "));
    }

    #[tokio::test]
    async fn shutdown_stops_serving() {
        let m = start(READ_TIMEOUT).await;
        let idle = TcpStream::connect(&m.addr).await.unwrap();
        m.stop.send(true).unwrap();
        timeout(LIMIT, m.task)
            .await
            .expect("stops despite an idle connection")
            .unwrap();
        drop(idle);
        assert!(fetch(&m.addr, "/healthz", Duration::from_secs(1))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn dropping_the_sender_stops_serving() {
        let m = start(READ_TIMEOUT).await;
        drop(m.stop);
        timeout(LIMIT, m.task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn bind_errors_name_the_address() {
        let m = start(READ_TIMEOUT).await;
        let error = Monitor::bind(&m.addr).await.err().unwrap();
        assert!(error.to_string().contains(&m.addr), "{error}");
        let error = Monitor::bind("not an address").await.err().unwrap();
        assert!(error.to_string().contains("not an address"), "{error}");
    }

    #[tokio::test]
    async fn fetch_errors() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // Accepts (via the backlog) but never answers.
        let error = fetch(&addr, "/healthz", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(error.to_string().contains(&addr));
        drop(listener);
        let error = fetch(&addr, "/healthz", LIMIT).await.unwrap_err();
        assert!(error.to_string().contains(&addr), "{error}");
        let error = fetch(&addr, "no-slash", LIMIT).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        let error = fetch(&addr, "/a b", LIMIT).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn fetch_reaches_a_listen_on_all_address() {
        let monitor = Monitor::bind("0.0.0.0:0").await.unwrap();
        let port = monitor.local_addr().port();
        let (_stop, shutdown) = watch::channel(false);
        let task = monitor.spawn(
            Arc::new(Metrics::new()),
            Arc::new(StatusBoard::new("x")),
            shutdown,
        );
        let (status, _) = fetch(&format!("0.0.0.0:{port}"), "/healthz", LIMIT)
            .await
            .unwrap();
        assert_eq!(status, 200);
        task.abort();
    }

    #[test]
    fn response_parsing() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"),
            Some((200, "ok".into()))
        );
        assert_eq!(
            parse_response(b"HTTP/1.0 503 X\r\n\r\nbody"),
            Some((503, "body".into()))
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\n\nlenient"),
            Some((200, "lenient".into()))
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"),
            None
        );
        assert_eq!(parse_response(b"HTTP/1.1 abc OK\r\n\r\n"), None);
        assert_eq!(parse_response(b"SMTP ready\r\n\r\n"), None);
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n"), None);
        assert_eq!(parse_response(b""), None);
    }

    #[test]
    fn head_end_finds_both_terminators() {
        assert_eq!(head_end(b"a\r\n\r\nb", 0), Some(1));
        assert_eq!(head_end(b"a\n\nb", 0), Some(1));
        assert_eq!(head_end(b"a\r\nb\r\n", 0), None);
        assert_eq!(head_end(b"ab", 5), None);
        assert_eq!(connect_target("0.0.0.0:9464"), "127.0.0.1:9464");
        assert_eq!(connect_target("[::]:9464"), "[::1]:9464");
        assert_eq!(connect_target("monitor.local:9464"), "monitor.local:9464");
    }
}
