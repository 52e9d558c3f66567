//! The one streaming JSON field extractor, shared by the filters (field predicates, SPEC section
//! 6) and sampling (the sender key and the force field, SPEC section 7).
//!
//! Dot-separated paths (`data.identity`) are merged once into one tree ([`FieldPaths`]), so equal
//! paths share a slot and `data.identity` and `data.type` share the node `data`. A document is then
//! read in one pass of serde_json's streaming parser that visits only the keys on those paths:
//! everything else is validated and skipped without building a JSON tree (the hot path must not
//! allocate a whole document per message). Object keys are looked up in the tree as the parser
//! hands them over, without allocating (unless they contain escapes, which the parser must
//! unescape first). Paths lead through objects only: an array or a scalar on the way ends them.
//! Nesting deeper than serde_json's recursion limit (128) is an error, not a stack overflow.
//!
//! Two ways to take what is found where a path ends:
//! - [`FieldPaths::values`] (the filters): the whole value, materialised as a `serde_json::Value`
//!   there and only there; a path that ends where others continue (`data` and `data.identity`)
//!   fills the deeper ones from that value. Of duplicate keys the last wins, as in serde_json's
//!   own maps. The document must be JSON as a whole, or nothing is found.
//! - [`FieldPaths::scan`] (sampling): strings (borrowed from the document where they hold no
//!   escapes), numbers and booleans, handed to a [`ScalarSink`] in document order, every
//!   occurrence of a duplicate key included (the sink keeps the first). An object where a path
//!   ends is walked on, a null or an array skipped. The scan stops once the sink has what it wants,
//!   so the rest of the document is not read (trailing garbage does not matter), and a malformed
//!   document yields what was found before the error.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize as _;
use serde_json::Value;

/// Field paths merged into one tree; each distinct path has a slot, numbered from 0 as added.
#[derive(Debug, Clone, Default)]
pub struct FieldPaths {
    root: Node,
    slots: usize,
}

/// One level of the merged paths.
#[derive(Debug, Clone, Default)]
struct Node {
    /// Set where a path ends.
    slot: Option<usize>,
    children: BTreeMap<String, Node>,
}

/// A path with an empty key (`""`, `a..b`, `.a`, `a.`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path {0:?} (dot-separated keys)")]
pub struct InvalidPath(pub String);

impl FieldPaths {
    pub fn new() -> FieldPaths {
        FieldPaths::default()
    }

    /// Whether `path` is dot-separated non-empty keys.
    pub fn check(path: &str) -> Result<(), InvalidPath> {
        if path.split('.').any(str::is_empty) {
            return Err(InvalidPath(path.to_string()));
        }
        Ok(())
    }

    /// Adds a dot-separated path and returns its slot (shared by equal paths). The path is taken
    /// as it is: an empty key matches the key `""` (see [`FieldPaths::check`]).
    pub fn add(&mut self, path: &str) -> usize {
        let mut node = &mut self.root;
        for key in path.split('.') {
            node = node.children.entry(key.to_string()).or_default();
        }
        let slot = *node.slot.get_or_insert(self.slots);
        if slot == self.slots {
            self.slots += 1;
        }
        slot
    }

    /// How many distinct paths there are.
    pub fn slots(&self) -> usize {
        self.slots
    }

    pub fn is_empty(&self) -> bool {
        self.slots == 0
    }

    /// The value at every path, by slot (`None`: the path is absent); `None` when the document is
    /// not valid JSON.
    pub fn values(&self, document: &[u8]) -> Option<Vec<Option<Value>>> {
        let mut values = vec![None; self.slots];
        let mut deserializer = serde_json::Deserializer::from_slice(document);
        Walk {
            node: &self.root,
            take: &mut Values(&mut values),
        }
        .deserialize(&mut deserializer)
        .ok()?;
        deserializer.end().ok()?;
        Some(values)
    }

