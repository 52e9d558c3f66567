//! Decoder for Choria lifecycle events (`choria_lifecycle` adapter kind).
//!
//! Choria servers and tools announce `startup`, `shutdown`, `alive`, `provisioned`, `governor` and
//! `upgraded` events on core NATS. Fleets in the wild send them in three shapes, depending on the
//! Choria version and its configuration:
//!
//! * **Choria format**: a JSON object whose `protocol` is `io.choria.lifecycle.v1.<type>`;
//! * **CloudEvents 1.0** (structured JSON mode) whose `source` is `io.choria.lifecycle` and whose
//!   `data` is the Choria-format event;
//! * **legacy**: like the Choria format, but with `protocol` = `choria:lifecycle:<type>:1`.
//!
//! Whatever the shape, the decoder validates the *Choria event* (the object itself, or the
//! CloudEvent's `data`) and takes the template fields from it, so one adapter config works for a
//! fleet in the middle of a migration. [`OutputFormat`] then chooses what is stored: the bytes as
//! received with legacy events upgraded to the current protocol (the default: what go-choria's
//! `lifecycle.NewFromJSON` parses, at no cost for the events that are current already), the bytes
//! exactly as received, always the Choria event, or always a CloudEvent.
//!
//! The decoder never looks at the clock or generates random ids: when a CloudEvent has to be built
//! for an event without an `id` (legacy events have none), its id is derived from the event's
//! content, so every ferry instance that sees the event stores byte-identical output.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use ferry_adapter::json::Entries;
use ferry_adapter::{truncate, DecodeError, DecodedEvent, Decoder, Input, Payload};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The `protocol` prefix of the current Choria format; the event type follows it.
const PROTOCOL_PREFIX: &str = "io.choria.lifecycle.v1.";
/// The `protocol` prefix of the legacy format (`choria:lifecycle:<type>:1`).
const LEGACY_PREFIX: &str = "choria:lifecycle:";
/// The `protocol` suffix of the legacy format.
const LEGACY_SUFFIX: &str = ":1";
/// The CloudEvent `source` Choria uses for lifecycle events; other sources are not ours.
const CLOUDEVENT_SOURCE: &str = "io.choria.lifecycle";
/// The only CloudEvents spec version Choria emits.
const CLOUDEVENT_SPEC_VERSION: &str = "1.0";

/// The event types Choria defines. Anything else is rejected unless
/// [`LifecycleDecoder::allow_unknown_types`] is set, so a typo or a foreign producer does not
/// silently create new output subjects.
pub const KNOWN_TYPES: [&str; 6] = [
    "startup",
    "shutdown",
    "alive",
    "provisioned",
    "governor",
    "upgraded",
];

/// What the adapter stores for each event (`format:` in the adapter config).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
pub enum OutputFormat {
    /// Store the received bytes unchanged, except that a legacy `choria:lifecycle:<type>:1`
    /// protocol is rewritten to `io.choria.lifecycle.v1.<type>` (`upgrade_legacy`). The default:
    /// go-choria's `lifecycle.NewFromJSON` parses Choria-format events and Choria's CloudEvents
    /// but refuses the legacy protocol, so this stores only what current consumers read, and
    /// re-encodes nothing but legacy events (in a CloudEvent, only its `data` changes).
    #[default]
    #[serde(rename = "upgrade_legacy")]
    UpgradeLegacy,
    /// Store the received bytes unchanged (`as_received`): no copy, no re-encoding, and consumers
    /// see exactly what the fleet sent, legacy events included (which go-choria does not parse).
    #[serde(rename = "as_received")]
    AsReceived,
    /// Store the Choria-format event (`choria`): the `data` of a CloudEvent, legacy events with
    /// their protocol rewritten to `io.choria.lifecycle.v1.<type>`.
    #[serde(rename = "choria")]
    Choria,
    /// Store a CloudEvent 1.0 (`cloudevents`), shaped like the ones Choria itself emits (a
    /// received CloudEvent is kept, its `data` upgraded if it is a legacy event).
    #[serde(rename = "cloudevents")]
    CloudEvents,
}

