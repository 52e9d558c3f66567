//! Decoder for Choria registration traffic (`choria_registration` adapter kind).
//!
//! Choria servers publish registration data (inventory, file content, ...) as ordinary RPC
//! requests to the `registration` agent, wrapped in Choria's transport envelope. Choria's own
//! streams adapter unwraps them and stores a small JSON document; ferry stores exactly the same
//! document (same keys, same order, same values, Go's string escaping and time format), so
//! consumers written for Choria's adapter keep working when ferry replaces it.
//!
//! Two protocol generations are on the wire:
//!
//! * **v1**: `choria:transport:1` with base64 `data` holding `choria:secure:request:1`, whose
//!   `message` is a JSON *string* holding `choria:request:1`, whose `message` is the registration
//!   payload and whose `envelope` carries `senderid`, `requestid`, `agent`, `collective` and `time`
//!   (Unix seconds).
//! * **v2**: `io.choria.protocol.v2.transport` with base64 `data` holding
//!   `io.choria.protocol.v2.secure_request`, with base64 `request` holding
//!   `io.choria.protocol.v2.request`, with base64 `message` (the payload), `id`, `sender`,
//!   `agent`, `collective` and `time` (Unix nanoseconds).
//!
//! Signatures are not verified, as in Choria's own adapters: the adapter archives what the fleet
//! said, it does not act on it, and verifying would need the fleet's certificates.

use std::fmt;
use std::fmt::Write as _;

use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use ferry_adapter::json::Entries;
use ferry_adapter::{DecodeError, DecodedEvent, Decoder, Input};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The `protocol` of the stored document, as Choria's streams adapter writes it.
pub const OUTPUT_PROTOCOL: &str = "choria:adapters:choria_streams:output:1";

const V1_TRANSPORT: &str = "choria:transport:1";
const V1_SECURE_REQUEST: &str = "choria:secure:request:1";
const V1_REQUEST: &str = "choria:request:1";
const V2_TRANSPORT: &str = "io.choria.protocol.v2.transport";
const V2_SECURE_REQUEST: &str = "io.choria.protocol.v2.secure_request";
const V2_REQUEST: &str = "io.choria.protocol.v2.request";

/// Standard base64 as Go's `encoding/base64.StdEncoding` writes it; padding is accepted but not
/// required, which costs nothing and tolerates producers that strip it.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The `choria_registration` decoder. Stateless: registration traffic needs no configuration.
///
/// Stores (as [`ferry_adapter::Payload::Replaced`])
/// `{"protocol":"choria:adapters:choria_streams:output:1","data":<payload>,"sender":<sender>,"time":<time>,"requestid":<id>}`;
/// template fields `sender`, `agent` and `collective`; the sender is the sending node's identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistrationDecoder;

/// What the layers yield, whatever the protocol version.
struct Request {
    /// The registration payload's bytes, which Choria's adapter stores as a Go string (so bytes
    /// that are not UTF-8 are written as `\ufffd`, one per byte).
    data: Vec<u8>,
    sender: String,
    request_id: String,
    agent: String,
    collective: String,
    time: OffsetDateTime,
}

impl Decoder for RegistrationDecoder {
    fn kind(&self) -> &'static str {
        "choria_registration"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["sender", "agent", "collective"]
    }

    fn decode(&self, input: &Input<'_>) -> Result<DecodedEvent, DecodeError> {
        if input
            .payload
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            return Err(DecodeError::Empty);
        }
        let transport = parse_layer(input.payload, "transport")?;
        let request = match protocol(&transport, "transport")?.as_str() {
            V1_TRANSPORT => decode_v1(&transport)?,
            V2_TRANSPORT => decode_v2(&transport)?,
            other => return Err(DecodeError::unknown_protocol("transport", other)),
        };
        let output = render(&request)?;
        Ok(DecodedEvent::replaced(output.into_bytes())
            .with_sender(request.sender.clone())
            .with_field("sender", request.sender)
            .with_field("agent", request.agent)
            .with_field("collective", request.collective))
    }
}

/// Protocol v1: base64 secure request, whose `message` is the request as a JSON string.
fn decode_v1(transport: &Entries<'_>) -> Result<Request, DecodeError> {
    let secure = base64_field(transport, "data", "transport.data")?;
    let secure = parse_layer(&secure, "secure_request")?;
    expect_protocol(&secure, "secure_request", V1_SECURE_REQUEST)?;

    let request = string(&secure, "message")?;
    let request = parse_layer(request.as_bytes(), "request")?;
    expect_protocol(&request, "request", V1_REQUEST)?;
    let data = string(&request, "message")?;

    let envelope = request.get("envelope").ok_or_else(|| missing("envelope"))?;
    let envelope: Entries<'_> =
        serde_json::from_str(envelope.get()).map_err(|error| invalid("envelope", error))?;
    let seconds = integer(&envelope, "time")?;
    let time =
        OffsetDateTime::from_unix_timestamp(seconds).map_err(|error| invalid("time", error))?;
    Ok(Request {
        data: data.into_bytes(),
        sender: sender(&envelope, "senderid")?,
        request_id: string(&envelope, "requestid")?,
        agent: string(&envelope, "agent")?,
        collective: string(&envelope, "collective")?,
        time,
    })
}

