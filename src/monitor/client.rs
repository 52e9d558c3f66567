//! [`fetch`]: the small client `ferry status` uses to ask a running instance, on hyper's HTTP/1.1
//! client connection. It is bounded in time (the caller's limit covers connect, request and body)
//! and in size ([`MAX_RESPONSE_BYTES`]).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{HeaderValue, ACCEPT, CONNECTION, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::config::units::format_duration;

/// Largest response body [`fetch`] accepts: `/metrics` of a big instance fits many times over.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// `GET path` from the monitor at `addr` (`host:port`); returns status code and body. Used by
/// `ferry status`. A listen address on all interfaces (`0.0.0.0`, `[::]`) is asked on loopback.
pub async fn fetch(addr: &str, path: &str, limit: Duration) -> io::Result<(u16, String)> {
    fetch_bounded(addr, path, limit, MAX_RESPONSE_BYTES).await
}

/// [`fetch`] with the body limit as a parameter.
async fn fetch_bounded(
    addr: &str,
    path: &str,
    limit: Duration,
    max_body: usize,
) -> io::Result<(u16, String)> {
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
    match timeout(limit, get_once(addr, path, max_body)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "monitor at {addr} did not answer within {}",
                format_duration(limit)
            ),
        )),
    }
}

/// One request and its answer, with no time limit.
async fn get_once(addr: &str, path: &str, max_body: usize) -> io::Result<(u16, String)> {
    let target = connect_target(addr);
    let stream = TcpStream::connect(target.as_str()).await.map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("cannot connect to monitor at {addr}: {error}"),
        )
    })?;
    let malformed = |error: &dyn std::fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("monitor at {addr} sent no valid HTTP response to GET {path}: {error}"),
        )
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| malformed(&error))?;
    let request = Request::get(path)
        .header(HOST, target.as_str())
        .header(
            USER_AGENT,
            HeaderValue::from_static(concat!("ferry/", env!("CARGO_PKG_VERSION"))),
        )
        .header(ACCEPT, "*/*")
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| malformed(&error))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), max_body)
            .collect()
            .await
            .map_err(|error| malformed(&*error))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    // The connection future moves the bytes; it ends by itself after the answer (Connection:
    // close). Ending early is only an error if the answer is then incomplete.
    tokio::pin!(connection, exchange);
    tokio::select! {
        answer = &mut exchange => answer,
        ended = &mut connection => {
            ended.map_err(|error| malformed(&error))?;
            exchange.await
        }
    }
}

/// Replaces an unspecified IP (a listen-on-all address) by loopback, which reaches the same server.
fn connect_target(addr: &str) -> String {
    match addr.parse::<SocketAddr>() {
        Ok(SocketAddr::V4(v4)) if v4.ip().is_unspecified() => format!("127.0.0.1:{}", v4.port()),
        Ok(SocketAddr::V6(v6)) if v6.ip().is_unspecified() => format!("[::1]:{}", v6.port()),
        _ => addr.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LIMIT: Duration = Duration::from_secs(5);

    /// A one-shot server that reads the request head and answers `raw`.
    async fn answering(raw: &'static [u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = stream.write_all(raw).await;
            let _ = stream.shutdown().await;
        });
        addr
    }

    #[tokio::test]
    async fn responses() {
        let addr = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        assert_eq!(fetch(&addr, "/x", LIMIT).await.unwrap(), (200, "ok".into()));
        let addr = answering(b"HTTP/1.0 503 X\r\n\r\nbody until close").await;
        assert_eq!(
            fetch(&addr, "/x", LIMIT).await.unwrap(),
            (503, "body until close".into())
        );
        let addr =
            answering(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
                .await;
        assert_eq!(fetch(&addr, "/x", LIMIT).await.unwrap(), (200, "ok".into()));
        for broken in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"[..],
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"SMTP ready\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n",
            b"",
        ] {
            let addr = answering(broken).await;
            let error = fetch(&addr, "/x", LIMIT).await.unwrap_err();
            assert_eq!(
                error.kind(),
                io::ErrorKind::InvalidData,
                "{:?}: {error}",
                String::from_utf8_lossy(broken)
            );
            assert!(error.to_string().contains(&addr), "{error}");
        }
    }

    #[tokio::test]
    async fn bodies_beyond_the_limit_are_refused() {
        let addr = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789").await;
        assert_eq!(
            fetch_bounded(&addr, "/x", LIMIT, 10).await.unwrap(),
            (200, "0123456789".into())
        );
        let addr = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n0123456789a").await;
        let error = fetch_bounded(&addr, "/x", LIMIT, 10).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
        assert!(error.to_string().contains("length limit"), "{error}");
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

    #[test]
    fn listen_on_all_addresses_are_asked_on_loopback() {
        assert_eq!(connect_target("0.0.0.0:9464"), "127.0.0.1:9464");
        assert_eq!(connect_target("[::]:9464"), "[::1]:9464");
        assert_eq!(connect_target("monitor.local:9464"), "monitor.local:9464");
    }
}
