//! An event ready for JetStream, and its binary form in the disk spool.
//!
//! The intake renders each event once: its output subject, its header block in the NATS wire
//! format and its payload. The publisher sends those three as they are, and the spool stores
//! them as they are, so an event read back from the spool costs one copy and no rendering. Until
//! 2026-12 the spool stored the header values only and the publisher rendered the block; that
//! cost five string allocations per spooled event and about 12 % of the adapter's CPU under a
//! burst (docs/performance.md). Records in that older layout are still read.

use std::fmt;

use async_nats::{HeaderMap, Subject};
use bytes::Bytes;

use crate::jetstream::wire_headers::{push_header, push_line_free_header};
use crate::subject::sanitized_header_value;

/// Leading byte of a spool record in the older layout (header values, no block).
const RECORD_VALUES: u8 = 1;
/// Leading byte of a spool record holding the rendered event: subject, header block, payload.
const RECORD_RENDERED: u8 = 2;

/// The start and end of every header block ferry renders.
const VERSION_LINE: &[u8] = b"NATS/1.0\r\n";
const BLOCK_END: &[u8] = b"\r\n\r\n";

/// One decoded, filtered event on its way to JetStream.
#[derive(Clone, PartialEq, Eq)]
pub struct OutMessage {
    /// Arrival order within the adapter; also the spool key, so the spool drains in arrival order.
    pub seq: u64,
    /// The rendered output subject.
    pub subject: Subject,
    /// The JetStream headers (SPEC section 4) in the NATS wire format, final empty line included.
    pub headers: Bytes,
    pub payload: Bytes,
    /// Where the spool holds this event, when it was read from the spool (so it can be removed).
    pub spooled_at: SpoolPlace,
}

/// Where in the spool an event read from it lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SpoolPlace {
    /// Not read from the spool (fresh from intake, or in the in-memory queue).
    #[default]
    Nowhere,
    /// In the state store's spool tree (an event put back out of arrival order, or written by an
    /// older release).
    Tree,
    /// Record `ordinal` of the segment file whose first sequence is `segment`.
    Log { segment: u64, ordinal: u32 },
}

/// What the headers of a stored event say (SPEC section 4). Values that come from the event
/// (subject, sender) are sanitised while the block is written.
pub struct EventHeaders<'a> {
    /// `Nats-Msg-Id`: the content digest.
    pub msg_id: &'a str,
    /// `Ferry-Adapter`.
    pub adapter: &'a str,
    /// `Ferry-Sender`, when the decoder found one (left out when nothing remains of it).
    pub sender: Option<&'a str>,
    /// `Ferry-Received`, RFC3339.
    pub received: &'a str,
    /// `Ferry-Source-Subject`.
    pub source_subject: &'a str,
}

impl EventHeaders<'_> {
    /// The header block in the wire format. No control header is stored beyond `Nats-Msg-Id`:
    /// the stream is checked in each ack instead (SPEC section 4).
    pub fn render(&self) -> Bytes {
        let sender = self.sender.map(sanitized_header_value);
        let sender = sender.as_deref().filter(|sender| !sender.is_empty());
        let source_subject = sanitized_header_value(self.source_subject);
        let mut block = Vec::with_capacity(
            96 + self.msg_id.len()
                + self.adapter.len()
                + sender.map_or(0, str::len)
                + self.received.len()
                + source_subject.len(),
        );
        block.extend_from_slice(VERSION_LINE);
        push_header(&mut block, "Nats-Msg-Id", self.msg_id);
        push_header(&mut block, "Ferry-Adapter", self.adapter);
        if let Some(sender) = sender {
            // Sanitised: no control character (CR and LF among them) is left.
            push_line_free_header(&mut block, "Ferry-Sender", sender);
        }
        push_header(&mut block, "Ferry-Received", self.received);
        push_line_free_header(&mut block, "Ferry-Source-Subject", &source_subject);
        block.extend_from_slice(b"\r\n");
        Bytes::from(block)
    }
}

impl OutMessage {
    /// An event fresh from intake (its sequence is given by the router).
    pub fn new(subject: impl Into<Subject>, headers: &EventHeaders<'_>, payload: Bytes) -> Self {
        OutMessage {
            seq: 0,
            subject: subject.into(),
            headers: headers.render(),
            payload,
            spooled_at: SpoolPlace::Nowhere,
        }
    }

    /// The stored size, as counted against `spool.max_bytes`.
    pub fn size(&self) -> usize {
        self.subject.len() + self.headers.len() + self.payload.len()
    }

