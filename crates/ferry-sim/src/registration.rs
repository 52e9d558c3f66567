//! Registration requests: the v1 and v2 transport envelopes around an inventory document.

use std::fmt::Write as _;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::*;

/// The envelope of a registration request: who sent it, when, and through which broker.
#[derive(Debug, Clone, Copy)]
pub struct RequestEnvelope<'a> {
    /// The sending node's identity.
    pub sender: &'a str,
    /// The request id (32 hex digits in Choria).
    pub request_id: &'a str,
    pub collective: &'a str,
    pub agent: &'a str,
    /// Seconds the request stays valid.
    pub ttl: u32,
    /// Unix seconds (v2 carries nanoseconds: this times 10^9).
    pub time: i64,
    /// The broker URL recorded in v1's `seen-by` header.
    pub broker: &'a str,
}

/// A registration request in transport protocol v1: `choria:transport:1` whose base64 `data` holds
/// `choria:secure:request:1`, whose `message` is `choria:request:1` as a JSON string, whose
/// `message` is `payload` as a JSON string.
pub fn registration_v1(payload: &str, envelope: &RequestEnvelope<'_>) -> String {
    build_v1(envelope, payload.len(), |out, level| {
        push_escaped(out, payload, level)
    })
}

/// [`registration_v1`] with the payload written by `payload(out, level)`, escaped to `level`:
/// the request's JSON is a string inside the secure request, and the payload a string inside that.
pub(crate) fn build_v1(
    envelope: &RequestEnvelope<'_>,
    size_hint: usize,
    payload: impl FnOnce(&mut String, usize),
) -> String {
    let mut secure = String::with_capacity(size_hint + size_hint / 2 + 768);
    secure.push_str(r#"{"protocol":"choria:secure:request:1","message":""#);
    push_escaped(
        &mut secure,
        r#"{"protocol":"choria:request:1","message":""#,
        1,
    );
    payload(&mut secure, 2);
    let mut tail = String::with_capacity(320);
    let _ = write!(
        tail,
        r#"","envelope":{{"requestid":"{}","senderid":"{}","callerid":"choria={}","collective":"{}","agent":"{}","ttl":{},"time":{},"filter":{{"fact":[],"cf_class":[],"agent":[],"identity":[],"compound":[]}}}}}}"#,
        envelope.request_id,
        envelope.sender,
        envelope.sender,
        envelope.collective,
        envelope.agent,
        envelope.ttl,
        envelope.time
    );
    push_escaped(&mut secure, &tail, 1);
    secure.push_str(r#"","signature":"insecure","pubcert":"insecure"}"#);

    let mut transport = String::with_capacity(secure.len() * 4 / 3 + 256);
    transport.push_str(r#"{"protocol":"choria:transport:1","data":""#);
    STANDARD.encode_string(&secure, &mut transport);
    let _ = write!(
        transport,
        r#"","headers":{{"reply-to":"dev.null","mc_sender":"{}","seen-by":[["{}","{}","{}"]]}}}}"#,
        envelope.sender, envelope.broker, envelope.sender, envelope.broker
    );
    transport
}

/// A registration request in transport protocol v2: `io.choria.protocol.v2.transport` whose base64
/// `data` holds the secure request, whose base64 `request` holds the request, whose base64
/// `message` is `payload`.
pub fn registration_v2(payload: &[u8], envelope: &RequestEnvelope<'_>) -> String {
    let mut request = String::with_capacity(payload.len() * 4 / 3 + 384);
    request.push_str(r#"{"protocol":"io.choria.protocol.v2.request","message":""#);
    STANDARD.encode_string(payload, &mut request);
    let _ = write!(
        request,
        r#"","id":"{}","sender":"{}","caller":"choria={}","collective":"{}","agent":"{}","ttl":{},"time":{}}}"#,
        envelope.request_id,
        envelope.sender,
        envelope.sender,
        envelope.collective,
        envelope.agent,
        envelope.ttl,
        i128::from(envelope.time) * 1_000_000_000
    );

    let mut secure = String::with_capacity(request.len() * 4 / 3 + 160);
    secure.push_str(r#"{"protocol":"io.choria.protocol.v2.secure_request","request":""#);
    STANDARD.encode_string(&request, &mut secure);
    let _ = write!(secure, r#"","signature":"{V2_SIGNATURE}","caller":""}}"#);

    let mut transport = String::with_capacity(secure.len() * 4 / 3 + 160);
    transport.push_str(r#"{"protocol":"io.choria.protocol.v2.transport","data":""#);
    STANDARD.encode_string(&secure, &mut transport);
    let _ = write!(
        transport,
        r#"","headers":{{"reply":"dev.null","sender":"{}"}}}}"#,
        envelope.sender
    );
    transport
}

/// The inventory registration document Choria's `inventory_content` registration plugin sends (Go's
/// JSON encoder: `<`, `>` and `&` escaped as `\u003c` ...), with `$name$` marking the values that
/// vary per node or per message. `$agents$` and `$role$` are filled once per role; the rest are
/// [`Hole`]s filled per message.
pub(crate) const INVENTORY: &str = r#"{"protocol":"choria:registration:inventorycontent:1","content":{"agents":[$agents$],"classes":["role::$role$","profile::base","profile::dc$dc$"],"facts":{"os":{"family":"Debian","release":{"major":"12"}},"networking":{"fqdn":"$identity$","domain":"dc$dc$.example.net"},"role":"$role$","datacentre":"dc$dc$","processors":{"count":8}},"status":{"identity":"$identity$","uptime":$uptime$,"connected_server":"nats://broker1.dc$dc$.example.net:4222","last_message":$last_message$,"provisioning_mode":false,"stats":{"total":$total$,"valid":$total$,"invalid":0,"passed":$passed$,"filtered":$filtered$,"replies":$passed$,"ttlexpired":0,"events":$events$},"certificate_expires":"2027-01-01T00:00:00Z","token_expires":"0001-01-01T00:00:00Z"},"collectives":["mcollective"],"build_info":{"version":"$version$","sha":"0badc0de"},"machines":[]}}"#;

/// One agent in the inventory's `agents` list.
pub(crate) const AGENT: &str = r#"{"license":"Apache-2.0","author":"ops \u003cops@example.net\u003e","timeout":2,"name":"$name$","version":"$version$","url":"https://example.net","description":"$description$","provider":"golang"}"#;

/// How deeply a document is nested in JSON strings: v1 carries the registration payload as a string
/// inside a string, so it is escaped twice.
pub(crate) const MAX_LEVEL: usize = 2;

/// A value that varies per message. Every value is plain ASCII letters, digits, dots and dashes, so
/// escaping leaves it unchanged: a template escaped once serves every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hole {
    Identity,
    Dc,
    Version,
    Uptime,
    LastMessage,
    Total,
    Passed,
    Filtered,
    Events,
}

/// A piece of a template: literal text (already escaped to the template's level) or a hole.
#[derive(Debug, Clone)]
pub(crate) enum Segment {
    Text(String),
    Hole(Hole),
}

/// The inventory template of `role`, split into segments, escaped to `level`.
pub(crate) fn inventory_template(role: &str, level: usize) -> Vec<Segment> {
    let agents: Vec<String> = [
        (
            "rpcutil",
            "General helpful actions that expose stats and internals to SimpleRPC clients",
        ),
        ("choria_util", "Choria Utilities"),
        ("scout", "Choria Scout Agent Management API"),
        (role_agent(role), "Manages the role's service"),
    ]
    .iter()
    .map(|(name, description)| {
        AGENT
            .replace("$name$", name)
            .replace("$description$", description)
    })
    .collect();
    let document = INVENTORY
        .replace("$agents$", &agents.join(","))
        .replace("$role$", role);
    document
        .split('$')
        .enumerate()
        .filter(|(_, piece)| !piece.is_empty())
        .map(|(index, piece)| {
            if index % 2 == 0 {
                let mut text = String::new();
                push_escaped(&mut text, piece, level);
                return Segment::Text(text);
            }
            Segment::Hole(match piece {
                "identity" => Hole::Identity,
                "dc" => Hole::Dc,
                "version" => Hole::Version,
                "uptime" => Hole::Uptime,
                "last_message" => Hole::LastMessage,
                "total" => Hole::Total,
                "passed" => Hole::Passed,
                "filtered" => Hole::Filtered,
                "events" => Hole::Events,
                other => unreachable!("unknown inventory hole {other}"),
            })
        })
        .collect()
}

/// The templates of every role in [`ROLES`] at every level, built on first use.
pub(crate) fn cached_template(role: &str, level: usize) -> Option<&'static [Segment]> {
    static TEMPLATES: OnceLock<Vec<[Vec<Segment>; MAX_LEVEL + 1]>> = OnceLock::new();
    let templates = TEMPLATES.get_or_init(|| {
        ROLES
            .iter()
            .map(|(role, _)| std::array::from_fn(|level| inventory_template(role, level)))
            .collect()
    });
    let index = ROLES.iter().position(|(name, _)| *name == role)?;
    templates[index].get(level).map(Vec::as_slice)
}

/// One registration's per-message values.
pub(crate) struct Inventory<'a> {
    pub(crate) identity: &'a str,
    pub(crate) role: &'a str,
    pub(crate) dc: u32,
    pub(crate) version: &'a str,
    pub(crate) time: i64,
    pub(crate) uptime: i64,
    pub(crate) requests: u64,
}

impl Inventory<'_> {
    /// Appends the document escaped to `level` (0: raw JSON).
    pub(crate) fn write(&self, out: &mut String, level: usize) {
        if let Some(segments) = cached_template(self.role, level) {
            self.fill(out, segments);
        } else {
            // A role outside the fleet's set: build its template on the spot.
            self.fill(out, &inventory_template(self.role, level));
        }
    }

    fn fill(&self, out: &mut String, segments: &[Segment]) {
        for segment in segments {
            match segment {
                Segment::Text(text) => out.push_str(text),
                Segment::Hole(hole) => {
                    let _ = match hole {
                        Hole::Identity => write_safe(out, self.identity),
                        Hole::Version => write_safe(out, self.version),
                        Hole::Dc => write!(out, "{}", self.dc),
                        Hole::Uptime => write!(out, "{}", self.uptime),
                        Hole::LastMessage => write!(out, "{}", self.time - 30),
                        Hole::Total => write!(out, "{}", self.requests * 3),
                        Hole::Passed => write!(out, "{}", self.requests * 2),
                        Hole::Filtered => write!(out, "{}", self.requests),
                        Hole::Events => write!(out, "{}", self.requests + 1),
                    };
                }
            }
        }
    }
}

/// Appends a hole's text value; anything that escaping would change is replaced by `_`, so the
/// pre-escaped templates stay exact whatever a caller puts in a [`SimEvent`].
pub(crate) fn write_safe(out: &mut String, value: &str) -> std::fmt::Result {
    if value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
    {
        out.push_str(value);
    } else {
        out.extend(value.chars().map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':') {
                c
            } else {
                '_'
            }
        }));
    }
    Ok(())
}