impl OutputFormat {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::UpgradeLegacy => "upgrade_legacy",
            OutputFormat::AsReceived => "as_received",
            OutputFormat::Choria => "choria",
            OutputFormat::CloudEvents => "cloudevents",
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OutputFormat {
    type Err = String;

    /// Parses the config name (`upgrade_legacy`, `as_received`, `choria`, `cloudevents`).
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "upgrade_legacy" => Ok(OutputFormat::UpgradeLegacy),
            "as_received" => Ok(OutputFormat::AsReceived),
            "choria" => Ok(OutputFormat::Choria),
            "cloudevents" => Ok(OutputFormat::CloudEvents),
            other => Err(format!(
                "unknown lifecycle format {other:?} (expected upgrade_legacy, as_received, choria or cloudevents)"
            )),
        }
    }
}

/// The `choria_lifecycle` decoder.
///
/// Template fields: `type`, `component`, `identity` and `sender` (= identity, since the node that
/// had the lifecycle event is the one that reports it). The sender is the identity too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LifecycleDecoder {
    /// Accept event types other than [`KNOWN_TYPES`] (newer Choria versions, custom producers).
    pub allow_unknown_types: bool,
    /// What to store.
    pub format: OutputFormat,
}

impl LifecycleDecoder {
    /// A decoder with the given settings.
    pub fn new(allow_unknown_types: bool, format: OutputFormat) -> Self {
        LifecycleDecoder {
            allow_unknown_types,
            format,
        }
    }
}

impl Decoder for LifecycleDecoder {
    fn kind(&self) -> &'static str {
        "choria_lifecycle"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["type", "component", "identity", "sender"]
    }

    fn decode(&self, input: &Input<'_>) -> Result<DecodedEvent, DecodeError> {
        let text = payload_text(input.payload)?;
        let top: Entries<'_> =
            serde_json::from_str(text).map_err(|error| DecodeError::not_json("payload", error))?;

        // A CloudEvent is recognised by `specversion`, which the Choria format never has.
        let cloudevent = top.get("specversion").is_some();
        let inner: Entries<'_>;
        let (event_text, event) = if cloudevent {
            let data = unwrap_cloudevent(&top)?;
            inner = serde_json::from_str(data).map_err(|error| invalid("data", error))?;
            (data, &inner)
        } else {
            (trim_json_whitespace(text), &top)
        };

        let parsed = validate(event, self.allow_unknown_types)?;

        // The normalised Choria event: what `format: choria` stores and what filters look at.
        let normalised: Cow<'_, str> = if parsed.legacy {
            Cow::Owned(rewrite_protocol(event, &parsed.protocol()))
        } else {
            Cow::Borrowed(event_text)
        };
        // The received bytes are the Choria event exactly when they are neither a CloudEvent nor
        // a legacy event that needed rewriting.
        let received_is_choria = !cloudevent && !parsed.legacy;

        let decoded = match self.format {
            OutputFormat::AsReceived => DecodedEvent::unchanged(),
            // Current events, Choria format or CloudEvent, are kept byte for byte.
            OutputFormat::UpgradeLegacy if !parsed.legacy => DecodedEvent::unchanged(),
            OutputFormat::Choria if received_is_choria => DecodedEvent::unchanged(),
            OutputFormat::CloudEvents if cloudevent && !parsed.legacy => DecodedEvent::unchanged(),
            // A CloudEvent around a legacy event keeps its envelope; only its `data` is upgraded,
            // since go-choria parses a CloudEvent's data like any other event.
            OutputFormat::UpgradeLegacy | OutputFormat::CloudEvents if cloudevent => {
                DecodedEvent::replaced(replace_value(&top, "data", &normalised).into_bytes())
            }
            OutputFormat::Choria | OutputFormat::UpgradeLegacy => {
                DecodedEvent::replaced(normalised.as_bytes().to_vec())
            }
            OutputFormat::CloudEvents => {
                DecodedEvent::replaced(to_cloudevent(event, &parsed, &normalised)?.into_bytes())
            }
        };
        // Field filters must see the Choria event whatever is stored, so that `component: server`
        // matches a CloudEvent as well as a Choria-format event.
        let stored_is_choria = match decoded.payload {
            Payload::Unchanged => received_is_choria,
            Payload::Replaced(_) => match self.format {
                OutputFormat::Choria => true,
                OutputFormat::UpgradeLegacy => !cloudevent,
                OutputFormat::AsReceived | OutputFormat::CloudEvents => false,
            },
        };
        let decoded = if stored_is_choria {
            decoded
        } else {
            decoded.with_filter_document(normalised.as_bytes().to_vec())
        };

        Ok(decoded
            .with_sender(parsed.identity.clone())
            .with_field("type", parsed.kind.clone())
            .with_field("component", parsed.component)
            .with_field("sender", parsed.identity.clone())
            .with_field("identity", parsed.identity))
    }
}

