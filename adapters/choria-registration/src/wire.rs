//! Choria's envelopes around a request or a reply, opened the way Choria's streams adapter opens
//! them (`NewRequestFromTransportJSON` / `NewReplyFromTransportJSON` with validation skipped):
//! transport → secure request or reply → request or reply. Both protocol generations:
//!
//! * **v1**: `choria:transport:1` with base64 `data` holding `choria:secure:request:1` (or
//!   `choria:secure:reply:1`), whose `message` is a JSON *string* holding `choria:request:1` (or
//!   `choria:reply:1`).
//! * **v2**: `io.choria.protocol.v2.transport` with base64 `data` holding
//!   `io.choria.protocol.v2.secure_request` (or `..secure_reply`), whose base64 `request` (or
//!   `reply`) holds `io.choria.protocol.v2.request` (or `..reply`).
//!
//! The innermost layer carries the payload and the same fields in both kinds: v1 in its
//! `envelope` (`senderid`, `requestid`, `agent`, `time` in Unix seconds, and for a request
//! `collective`), v2 at its top level (`sender`, `id` or for a reply `request`, `agent`, `time` in
//! Unix nanoseconds, and for a request `collective`), with the payload in `message` (v1: a JSON
//! string, v2: base64).
//!
//! Signatures and hashes are not verified, as in Choria's own adapters: the adapter archives what
//! the fleet said, it does not act on it, and verifying would need the fleet's certificates.

use std::fmt;

use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use ferry_adapter::json::Entries;
use ferry_adapter::DecodeError;
use time::OffsetDateTime;

use crate::document::Document;

/// Standard base64 as Go's `encoding/base64.StdEncoding` writes it; padding is accepted but not
/// required, which costs nothing and tolerates producers that strip it.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

const V1_TRANSPORT: &str = "choria:transport:1";
const V2_TRANSPORT: &str = "io.choria.protocol.v2.transport";

/// A Choria protocol generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// `choria:*:1`, x509 fleets.
    V1,
    /// `io.choria.protocol.v2.*`, ed25519 + JWT fleets.
    V2,
}

impl Generation {
    /// The transport protocol of this generation.
    pub fn transport(self) -> &'static str {
        match self {
            Generation::V1 => V1_TRANSPORT,
            Generation::V2 => V2_TRANSPORT,
        }
    }
}

/// The protocols and layer names of one message kind (request or reply), per generation.
pub struct Layers {
    /// Layer name in errors: `secure_request` or `secure_reply`.
    pub secure: &'static str,
    /// Layer name in errors: `request` or `reply`.
    pub inner: &'static str,
    pub v1_secure: &'static str,
    pub v1_inner: &'static str,
    pub v2_secure: &'static str,
    /// The v2 secure layer's base64 field holding the inner layer: `request` or `reply`.
    pub v2_field: &'static str,
    /// That field in errors: `secure_request.request` or `secure_reply.reply`.
    pub v2_field_layer: &'static str,
    pub v2_inner: &'static str,
    /// The v2 inner layer's payload field in errors: `request.message` or `reply.message`.
    pub v2_message_layer: &'static str,
    /// The v2 inner layer's field naming the request: `id`, or for a reply `request`.
    pub v2_request_id: &'static str,
    /// Whether the message names its collective (requests do, replies do not).
    pub collective: bool,
}

/// Requests (`ingest.protocol: request` in Choria's adapter).
pub const REQUEST: Layers = Layers {
    secure: "secure_request",
    inner: "request",
    v1_secure: "choria:secure:request:1",
    v1_inner: "choria:request:1",
    v2_secure: "io.choria.protocol.v2.secure_request",
    v2_field: "request",
    v2_field_layer: "secure_request.request",
    v2_inner: "io.choria.protocol.v2.request",
    v2_message_layer: "request.message",
    v2_request_id: "id",
    collective: true,
};

/// Replies (`ingest.protocol: reply`, the default of Choria's adapter).
pub const REPLY: Layers = Layers {
    secure: "secure_reply",
    inner: "reply",
    v1_secure: "choria:secure:reply:1",
    v1_inner: "choria:reply:1",
    v2_secure: "io.choria.protocol.v2.secure_reply",
    v2_field: "reply",
    v2_field_layer: "secure_reply.reply",
    v2_inner: "io.choria.protocol.v2.reply",
    v2_message_layer: "reply.message",
    v2_request_id: "request",
    collective: false,
};

