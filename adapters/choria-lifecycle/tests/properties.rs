//! Property tests: the decoder never panics, and generated events in every shape round-trip
//! through every output format.

use choria_lifecycle::{LifecycleDecoder, OutputFormat, KNOWN_TYPES};
use ferry_adapter::{DecodedEvent, Decoder, Input, Payload};
// The simulated fleet's time formatter is the reference: it is written independently of the
// decoder, so the test does not just repeat the implementation.
use ferry_sim::Rfc3339;
use proptest::prelude::*;
use serde_json::{json, Value};

fn format_strategy() -> impl Strategy<Value = OutputFormat> {
    prop_oneof![
        Just(OutputFormat::UpgradeLegacy),
        Just(OutputFormat::AsReceived),
        Just(OutputFormat::Choria),
        Just(OutputFormat::CloudEvents),
    ]
}

/// How a generated event is put on the wire.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Choria,
    Legacy,
    CloudEvent,
    /// A CloudEvent whose `data` is a legacy event (not something Choria sends, but a shape
    /// other producers can).
    LegacyCloudEvent,
}

#[derive(Debug, Clone)]
struct Generated {
    kind: String,
    identity: String,
    component: String,
    timestamp: i64,
    id: Option<String>,
    shape: Shape,
}

fn generated() -> impl Strategy<Value = Generated> {
    (
        proptest::sample::select(KNOWN_TYPES.to_vec()),
        "\\PC{1,40}",
        "\\PC{1,20}",
        // Up to the end of year 9999, the RFC 3339 range.
        0i64..=253_402_300_799,
        proptest::option::of("[0-9a-f-]{1,36}"),
        prop_oneof![
            Just(Shape::Choria),
            Just(Shape::Legacy),
            Just(Shape::CloudEvent),
            Just(Shape::LegacyCloudEvent)
        ],
    )
        .prop_map(
            |(kind, identity, component, timestamp, id, shape)| Generated {
                kind: kind.to_string(),
                identity,
                component,
                timestamp,
                id,
                shape,
            },
        )
}

impl Generated {
    /// The event in the current Choria format.
    fn choria(&self) -> Value {
        let mut event = json!({
            "protocol": format!("io.choria.lifecycle.v1.{}", self.kind),
            "identity": self.identity,
            "component": self.component,
            "timestamp": self.timestamp,
            "version": "0.29.4",
        });
        if let Some(id) = &self.id {
            event["id"] = Value::from(id.as_str());
        }
        if self.kind == "governor" {
            event["governor"] = Value::from("FACTS");
            event["sequence"] = Value::from(1);
        }
        event
    }

    /// The event with the legacy protocol.
    fn legacy(&self) -> Value {
        let mut legacy = self.choria();
        legacy["protocol"] = Value::from(format!("choria:lifecycle:{}:1", self.kind));
        legacy
    }

    /// The bytes a fleet would send.
    fn wire(&self) -> Vec<u8> {
        let choria = match self.shape {
            Shape::Choria | Shape::CloudEvent => self.choria(),
            Shape::Legacy | Shape::LegacyCloudEvent => self.legacy(),
        };
        let value = match self.shape {
            Shape::Choria | Shape::Legacy => choria,
            Shape::CloudEvent | Shape::LegacyCloudEvent => json!({
                "specversion": "1.0",
                "id": self.id.clone().unwrap_or_else(|| "some-id".into()),
                "source": "io.choria.lifecycle",
                "type": format!("io.choria.lifecycle.v1.{}", self.kind),
                "subject": self.identity,
                "datacontenttype": "application/json",
                "time": Rfc3339::seconds(self.timestamp).to_string(),
                "data": choria,
            }),
        };
        serde_json::to_vec(&value).expect("serialises")
    }
}

/// Whether go-choria's `lifecycle.NewFromJSON` (lifecycle/lifecycle.go) accepts the envelope of
/// `document`: `EventFormatFromJSON` takes a `protocol` starting with `io.choria.lifecycle` (Choria
/// format) or `specversion` "1.0" with `source` "io.choria.lifecycle" (a CloudEvent, whose `data`
/// is then parsed the same way); `protoStringToTypeString` wants five dot-separated parts. Anything
/// else, the legacy `choria:lifecycle:<type>:1` included, is "unsupported event format".
fn go_choria_parses(document: &Value) -> bool {
    if let Some(protocol) = document["protocol"].as_str() {
        if protocol.starts_with("io.choria.lifecycle") {
            return protocol.split('.').count() == 5;
        }
    }
    document["specversion"] == "1.0"
        && document["source"] == "io.choria.lifecycle"
        && go_choria_parses(&document["data"])
}

