//! Decoder for Choria registration traffic (`choria_registration` adapter kind).
//!
//! Choria servers publish registration data (inventory, file content, ...) as ordinary RPC
//! requests to the `registration` agent, wrapped in Choria's transport envelope. Choria's own
//! streams adapter unwraps them and stores a small JSON document; ferry stores exactly the same
//! document (same keys, same order, same values, Go's string escaping and time format), so
//! consumers written for Choria's adapter keep working when ferry replaces it.
//!
//! Both protocol generations are accepted ([`wire`] opens the envelopes). The request's payload and
//! fields are then:
//!
//! * **v1** `choria:request:1`: `message` is the registration payload (a JSON string) and
//!   `envelope` carries `senderid`, `requestid`, `agent`, `collective` and `time` (Unix seconds).
//! * **v2** `io.choria.protocol.v2.request`: base64 `message` (the payload), `id`, `sender`,
//!   `agent`, `collective` and `time` (Unix nanoseconds).
//!
//! The [`document`] and [`wire`] modules are public because the `choria_reply` decoder stores
//! replies in the same document, opened through the same envelopes.

use ferry_adapter::{DecodeError, DecodedEvent, Decoder, Input};

pub mod document;
pub mod protocol;
pub mod wire;

pub use document::OUTPUT_PROTOCOL;
pub use protocol::ProtocolVersion;

/// The `choria_registration` decoder.
///
/// Stores (as [`ferry_adapter::Payload::Replaced`])
/// `{"protocol":"choria:adapters:choria_streams:output:1","data":<payload>,"sender":<sender>,"time":<time>,"requestid":<id>}`;
/// template fields `sender`, `agent` and `collective`; the sender is the sending node's identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistrationDecoder {
    /// Which protocol generations to accept.
    pub protocol_version: ProtocolVersion,
}

impl RegistrationDecoder {
    /// A decoder taking `protocol_version`.
    pub fn new(protocol_version: ProtocolVersion) -> Self {
        RegistrationDecoder { protocol_version }
    }
}

impl Decoder for RegistrationDecoder {
    fn kind(&self) -> &'static str {
        "choria_registration"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["sender", "agent", "collective"]
    }

    fn decode(&self, input: &Input<'_>) -> Result<DecodedEvent, DecodeError> {
        let request = wire::open(input.payload, &wire::REQUEST, self.protocol_version.only())?;
        let output = request.document.render()?;
        let sender = request.document.sender;
        Ok(DecodedEvent::replaced(output.into_bytes())
            .with_sender(sender.clone())
            .with_field("sender", sender)
            .with_field("agent", request.agent)
            // Always there: the request layers read the collective.
            .with_field("collective", request.collective.unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_protocol_version_refuses_the_other_generation() {
        let v2 = v2_fixture();
        assert!(RegistrationDecoder::default()
            .decode(&Input::new("x", &v2))
            .is_ok());
        assert!(RegistrationDecoder::new(ProtocolVersion::V2)
            .decode(&Input::new("x", &v2))
            .is_ok());
        assert!(matches!(
            RegistrationDecoder::new(ProtocolVersion::V1).decode(&Input::new("x", &v2)),
            Err(DecodeError::UnknownProtocol { .. })
        ));
    }

    /// A v2 registration request from the crate's own fixture.
    fn v2_fixture() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/registration/v2-inventory.wire.json"
        ))
        .expect("the v2 fixture")
    }

    #[test]
    fn blank_payload_is_empty() {
        let decode =
            |payload: &[u8]| RegistrationDecoder::default().decode(&Input::new("x", payload));
        assert_eq!(decode(b""), Err(DecodeError::Empty));
        assert_eq!(decode(b"\n"), Err(DecodeError::Empty));
    }
}
