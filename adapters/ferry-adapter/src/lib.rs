//! The contract between ferry's adapter runtime and its decoders.
//!
//! A decoder turns the bytes of one core NATS message into a [`DecodedEvent`]: what to store, who sent
//! it, and the values that fill the output subject template. Decoders are pure functions: no I/O, no
//! async, no clock, no randomness, so every kind is tested against fixture files and property tests
//! without a server, and the runtime can call them from any task.
//!
//! Adding a decoder kind means one crate implementing [`Decoder`] (which reports the template tokens
//! it fills) plus a variant of ferry's `AdapterKind` and the arms the compiler then asks for in
//! `src/config/kinds.rs` (the kind-specific config keys and how to build the decoder).
//!
//! ```
//! use ferry_adapter::{Decoder, DecodedEvent, DecodeError, Input, Payload};
//!
//! /// Stores events unchanged and names the first subject token as their sender.
//! struct FirstToken;
//!
//! impl Decoder for FirstToken {
//!     fn kind(&self) -> &'static str { "first_token" }
//!     fn tokens(&self) -> &'static [&'static str] { &["sender"] }
//!     fn decode(&self, input: &Input<'_>) -> Result<DecodedEvent, DecodeError> {
//!         if input.payload.is_empty() {
//!             return Err(DecodeError::Empty);
//!         }
//!         let sender = input.subject.split('.').next().unwrap_or_default().to_string();
//!         Ok(DecodedEvent::unchanged()
//!             .with_sender(sender.clone())
//!             .with_field("sender", sender))
//!     }
//! }
//!
//! let event = FirstToken
//!     .decode(&Input::new("node1.events", b"{}"))
//!     .expect("decodes");
//! assert_eq!(event.sender.as_deref(), Some("node1"));
//! assert!(matches!(event.payload, Payload::Unchanged));
//! ```

use std::borrow::Cow;

pub mod json;

/// Read access to the headers of the incoming message, whatever client library carried it.
pub trait HeaderLookup {
    /// The first value of header `name`, if present.
    fn header(&self, name: &str) -> Option<&str>;
}

/// A message without headers.
pub struct NoHeaders;

impl HeaderLookup for NoHeaders {
    fn header(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// One message as received from core NATS.
pub struct Input<'a> {
    /// The subject the message arrived on.
    pub subject: &'a str,
    /// The raw payload.
    pub payload: &'a [u8],
    /// The message's headers (core NATS messages often have none).
    pub headers: &'a dyn HeaderLookup,
}

impl<'a> Input<'a> {
    /// An input without headers.
    pub fn new(subject: &'a str, payload: &'a [u8]) -> Self {
        Input {
            subject,
            payload,
            headers: &NoHeaders,
        }
    }

    /// An input with headers.
    pub fn with_headers(
        subject: &'a str,
        payload: &'a [u8],
        headers: &'a dyn HeaderLookup,
    ) -> Self {
        Input {
            subject,
            payload,
            headers,
        }
    }
}

/// What to store for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Store the received bytes unchanged (the runtime reuses its buffer: no copy).
    Unchanged,
    /// Store these bytes instead.
    Replaced(Vec<u8>),
}

/// A successfully decoded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedEvent {
    /// The bytes to store.
    pub payload: Payload,
    /// The node or client that sent the event, when the format names one (`Ferry-Sender`).
    pub sender: Option<String>,
    /// Values for the output subject template, by token name (`type`, `component`, `token.3`, ...).
    /// Values are raw event content: the runtime sanitises them when it renders a subject.
    pub fields: Vec<(Cow<'static, str>, String)>,
    /// The JSON document that `filter.match` field predicates look at, when it is not the stored
    /// payload (for example the Choria event inside a CloudEvent). `None` means the stored payload.
    pub filter_document: Option<Vec<u8>>,
}

impl DecodedEvent {
    /// An event stored unchanged, with no sender and no fields yet.
    pub fn unchanged() -> Self {
        DecodedEvent {
            payload: Payload::Unchanged,
            sender: None,
            fields: Vec::new(),
            filter_document: None,
        }
    }

    /// An event whose stored payload is `bytes`.
    pub fn replaced(bytes: Vec<u8>) -> Self {
        DecodedEvent {
            payload: Payload::Replaced(bytes),
            ..DecodedEvent::unchanged()
        }
    }

    /// Sets the sender.
    pub fn with_sender(mut self, sender: impl Into<String>) -> Self {
        self.sender = Some(sender.into());
        self
    }

    /// Adds a template field.
    pub fn with_field(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<String>,
    ) -> Self {
        self.fields.push((name.into(), value.into()));
        self
    }