/// Protocol v2: every nested layer and the payload are base64 byte fields.
fn decode_v2(transport: &Entries<'_>) -> Result<Request, DecodeError> {
    let secure = base64_field(transport, "data", "transport.data")?;
    let secure = parse_layer(&secure, "secure_request")?;
    expect_protocol(&secure, "secure_request", V2_SECURE_REQUEST)?;

    let request = base64_field(&secure, "request", "secure_request.request")?;
    let request = parse_layer(&request, "request")?;
    expect_protocol(&request, "request", V2_REQUEST)?;
    let message = base64_field(&request, "message", "request.message")?;

    let nanos = integer(&request, "time")?;
    let time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .map_err(|error| invalid("time", error))?;
    Ok(Request {
        data: message,
        sender: sender(&request, "sender")?,
        request_id: string(&request, "id")?,
        agent: string(&request, "agent")?,
        collective: string(&request, "collective")?,
        time,
    })
}

/// The stored document, byte-compatible with Choria's streams adapter (a Go struct marshalled by
/// `encoding/json`): fixed key order, Go string escaping, RFC 3339 time with Go's trimmed
/// fractional seconds (`time.Time`'s JSON form is RFC3339Nano).
fn render(request: &Request) -> Result<String, DecodeError> {
    // RFC 3339 needs a four-digit year; Go's `time.Time.MarshalJSON` refuses the same times.
    let time = request
        .time
        .format(&Rfc3339)
        .map_err(|error| invalid("time", error))?;
    let mut out = String::with_capacity(request.data.len() + 256);
    out.push_str("{\"protocol\":\"");
    out.push_str(OUTPUT_PROTOCOL);
    out.push_str("\",\"data\":");
    push_go_json_bytes(&mut out, &request.data);
    out.push_str(",\"sender\":");
    push_go_json_string(&mut out, &request.sender);
    out.push_str(",\"time\":");
    push_go_json_string(&mut out, &time);
    out.push_str(",\"requestid\":");
    push_go_json_string(&mut out, &request.request_id);
    out.push('}');
    Ok(out)
}

/// Appends `value` as a JSON string the way Go's `encoding/json` writes it: `<`, `>`, `&`, U+2028
/// and U+2029 as `\u` escapes (its HTML-safe default), `\b` `\f` `\n` `\r` `\t` short escapes (as
/// since Go 1.22), other control characters as `\u00xx`. Byte-identical output keeps ferry's
/// stored documents (and their hashes) interchangeable with Choria's.
fn push_go_json_string(out: &mut String, value: &str) {
    out.push('"');
    push_go_json_text(out, value);
    out.push('"');
}

/// The inside of [`push_go_json_string`]: `value` escaped as Go escapes it, without the quotes.
fn push_go_json_text(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\u{0}'..='\u{1f}' => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// Appends `bytes` as Go's `encoding/json` writes a Go string holding them: the UTF-8 parts as
/// [`push_go_json_string`] does, and every byte that is not part of valid UTF-8 as the escape
/// `\ufffd` (one per byte; a U+FFFD that is in the input as valid UTF-8 stays as it is).
fn push_go_json_bytes(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        push_go_json_text(out, chunk.valid());
        for _ in chunk.invalid() {
            out.push_str("\\ufffd");
        }
    }
    out.push('"');
}

/// Parses one JSON layer.
fn parse_layer<'a>(bytes: &'a [u8], layer: &'static str) -> Result<Entries<'a>, DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|error| DecodeError::not_json(layer, error))?;
    serde_json::from_str(text).map_err(|error| DecodeError::not_json(layer, error))
}

/// A layer's `protocol`; a missing or non-string protocol is reported as an unknown protocol, since
/// either way the layer is not something this decoder understands.
fn protocol(entries: &Entries<'_>, layer: &'static str) -> Result<String, DecodeError> {
    match entries.get("protocol") {
        Some(raw) => serde_json::from_str::<String>(raw.get())
            .map_err(|_| DecodeError::unknown_protocol(layer, raw.get())),
        None => Err(DecodeError::unknown_protocol(layer, "")),
    }
}