fn stored(event: &DecodedEvent, received: &[u8]) -> Value {
    match &event.payload {
        Payload::Unchanged => serde_json::from_slice(received).expect("json"),
        Payload::Replaced(bytes) => serde_json::from_slice(bytes).expect("json"),
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        allow in any::<bool>(),
        format in format_strategy(),
    ) {
        let _ = LifecycleDecoder::new(allow, format).decode(&Input::new("x", &bytes));
    }

    #[test]
    fn damaged_events_never_panic(
        event in generated(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        format in format_strategy(),
    ) {
        let decoder = LifecycleDecoder::new(false, format);
        let wire = event.wire();
        let _ = decoder.decode(&Input::new("x", &wire[..cut.index(wire.len())]));
        let mut flipped = wire.clone();
        let at = flip.index(flipped.len());
        flipped[at] = byte;
        let _ = decoder.decode(&Input::new("x", &flipped));
    }

    #[test]
    fn generated_events_round_trip(event in generated(), format in format_strategy()) {
        let wire = event.wire();
        let decoded = LifecycleDecoder::new(false, format)
            .decode(&Input::new("choria.lifecycle.event", &wire))
            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(decoded.field("type"), Some(event.kind.as_str()));
        prop_assert_eq!(decoded.field("component"), Some(event.component.as_str()));
        prop_assert_eq!(decoded.field("identity"), Some(event.identity.as_str()));
        prop_assert_eq!(decoded.field("sender"), Some(event.identity.as_str()));
        prop_assert_eq!(decoded.sender.as_deref(), Some(event.identity.as_str()));

        let choria = event.choria();
        let filtered = match &decoded.filter_document {
            Some(bytes) => serde_json::from_slice(bytes).expect("json"),
            None => stored(&decoded, &wire),
        };
        prop_assert_eq!(&filtered, &choria);

        let stored = stored(&decoded, &wire);
        let received: Value = serde_json::from_slice(&wire).expect("json");
        // What the fleet sent with only a legacy protocol upgraded (in a CloudEvent: in its data).
        let upgraded = match event.shape {
            Shape::Legacy => choria.clone(),
            Shape::LegacyCloudEvent => {
                let mut cloudevent = received.clone();
                cloudevent["data"] = choria.clone();
                cloudevent
            }
            Shape::Choria | Shape::CloudEvent => received.clone(),
        };
        if format != OutputFormat::AsReceived {
            prop_assert!(go_choria_parses(&stored), "go-choria would refuse {}", stored);
        }
        match format {
            OutputFormat::AsReceived => prop_assert_eq!(&decoded.payload, &Payload::Unchanged),
            OutputFormat::UpgradeLegacy => {
                prop_assert_eq!(&stored, &upgraded);
                if let Shape::Choria | Shape::CloudEvent = event.shape {
                    prop_assert_eq!(&decoded.payload, &Payload::Unchanged);
                }
            }
            OutputFormat::Choria => prop_assert_eq!(&stored, &choria),
            OutputFormat::CloudEvents => {
                if let Shape::CloudEvent | Shape::LegacyCloudEvent = event.shape {
                    prop_assert_eq!(&stored, &upgraded);
                } else {
                    prop_assert_eq!(&stored["data"], &choria);
                    prop_assert_eq!(&stored["subject"], &Value::from(event.identity.as_str()));
                    prop_assert_eq!(&stored["time"], &Value::from(Rfc3339::seconds(event.timestamp).to_string()));
                    prop_assert_eq!(
                        &stored["type"],
                        &Value::from(format!("io.choria.lifecycle.v1.{}", event.kind))
                    );
                    if let Some(id) = &event.id {
                        prop_assert_eq!(&stored["id"], &Value::from(id.as_str()));
                    }
                }
            }
        }
        if decoded.payload == Payload::Unchanged {
            prop_assert_eq!(&stored, &received);
        }
    }
}
