//! The HTTP monitor of SPEC section 9: `GET /metrics`, `/healthz`, `/readyz` and `/status`, plus
//! [`fetch`], the small client `ferry status` uses to ask a running instance.
//!
//! HTTP/1.1 itself is hyper's (parsing, framing, `HEAD`, error answers); this module decides what
//! is served ([`routes`]) and how the port stays usable when clients are slow, many or hostile,
//! which matters because a Kubernetes liveness probe that goes unanswered restarts a healthy ferry:
//! - one task per connection, one request per connection (`Connection: close`): a connection's
//!   life is its request head, its answer, and a short linger;
//! - the request head is capped at [`MAX_HEAD_BYTES`] (hyper answers 431 beyond, 400 to malformed
//!   input) and must arrive within the head timeout (default [`READ_TIMEOUT`]; the connection is
//!   then closed), so a slow-loris client holds a slot for seconds, not forever;
//! - the answer must be taken within [`ANSWER_TIMEOUT`] after that, so a client that never reads
//!   cannot hold a slot either;
//! - at most [`MAX_CONNECTIONS`] connections are served at once, and reaching the bound never
//!   refuses a newcomer: the oldest connection still without a complete request head gives way
//!   ([`connections`]). A fixed cap that closes new connections (what this monitor did before) lets
//!   a few hundred idle sockets lock every probe out; evicting idle ones instead means an attacker
//!   only ever evicts their own sockets, while a probe, which sends its head at once, is answered.
//!   The cap itself only bounds file descriptors and memory (a connection costs a socket and a
//!   buffer of at most [`MAX_HEAD_BYTES`]); it stays well below the usual 1024-descriptor limit.
//!
//! Connections closed without an answer are counted in `ferry_monitor_unanswered_total{reason}`
//! (`evicted`, `head_timeout`, `answer_timeout`); evictions also log one rate-limited warning.
//!
//! Nothing served here is secret: `/status` is built from the [`StatusBoard`], which holds no
//! configuration.

mod client;
mod connections;
mod routes;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

pub use client::fetch;
pub use connections::EVICTION_MIN_AGE;

use crate::logging::LogLimiter;
use crate::metrics::Metrics;
use crate::shutdown::StopSignal;
use crate::status::StatusBoard;
use connections::{Connections, Room};

/// Longest request head (request line and headers) the server reads.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Default time a client has to send its whole request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has, after its head, to take the answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; beyond, the oldest one still waiting for its head is closed.
pub const MAX_CONNECTIONS: usize = 512;
/// Connections the kernel completes and queues for the accept loop. When this queue is full the
/// kernel drops new connection attempts (clients retry after a second or more), so it must hold
/// more than the idle sockets an attacker keeps queued while the accept loop waits to evict; the
/// kernel caps it at `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: u32 = 1024;
/// How long in-flight responses may finish after shutdown before they are cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// How much unread request data is drained before closing (see [`linger`]).
const LINGER_BYTES: u64 = 64 * 1024;
/// How long draining unread request data may take.
const LINGER_TIME: Duration = Duration::from_millis(500);
/// At most one warning per this interval for evictions and for accept errors.
const LOG_INTERVAL: Duration = Duration::from_secs(30);

/// Values of the `reason` label of `ferry_monitor_unanswered_total`.
const EVICTED: &str = "evicted";
const HEAD_TIMEOUT: &str = "head_timeout";
const ANSWER_TIMED_OUT: &str = "answer_timeout";

/// A bound, not yet serving monitor; bind early so a busy port fails the start, not a later task.
pub struct Monitor {
    listener: TcpListener,
    local_addr: SocketAddr,
    read_timeout: Duration,
    max_connections: usize,
}

/// What every connection task needs.
struct Shared {
    metrics: Arc<Metrics>,
    board: Arc<StatusBoard>,
    read_timeout: Duration,
}

impl Shared {
    fn unanswered(&self, reason: &str) {
        self.metrics
            .monitor_unanswered
            .with_label_values(&[reason])
            .inc();
    }
}

impl Monitor {
    /// Binds `listen` (`host:port`); the error names the address.
    pub async fn bind(listen: &str) -> io::Result<Monitor> {
        let listener = listen_on(listen).await.map_err(|error| {
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
            max_connections: MAX_CONNECTIONS,
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

    /// Changes how many connections are served at once (at least 1).
    pub fn with_max_connections(mut self, max_connections: usize) -> Monitor {
        self.max_connections = max_connections.max(1);
        self
    }

    /// Serves until `shutdown` says stop (or its owner is dropped: nobody could stop it
    /// otherwise): it stops accepting, closes connections still waiting for a request head, and
    /// gives in-flight answers [`SHUTDOWN_GRACE`] to finish.
    pub fn spawn(
        self,
        metrics: Arc<Metrics>,
        board: Arc<StatusBoard>,
        shutdown: StopSignal,
    ) -> JoinHandle<()> {
        for reason in [EVICTED, HEAD_TIMEOUT, ANSWER_TIMED_OUT] {
            metrics.monitor_unanswered.with_label_values(&[reason]);
        }
        let shared = Arc::new(Shared {
            metrics,
            board,
            read_timeout: self.read_timeout,
        });
        tokio::spawn(serve(self.listener, shared, self.max_connections, shutdown))
    }
}

/// Listens on the first address of `listen` that can be bound, with a backlog of
/// [`LISTEN_BACKLOG`] (tokio's `TcpListener::bind` uses 128).
async fn listen_on(listen: &str) -> io::Result<TcpListener> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host(listen).await? {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        };
        let bound = socket.and_then(|socket| {
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(LISTEN_BACKLOG)
        });
        match bound {
            Ok(listener) => return Ok(listener),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    }))
}

