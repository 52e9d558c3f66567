//! A message's sender key (a JSON field, a header or a subject token) and, when configured, its
//! force flag (a JSON boolean): what sampling reads from a message.

use std::borrow::Cow;

use async_nats::HeaderMap;

use crate::config::replicator::{SampleConfig, SampleKey};
use crate::fields::{FieldPaths, Scalar, ScalarSink};

/// Where the sender key is.
enum KeySource {
    /// In the payload: [`KeyReader::fields`] has its path.
    Field,
    Header(String),
    SubjectToken(i64),
}

/// Reads the sender key and the force flag of messages, as configured.
pub(super) struct KeyReader {
    key: KeySource,
    /// The key's path alone (`Sampler::key`).
    key_only: Fields,
    /// The key's and the force field's paths, read in one pass (`Sampler::decide`).
    fields: Fields,
    /// The force field's path alone, for a key outside the payload.
    force_only: Fields,
}

impl KeyReader {
    pub(super) fn new(sample: &SampleConfig) -> KeyReader {
        let (key, key_path) = match &sample.key {
            SampleKey::Field(path) => (KeySource::Field, Some(path.as_str())),
            SampleKey::Header(name) => (KeySource::Header(name.clone()), None),
            SampleKey::SubjectToken(n) => (KeySource::SubjectToken(*n), None),
        };
        let force_path = sample.force_field.as_deref();
        KeyReader {
            key,
            key_only: Fields::new(key_path, None),
            fields: Fields::new(key_path, force_path),
            force_only: Fields::new(None, force_path),
        }
    }

    /// Whether the key is in the payload (so the force flag can be read in the same pass).
    pub(super) fn in_payload(&self) -> bool {
        matches!(self.key, KeySource::Field)
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
            KeySource::Field if with_force => return self.fields.scan(payload),
            KeySource::Field => return self.key_only.scan(payload),
            KeySource::Header(name) => crate::jetstream::wire_headers::lookup(headers, name),
            KeySource::SubjectToken(n) => subject_token(subject, *n),
        };
        Found {
            key: key.filter(|key| !key.is_empty()).map(Cow::Borrowed),
            force: None,
        }
    }

    /// Whether the payload's force field is `true` (read on its own, when the key is elsewhere).
    pub(super) fn forced(&self, payload: &[u8]) -> bool {
        self.force_only.scan(payload).force == Some(true)
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

/// The JSON paths of the key and the force field, and their slots among them.
struct Fields {
    paths: FieldPaths,
    key: Option<usize>,
    force: Option<usize>,
}

impl Fields {
    fn new(key: Option<&str>, force: Option<&str>) -> Fields {
        let mut paths = FieldPaths::new();
        let key = key.map(|path| paths.add(path));
        let force = force.map(|path| paths.add(path));
        Fields { paths, key, force }
    }

    /// Walks `document` once, reading the value at the key's path (a string, or a number or
    /// boolean as its JSON text) and the boolean at the force field's, skipping everything else
    /// without building a tree. The first of duplicate keys counts. Stops as soon as both are
    /// found; a document that is not JSON yields what was found before the error (usually
    /// nothing).
    fn scan<'de>(&self, document: &'de [u8]) -> Found<'de> {
        let mut scan = Scan {
            found: Found::default(),
            fields: self,
        };
        self.paths.scan(document, &mut scan);
        let mut found = scan.found;
        if found.key.as_deref() == Some("") {
            found.key = None;
        }
        found
    }
}

struct Scan<'de, 'f> {
    found: Found<'de>,
    fields: &'f Fields,
}

impl<'de> ScalarSink<'de> for Scan<'de, '_> {
    fn scalar(&mut self, slot: usize, scalar: Scalar<'de, '_>) {
        if self.fields.force == Some(slot) && self.found.force.is_none() {
            if let Scalar::Bool(flag) = scalar {
                self.found.force = Some(flag);
            }
        }
        if self.fields.key == Some(slot) && self.found.key.is_none() {
            self.found.key = Some(scalar.text());
        }
    }

    fn done(&self) -> bool {
        (self.fields.key.is_none() || self.found.key.is_some())
            && (self.fields.force.is_none() || self.found.force.is_some())
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
