//! Decoder for Choria RPC replies (`choria_reply` adapter kind).
//!
//! Choria's streams adapter ingests replies by default (`ingest.protocol: reply`): nodes answer
//! an RPC request on core NATS, the adapter listens on the reply subject, unwraps each reply and
//! stores the same small JSON document it stores for requests. ferry stores exactly that document
//! (same keys, same order, same values, Go's string escaping and time format), so consumers
//! written for Choria's adapter keep working when ferry replaces it.
//!
//! The envelopes are opened by `choria_registration::wire`; the reply's payload and fields are:
//!
//! * **v1** `choria:reply:1`: `message` is the reply body (a JSON string) and `envelope` carries
//!   `requestid`, `senderid`, `agent` and `time` (Unix seconds).
//! * **v2** `io.choria.protocol.v2.reply`: base64 `message` (the body), `request` (the id of the
//!   request answered), `sender`, `agent` and `time` (Unix nanoseconds).
//!
//! A reply names no collective (neither generation carries one), so unlike registration there is
//! no `collective` template token.

use choria_registration::wire;
pub use choria_registration::ProtocolVersion;
use ferry_adapter::{DecodeError, DecodedEvent, Decoder, Input};

/// The `choria_reply` decoder.
///
/// Stores (as [`ferry_adapter::Payload::Replaced`])
/// `{"protocol":"choria:adapters:choria_streams:output:1","data":<reply body>,"sender":<sender>,"time":<time>,"requestid":<id>}`;
/// template fields `sender` and `agent`; the sender is the replying node's identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplyDecoder {
    /// Which protocol generations to accept.
    pub protocol_version: ProtocolVersion,
}

impl ReplyDecoder {
    /// A decoder taking `protocol_version`.
    pub fn new(protocol_version: ProtocolVersion) -> Self {
        ReplyDecoder { protocol_version }
    }
}

impl Decoder for ReplyDecoder {
    fn kind(&self) -> &'static str {
        "choria_reply"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["sender", "agent"]
    }

    fn decode(&self, input: &Input<'_>) -> Result<DecodedEvent, DecodeError> {
        let reply = wire::open(input.payload, &wire::REPLY, self.protocol_version.only())?;
        let output = reply.document.render()?;
        let sender = reply.document.sender;
        Ok(DecodedEvent::replaced(output.into_bytes())
            .with_sender(sender.clone())
            .with_field("sender", sender)
            .with_field("agent", reply.agent))
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;

    use super::*;

    #[test]
    fn blank_payload_is_empty() {
        let decode = |payload: &[u8]| ReplyDecoder::default().decode(&Input::new("x", payload));
        assert_eq!(decode(b""), Err(DecodeError::Empty));
        assert_eq!(decode(b" \r\n"), Err(DecodeError::Empty));
    }

    #[test]
    fn protocol_version_names_round_trip() {
        for version in [
            ProtocolVersion::Any,
            ProtocolVersion::V1,
            ProtocolVersion::V2,
        ] {
            assert_eq!(version.as_str().parse::<ProtocolVersion>(), Ok(version));
        }
        assert!("2".parse::<ProtocolVersion>().is_err());
    }

    #[test]
    fn a_request_is_not_a_reply() {
        let secure = r#"{"protocol":"choria:secure:request:1","message":"{}"}"#;
        let wire = format!(
            r#"{{"protocol":"choria:transport:1","data":"{}"}}"#,
            STANDARD.encode(secure)
        );
        let error = ReplyDecoder::default()
            .decode(&Input::new("x", wire.as_bytes()))
            .unwrap_err();
        assert!(matches!(
            error,
            DecodeError::UnknownProtocol { layer: "secure_reply", ref protocol } if protocol == "choria:secure:request:1"
        ));
    }
}