fn expect_protocol(
    entries: &Entries<'_>,
    layer: &'static str,
    expected: &str,
) -> Result<(), DecodeError> {
    let found = protocol(entries, layer)?;
    if found == expected {
        Ok(())
    } else {
        Err(DecodeError::unknown_protocol(layer, &found))
    }
}

/// A required string field.
fn string(entries: &Entries<'_>, field: &'static str) -> Result<String, DecodeError> {
    let raw = entries.get(field).ok_or_else(|| missing(field))?;
    serde_json::from_str::<String>(raw.get()).map_err(|error| invalid(field, error))
}

/// The sender's identity: required and non-empty, since it becomes `Ferry-Sender` and usually a
/// subject token.
fn sender(entries: &Entries<'_>, field: &'static str) -> Result<String, DecodeError> {
    let value = string(entries, field)?;
    if value.is_empty() {
        return Err(DecodeError::InvalidField {
            field,
            detail: "empty".into(),
        });
    }
    Ok(value)
}

/// A required integer field (Go `int64`).
fn integer(entries: &Entries<'_>, field: &'static str) -> Result<i64, DecodeError> {
    let raw = entries.get(field).ok_or_else(|| missing(field))?;
    serde_json::from_str::<i64>(raw.get()).map_err(|error| invalid(field, error))
}

/// A string field holding base64 (Go marshals `[]byte` that way), decoded.
fn base64_field(
    entries: &Entries<'_>,
    field: &'static str,
    layer: &'static str,
) -> Result<Vec<u8>, DecodeError> {
    let encoded = string(entries, field)?;
    BASE64
        .decode(encoded.as_bytes())
        .map_err(|_| DecodeError::BadBase64 { layer })
}

fn missing(field: &'static str) -> DecodeError {
    DecodeError::InvalidField {
        field,
        detail: "missing".into(),
    }
}

fn invalid(field: &'static str, error: impl fmt::Display) -> DecodeError {
    DecodeError::InvalidField {
        field,
        detail: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(value: &str) -> String {
        let mut out = String::new();
        push_go_json_string(&mut out, value);
        out
    }

    #[test]
    fn escapes_like_go() {
        assert_eq!(go("a<b>&c"), r#""a\u003cb\u003e\u0026c""#);
        assert_eq!(go("\"\\\n\r\t\u{8}\u{c}"), r#""\"\\\n\r\t\b\f""#);
        assert_eq!(go("\u{1}\u{1f}\u{7f}"), "\"\\u0001\\u001f\u{7f}\"");
        assert_eq!(go("\u{2028}\u{2029}é"), "\"\\u2028\\u2029é\"");
    }

    /// What Go's `json.Marshal(string(bytes))` prints for each (checked against Go 1.22's
    /// `encoding/json`: `encodeState.string` writes `\ufffd` for each byte of an invalid
    /// sequence, and leaves a valid U+FFFD as it is).
    #[test]
    fn invalid_utf8_becomes_one_escaped_replacement_per_byte() {
        let go_bytes = |bytes: &[u8]| {
            let mut out = String::new();
            push_go_json_bytes(&mut out, bytes);
            out
        };
        assert_eq!(go_bytes(b"a\xe2\x82b"), r#""a\ufffd\ufffdb""#);
        assert_eq!(go_bytes(b"\xed\xa0\x80"), r#""\ufffd\ufffd\ufffd""#);
        assert_eq!(go_bytes(b"\xff<"), r#""\ufffd\u003c""#);
        assert_eq!(go_bytes("ok € \u{fffd}".as_bytes()), "\"ok € \u{fffd}\"");
    }

    #[test]
    fn times_are_formatted_like_go_rfc3339nano() {
        let render_at = |time: OffsetDateTime| {
            let request = Request {
                data: Vec::new(),
                sender: "s".into(),
                request_id: "r".into(),
                agent: "a".into(),
                collective: "c".into(),
                time,
            };
            let out = render(&request).expect("renders");
            let value: serde_json::Value = serde_json::from_str(&out).expect("json");
            value["time"].as_str().expect("time").to_string()
        };
        let at = |nanos: i128| OffsetDateTime::from_unix_timestamp_nanos(nanos).expect("in range");
        assert_eq!(
            render_at(at(1_767_225_600_000_000_000)),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(
            render_at(at(1_767_225_600_500_000_000)),
            "2026-01-01T00:00:00.5Z"
        );
        assert_eq!(
            render_at(at(1_767_225_600_000_000_001)),
            "2026-01-01T00:00:00.000000001Z"
        );
        assert_eq!(render_at(at(-1)), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn blank_payload_is_empty() {
        let decode = |payload: &[u8]| RegistrationDecoder.decode(&Input::new("x", payload));
        assert_eq!(decode(b""), Err(DecodeError::Empty));
        assert_eq!(decode(b"\n"), Err(DecodeError::Empty));
    }
}
