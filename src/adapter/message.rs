//! An event ready for JetStream, and its binary form in the disk spool.
//!
//! The spool record carries only what differs per event; the headers that are the same for every
//! event of an adapter (`Ferry-Adapter`) are added when publishing.

use async_nats::HeaderMap;
use bytes::Bytes;

use crate::wire_headers::push_header;

/// Leading byte of every spool record, so a later release can read (or migrate) older records.
const RECORD_VERSION: u8 = 1;

/// One decoded, filtered event on its way to JetStream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMessage {
    /// Arrival order within the adapter; also the spool key, so the spool drains in arrival order.
    pub seq: u64,
    /// The rendered output subject.
    pub subject: String,
    /// `Nats-Msg-Id`: the content digest of SPEC section 4.
    pub msg_id: String,
    /// `Ferry-Source-Subject`, already sanitised.
    pub source_subject: String,
    /// `Ferry-Sender`, already sanitised.
    pub sender: Option<String>,
    /// `Ferry-Received`, RFC3339.
    pub received: String,
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

impl OutMessage {
    /// The stored size, as counted against `spool.max_bytes`.
    pub fn size(&self) -> usize {
        self.subject.len()
            + self.msg_id.len()
            + self.source_subject.len()
            + self.sender.as_ref().map_or(0, String::len)
            + self.received.len()
            + self.payload.len()
    }

    /// The JetStream headers for this event. No control header is stored beyond `Nats-Msg-Id`:
    /// the stream is checked in each ack instead (SPEC section 4).
    ///
    /// Written straight into the wire format, one buffer per event: building a `HeaderMap` cost
    /// five string allocations, a hash map and a second serialisation, about 10 % of the
    /// adapter's CPU per event (docs/performance.md). Read it back with `wire_headers::lookup`.
    pub fn headers(&self, adapter: &str) -> HeaderMap {
        let sender = self.sender.as_deref();
        let mut block = Vec::with_capacity(
            96 + self.msg_id.len()
                + adapter.len()
                + sender.map_or(0, str::len)
                + self.received.len()
                + self.source_subject.len(),
        );
        block.extend_from_slice(b"NATS/1.0\r\n");
        push_header(&mut block, "Nats-Msg-Id", &self.msg_id);
        push_header(&mut block, "Ferry-Adapter", adapter);
        if let Some(sender) = sender {
            push_header(&mut block, "Ferry-Sender", sender);
        }
        push_header(&mut block, "Ferry-Received", &self.received);
        push_header(&mut block, "Ferry-Source-Subject", &self.source_subject);
        block.extend_from_slice(b"\r\n");
        HeaderMap::from_raw_block(Bytes::from(block))
    }

    /// The spool key: big-endian so the store's key order is arrival order.
    pub fn key(&self) -> [u8; 8] {
        self.seq.to_be_bytes()
    }

    /// Encodes the record stored in the spool (without the key).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size() + 32);
        out.push(RECORD_VERSION);
        for field in [
            self.subject.as_bytes(),
            self.msg_id.as_bytes(),
            self.source_subject.as_bytes(),
            self.received.as_bytes(),
        ] {
            put_field(&mut out, field);
        }
        match &self.sender {
            Some(sender) => {
                out.push(1);
                put_field(&mut out, sender.as_bytes());
            }
            None => out.push(0),
        }
        put_field(&mut out, &self.payload);
        out
    }

    /// Decodes a spool record; `None` for a record this version cannot read (never panics).
    pub fn decode(key: &[u8], record: &[u8]) -> Option<OutMessage> {
        let seq = u64::from_be_bytes(key.try_into().ok()?);
        let (&version, mut rest) = record.split_first()?;
        if version != RECORD_VERSION {
            return None;
        }
        let subject = take_string(&mut rest)?;
        let msg_id = take_string(&mut rest)?;
        let source_subject = take_string(&mut rest)?;
        let received = take_string(&mut rest)?;
        let (&has_sender, tail) = rest.split_first()?;
        rest = tail;
        let sender = match has_sender {
            0 => None,
            1 => Some(take_string(&mut rest)?),
            _ => return None,
        };
        let payload = Bytes::copy_from_slice(take_field(&mut rest)?);
        rest.is_empty().then_some(OutMessage {
            seq,
            subject,
            msg_id,
            source_subject,
            sender,
            received,
            payload,
            spooled_at: SpoolPlace::Nowhere,
        })
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

fn take_string(input: &mut &[u8]) -> Option<String> {
    String::from_utf8(take_field(input)?.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(sender: Option<&str>) -> OutMessage {
        OutMessage {
            seq: 42,
            subject: "ferry.lifecycle.alive.server".into(),
            msg_id: "00112233445566778899aabbccddeeff".into(),
            source_subject: "choria.lifecycle.event.alive.server".into(),
            sender: sender.map(String::from),
            received: "2026-01-01T00:00:00Z".into(),
            payload: Bytes::from_static(b"{\"a\":1}"),
            spooled_at: SpoolPlace::Nowhere,
        }
    }

    #[test]
    fn headers_are_written_in_the_wire_format() {
        let headers = sample(Some("web1.example.net")).headers("lifecycle");
        let get = |name: &str| crate::wire_headers::lookup(Some(&headers), name);
        assert_eq!(get("Nats-Msg-Id"), Some("00112233445566778899aabbccddeeff"));
        assert_eq!(get("Ferry-Adapter"), Some("lifecycle"));
        assert_eq!(get("Ferry-Sender"), Some("web1.example.net"));
        assert_eq!(get("Ferry-Received"), Some("2026-01-01T00:00:00Z"));
        assert_eq!(
            get("Ferry-Source-Subject"),
            Some("choria.lifecycle.event.alive.server")
        );
        assert_eq!(get("Nats-Expected-Stream"), None);
        let block = headers.unparsed().and_then(|u| u.headers.clone()).unwrap();
        assert!(block.starts_with(b"NATS/1.0\r\n") && block.ends_with(b"\r\n\r\n"));
        // What the client would parse back is the same.
        let text = std::str::from_utf8(&block).unwrap();
        assert_eq!(text.lines().filter(|l| l.contains(": ")).count(), 5);
        // No sender, no header; a line break in a value cannot split the block.
        let mut odd = sample(None);
        odd.received = "2026\r\nX-Injected: 1".into();
        let headers = odd.headers("lifecycle");
        let get = |name: &str| crate::wire_headers::lookup(Some(&headers), name);
        assert_eq!(get("Ferry-Sender"), None);
        assert_eq!(get("X-Injected"), None);
        assert_eq!(get("Ferry-Received"), Some("2026  X-Injected: 1"));
    }

    #[test]
    fn records_round_trip() {
        for message in [sample(Some("web1.example.net")), sample(None)] {
            let decoded = OutMessage::decode(&message.key(), &message.encode()).unwrap();
            assert_eq!(decoded, message);
        }
    }

    #[test]
    fn damaged_records_are_refused_not_panicked_on() {
        let record = sample(Some("x")).encode();
        let key = 1u64.to_be_bytes();
        for cut in 0..record.len() {
            assert!(OutMessage::decode(&key, &record[..cut]).is_none());
        }
        let mut wrong_version = record.clone();
        wrong_version[0] = 9;
        assert!(OutMessage::decode(&key, &wrong_version).is_none());
        assert!(OutMessage::decode(&[1, 2], &record).is_none());
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
