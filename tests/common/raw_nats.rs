//! A NATS client that writes protocol bytes as given, for the hostile messages a well-behaved
//! client library refuses to send: header blocks that do not parse, subjects that are not UTF-8.
//! nats-server 2.15.1 forwards and stores them, so ferry must survive them.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct RawNats {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl RawNats {
    /// Connects to `url` (`nats://host:port`), reads INFO and sends CONNECT with headers enabled.
    pub fn connect(url: &str) -> RawNats {
        let address = url.trim_start_matches("nats://");
        let writer =
            TcpStream::connect(address).unwrap_or_else(|e| panic!("connect to {address}: {e}"));
        writer
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        let reader = BufReader::new(writer.try_clone().expect("clone socket"));
        let mut raw = RawNats { writer, reader };
        let info = raw.read_line();
        assert!(info.starts_with("INFO "), "expected INFO, got {info:?}");
        raw.write(
            br#"CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1,"name":"hostile"}"#,
        );
        raw.write(b"\r\n");
        raw.sync();
        raw
    }

    fn write(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to nats-server");
    }

    fn read_line(&mut self) -> String {
        let mut line = Vec::new();
        self.reader
            .read_until(b'\n', &mut line)
            .expect("read from nats-server");
        String::from_utf8_lossy(&line).trim_end().to_string()
    }

    /// Publishes `payload` on `subject` (any bytes) with the header block `headers` (any bytes).
    pub fn hpub(&mut self, subject: &[u8], headers: &[u8], payload: &[u8]) {
        let mut frame = b"HPUB ".to_vec();
        frame.extend_from_slice(subject);
        frame.extend_from_slice(
            format!(" {} {}\r\n", headers.len(), headers.len() + payload.len()).as_bytes(),
        );
        frame.extend_from_slice(headers);
        frame.extend_from_slice(payload);
        frame.extend_from_slice(b"\r\n");
        self.write(&frame);
    }

    /// Publishes `payload` on `subject` (any bytes) without headers.
    pub fn publish(&mut self, subject: &[u8], payload: &[u8]) {
        let mut frame = b"PUB ".to_vec();
        frame.extend_from_slice(subject);
        frame.extend_from_slice(format!(" {}\r\n", payload.len()).as_bytes());
        frame.extend_from_slice(payload);
        frame.extend_from_slice(b"\r\n");
        self.write(&frame);
    }

    /// Round trip: returns once the server has processed everything sent before; panics on `-ERR`
    /// (the server refused something, so the test would not test what it means to).
    pub fn sync(&mut self) {
        self.write(b"PING\r\n");
        loop {
            let line = self.read_line();
            match line.as_str() {
                "PONG" => return,
                "PING" => self.write(b"PONG\r\n"),
                "+OK" => {}
                other if other.starts_with("-ERR") => panic!("nats-server refused: {other}"),
                other if other.starts_with("INFO ") => {}
                other => panic!("unexpected line from nats-server: {other:?}"),
            }
        }
    }
}

/// Header blocks that nats-server 2.15.1 forwards and stores although they do not follow the NATS
/// header format, each with the name the tests report it under (and a distinct value, so a test
/// can tell where each went).
pub const UNPARSEABLE_HEADER_BLOCKS: [(&str, &[u8]); 5] = [
    ("non-UTF-8 value", b"NATS/1.0\r\nX-Node: caf\xe9\r\n\r\n"),
    ("line without colon", b"NATS/1.0\r\nno colon here\r\n\r\n"),
    ("space in a name", b"NATS/1.0\r\nX Node: web2\r\n\r\n"),
    ("bad status line", b"NATS/1.0 abc\r\nX-Node: web3\r\n\r\n"),
    ("other version", b"NATS/2.0\r\nX-Node: web4\r\n\r\n"),
];