/// A request or reply, opened: what Choria's adapter stores, and the template fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub document: Document,
    pub agent: String,
    /// `Some` exactly when [`Layers::collective`] is set.
    pub collective: Option<String>,
}

/// Opens the envelopes of `payload` down to the request or reply `layers` describes and reads it.
/// `only` refuses the other generation's transport (Choria ties an adapter to one generation
/// through its security provider; ferry lets the config choose).
pub fn open(
    payload: &[u8],
    layers: &Layers,
    only: Option<Generation>,
) -> Result<Message, DecodeError> {
    if payload
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        return Err(DecodeError::Empty);
    }
    let transport = parse_layer(payload, "transport")?;
    let found = protocol(&transport, "transport")?;
    let generation = match found.as_str() {
        V1_TRANSPORT => Generation::V1,
        V2_TRANSPORT => Generation::V2,
        other => return Err(DecodeError::unknown_protocol("transport", other)),
    };
    if let Some(only) = only.filter(|only| *only != generation) {
        return Err(DecodeError::unknown_protocol(
            "transport",
            &format!(
                "{found} (the adapter's protocol_version takes only {})",
                only.transport()
            ),
        ));
    }
    let secure = base64_field(&transport, "data", "transport.data")?;
    let secure = parse_layer(&secure, layers.secure)?;
    match generation {
        Generation::V1 => {
            expect_protocol(&secure, layers.secure, layers.v1_secure)?;
            // v1 nests the inner layer as a JSON string, not as base64.
            let inner = string(&secure, "message")?;
            let inner = parse_layer(inner.as_bytes(), layers.inner)?;
            expect_protocol(&inner, layers.inner, layers.v1_inner)?;
            read_v1(&inner, layers)
        }
        Generation::V2 => {
            expect_protocol(&secure, layers.secure, layers.v2_secure)?;
            let inner = base64_field(&secure, layers.v2_field, layers.v2_field_layer)?;
            let inner = parse_layer(&inner, layers.inner)?;
            expect_protocol(&inner, layers.inner, layers.v2_inner)?;
            read_v2(&inner, layers)
        }
    }
}

/// A v1 request or reply: the payload is a JSON string, the fields sit in `envelope`.
fn read_v1(message: &Entries<'_>, layers: &Layers) -> Result<Message, DecodeError> {
    let data = string(message, "message")?;
    let envelope = object(message, "envelope")?;
    Ok(Message {
        document: Document {
            data: data.into_bytes(),
            sender: sender(&envelope, "senderid")?,
            request_id: string(&envelope, "requestid")?,
            time: unix_seconds(&envelope, "time")?,
        },
        agent: string(&envelope, "agent")?,
        collective: collective(&envelope, layers)?,
    })
}

/// A v2 request or reply: the payload is base64, the fields sit beside it.
fn read_v2(message: &Entries<'_>, layers: &Layers) -> Result<Message, DecodeError> {
    Ok(Message {
        document: Document {
            data: base64_field(message, "message", layers.v2_message_layer)?,
            sender: sender(message, "sender")?,
            request_id: string(message, layers.v2_request_id)?,
            time: unix_nanos(message, "time")?,
        },
        agent: string(message, "agent")?,
        collective: collective(message, layers)?,
    })
}

fn collective(fields: &Entries<'_>, layers: &Layers) -> Result<Option<String>, DecodeError> {
    layers
        .collective
        .then(|| string(fields, "collective"))
        .transpose()
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

/// A v1 `time`: Unix seconds (Go's `time.Unix(t, 0)`).
fn unix_seconds(entries: &Entries<'_>, field: &'static str) -> Result<OffsetDateTime, DecodeError> {
    let seconds = integer(entries, field)?;
    OffsetDateTime::from_unix_timestamp(seconds).map_err(|error| invalid(field, error))
}

/// A v2 `time`: Unix nanoseconds (Go's `time.Unix(0, t)`).
fn unix_nanos(entries: &Entries<'_>, field: &'static str) -> Result<OffsetDateTime, DecodeError> {
    let nanos = integer(entries, field)?;
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .map_err(|error| invalid(field, error))
}

/// A JSON object field, as its entries.
fn object<'a>(entries: &Entries<'a>, field: &'static str) -> Result<Entries<'a>, DecodeError> {
    let raw = entries.get(field).ok_or_else(|| missing(field))?;
    serde_json::from_str(raw.get()).map_err(|error| invalid(field, error))
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

pub(crate) fn invalid(field: &'static str, error: impl fmt::Display) -> DecodeError {
    DecodeError::InvalidField {
        field,
        detail: error.to_string(),
    }
}
