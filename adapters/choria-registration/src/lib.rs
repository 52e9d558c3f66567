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

use ferry_adapter::json::Entries;
use ferry_adapter::{DecodeError, DecodedEvent, Decoder, Input};

pub mod document;
pub mod wire;

use document::Document;
pub use document::OUTPUT_PROTOCOL;
use wire::Generation;

/// The `choria_registration` decoder. Stateless: registration traffic needs no configuration.
///
/// Stores (as [`ferry_adapter::Payload::Replaced`])
/// `{"protocol":"choria:adapters:choria_streams:output:1","data":<payload>,"sender":<sender>,"time":<time>,"requestid":<id>}`;
/// template fields `sender`, `agent` and `collective`; the sender is the sending node's identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistrationDecoder;

/// What the layers yield, whatever the protocol version.
struct Request {
    document: Document,
    agent: String,
    collective: String,
}

impl Decoder for RegistrationDecoder {
    fn kind(&self) -> &'static str {
        "choria_registration"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["sender", "agent", "collective"]
    }

    fn decode(&self, input: &Input<'_>) -> Result<DecodedEvent, DecodeError> {
        let request = wire::open(input.payload, &wire::REQUEST, None, read_request)?;
        let output = request.document.render()?;
        let sender = request.document.sender;
        Ok(DecodedEvent::replaced(output.into_bytes())
            .with_sender(sender.clone())
            .with_field("sender", sender)
            .with_field("agent", request.agent)
            .with_field("collective", request.collective))
    }
}

/// The request's fields: v1 keeps them in `envelope`, v2 at the top level with other names.
fn read_request(generation: Generation, request: &Entries<'_>) -> Result<Request, DecodeError> {
    match generation {
        Generation::V1 => {
            let data = wire::string(request, "message")?;
            let envelope = wire::object(request, "envelope")?;
            Ok(Request {
                document: Document {
                    data: data.into_bytes(),
                    sender: wire::sender(&envelope, "senderid")?,
                    request_id: wire::string(&envelope, "requestid")?,
                    time: wire::unix_seconds(&envelope, "time")?,
                },
                agent: wire::string(&envelope, "agent")?,
                collective: wire::string(&envelope, "collective")?,
            })
        }
        Generation::V2 => Ok(Request {
            document: Document {
                data: wire::base64_field(request, "message", "request.message")?,
                sender: wire::sender(request, "sender")?,
                request_id: wire::string(request, "id")?,
                time: wire::unix_nanos(request, "time")?,
            },
            agent: wire::string(request, "agent")?,
            collective: wire::string(request, "collective")?,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_payload_is_empty() {
        let decode = |payload: &[u8]| RegistrationDecoder.decode(&Input::new("x", payload));
        assert_eq!(decode(b""), Err(DecodeError::Empty));
        assert_eq!(decode(b"\n"), Err(DecodeError::Empty));
    }
}
