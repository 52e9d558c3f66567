//! The decoder against the shared Choria wire-format fixtures (`fixtures/reply` at the workspace
//! root; `fixtures/README.md` says how they were built from go-choria's protocol code).

use std::path::PathBuf;

use choria_reply::{ProtocolVersion, ReplyDecoder};
use ferry_adapter::{DecodeError, DecodedEvent, Decoder, Input};

// The registration crate's checks of Choria's streams document, shared rather than repeated.
#[path = "../../choria-registration/tests/support/streams.rs"]
mod streams;
use streams::assert_fixture_output;

const SUBJECT: &str = "choria.reply.rpcutil";

fn read(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/reply")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

fn decode(version: ProtocolVersion, name: &str) -> Result<DecodedEvent, DecodeError> {
    ReplyDecoder::new(version).decode(&Input::new(SUBJECT, &read(name)))
}

/// (fixture, sender, agent)
const VALID: [(&str, &str, &str); 4] = [
    ("v1-hello", "testing", "test"),
    ("v1-rpcutil", "web4.cdg.acme.test", "rpcutil"),
    ("v2-hello", "testing", "test"),
    ("v2-rpcutil-signed", "web4.cdg.acme.test", "rpcutil"),
];

#[test]
fn valid_fixtures_produce_the_documents_choria_stores() {
    for (name, sender, agent) in VALID {
        let event = decode(ProtocolVersion::Any, &format!("{name}.wire.json"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_fixture_output(name, &event, &read(&format!("{name}.expected.json")));
        // The reply's own sender, not the transport header's (they differ in the hello fixtures).
        assert_eq!(event.sender.as_deref(), Some(sender), "{name}");
        assert_eq!(event.field("sender"), Some(sender), "{name}");
        assert_eq!(event.field("agent"), Some(agent), "{name}");
        assert_eq!(event.field("collective"), None, "{name}");
    }
}

#[test]
fn a_pinned_protocol_version_refuses_the_other_generation() {
    for (name, _, _) in VALID {
        let wire = format!("{name}.wire.json");
        let (takes, refuses) = if name.starts_with("v1") {
            (ProtocolVersion::V1, ProtocolVersion::V2)
        } else {
            (ProtocolVersion::V2, ProtocolVersion::V1)
        };
        assert!(decode(takes, &wire).is_ok(), "{name} with {takes}");
        let error = decode(refuses, &wire).unwrap_err();
        assert!(
            matches!(error, DecodeError::UnknownProtocol { layer: "transport", ref protocol }
                if protocol.contains("protocol_version")),
            "{name} with {refuses}: {error}"
        );
    }
}

#[test]
fn bad_fixtures_yield_typed_errors() {
    let any = ProtocolVersion::Any;
    assert!(matches!(
        decode(any, "bad-request.wire.json"),
        Err(DecodeError::UnknownProtocol { layer: "secure_reply", ref protocol })
            if protocol == "choria:secure:request:1"
    ));
    assert!(matches!(
        decode(any, "bad-no-envelope.wire.json"),
        Err(DecodeError::InvalidField {
            field: "envelope",
            ..
        })
    ));
    assert!(matches!(
        decode(any, "bad-reply-base64.wire.json"),
        Err(DecodeError::BadBase64 {
            layer: "secure_reply.reply"
        })
    ));
    // A registration request is not a reply either.
    let registration = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/registration/v2-inventory.wire.json");
    let registration = std::fs::read(registration).expect("registration fixture");
    assert!(matches!(
        ReplyDecoder::default().decode(&Input::new(SUBJECT, &registration)),
        Err(DecodeError::UnknownProtocol {
            layer: "secure_reply",
            ..
        })
    ));
}

#[test]
fn kind_and_tokens() {
    let decoder = ReplyDecoder::default();
    assert_eq!(decoder.kind(), "choria_reply");
    for token in ["sender", "agent"] {
        assert!(decoder.accepts_token(token), "{token}");
    }
    for token in ["collective", "type", "token.1"] {
        assert!(!decoder.accepts_token(token), "{token}");
    }
}
