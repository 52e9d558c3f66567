//! A message's sender key (a JSON field, a header or a subject token) and, when configured, its
//! force flag (a JSON boolean): what sampling reads from a message.

use std::borrow::Cow;
use std::fmt;

use async_nats::HeaderMap;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::config::replicator::{SampleConfig, SampleKey};

/// Where the sender key is.
enum KeySource {
    Field(Vec<String>),
    Header(String),
    SubjectToken(i64),
}

/// Reads the sender key and the force flag of messages, as configured.
pub(super) struct KeyReader {
    key: KeySource,
    force: Option<Vec<String>>,
}

impl KeyReader {
    pub(super) fn new(sample: &SampleConfig) -> KeyReader {
        let split = |path: &str| path.split('.').map(str::to_string).collect::<Vec<_>>();
        let key = match &sample.key {
            SampleKey::Field(path) => KeySource::Field(split(path)),
            SampleKey::Header(name) => KeySource::Header(name.clone()),
            SampleKey::SubjectToken(n) => KeySource::SubjectToken(*n),
        };
        KeyReader {
            key,
            force: sample.force_field.as_deref().map(split),
        }
    }

    /// Whether the key is in the payload (so the force flag can be read in the same pass).
    pub(super) fn in_payload(&self) -> bool {
        matches!(self.key, KeySource::Field(_))
    }

    /// Finds the key; with `with_force` and a key in the payload, the force flag in the same pass.
    pub(super) fn read<'a>(
        &self,
        subject: &'a str,
        headers: Option<&'a HeaderMap>,
        payload: &'a [u8],
        with_force: bool,
    ) -> Found<'a> {
        let key = match &self.key {
            KeySource::Field(path) => {
                let force = self.force.as_deref().filter(|_| with_force);
                return scan_json(payload, Some(path), force);
            }
            KeySource::Header(name) => crate::wire_headers::lookup(headers, name),
            KeySource::SubjectToken(n) => subject_token(subject, *n),
        };
        Found {
            key: key.filter(|key| !key.is_empty()).map(Cow::Borrowed),
            force: None,
        }
    }

    /// Whether the payload's force field is `true` (read on its own, when the key is elsewhere).
    pub(super) fn forced(&self, payload: &[u8]) -> bool {
        scan_json(payload, None, self.force.as_deref()).force == Some(true)
    }
}

/// The Nth subject token (1-based), or the whole subject for -1.
fn subject_token(subject: &str, n: i64) -> Option<&str> {
    match n {
        -1 => Some(subject),
        n if n >= 1 => subject.split('.').nth(usize::try_from(n - 1).ok()?),
        _ => None,
    }
}

/// What one pass over a JSON payload found.
#[derive(Debug, Default)]
pub(super) struct Found<'de> {
    pub(super) key: Option<Cow<'de, str>>,
    /// The force field's boolean, if it is one.
    pub(super) force: Option<bool>,
}

/// Walks `document` once, reading the value at `key_path` (a string, or a number or boolean as its
/// JSON text) and the boolean at `force_path`, skipping everything else without building a tree.
/// Stops as soon as both are found; a document that is not JSON yields what was found before the
/// error (usually nothing).
fn scan_json<'de>(
    document: &'de [u8],
    key_path: Option<&[String]>,
    force_path: Option<&[String]>,
) -> Found<'de> {
    let mut state = ScanState {
        found: Found::default(),
        key_path,
        force_path,
    };
    if key_path.is_none() && force_path.is_none() {
        return state.found;
    }
    let mut deserializer = serde_json::Deserializer::from_slice(document);
    let _ = Walk {
        state: &mut state,
        depth: 0,
        key_on_path: key_path.is_some(),
        force_on_path: force_path.is_some(),
    }
    .deserialize(&mut deserializer);
    if let Some(key) = &state.found.key {
        if key.is_empty() {
            state.found.key = None;
        }
    }
    state.found
}

struct ScanState<'de, 'p> {
    found: Found<'de>,
    key_path: Option<&'p [String]>,
    force_path: Option<&'p [String]>,
}

impl ScanState<'_, '_> {
    fn done(&self) -> bool {
        (self.key_path.is_none() || self.found.key.is_some())
            && (self.force_path.is_none() || self.found.force.is_some())
    }
}

/// The error that ends a scan early once everything is found.
const SCAN_DONE: &str = "scan complete";

/// Visits one JSON value at `depth`; the flags say which paths lead through it.
struct Walk<'s, 'de, 'p> {
    state: &'s mut ScanState<'de, 'p>,
    depth: usize,
    key_on_path: bool,
    force_on_path: bool,
}