/// The payload as text; empty (or blank) payloads are [`DecodeError::Empty`] rather than a JSON
/// error, because an empty message is a distinct, common mistake (a bare `nats pub`).
fn payload_text(payload: &[u8]) -> Result<&str, DecodeError> {
    if payload
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        return Err(DecodeError::Empty);
    }
    std::str::from_utf8(payload).map_err(|error| DecodeError::not_json("payload", error))
}

/// `text` without the whitespace JSON allows around a value.
fn trim_json_whitespace(text: &str) -> &str {
    text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
}

/// Checks a CloudEvent envelope and returns the raw text of its `data` (the Choria event).
fn unwrap_cloudevent<'a>(top: &Entries<'a>) -> Result<&'a str, DecodeError> {
    let spec = top.get("specversion").map(RawValue::get).unwrap_or("");
    match serde_json::from_str::<String>(spec) {
        Ok(version) if version == CLOUDEVENT_SPEC_VERSION => {}
        Ok(version) => return Err(DecodeError::unknown_protocol("cloudevent", &version)),
        Err(_) => return Err(DecodeError::unknown_protocol("cloudevent", spec)),
    }
    let source = match top.get("source") {
        Some(raw) => {
            serde_json::from_str::<String>(raw.get()).unwrap_or_else(|_| truncate(raw.get(), 128))
        }
        None => String::new(),
    };
    if source != CLOUDEVENT_SOURCE {
        return Err(DecodeError::WrongSource(truncate(&source, 128)));
    }
    match top.get("data") {
        Some(raw) if raw.get().starts_with('{') => Ok(raw.get()),
        Some(_) => Err(DecodeError::InvalidField {
            field: "data",
            detail: "the CloudEvent's data is not a JSON object".into(),
        }),
        None => Err(DecodeError::InvalidField {
            field: "data",
            detail: "the CloudEvent has no data".into(),
        }),
    }
}

/// The validated content of a Choria event.
struct Parsed {
    /// The event type (`startup`, ...).
    kind: String,
    /// Whether the event used the legacy `choria:lifecycle:<type>:1` protocol.
    legacy: bool,
    identity: String,
    component: String,
}

impl Parsed {
    /// The current-format protocol for this event's type.
    fn protocol(&self) -> String {
        format!("{PROTOCOL_PREFIX}{}", self.kind)
    }
}

