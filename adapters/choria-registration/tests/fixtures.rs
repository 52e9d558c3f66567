//! The decoder against the shared Choria wire-format fixtures (`fixtures/registration` at the workspace root),
//! which sit beside the repository so they are reference data no crate can quietly edit.

use std::path::PathBuf;

use choria_registration::RegistrationDecoder;
use ferry_adapter::{DecodeError, DecodedEvent, Decoder, Input};

mod support;
use support::streams::assert_fixture_output;

const SUBJECT: &str = "mcollective.broadcast.agent.registration";

fn read(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/registration")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

fn decode(name: &str) -> Result<DecodedEvent, DecodeError> {
    RegistrationDecoder::default().decode(&Input::new(SUBJECT, &read(name)))
}

#[test]
fn valid_fixtures_produce_the_expected_documents() {
    for name in ["v1-inventory", "v1-filecontent", "v2-inventory"] {
        let event = decode(&format!("{name}.wire.json")).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_fixture_output(name, &event, &read(&format!("{name}.expected.json")));
        assert_eq!(
            event.sender.as_deref(),
            Some("web4.cdg.acme.test"),
            "{name}"
        );
        assert_eq!(event.field("sender"), Some("web4.cdg.acme.test"), "{name}");
        assert_eq!(event.field("agent"), Some("registration"), "{name}");
        assert_eq!(event.field("collective"), Some("mcollective"), "{name}");
    }
}

#[test]
fn bad_fixtures_yield_typed_errors() {
    assert_eq!(decode("bad-empty.wire.json"), Err(DecodeError::Empty));
    assert!(matches!(
        decode("bad-base64.wire.json"),
        Err(DecodeError::BadBase64 {
            layer: "transport.data"
        })
    ));
    assert!(matches!(
        decode("bad-protocol.wire.json"),
        Err(DecodeError::UnknownProtocol { layer: "transport", ref protocol }) if protocol == "choria:transport:9"
    ));
    assert!(matches!(
        decode("bad-inner.wire.json"),
        Err(DecodeError::NotJson {
            layer: "request",
            ..
        })
    ));
}

#[test]
fn kind_and_tokens() {
    assert_eq!(RegistrationDecoder::default().kind(), "choria_registration");
    for token in ["sender", "agent", "collective"] {
        assert!(
            RegistrationDecoder::default().accepts_token(token),
            "{token}"
        );
    }
    assert!(!RegistrationDecoder::default().accepts_token("type"));
    assert!(!RegistrationDecoder::default().accepts_token("identity"));
}