impl Walk<'_, '_, '_> {
    fn key_ends_here(&self) -> bool {
        self.key_on_path && self.state.key_path.is_some_and(|p| p.len() == self.depth)
    }

    fn force_ends_here(&self) -> bool {
        self.force_on_path && self.state.force_path.is_some_and(|p| p.len() == self.depth)
    }

    /// Which paths continue into the child `name`.
    fn child_flags(&self, name: &str) -> (bool, bool) {
        let continues = |on: bool, path: Option<&[String]>| {
            on && path.is_some_and(|p| p.len() > self.depth && p[self.depth] == name)
        };
        (
            continues(self.key_on_path, self.state.key_path),
            continues(self.force_on_path, self.state.force_path),
        )
    }

    /// Takes a non-string value (or a string the parser had to unescape) as the key.
    fn key_text<E: serde::de::Error>(self, owned: impl FnOnce() -> String) -> Result<(), E> {
        if self.key_ends_here() && self.state.found.key.is_none() {
            self.state.found.key = Some(Cow::Owned(owned()));
        }
        self.finish()
    }

    fn finish<E: serde::de::Error>(self) -> Result<(), E> {
        if self.state.done() {
            return Err(E::custom(SCAN_DONE));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_, 'de, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_, 'de, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(name) = map.next_key::<Cow<'de, str>>()? {
            let (key_on_path, force_on_path) = self.child_flags(&name);
            if key_on_path || force_on_path {
                map.next_value_seed(Walk {
                    state: &mut *self.state,
                    depth: self.depth + 1,
                    key_on_path,
                    force_on_path,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, value: &'de str) -> Result<(), E> {
        if self.key_ends_here() && self.state.found.key.is_none() {
            self.state.found.key = Some(Cow::Borrowed(value));
        }
        self.finish()
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<(), E> {
        self.key_text(|| value.to_string())
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<(), E> {
        if self.force_ends_here() && self.state.found.force.is_none() {
            self.state.found.force = Some(value);
        }
        let text = if value { "true" } else { "false" };
        self.key_text(|| text.to_string())
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<(), E> {
        self.key_text(|| value.to_string())
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<(), E> {
        self.key_text(|| value.to_string())
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<(), E> {
        self.key_text(|| value.to_string())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{CopyReason, Decision, Sampler};
    use super::*;

    #[test]
    fn keys_from_fields_headers_and_subjects() {
        let (_dir, store) = store();
        let open = |key| Sampler::open(&store, "k", &sample(key, HOUR), None).unwrap();
        let nested = open(SampleKey::Field("envelope.sender".into()));
        let body =
            br#"{"a":[1,{"sender":"no"}],"envelope":{"x":{"sender":"no"},"sender":"n\u00e9.1"}}"#;
        assert_eq!(nested.key("s", None, body).as_deref(), Some("n\u{e9}.1"));
        assert_eq!(nested.key("s", None, br#"{"envelope":"flat"}"#), None);
        assert_eq!(nested.key("s", None, b"not json"), None);
        assert_eq!(
            nested.key("s", None, br#"{"envelope":{"sender":""}}"#),
            None
        );
        let number = open(field_key());
        assert_eq!(
            number.key("s", None, br#"{"sender":42}"#).as_deref(),
            Some("42")
        );
        assert_eq!(number.key("s", None, br#"{"sender":null}"#), None);
        // The first of duplicate keys counts; trailing garbage after the key does not matter.
        assert_eq!(
            number
                .key("s", None, br#"{"sender":"a","sender":"b"} x"#)
                .as_deref(),
            Some("a")
        );

        let header = open(SampleKey::Header("Ferry-Sender".into()));
        let mut headers = HeaderMap::new();
        headers.insert("Ferry-Sender", "node1");
        assert_eq!(
            header.key("s", Some(&headers), b"").as_deref(),
            Some("node1")
        );
        assert_eq!(header.key("s", None, b""), None);

        let token = open(SampleKey::SubjectToken(2));
        assert_eq!(token.key("a.b.c", None, b"").as_deref(), Some("b"));
        assert_eq!(token.key("a", None, b""), None);
        let whole = open(SampleKey::SubjectToken(-1));
        assert_eq!(whole.key("a.b.c", None, b"").as_deref(), Some("a.b.c"));
    }

    #[test]
    fn messages_without_a_key_are_always_copied() {
        let (_dir, store) = store();
        let sampler = Sampler::open(&store, "r", &sample(field_key(), HOUR), None).unwrap();
        for now in 0..5 {
            assert_eq!(
                decide(&sampler, br#"{"other":1}"#, 1000 + now).0,
                Decision::Copy(CopyReason::NoKey)
            );
            assert_eq!(
                decide(&sampler, b"\xff garbage", 1000 + now).0,
                Decision::Copy(CopyReason::NoKey)
            );
        }
        assert_eq!(sampler.senders(), 0);
    }
}