/// Checks the Choria event's protocol, type and required fields.
fn validate(event: &Entries<'_>, allow_unknown_types: bool) -> Result<Parsed, DecodeError> {
    let protocol = match event.get("protocol") {
        Some(raw) => serde_json::from_str::<String>(raw.get())
            .map_err(|_| DecodeError::unknown_protocol("event", raw.get()))?,
        None => String::new(),
    };
    let (kind, legacy) = if let Some(kind) = protocol.strip_prefix(PROTOCOL_PREFIX) {
        (kind, false)
    } else if let Some(kind) = protocol
        .strip_prefix(LEGACY_PREFIX)
        .and_then(|rest| rest.strip_suffix(LEGACY_SUFFIX))
    {
        (kind, true)
    } else {
        return Err(DecodeError::unknown_protocol("event", &protocol));
    };
    if kind.is_empty() {
        return Err(DecodeError::unknown_protocol("event", &protocol));
    }
    if !allow_unknown_types && !KNOWN_TYPES.contains(&kind) {
        return Err(DecodeError::UnknownType(truncate(kind, 128)));
    }
    let identity = required_string(event, "identity")?;
    let component = required_string(event, "component")?;
    if kind == "governor" {
        // A governor event without the governor's name cannot be routed or acted upon.
        required_string(event, "governor")?;
    }
    Ok(Parsed {
        kind: kind.to_string(),
        legacy,
        identity,
        component,
    })
}

/// A field that must be a non-empty JSON string.
fn required_string(event: &Entries<'_>, field: &'static str) -> Result<String, DecodeError> {
    let raw = event.get(field).ok_or_else(|| DecodeError::InvalidField {
        field,
        detail: "missing".into(),
    })?;
    let value = serde_json::from_str::<String>(raw.get()).map_err(|error| invalid(field, error))?;
    if value.is_empty() {
        return Err(DecodeError::InvalidField {
            field,
            detail: "empty".into(),
        });
    }
    Ok(value)
}

fn invalid(field: &'static str, error: impl fmt::Display) -> DecodeError {
    DecodeError::InvalidField {
        field,
        detail: error.to_string(),
    }
}

/// Re-encodes a legacy event with the current protocol, keeping every other key, its order and its
/// exact value text, so nothing but the protocol changes.
fn rewrite_protocol(event: &Entries<'_>, protocol: &str) -> String {
    replace_value(event, "protocol", &json_string(protocol))
}

/// Re-encodes `object` with the value of `key` replaced by the JSON text `value`, keeping every
/// other key, its order and its exact value text.
fn replace_value(object: &Entries<'_>, key: &str, value: &str) -> String {
    let mut out = String::with_capacity(
        object
            .0
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum::<usize>()
            + value.len()
            + 2,
    );
    out.push('{');
    for (index, (name, raw)) in object.0.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(&json_string(name));
        out.push(':');
        out.push_str(if name == key { value } else { raw.get() });
    }
    out.push('}');
    out
}

/// Wraps the normalised Choria event in a CloudEvent 1.0 the way Choria does (same keys, same
/// order), so consumers of Choria's own CloudEvents read ferry's output unchanged.
fn to_cloudevent(
    event: &Entries<'_>,
    parsed: &Parsed,
    normalised: &str,
) -> Result<String, DecodeError> {
    let timestamp = match event.get("timestamp") {
        Some(raw) => Some(
            serde_json::from_str::<i64>(raw.get()).map_err(|error| invalid("timestamp", error))?,
        ),
        None => None,
    };
    let id = match event
        .get("id")
        .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
    {
        Some(id) if !id.is_empty() => id,
        _ => derived_id(parsed, timestamp),
    };
    let time = match timestamp {
        Some(seconds) => format!(",\"time\":{}", json_string(&rfc3339(seconds)?)),
        // The CloudEvents `time` attribute is optional: better omit it than invent one.
        None => String::new(),
    };
    Ok(format!(
        "{{\"specversion\":\"{CLOUDEVENT_SPEC_VERSION}\",\"id\":{},\"source\":\"{CLOUDEVENT_SOURCE}\",\"type\":{},\"subject\":{},\"datacontenttype\":\"application/json\"{time},\"data\":{normalised}}}",
        json_string(&id),
        json_string(&parsed.protocol()),
        json_string(&parsed.identity),
    ))
}