/// The agent that manages a role's main service.
pub(crate) fn role_agent(role: &str) -> &'static str {
    match role {
        "web" | "lb" => "nginx",
        "db" => "postgresql",
        "cache" => "redis",
        "mq" => "rabbitmq",
        "k8s" => "kubelet",
        "build" => "jenkins",
        _ => "service",
    }
}

/// Appends `value` as a JSON string (quoted) the way Go's `encoding/json` writes it.
pub(crate) fn push_json_string(out: &mut String, value: &str) {
    out.push('"');
    escape_into(out, value);
    out.push('"');
}

/// Appends `text` escaped `level` times as JSON string content (0: unchanged).
pub(crate) fn push_escaped(out: &mut String, text: &str, level: usize) {
    match level {
        0 => out.push_str(text),
        1 => escape_into(out, text),
        _ => {
            let mut once = String::with_capacity(text.len() + text.len() / 4);
            escape_into(&mut once, text);
            push_escaped(out, &once, level - 1);
        }
    }
}

/// Appends `value` as JSON string content (without quotes) the way Go's `encoding/json` writes
/// it: `"`, `\` and control characters escaped, and `<`, `>`, `&`, U+2028, U+2029 as `\u` escapes.
///
/// Scans bytes rather than characters: every byte that needs escaping is ASCII or the lead byte of
/// U+2028/U+2029, so the slices copied in between always end on character boundaries.
pub(crate) fn escape_into(out: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    /// Bytes that may need escaping: `"`, `\\`, `<`, `>`, `&`, controls, and 0xE2 (U+2028/9).
    const SPECIAL: [bool; 256] = {
        let mut table = [false; 256];
        let mut byte = 0;
        while byte < 0x20 {
            table[byte] = true;
            byte += 1;
        }
        table[b'"' as usize] = true;
        table[b'\\' as usize] = true;
        table[b'<' as usize] = true;
        table[b'>' as usize] = true;
        table[b'&' as usize] = true;
        table[0xe2] = true;
        table
    };
    let bytes = value.as_bytes();
    out.reserve(bytes.len() + bytes.len() / 8);
    let mut start = 0;
    let mut index = 0;
    while let Some(offset) = bytes[index..].iter().position(|&b| SPECIAL[usize::from(b)]) {
        index += offset;
        let byte = bytes[index];
        let (escape, width): (&str, usize) = match byte {
            b'"' => ("\\\"", 1),
            b'\\' => ("\\\\", 1),
            b'\n' => ("\\n", 1),
            b'\r' => ("\\r", 1),
            b'\t' => ("\\t", 1),
            b'<' => ("\\u003c", 1),
            b'>' => ("\\u003e", 1),
            b'&' => ("\\u0026", 1),
            0x00..=0x1f => ("", 1),
            _ => match (bytes.get(index + 1), bytes.get(index + 2)) {
                (Some(0x80), Some(0xa8)) => ("\\u2028", 3),
                (Some(0x80), Some(0xa9)) => ("\\u2029", 3),
                // Another character starting with 0xE2: not escaped.
                _ => {
                    index += 1;
                    continue;
                }
            },
        };
        out.push_str(&value[start..index]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        } else {
            out.push_str(escape);
        }
        index += width;
        start = index;
    }
    out.push_str(&value[start..]);
}