    /// Sets the document that field filters look at.
    pub fn with_filter_document(mut self, document: Vec<u8>) -> Self {
        self.filter_document = Some(document);
        self
    }

    /// The value of template token `name`, if the decoder provided one.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Why a message could not be decoded. Every variant maps to a short, stable metric label
/// ([`DecodeError::reason`]) used in `ferry_adapter_invalid_total{reason}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload was empty.
    #[error("empty payload")]
    Empty,
    /// The payload (or an inner layer) is not valid JSON, including truncated JSON.
    #[error("{layer} is not valid JSON: {detail}")]
    NotJson {
        /// Which layer failed, e.g. `payload` or `request`.
        layer: &'static str,
        /// The parser's message.
        detail: String,
    },
    /// A layer carries a protocol this decoder does not know.
    #[error("{layer} has unknown protocol {protocol:?}")]
    UnknownProtocol {
        /// Which layer failed.
        layer: &'static str,
        /// The protocol found (cut to a sane length).
        protocol: String,
    },
    /// A lifecycle event of a type ferry does not know (allowed with `allow_unknown_types`).
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    /// A required field is missing, empty or of the wrong JSON type.
    #[error("field {field:?} is missing or invalid: {detail}")]
    InvalidField {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A base64 layer does not decode.
    #[error("{layer} is not valid base64")]
    BadBase64 {
        /// Which layer failed.
        layer: &'static str,
    },
    /// A CloudEvent from a source other than Choria's lifecycle events.
    #[error("CloudEvent source {0:?} is not io.choria.lifecycle")]
    WrongSource(String),
}

impl DecodeError {
    /// A short, stable label for metrics.
    /// Every [`DecodeError::reason`], for counters that must exist before the first error.
    pub const REASONS: [&'static str; 7] = [
        "empty",
        "not_json",
        "unknown_protocol",
        "unknown_type",
        "invalid_field",
        "bad_base64",
        "wrong_source",
    ];

    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::NotJson { .. } => "not_json",
            DecodeError::UnknownProtocol { .. } => "unknown_protocol",
            DecodeError::UnknownType(_) => "unknown_type",
            DecodeError::InvalidField { .. } => "invalid_field",
            DecodeError::BadBase64 { .. } => "bad_base64",
            DecodeError::WrongSource(_) => "wrong_source",
        }
    }

    /// Builds a [`DecodeError::NotJson`] from a parser error.
    pub fn not_json(layer: &'static str, error: impl std::fmt::Display) -> Self {
        DecodeError::NotJson {
            layer,
            detail: error.to_string(),
        }
    }

    /// Builds a [`DecodeError::UnknownProtocol`], cutting hostile values to a loggable length.
    pub fn unknown_protocol(layer: &'static str, protocol: &str) -> Self {
        DecodeError::UnknownProtocol {
            layer,
            protocol: truncate(protocol, 128),
        }
    }
}

/// Cuts `value` to at most `max` bytes on a character boundary.
pub fn truncate(value: &str, max: usize) -> String {
    if value.len() <= max {
        return value.to_string();
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].to_string()
}

/// A decoder for one adapter kind.
pub trait Decoder: Send + Sync {
    /// The kind's name as written in the config (`choria_lifecycle`, ...).
    fn kind(&self) -> &'static str;

    /// The tokens this kind fills in the output subject template, for validation and error
    /// messages. `name.N` stands for `name.1`, `name.2`, ... (written without leading zeros).
    fn tokens(&self) -> &'static [&'static str];

    /// Whether `{token}` may appear in this kind's output subject template: one of
    /// [`Decoder::tokens`], a `.N` pattern matched by a positive number.
    fn accepts_token(&self, token: &str) -> bool {
        self.tokens()
            .iter()
            .any(|known| match known.strip_suffix(".N") {
                Some(stem) => token
                    .strip_prefix(stem)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .is_some_and(|n| {
                        !n.starts_with('0')
                            && n.bytes().all(|b| b.is_ascii_digit())
                            && n.parse::<usize>().is_ok()
                    }),
                None => *known == token,
            })
    }

    /// Decodes one message. Must never panic, whatever the input.
    fn decode(&self, input: &Input<'_>) -> Result<DecodedEvent, DecodeError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn reasons_are_stable_labels() {
        for error in [
            DecodeError::Empty,
            DecodeError::not_json("payload", "eof"),
            DecodeError::WrongSource("x".into()),
        ] {
            assert!(DecodeError::REASONS.contains(&error.reason()), "{error:?}");
        }
        assert_eq!(DecodeError::Empty.reason(), "empty");
        assert_eq!(DecodeError::not_json("payload", "eof").reason(), "not_json");
        assert_eq!(
            DecodeError::WrongSource("x".into()).reason(),
            "wrong_source"
        );
    }
}