/// Unix seconds as RFC 3339 UTC (`2026-01-01T00:00:00Z`), as Choria's CloudEvents carry them.
fn rfc3339(seconds: i64) -> Result<String, DecodeError> {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .map_err(|error| invalid("timestamp", error))?
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|error| invalid("timestamp", error))
}

/// A CloudEvent id for an event that has none. CloudEvents require one, and it must be the same
/// for the same event on every ferry instance (no clock, no randomness): it is a UUID-shaped
/// (version 8, "custom") rendering of a 128-bit FNV-1a hash over identity, component, type and
/// timestamp, which together identify a lifecycle event.
fn derived_id(parsed: &Parsed, timestamp: Option<i64>) -> String {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013b;
    let timestamp = timestamp.map(|t| t.to_string()).unwrap_or_default();
    let mut hash = OFFSET;
    for part in [
        &parsed.identity,
        &parsed.component,
        &parsed.kind,
        &timestamp,
    ] {
        for byte in part.bytes().chain(std::iter::once(0)) {
            hash ^= u128::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    let mut bytes = hash.to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 9562 variant
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `value` as a JSON string literal.
fn json_string(value: &str) -> String {
    // Serialising a `str` cannot fail; the fallback keeps this function total anyway.
    serde_json::to_string(value).unwrap_or_else(|_| String::from("\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(decoder: LifecycleDecoder, payload: &str) -> Result<DecodedEvent, DecodeError> {
        decoder.decode(&Input::new("choria.lifecycle.event", payload.as_bytes()))
    }

    #[test]
    fn derived_ids_are_stable_uuid_shaped_and_distinct() {
        let parsed = Parsed {
            kind: "startup".into(),
            legacy: true,
            identity: "n1".into(),
            component: "server".into(),
        };
        let id = derived_id(&parsed, Some(1));
        assert_eq!(id, derived_id(&parsed, Some(1)));
        assert_ne!(id, derived_id(&parsed, Some(2)));
        assert_ne!(id, derived_id(&parsed, None));
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "8");
    }

    #[test]
    fn blank_payload_is_empty() {
        let decoder = LifecycleDecoder::default();
        assert_eq!(decode(decoder, ""), Err(DecodeError::Empty));
        assert_eq!(decode(decoder, " \n"), Err(DecodeError::Empty));
    }

    #[test]
    fn non_object_json_is_not_json() {
        let error = decode(LifecycleDecoder::default(), "[1,2]").unwrap_err();
        assert_eq!(error.reason(), "not_json");
    }

    #[test]
    fn missing_protocol_is_unknown_protocol() {
        let error = decode(
            LifecycleDecoder::default(),
            r#"{"identity":"a","component":"b"}"#,
        )
        .unwrap_err();
        assert_eq!(error.reason(), "unknown_protocol");
    }

    #[test]
    fn wrong_spec_version_is_unknown_protocol() {
        let error = decode(
            LifecycleDecoder::default(),
            r#"{"specversion":"0.3","source":"io.choria.lifecycle","data":{}}"#,
        )
        .unwrap_err();
        assert!(matches!(
            error,
            DecodeError::UnknownProtocol {
                layer: "cloudevent",
                ..
            }
        ));
    }

    #[test]
    fn non_string_identity_is_invalid() {
        let error = decode(
            LifecycleDecoder::default(),
            r#"{"protocol":"io.choria.lifecycle.v1.alive","identity":1,"component":"server"}"#,
        )
        .unwrap_err();
        assert!(matches!(
            error,
            DecodeError::InvalidField {
                field: "identity",
                ..
            }
        ));
    }

    #[test]
    fn legacy_without_id_gets_a_derived_cloudevent_id() {
        let event = decode(
            LifecycleDecoder::new(false, OutputFormat::CloudEvents),
            r#"{"protocol":"choria:lifecycle:alive:1","identity":"n1","component":"server","timestamp":0}"#,
        )
        .expect("decodes");
        let Payload::Replaced(bytes) = event.payload else {
            panic!("expected a CloudEvent")
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(value["time"], "1970-01-01T00:00:00Z");
        assert_eq!(value["type"], "io.choria.lifecycle.v1.alive");
        assert_eq!(value["data"]["protocol"], "io.choria.lifecycle.v1.alive");
        assert_eq!(value["id"].as_str().map(str::len), Some(36));
    }

    #[test]
    fn cloudevent_output_without_timestamp_omits_time() {
        let event = decode(
            LifecycleDecoder::new(false, OutputFormat::CloudEvents),
            r#"{"protocol":"io.choria.lifecycle.v1.alive","id":"x","identity":"n1","component":"server"}"#,
        )
        .expect("decodes");
        let Payload::Replaced(bytes) = event.payload else {
            panic!("expected a CloudEvent")
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert!(value.get("time").is_none());
        assert_eq!(value["id"], "x");
    }

    #[test]
    fn out_of_range_timestamp_fails_only_when_needed() {
        let payload = r#"{"protocol":"io.choria.lifecycle.v1.alive","identity":"n1","component":"c","timestamp":99999999999999}"#;
        assert!(decode(LifecycleDecoder::default(), payload).is_ok());
        let error = decode(
            LifecycleDecoder::new(false, OutputFormat::CloudEvents),
            payload,
        )
        .unwrap_err();
        assert!(matches!(
            error,
            DecodeError::InvalidField {
                field: "timestamp",
                ..
            }
        ));
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let payload = format!(
            r#"{{"protocol":"io.choria.lifecycle.v1.alive","x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        // serde_json skips raw values without recursing, so this parses and fails on the
        // missing identity instead of exhausting the stack.
        assert!(decode(LifecycleDecoder::default(), &payload).is_err());
    }

    #[test]
    fn the_default_format_upgrades_legacy_events() {
        assert_eq!(OutputFormat::default(), OutputFormat::UpgradeLegacy);
        assert_eq!(
            LifecycleDecoder::default().format,
            OutputFormat::UpgradeLegacy
        );
    }

    #[test]
    fn a_legacy_event_inside_a_cloudevent_is_upgraded_in_place() {
        let received = r#"{"specversion":"1.0","id":"x","source":"io.choria.lifecycle","type":"t","data":{"protocol":"choria:lifecycle:alive:1","identity":"n1","component":"server","timestamp":1}}"#;
        let upgraded = r#"{"specversion":"1.0","id":"x","source":"io.choria.lifecycle","type":"t","data":{"protocol":"io.choria.lifecycle.v1.alive","identity":"n1","component":"server","timestamp":1}}"#;
        for format in [OutputFormat::UpgradeLegacy, OutputFormat::CloudEvents] {
            let event = decode(LifecycleDecoder::new(false, format), received).expect("decodes");
            assert_eq!(
                event.payload,
                Payload::Replaced(upgraded.into()),
                "{format}"
            );
            let filter = event.filter_document.expect("the Choria event for filters");
            assert!(upgraded.contains(std::str::from_utf8(&filter).expect("UTF-8")));
        }
        let event = decode(
            LifecycleDecoder::new(false, OutputFormat::AsReceived),
            received,
        )
        .expect("decodes");
        assert_eq!(event.payload, Payload::Unchanged);
    }

    #[test]
    fn output_format_names_round_trip() {
        for format in [
            OutputFormat::UpgradeLegacy,
            OutputFormat::AsReceived,
            OutputFormat::Choria,
            OutputFormat::CloudEvents,
        ] {
            assert_eq!(format.as_str().parse::<OutputFormat>(), Ok(format));
        }
        assert!("json".parse::<OutputFormat>().is_err());
    }
}
