//! What a copied message looks like on the target (SPEC section 5 "Writing"): its subject after
//! the optional prefix rewrite, and its headers after hygiene.

use async_nats::HeaderMap;

use super::checkpoint::SourceIdentity;
use crate::config::replicator::Writes;
use crate::jetstream::wire_headers;

/// JetStream control headers that must not take effect a second time on the target.
fn is_control_header(name: &str) -> bool {
    name.starts_with("Nats-Expected-")
        || name.starts_with("Nats-Batch-")
        || name == "Nats-Rollup"
        || name == "Nats-TTL"
        || name == "Nats-Msg-Id"
}

/// Headers ferry sets itself and therefore replaces.
fn is_ferry_header(name: &str) -> bool {
    matches!(
        name,
        "Ferry-Source" | "Choria-SR-Source" | "Ferry-Source-Msg-Id"
    )
}

/// Everything about the copy that is the same for each message, with the constant parts of the
/// stamps rendered once per session: formatting them per message was a sixth of the copy loop.
pub struct Stamp {
    /// `<source stream> ` of `Choria-SR-Source`.
    source_prefix: String,
    /// ` <instance> <replicator> ` of `Choria-SR-Source`.
    instance_replicator: String,
    /// `writes: shared`: `<source stream>:<created ns>:` of `Nats-Msg-Id`.
    msg_id_prefix: Option<String>,
    /// `Ferry-Origin` for messages copied first from this source.
    origin: String,
}

impl Stamp {
    pub fn new(source: &SourceIdentity, instance: &str, replicator: &str, writes: Writes) -> Stamp {
        Stamp {
            source_prefix: format!("{} ", source.stream),
            instance_replicator: format!(" {instance} {replicator} "),
            msg_id_prefix: (writes == Writes::Shared)
                .then(|| format!("{}:{}:", source.stream, source.created_ns)),
            origin: origin_value(source),
        }
    }
}

/// The `Ferry-Origin` value of the stream a message is first copied from.
pub fn origin_value(source: &SourceIdentity) -> String {
    source.to_string()
}

/// Whether a message originated in `target` (two-way replication must not echo it back).
pub fn is_loop(headers: Option<&HeaderMap>, target_origin: &str) -> bool {
    wire_headers::lookup(headers, "Ferry-Origin").is_some_and(|origin| origin == target_origin)
}

/// The target headers: the source's minus control headers, plus ferry's own: one provenance
/// header (`Choria-SR-Source`), `Ferry-Origin`, and what keeps a replay out: with `fence` (the
/// target sequence this copy must follow, `writes: exclusive`) `Nats-Expected-Last-Sequence`,
/// otherwise `Nats-Msg-Id`. A source block the client could not parse is copied byte for byte,
/// less the same headers.
///
/// The block is written straight into the wire format: a `HeaderMap` cost a hash map and an
/// allocation per value for every copy, then a second serialisation by the client.
pub fn target_headers(
    source_headers: Option<&HeaderMap>,
    sequence: u64,
    timestamp_ms: i128,
    stamp: &Stamp,
    fence: Option<u64>,
) -> HeaderMap {
    if let Some(block) = wire_headers::unparsed_block(source_headers) {
        let clean = wire_headers::clean_block(block, |name| {
            is_control_header(name) || is_ferry_header(name)
        });
        // The client writes entries inserted later before the block's final empty line.
        let mut headers = HeaderMap::from_raw_block(clean.block);
        write_stamps(
            sequence,
            timestamp_ms,
            stamp,
            fence,
            clean.has_origin,
            |name, value| headers.insert(name, value),
        );
        return headers;
    }
    let mut block = Vec::with_capacity(256);
    block.extend_from_slice(b"NATS/1.0\r\n");
    let mut has_origin = false;
    for (name, values) in source_headers.into_iter().flat_map(HeaderMap::iter) {
        let name: &str = name.as_ref();
        if name == "Nats-Msg-Id" {
            if let Some(first) = values.first() {
                wire_headers::push_line_free_header(
                    &mut block,
                    "Ferry-Source-Msg-Id",
                    first.as_str(),
                );
            }
            continue;
        }
        if is_control_header(name) || is_ferry_header(name) {
            continue;
        }
        has_origin |= name == "Ferry-Origin";
        for value in values {
            wire_headers::push_line_free_header(&mut block, name, value.as_str());
        }
    }
    write_stamps(
        sequence,
        timestamp_ms,
        stamp,
        fence,
        has_origin,
        // Checked: the stamps carry configured names (instance, replicator).
        |name, value| wire_headers::push_header(&mut block, name, value),
    );
    block.extend_from_slice(b"\r\n");
    HeaderMap::from_raw_block(block.into())
}

