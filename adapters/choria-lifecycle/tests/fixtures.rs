//! The decoder against the shared Choria wire-format fixtures (`fixtures/lifecycle` at the workspace root), which
//! sit beside the repository so they are reference data no crate can quietly edit.

use std::path::PathBuf;

use choria_lifecycle::{LifecycleDecoder, OutputFormat};
use ferry_adapter::{DecodeError, DecodedEvent, Decoder, Input, Payload};
use serde_json::Value;

const FORMATS: [OutputFormat; 4] = [
    OutputFormat::UpgradeLegacy,
    OutputFormat::AsReceived,
    OutputFormat::Choria,
    OutputFormat::CloudEvents,
];

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/lifecycle")
}

fn read(name: &str) -> Vec<u8> {
    let path = fixture_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

fn decode(format: OutputFormat, payload: &[u8]) -> Result<DecodedEvent, DecodeError> {
    LifecycleDecoder::new(false, format).decode(&Input::new(
        "choria.lifecycle.event.startup.server",
        payload,
    ))
}

/// The bytes stored for `event` when `received` came in.
fn stored(event: &DecodedEvent, received: &[u8]) -> Value {
    match &event.payload {
        Payload::Unchanged => json(received),
        Payload::Replaced(bytes) => json(bytes),
    }
}

/// The document field filters see.
fn filtered(event: &DecodedEvent, received: &[u8]) -> Value {
    match &event.filter_document {
        Some(bytes) => json(bytes),
        None => stored(event, received),
    }
}

/// Every fixture file name with `suffix`, sorted.
fn fixtures(suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .expect("fixture dir")
        .map(|entry| {
            entry
                .expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// Checks the template fields and sender against the Choria event `choria`.
fn assert_fields(name: &str, event: &DecodedEvent, choria: &Value) {
    let kind = choria["protocol"]
        .as_str()
        .and_then(|p| p.strip_prefix("io.choria.lifecycle.v1."))
        .expect("choria protocol");
    assert!(name.starts_with(&format!("{kind}-")), "{name}: type {kind}");
    assert_eq!(event.field("type"), Some(kind), "{name}");
    assert_eq!(
        event.field("component"),
        choria["component"].as_str(),
        "{name}"
    );
    assert_eq!(
        event.field("identity"),
        choria["identity"].as_str(),
        "{name}"
    );
    assert_eq!(event.field("sender"), choria["identity"].as_str(), "{name}");
    assert_eq!(
        event.sender.as_deref(),
        choria["identity"].as_str(),
        "{name}"
    );
}

#[test]
fn choria_format_fixtures_decode_in_every_format() {
    let names = fixtures(".choria.json");
    assert_eq!(names.len(), 7);
    for name in names {
        let received = read(&name);
        let choria = json(&received);
        for format in FORMATS {
            let event = decode(format, &received).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_fields(&name, &event, &choria);
            assert_eq!(filtered(&event, &received), choria, "{name} {format}");
            match format {
                OutputFormat::UpgradeLegacy | OutputFormat::AsReceived | OutputFormat::Choria => {
                    assert_eq!(event.payload, Payload::Unchanged, "{name} {format}");
                    assert_eq!(event.filter_document, None, "{name} {format}");
                }
                OutputFormat::CloudEvents => {
                    assert!(matches!(event.payload, Payload::Replaced(_)), "{name}");
                    assert!(event.filter_document.is_some(), "{name}");
                    let cloudevent = stored(&event, &received);
                    assert_eq!(cloudevent["data"], choria, "{name}");
                    let sibling = name.replace(".choria.json", ".cloudevent.json");
                    if fixture_dir().join(&sibling).exists() {
                        assert_eq!(cloudevent, json(&read(&sibling)), "{name} vs {sibling}");
                    }
                }
            }
        }
    }
}

#[test]
fn cloudevent_fixtures_decode_in_every_format() {
    let names = fixtures(".cloudevent.json");
    assert_eq!(names.len(), 5);
    for name in names {
        let received = read(&name);
        let choria = json(&read(&name.replace(".cloudevent.json", ".choria.json")));
        for format in FORMATS {
            let event = decode(format, &received).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_fields(&name, &event, &choria);
            assert_eq!(filtered(&event, &received), choria, "{name} {format}");
            match format {
                OutputFormat::UpgradeLegacy
                | OutputFormat::AsReceived
                | OutputFormat::CloudEvents => {
                    assert_eq!(event.payload, Payload::Unchanged, "{name} {format}");
                    assert!(event.filter_document.is_some(), "{name} {format}");
                }
                OutputFormat::Choria => {
                    assert_eq!(stored(&event, &received), choria, "{name}");
                    assert!(matches!(event.payload, Payload::Replaced(_)), "{name}");
                    assert_eq!(event.filter_document, None, "{name}");
                }
            }
        }
    }
}

#[test]
fn cloudevent_data_is_stored_byte_for_byte() {
    // The fixtures' `data` objects keep Choria's key order; `format: choria` must not reorder them.
    let event = decode(
        OutputFormat::Choria,
        &read("startup-server.cloudevent.json"),
    )
    .expect("decodes");
    let expected = read("startup-server.choria.json");
    let expected = String::from_utf8_lossy(&expected);
    assert_eq!(
        event.payload,
        Payload::Replaced(expected.trim_end().as_bytes().to_vec())
    );
}

#[test]
fn legacy_fixture_is_normalised() {
    let received = read("startup-legacy.json");
    let mut normalised = json(&received);
    normalised["protocol"] = Value::from("io.choria.lifecycle.v1.startup");
    for format in FORMATS {
        let event = decode(format, &received).expect("decodes");
        assert_fields("startup-legacy.json", &event, &normalised);
        assert_eq!(filtered(&event, &received), normalised, "{format}");
        match format {
            OutputFormat::AsReceived => {
                assert_eq!(event.payload, Payload::Unchanged);
                assert!(event.filter_document.is_some());
            }
            OutputFormat::UpgradeLegacy | OutputFormat::Choria => {
                assert_eq!(stored(&event, &received), normalised, "{format}");
                assert_eq!(event.filter_document, None, "{format}");
            }
            OutputFormat::CloudEvents => {
                let cloudevent = stored(&event, &received);
                assert_eq!(cloudevent["specversion"], "1.0");
                assert_eq!(cloudevent["source"], "io.choria.lifecycle");
                assert_eq!(cloudevent["type"], "io.choria.lifecycle.v1.startup");
                assert_eq!(cloudevent["subject"], "old1.acme.test");
                assert_eq!(cloudevent["datacontenttype"], "application/json");
                assert_eq!(cloudevent["time"], "2018-12-31T12:01:41Z");
                assert_eq!(cloudevent["data"], normalised);
                // Legacy events carry no id: a deterministic one is derived.
                let id = cloudevent["id"].as_str().expect("id").to_string();
                assert_eq!(id.len(), 36);
                let again = stored(&decode(format, &received).expect("decodes"), &received);
                assert_eq!(again["id"], Value::from(id));
            }
        }
    }
}

/// The default format changes nothing but the protocol of a legacy event: every other key keeps its
/// place and its exact value text.
#[test]
fn the_default_upgrades_only_the_legacy_protocol() {
    let received = read("startup-legacy.json");
    let event = decode(OutputFormat::default(), &received).expect("decodes");
    let Payload::Replaced(bytes) = &event.payload else {
        panic!("a legacy event is rewritten")
    };
    let received = String::from_utf8(received).expect("UTF-8");
    assert_eq!(
        String::from_utf8_lossy(bytes),
        received.trim_end().replace(
            "choria:lifecycle:startup:1",
            "io.choria.lifecycle.v1.startup"
        )
    );
}

#[test]
fn bad_fixtures_yield_typed_errors() {
    for format in FORMATS {
        let error = |name: &str| decode(format, &read(name)).expect_err(name);
        assert!(
            matches!(
                error("bad-no-component.json"),
                DecodeError::InvalidField {
                    field: "component",
                    ..
                }
            ),
            "{format}"
        );
        assert_eq!(
            error("bad-unknown-type.json"),
            DecodeError::UnknownType("exploded".into())
        );
        assert!(
            matches!(
                error("bad-governor-empty.json"),
                DecodeError::InvalidField {
                    field: "governor",
                    ..
                }
            ),
            "{format}"
        );
        assert!(matches!(
            error("bad-not-json.txt"),
            DecodeError::NotJson {
                layer: "payload",
                ..
            }
        ));
        assert!(matches!(
            error("bad-truncated.json"),
            DecodeError::NotJson {
                layer: "payload",
                ..
            }
        ));
        assert_eq!(
            error("bad-wrong-source.json"),
            DecodeError::WrongSource("io.example.other".into())
        );
    }
    assert_eq!(
        fixtures("")
            .iter()
            .filter(|n| n.starts_with("bad-"))
            .count(),
        6
    );
}

#[test]
fn unknown_type_is_accepted_when_allowed() {
    let received = read("bad-unknown-type.json");
    for format in FORMATS {
        let event = LifecycleDecoder::new(true, format)
            .decode(&Input::new(
                "choria.lifecycle.event.startup.server",
                &received,
            ))
            .expect("allowed");
        assert_eq!(event.field("type"), Some("exploded"));
        assert_eq!(event.field("component"), Some("server"));
        assert_eq!(event.sender.as_deref(), Some("x.acme.test"));
        if format == OutputFormat::CloudEvents {
            let cloudevent = stored(&event, &received);
            assert_eq!(cloudevent["type"], "io.choria.lifecycle.v1.exploded");
            assert_eq!(cloudevent["id"], "00000000-0000-0000-0000-000000000001");
        }
    }
}

#[test]
fn kind_and_tokens() {
    let decoder = LifecycleDecoder::default();
    assert_eq!(decoder.kind(), "choria_lifecycle");
    for token in ["type", "component", "identity", "sender"] {
        assert!(decoder.accepts_token(token), "{token}");
    }
    assert!(!decoder.accepts_token("agent"));
    assert!(!decoder.accepts_token("token.1"));
}
