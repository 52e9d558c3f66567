//! A minimal HTTP/1.1 GET client for the monitor endpoints of ferry and nats-server.
//!
//! A real HTTP client would be a large dependency for little: the endpoints are on loopback, answer
//! small bodies, and are only ever read with GET. The request asks for `Connection: close`, so
//! the body is simply everything up to EOF; `Content-Length` and chunked bodies are still honoured so
//! a server that keeps the connection open, or streams, is handled too.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Upper bound for one whole request, so a wedged server fails the test instead of hanging it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET http://{addr}{path}`; returns the status code and the body (lossy UTF-8).
///
/// `addr` is `host:port` (e.g. [`crate::NatsServer::monitor_addr`]). Connection refused and
/// timeouts come back as `Err`, which is what readiness polling wants.
pub async fn http_get(addr: &str, path: &str) -> io::Result<(u16, String)> {
    let request = request(addr, path);
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, io::Error>(raw)
    };
    let raw = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("GET {addr}{path} timed out"),
            )
        })??;
    parse_response(&raw)
}

/// Blocking twin of [`http_get`] for synchronous code (e.g. waiting for nats-server to be ready in
/// [`crate::NatsServer::start`]), with short timeouts since it is used for polling.
pub fn http_get_blocking(addr: &str, path: &str) -> io::Result<(u16, String)> {
    let sock = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("bad addr {addr}")))?;
    let mut stream = TcpStream::connect_timeout(&sock, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(request(addr, path).as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn request(addr: &str, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: ferry-testkit\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Parses a complete HTTP/1.x response: status line, headers, then the body as delimited by
/// chunked encoding, `Content-Length`, or EOF (in that order of precedence, as RFC 9112 says).
pub fn parse_response(raw: &[u8]) -> io::Result<(u16, String)> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad(format!("no end of headers in {} bytes", raw.len())))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("headers are not UTF-8"))?;
    let body = &raw[split + 4..];

    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("not an HTTP/1.x status line: {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;

    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| bad(format!("bad content-length {value:?}")))?,
            );
        }
    }

    let body = if chunked {
        decode_chunked(body)?
    } else if let Some(n) = length {
        if body.len() < n {
            return Err(bad(format!(
                "body truncated: content-length {n}, got {}",
                body.len()
            )));
        }
        body[..n].to_vec()
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn decode_chunked(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("chunk size line not terminated"))?;
        let line = std::str::from_utf8(&data[..eol]).map_err(|_| bad("chunk size not UTF-8"))?;
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| bad(format!("bad chunk size {size_hex:?}")))?;
        data = &data[eol + 2..];
        if size == 0 {
            // Trailers (ignored) follow the last chunk.
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(bad("chunk truncated"));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}