/// Hands ferry's own headers of one copy to `emit`, name and value.
fn write_stamps(
    sequence: u64,
    timestamp_ms: i128,
    stamp: &Stamp,
    fence: Option<u64>,
    has_origin: bool,
    mut emit: impl FnMut(&'static str, &str),
) {
    let mut value =
        String::with_capacity(stamp.source_prefix.len() + stamp.instance_replicator.len() + 40);
    value.push_str(&stamp.source_prefix);
    value.push_str(itoa::Buffer::new().format(sequence));
    value.push_str(&stamp.instance_replicator);
    value.push_str(itoa::Buffer::new().format(timestamp_ms.max(0)));
    emit("Choria-SR-Source", &value);
    if !has_origin {
        emit("Ferry-Origin", &stamp.origin);
    }
    value.clear();
    match (fence, &stamp.msg_id_prefix) {
        (Some(last), _) => {
            value.push_str(itoa::Buffer::new().format(last));
            emit("Nats-Expected-Last-Sequence", &value);
        }
        (None, Some(prefix)) => {
            value.push_str(prefix);
            value.push_str(itoa::Buffer::new().format(sequence));
            emit("Nats-Msg-Id", &value);
        }
        (None, None) => {}
    }
}

/// The parts of a copy's provenance header (`Choria-SR-Source`, or `Ferry-Source` of earlier
/// releases): `<source stream> <source seq> <instance> <replicator> <timestamp ms>`.
#[derive(Debug, PartialEq, Eq)]
pub struct FerrySource<'a> {
    pub stream: &'a str,
    pub sequence: u64,
    pub instance: &'a str,
    pub replicator: &'a str,
}

pub fn parse_ferry_source(value: &str) -> Option<FerrySource<'_>> {
    let mut parts = value.split(' ');
    let stream = parts.next()?;
    let sequence = parts.next()?.parse().ok()?;
    let instance = parts.next()?;
    let replicator = parts.next()?;
    Some(FerrySource {
        stream,
        sequence,
        instance,
        replicator,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming() -> HeaderMap {
        let mut incoming = HeaderMap::new();
        incoming.insert("Nats-Msg-Id", "abc");
        incoming.insert("Nats-Expected-Last-Sequence", "3");
        incoming.insert("Nats-Expected-Stream", "ELSEWHERE");
        incoming.insert("Nats-Rollup", "sub");
        incoming.insert("Nats-TTL", "1s");
        incoming.insert("Ferry-Source", "old");
        incoming.insert("Choria-SR-Source", "older");
        incoming.insert("App", "kept");
        incoming
    }

    #[test]
    fn exclusive_copies_are_fenced_and_carry_one_provenance_header() {
        let source = SourceIdentity {
            stream: "SRC".into(),
            created_ns: 5,
        };
        let stamp = Stamp::new(&source, "dc1", "copy", Writes::Exclusive);
        let headers = target_headers(Some(&incoming()), 9, 1234, &stamp, Some(41));
        let get = |name: &str| wire_headers::lookup(Some(&headers), name).map(str::to_string);
        assert_eq!(get("Ferry-Source-Msg-Id").as_deref(), Some("abc"));
        assert_eq!(get("Nats-Msg-Id"), None, "no message id in exclusive mode");
        assert_eq!(get("Nats-Expected-Last-Sequence").as_deref(), Some("41"));
        assert_eq!(
            get("Nats-Expected-Stream"),
            None,
            "no stored control header"
        );
        assert_eq!(get("Nats-Rollup"), None);
        assert_eq!(get("Nats-TTL"), None);
        assert_eq!(get("Ferry-Source"), None, "one provenance header");
        assert_eq!(get("App").as_deref(), Some("kept"));
        assert_eq!(
            get("Choria-SR-Source").as_deref(),
            Some("SRC 9 dc1 copy 1234")
        );
        assert_eq!(get("Ferry-Origin").as_deref(), Some("SRC@5"));
        let block = wire_headers::unparsed_block(Some(&headers)).expect("a wire block");
        let text = std::str::from_utf8(block).expect("text");
        assert!(text.starts_with("NATS/1.0\r\n") && text.ends_with("\r\n\r\n"));
        assert_eq!(text.lines().filter(|line| line.contains(": ")).count(), 5);
        // The source's headers first (in the map's order), then ferry's, in a fixed order.
        let mut lines: Vec<&str> = text.lines().skip(1).filter(|l| !l.is_empty()).collect();
        let stamps = lines.split_off(2);
        lines.sort_unstable();
        assert_eq!(lines, ["App: kept", "Ferry-Source-Msg-Id: abc"]);
        assert_eq!(
            stamps,
            [
                "Choria-SR-Source: SRC 9 dc1 copy 1234",
                "Ferry-Origin: SRC@5",
                "Nats-Expected-Last-Sequence: 41"
            ]
        );
        let parsed = parse_ferry_source("SRC 9 dc1 copy 1234").unwrap();
        assert_eq!((parsed.stream, parsed.sequence), ("SRC", 9));
        assert!(is_loop(Some(&headers), "SRC@5"));
        assert!(!is_loop(Some(&headers), "DST@1"));
    }

    #[test]
    fn shared_copies_carry_a_message_id() {
        let source = SourceIdentity {
            stream: "SRC".into(),
            created_ns: 5,
        };
        let stamp = Stamp::new(&source, "dc1", "copy", Writes::Shared);
        let headers = target_headers(Some(&incoming()), 9, 1234, &stamp, None);
        let get = |name: &str| wire_headers::lookup(Some(&headers), name).map(str::to_string);
        assert_eq!(get("Nats-Msg-Id").as_deref(), Some("SRC:5:9"));
        assert_eq!(get("Nats-Expected-Last-Sequence"), None);
        assert_eq!(
            get("Choria-SR-Source").as_deref(),
            Some("SRC 9 dc1 copy 1234")
        );
    }
}