    /// The headers as the client takes them (the block is sent as it is, not parsed again).
    pub fn header_map(&self) -> HeaderMap {
        HeaderMap::from_raw_block(self.headers.clone())
    }

    /// The first value of header `name`, for logs and tests.
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::jetstream::wire_headers::block_lookup(&self.headers, name)
    }

    /// The spool key: big-endian so the store's key order is arrival order.
    pub fn key(&self) -> [u8; 8] {
        self.seq.to_be_bytes()
    }

    /// Encodes the record stored in the spool (without the key).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size() + 13);
        out.push(RECORD_RENDERED);
        put_field(&mut out, self.subject.as_bytes());
        put_field(&mut out, &self.headers);
        put_field(&mut out, &self.payload);
        out
    }

    /// Decodes a spool record; `None` for a record this version cannot read (never panics).
    /// `adapter` names the adapter whose spool holds it: records in the older layout did not
    /// store it.
    pub fn decode(key: &[u8], record: &[u8], adapter: &str) -> Option<OutMessage> {
        let seq = u64::from_be_bytes(key.try_into().ok()?);
        let (&version, rest) = record.split_first()?;
        let mut message = match version {
            RECORD_RENDERED => decode_rendered(rest)?,
            RECORD_VALUES => decode_values(rest, adapter)?,
            _ => return None,
        };
        message.seq = seq;
        Some(message)
    }
}

/// The current layout: three fields, sliced out of one copy of the record.
fn decode_rendered(record: &[u8]) -> Option<OutMessage> {
    let mut rest = record;
    let subject = take_field(&mut rest)?.len();
    let headers = take_field(&mut rest)?.len();
    let payload = take_field(&mut rest)?.len();
    if !rest.is_empty() {
        return None;
    }
    let copy = Bytes::copy_from_slice(record);
    let field = |start: usize, len: usize| copy.slice(start + 4..start + 4 + len);
    let subject_field = field(0, subject);
    let headers_field = field(4 + subject, headers);
    let payload_field = field(8 + subject + headers, payload);
    if !(headers_field.starts_with(VERSION_LINE) && headers_field.ends_with(BLOCK_END)) {
        return None;
    }
    Some(OutMessage {
        seq: 0,
        subject: Subject::from_utf8(subject_field).ok()?,
        headers: headers_field,
        payload: payload_field,
        spooled_at: SpoolPlace::Nowhere,
    })
}

/// The older layout: subject, the header values and the payload; rendered here.
fn decode_values(record: &[u8], adapter: &str) -> Option<OutMessage> {
    let mut rest = record;
    let subject = take_str(&mut rest)?;
    let msg_id = take_str(&mut rest)?;
    let source_subject = take_str(&mut rest)?;
    let received = take_str(&mut rest)?;
    let (&has_sender, tail) = rest.split_first()?;
    rest = tail;
    let sender = match has_sender {
        0 => None,
        1 => Some(take_str(&mut rest)?),
        _ => return None,
    };
    let payload = Bytes::copy_from_slice(take_field(&mut rest)?);
    if !rest.is_empty() {
        return None;
    }
    let headers = EventHeaders {
        msg_id,
        adapter,
        sender,
        received,
        source_subject,
    };
    Some(OutMessage::new(subject, &headers, payload))
}

impl fmt::Debug for OutMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutMessage")
            .field("seq", &self.seq)
            .field("subject", &self.subject.as_str())
            .field("headers", &String::from_utf8_lossy(&self.headers))
            .field("payload_bytes", &self.payload.len())
            .field("spooled_at", &self.spooled_at)
            .finish()
    }
}

fn put_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_be_bytes());
    out.extend_from_slice(field);
}

fn take_field<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, rest) = input.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return None;
    }
    let (field, rest) = rest.split_at(len);
    *input = rest;
    Some(field)
}

fn take_str<'a>(input: &mut &'a [u8]) -> Option<&'a str> {
    std::str::from_utf8(take_field(input)?).ok()
}