/// The accept loop. A connection accepted while every slot is taken waits here, not accepting
/// others, until [`Connections::make_room`] frees a slot.
async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    max_connections: usize,
    shutdown: StopSignal,
) {
    let mut connections = Connections::new(max_connections);
    let mut waiting: Option<TcpStream> = None;
    let evictions = LogLimiter::new(LOG_INTERVAL);
    let accept_errors = LogLimiter::new(LOG_INTERVAL);
    loop {
        let mut retry_at = None;
        if let Some(stream) = waiting.take() {
            let now = Instant::now();
            match connections.make_room(now) {
                Room::Full { retry_at: at } => {
                    waiting = Some(stream);
                    retry_at = at;
                }
                room => {
                    if room == Room::Evicted {
                        shared.unanswered(EVICTED);
                        if let Some(suppressed) = evictions.allow() {
                            tracing::warn!(
                                limit = max_connections,
                                suppressed,
                                "monitor at its connection limit: closed the oldest connection \
                                 still waiting for its request head to serve a new one \
                                 (slow or idle clients; see ferry_monitor_unanswered_total)"
                            );
                        }
                    }
                    let head_received = Arc::new(AtomicBool::new(false));
                    let task = serve_connection(
                        stream,
                        shared.clone(),
                        head_received.clone(),
                        shutdown.clone(),
                    );
                    // Its protection from eviction starts now, when its task starts reading.
                    connections.spawn(now, head_received, task);
                }
            }
        }
        let slot_pending = waiting.is_some();
        tokio::select! {
            () = shutdown.stopping() => break,
            accepted = listener.accept(), if !slot_pending => match accepted {
                Ok((stream, _peer)) => waiting = Some(stream),
                Err(error) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    if let Some(suppressed) = accept_errors.allow() {
                        tracing::warn!(%error, suppressed, "monitor cannot accept a connection");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)),
                if retry_at.is_some() => {}
            () = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    drop(waiting);
    connections.drain(SHUTDOWN_GRACE).await;
}

/// hyper's HTTP/1.1 server as the monitor uses it: one request per connection, bounded heads.
fn http1_server(read_timeout: Duration) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_header_size(MAX_HEAD_BYTES)
        .keep_alive(false)
        // A client may shut down its sending side after the request and still get the answer.
        .half_close(true)
        // `Content-Type:` rather than `content-type:` on the wire, as before hyper.
        .title_case_headers(true);
    builder
}

/// Serves the one request on `io`. `head_received` is set once its head is complete.
async fn serve_http<I>(io: I, shared: &Shared, head_received: &AtomicBool) -> hyper::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let service = service_fn(|request| {
        head_received.store(true, Ordering::Release);
        let response = routes::respond(&request, &shared.metrics, &shared.board);
        std::future::ready(Ok::<_, Infallible>(response))
    });
    http1_server(shared.read_timeout)
        .serve_connection(TokioIo::new(io), service)
        .await
}

/// Serves one connection whose client sends `request` and then closes its sending side, and
/// returns every byte answered (empty for a close without an answer): the monitor's request
/// handling without a socket, for the fuzz target `fuzz/fuzz_targets/monitor_request.rs`.
#[doc(hidden)]
pub async fn answer(request: &[u8], metrics: Arc<Metrics>, board: Arc<StatusBoard>) -> Vec<u8> {
    let shared = Shared {
        metrics,
        board,
        read_timeout: READ_TIMEOUT,
    };
    let (mut client, server) = tokio::io::duplex(16 * 1024);
    let head_received = AtomicBool::new(false);
    let serve = serve_http(server, &shared, &head_received);
    let talk = async {
        let _ = client.write_all(request).await;
        let _ = client.shutdown().await;
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer).await;
        answer
    };
    tokio::join!(serve, talk).1
}

/// How serving one connection ended, short of a time limit.
enum Served {
    /// hyper finished the connection (with an error for malformed heads, timeouts, resets).
    Done(hyper::Result<()>),
    /// Shutdown came while the connection was still waiting for its head.
    Stopped,
}

/// Serves one connection: its request within the time limits, then [`linger`].
async fn serve_connection(
    mut stream: TcpStream,
    shared: Arc<Shared>,
    head_received: Arc<AtomicBool>,
    shutdown: StopSignal,
) {
    let served = async {
        let connection = serve_http(&mut stream, &shared, &head_received);
        tokio::pin!(connection);
        tokio::select! {
            result = &mut connection => Served::Done(result),
            // Waiting for a head is pointless now; an answer being written may finish.
            () = shutdown.stopping() => {
                if head_received.load(Ordering::Acquire) {
                    Served::Done(connection.await)
                } else {
                    Served::Stopped
                }
            }
        }
    };
    match timeout(shared.read_timeout + ANSWER_TIMEOUT, served).await {
        Ok(Served::Stopped) => {}
        Ok(Served::Done(Err(error))) if error.is_timeout() => {
            shared.unanswered(HEAD_TIMEOUT);
            tracing::debug!(
                "monitor closed a connection that sent no complete request head in time"
            );
        }
        Ok(Served::Done(result)) => {
            if let Err(error) = result {
                // A malformed or oversized head (hyper has answered 400 or 431), or a client that
                // went away.
                tracing::debug!(%error, "monitor connection ended early");
            }
            let _ = stream.shutdown().await;
            linger(&mut stream).await;
        }
        Err(_elapsed) => {
            shared.unanswered(ANSWER_TIMED_OUT);
            tracing::debug!("monitor closed a connection that did not take its answer in time");
        }
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

#[cfg(test)]
mod tests;