    /// Hands the scalars at the ends of the paths to `sink`, until it is done or the document
    /// ends (or turns out not to be JSON).
    pub fn scan<'de>(&self, document: &'de [u8], sink: &mut impl ScalarSink<'de>) {
        if self.slots == 0 {
            return;
        }
        let mut deserializer = serde_json::Deserializer::from_slice(document);
        let _ = Walk {
            node: &self.root,
            take: &mut Scalars(sink),
        }
        .deserialize(&mut deserializer);
    }
}

/// A scalar found where a path ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'de, 'a> {
    /// A string without escapes, borrowed from the document.
    Str(&'de str),
    /// A string the parser had to unescape, valid only during the call.
    Unescaped(&'a str),
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
}

impl<'de> Scalar<'de, '_> {
    /// A string as it is, a number or boolean as its JSON text.
    pub fn text(&self) -> Cow<'de, str> {
        match *self {
            Scalar::Str(text) => Cow::Borrowed(text),
            Scalar::Unescaped(text) => Cow::Owned(text.to_string()),
            Scalar::Bool(flag) => Cow::Borrowed(if flag { "true" } else { "false" }),
            Scalar::I64(number) => Cow::Owned(number.to_string()),
            Scalar::U64(number) => Cow::Owned(number.to_string()),
            Scalar::F64(number) => Cow::Owned(number.to_string()),
        }
    }
}

/// What a [`FieldPaths::scan`] hands its findings to.
pub trait ScalarSink<'de> {
    /// A scalar at the end of the path of `slot`.
    fn scalar(&mut self, slot: usize, scalar: Scalar<'de, '_>);
    /// Whether everything wanted was found: the scan stops.
    fn done(&self) -> bool;
}

/// How the walk takes a value where a path ends.
trait Take<'de> {
    /// Materialise it whole ([`Take::whole`]) rather than visit it ([`Take::scalar`]).
    const WHOLE: bool;
    fn whole(&mut self, slot: usize, value: Value);
    /// Returns whether the walk may stop.
    fn scalar(&mut self, slot: usize, scalar: Scalar<'de, '_>) -> bool;
}

struct Values<'v>(&'v mut [Option<Value>]);

impl<'de> Take<'de> for Values<'_> {
    const WHOLE: bool = true;

    fn whole(&mut self, slot: usize, value: Value) {
        self.0[slot] = Some(value);
    }

    fn scalar(&mut self, _: usize, _: Scalar<'de, '_>) -> bool {
        false
    }
}

struct Scalars<'s, S>(&'s mut S);

impl<'de, S: ScalarSink<'de>> Take<'de> for Scalars<'_, S> {
    const WHOLE: bool = false;

    fn whole(&mut self, _: usize, _: Value) {}

    fn scalar(&mut self, slot: usize, scalar: Scalar<'de, '_>) -> bool {
        self.0.scalar(slot, scalar);
        self.0.done()
    }
}

/// The error that ends a scan early once everything is found.
const SCAN_DONE: &str = "scan complete";

/// Reads the value at one node of the path tree: taken where a path ends, walked key by key
/// (skipping unrelated keys) where paths continue.
struct Walk<'a, 't, T> {
    node: &'a Node,
    take: &'t mut T,
}

impl<'de, T: Take<'de>> Walk<'_, '_, T> {
    fn found<E: serde::de::Error>(self, scalar: Scalar<'de, '_>) -> Result<(), E> {
        if let Some(slot) = self.node.slot {
            if self.take.scalar(slot, scalar) {
                return Err(E::custom(SCAN_DONE));
            }
        }
        Ok(())
    }
}

impl<'de, T: Take<'de>> DeserializeSeed<'de> for Walk<'_, '_, T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.node.slot {
            Some(slot) if T::WHOLE => {
                let value = Value::deserialize(deserializer)?;
                fill_from_value(self.node, &value, self.take);
                self.take.whole(slot, value);
                Ok(())
            }
            _ => deserializer.deserialize_any(self),
        }
    }
}