/// A spool record in the layout of releases before the rendered one (for upgrade tests).
#[cfg(test)]
pub(crate) fn values_layout(subject: &str, sender: Option<&str>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![RECORD_VALUES];
    for field in [
        subject,
        "00112233445566778899aabbccddeeff",
        "choria.lifecycle.event.alive.server",
        "2026-01-01T00:00:00Z",
    ] {
        put_field(&mut out, field.as_bytes());
    }
    match sender {
        Some(sender) => {
            out.push(1);
            put_field(&mut out, sender.as_bytes());
        }
        None => out.push(0),
    }
    put_field(&mut out, payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(sender: Option<&str>) -> EventHeaders<'_> {
        EventHeaders {
            msg_id: "00112233445566778899aabbccddeeff",
            adapter: "lifecycle",
            sender,
            received: "2026-01-01T00:00:00Z",
            source_subject: "choria.lifecycle.event.alive.server",
        }
    }

    fn sample(sender: Option<&str>) -> OutMessage {
        let mut message = OutMessage::new(
            "ferry.lifecycle.alive.server",
            &headers(sender),
            Bytes::from_static(b"{\"a\":1}"),
        );
        message.seq = 42;
        message
    }

    fn values_record(sender: Option<&str>) -> Vec<u8> {
        values_layout("ferry.lifecycle.alive.server", sender, b"{\"a\":1}")
    }

    #[test]
    fn headers_are_written_in_the_wire_format() {
        let message = sample(Some("web1.example.net"));
        assert_eq!(
            message.header("Nats-Msg-Id"),
            Some("00112233445566778899aabbccddeeff")
        );
        assert_eq!(message.header("Ferry-Adapter"), Some("lifecycle"));
        assert_eq!(message.header("Ferry-Sender"), Some("web1.example.net"));
        assert_eq!(
            message.header("Ferry-Received"),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(
            message.header("Ferry-Source-Subject"),
            Some("choria.lifecycle.event.alive.server")
        );
        assert_eq!(message.header("Nats-Expected-Stream"), None);
        let block = &message.headers;
        assert!(block.starts_with(VERSION_LINE) && block.ends_with(BLOCK_END));
        // What the client would parse back is the same.
        let map = message.header_map();
        let raw = map.unparsed().and_then(|u| u.headers.clone()).unwrap();
        assert_eq!(&raw, block);
        let text = std::str::from_utf8(block).unwrap();
        assert_eq!(text.lines().filter(|l| l.contains(": ")).count(), 5);
    }

    #[test]
    fn values_from_the_event_cannot_split_the_block() {
        let odd = EventHeaders {
            sender: Some("\r\n"),
            received: "2026\r\nX-Injected: 1",
            source_subject: "a\r\nX-Other: 2",
            ..headers(None)
        };
        let message = OutMessage::new("s", &odd, Bytes::new());
        // Nothing remains of the sender, so there is no header for it.
        assert_eq!(message.header("Ferry-Sender"), None);
        assert_eq!(message.header("X-Injected"), None);
        assert_eq!(message.header("X-Other"), None);
        assert_eq!(
            message.header("Ferry-Received"),
            Some("2026  X-Injected: 1")
        );
        assert_eq!(message.header("Ferry-Source-Subject"), Some("aX-Other: 2"));
    }

    #[test]
    fn records_round_trip() {
        for message in [sample(Some("web1.example.net")), sample(None)] {
            let decoded = OutMessage::decode(&message.key(), &message.encode(), "other").unwrap();
            assert_eq!(decoded, message);
        }
    }

    #[test]
    fn records_of_the_older_layout_are_rendered_with_the_adapter_name() {
        for sender in [Some("web1.example.net"), None] {
            let key = 42u64.to_be_bytes();
            let decoded = OutMessage::decode(&key, &values_record(sender), "lifecycle").unwrap();
            assert_eq!(decoded, sample(sender));
        }
    }

    #[test]
    fn damaged_records_are_refused_not_panicked_on() {
        let key = 1u64.to_be_bytes();
        for record in [sample(Some("x")).encode(), values_record(Some("x"))] {
            for cut in 0..record.len() {
                assert!(OutMessage::decode(&key, &record[..cut], "a").is_none());
            }
            let mut wrong_version = record.clone();
            wrong_version[0] = 9;
            assert!(OutMessage::decode(&key, &wrong_version, "a").is_none());
            assert!(OutMessage::decode(&[1, 2], &record, "a").is_none());
        }
        // A rendered record whose block is not a header block.
        let mut message = sample(None);
        message.headers = Bytes::from_static(b"garbage");
        assert!(OutMessage::decode(&key, &message.encode(), "a").is_none());
    }

    #[test]
    fn keys_sort_in_arrival_order() {
        let mut a = sample(None);
        let mut b = sample(None);
        a.seq = 255;
        b.seq = 256;
        assert!(a.key() < b.key());
    }
}