impl<'de, T: Take<'de>> Visitor<'de> for Walk<'_, '_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(child) = map.next_key_seed(KeySeed(&self.node.children))? {
            match child {
                Some(node) => map.next_value_seed(Walk {
                    node,
                    take: &mut *self.take,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    // An array ends the paths through it; its content is validated and skipped.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, value: &'de str) -> Result<(), E> {
        self.found(Scalar::Str(value))
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<(), E> {
        self.found(Scalar::Unescaped(value))
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<(), E> {
        self.found(Scalar::Bool(value))
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<(), E> {
        self.found(Scalar::I64(value))
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<(), E> {
        self.found(Scalar::U64(value))
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<(), E> {
        self.found(Scalar::F64(value))
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// For a path that ends at `node` and continues below it (`data` and `data.identity`), fills the
/// deeper slots from the already materialised value.
fn fill_from_value<'de, T: Take<'de>>(node: &Node, value: &Value, take: &mut T) {
    for (key, child) in &node.children {
        let Some(inner) = value.get(key.as_str()) else {
            continue;
        };
        if let Some(slot) = child.slot {
            take.whole(slot, inner.clone());
        }
        fill_from_value(child, inner, take);
    }
}

/// Reads an object key and looks it up among a node's children without allocating for it
/// (unless it contains escapes, which the parser must unescape first).
struct KeySeed<'a>(&'a BTreeMap<String, Node>);

impl<'de, 'a> DeserializeSeed<'de> for KeySeed<'a> {
    type Value = Option<&'a Node>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, 'a> Visitor<'de> for KeySeed<'a> {
    type Value = Option<&'a Node>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.get(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(list: &[&str]) -> FieldPaths {
        let mut paths = FieldPaths::new();
        for path in list {
            paths.add(path);
        }
        paths
    }

    /// Every scalar a scan hands over, as text, stopping after `stop_after` of them (if any).
    #[derive(Default)]
    struct Seen {
        found: Vec<(usize, String, bool)>,
        stop_after: Option<usize>,
    }

    impl<'de> ScalarSink<'de> for Seen {
        fn scalar(&mut self, slot: usize, scalar: Scalar<'de, '_>) {
            let borrowed = matches!(scalar.text(), Cow::Borrowed(_));
            self.found
                .push((slot, scalar.text().into_owned(), borrowed));
        }

        fn done(&self) -> bool {
            self.stop_after.is_some_and(|n| self.found.len() >= n)
        }
    }

    fn scan(paths: &FieldPaths, document: &[u8]) -> Vec<(usize, String)> {
        let mut seen = Seen::default();
        paths.scan(document, &mut seen);
        seen.found
            .into_iter()
            .map(|(slot, text, _)| (slot, text))
            .collect()
    }

    #[test]
    fn equal_paths_share_a_slot_and_prefixes_share_nodes() {
        let mut paths = FieldPaths::new();
        assert!(paths.is_empty());
        assert_eq!(paths.add("data.identity"), 0);
        assert_eq!(paths.add("data"), 1);
        assert_eq!(paths.add("data.identity"), 0);
        assert_eq!(paths.add("type"), 2);
        assert_eq!(paths.slots(), 3);
        assert_eq!(paths.root.children.len(), 2);
    }

    #[test]
    fn paths_are_checked_for_empty_keys() {
        assert_eq!(FieldPaths::check("a.b"), Ok(()));
        for bad in ["", "a..b", ".a", "a."] {
            assert_eq!(
                FieldPaths::check(bad).unwrap_err().to_string(),
                format!("invalid path {bad:?} (dot-separated keys)")
            );
        }
    }

    #[test]
    fn values_at_nested_paths() {
        let paths = paths(&["data.identity", "data", "type", "missing.deep"]);
        let document =
            br#"{"type":"alive","x":[1,{"data":2}],"data":{"identity":"web1","n":[1,2]}}"#;
        let values = paths.values(document).unwrap();
        assert_eq!(values[0], Some(json!("web1")));
        assert_eq!(values[1], Some(json!({"identity": "web1", "n": [1, 2]})));
        assert_eq!(values[2], Some(json!("alive")));
        assert_eq!(values[3], None);
        // A path through something other than an object ends there.
        let values = paths.values(br#"{"data":["identity"]}"#).unwrap();
        assert_eq!(values[0], None);
        assert_eq!(values[1], Some(json!(["identity"])));
        assert_eq!(paths.values(br#"[{"type":1}]"#).unwrap(), vec![None; 4]);
    }

    #[test]
    fn values_need_the_whole_document_to_be_json() {
        let paths = paths(&["a"]);
        for bad in [
            &b""[..],
            b"{",
            b"{\"a\":1} x",
            b"{\"a\":1,\"b\":[}",
            b"\xff",
        ] {
            assert_eq!(
                paths.values(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(paths.values(b" {} ").unwrap(), vec![None]);
        // Without paths the document is still validated.
        assert_eq!(FieldPaths::new().values(b"{").map(|v| v.len()), None);
        assert_eq!(FieldPaths::new().values(b"{}").map(|v| v.len()), Some(0));
    }

    #[test]
    fn values_take_the_last_of_duplicate_keys_and_unescape_keys() {
        let paths = paths(&["name", "a\"b"]);
        let values = paths
            .values(br#"{"name":"y","n\u0061me":"x","a\"b":1}"#)
            .unwrap();
        assert_eq!(values, vec![Some(json!("x")), Some(json!(1))]);
    }

    #[test]
    fn scans_hand_over_scalars_in_document_order() {
        let paths = paths(&["sender", "meta.force", "n"]);
        let document =
            br#"{"sender":"a","meta":{"force":true},"sender":"b","n":-1.5,"x":{"sender":"no"}}"#;
        assert_eq!(
            scan(&paths, document),
            vec![
                (0, "a".into()),
                (1, "true".into()),
                (0, "b".into()),
                (2, "-1.5".into())
            ]
        );
        // Nulls, arrays and objects are not scalars; an object at a path end is walked on.
        let paths = self::paths(&["a", "a.b"]);
        assert_eq!(
            scan(&paths, br#"{"a":null,"a":[1],"a":{"b":7}}"#),
            vec![(1, "7".into())]
        );
        assert_eq!(
            scan(&paths, br#"{"a":18446744073709551615}"#),
            vec![(0, u64::MAX.to_string())]
        );
    }

    #[test]
    fn scanned_strings_are_borrowed_unless_escaped() {
        let paths = paths(&["k"]);
        let mut seen = Seen::default();
        paths.scan(
            br#"{"k":"plain","k":"\u00e9t\u00e9","\u006b":"by escaped key"}"#,
            &mut seen,
        );
        assert_eq!(
            seen.found,
            vec![
                (0, "plain".into(), true),
                (0, "\u{e9}t\u{e9}".into(), false),
                (0, "by escaped key".into(), true)
            ]
        );
    }

    #[test]
    fn a_scan_stops_when_the_sink_is_done_and_keeps_what_came_before_an_error() {
        let paths = paths(&["a", "b"]);
        let mut seen = Seen {
            stop_after: Some(1),
            ..Seen::default()
        };
        paths.scan(br#"{"a":1,"b":2} trailing garbage"#, &mut seen);
        assert_eq!(seen.found.len(), 1);
        assert_eq!(scan(&paths, br#"{"a":1,"b":2} trailing"#).len(), 2);
        assert_eq!(scan(&paths, br#"{"a":1,"x":[}"#), vec![(0, "1".into())]);
        assert!(scan(&paths, b"not json").is_empty());
        assert!(scan(&paths, b"\xff\xfe").is_empty());
        assert!(scan(&FieldPaths::new(), br#"{"a":1}"#).is_empty());
    }

    #[test]
    fn deep_nesting_is_an_error_not_an_overflow() {
        let paths = paths(&["a.a.a"]);
        let nested = "{\"a\":".repeat(50_000);
        assert_eq!(paths.values(nested.as_bytes()), None);
        assert!(scan(&paths, nested.as_bytes()).is_empty());
        let mut deep = b"{\"a\":1,\"b\":".to_vec();
        deep.extend(std::iter::repeat_n(b'[', 100_000));
        assert_eq!(self::paths(&["a"]).values(&deep), None);
        assert_eq!(scan(&self::paths(&["a"]), &deep), vec![(0, "1".into())]);
    }
}
