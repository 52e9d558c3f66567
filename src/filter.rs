//! Filters shared by adapters and replicators (SPEC section 6).
//!
//! A filter is compiled once from its config ([`Filter::compile`]): regexes are built and field paths
//! are merged into one tree, so the per-message [`Filter::check`] does no setup work. Checks run from
//! cheap to expensive: subject patterns, then header predicates, then field predicates, and the JSON
//! document is parsed only when a field predicate is actually reached.
//!
//! Parsing visits only the keys on the configured paths: everything else is validated and skipped
//! without building a JSON tree (the hot path must not allocate a whole document per message). A
//! value is materialised only where a path ends.
//!
//! Semantics worth knowing:
//! - A document that is not valid JSON (as a whole) fails every field predicate, `exists: false`
//!   included: the filter cannot say anything about a document it cannot read.
//! - A key whose value is `null` exists.
//! - `equals` and `in` compare JSON values strictly by type: the string `"5"` does not equal the
//!   number `5`. Numbers compare by value, so `5` equals `5.0`.
//! - `regex` tests strings, and numbers and booleans as their JSON text (`5`, `true`); nulls,
//!   arrays and objects never match.
//! - Headers are strings: `equals` and `in` compare the header with a string predicate value as is,
//!   and with any other value as its JSON text (`equals: 5` matches the header `5`).

use std::collections::BTreeMap;
use std::fmt;

use ferry_adapter::HeaderLookup;
use regex::Regex;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize as _;
use serde_json::Value;

use crate::config::schema::{FilterConfig, PredicateConfig};

/// The outcome of [`Filter::check`]; anything but `Accept` means the message is filtered out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The message passes.
    Accept,
    /// The subject is outside `subjects` or inside `exclude_subjects`.
    SubjectExcluded,
    /// A `match` predicate does not hold.
    NotMatched,
}

/// A compiled `filter`.
#[derive(Debug, Clone)]
pub struct Filter {
    subjects: Vec<String>,
    exclude_subjects: Vec<String>,
    header_predicates: Vec<HeaderPredicate>,
    field_predicates: Vec<FieldPredicate>,
    /// The field paths of `field_predicates`, merged; each path end has a slot.
    paths: PathNode,
    /// How many distinct field paths (slots) there are.
    slots: usize,
}

/// What a predicate tests.
#[derive(Debug, Clone)]
enum Test {
    Equals(Value),
    Regex(Regex),
    OneOf(Vec<Value>),
    Exists(bool),
}

#[derive(Debug, Clone)]
struct HeaderPredicate {
    name: String,
    test: Test,
}

#[derive(Debug, Clone)]
struct FieldPredicate {
    /// Index into the values extracted from the document.
    slot: usize,
    test: Test,
}

/// One level of the merged field paths: `data.identity` and `data.type` share the node `data`.
#[derive(Debug, Clone, Default)]
struct PathNode {
    /// Set where a configured path ends.
    slot: Option<usize>,
    children: BTreeMap<String, PathNode>,
}

impl Filter {
    /// Compiles a filter, checking its subject patterns, that each `match` entry names exactly one
    /// of `field` or `header` and exactly one test, and that regexes compile. Errors name the
    /// entry, e.g. `match[2].regex: ...`.
    pub fn compile(config: &FilterConfig) -> Result<Filter, String> {
        check_patterns("subjects", &config.subjects)?;
        check_patterns("exclude_subjects", &config.exclude_subjects)?;
        let mut filter = Filter {
            subjects: config.subjects.clone(),
            exclude_subjects: config.exclude_subjects.clone(),
            ..Filter::accept_all()
        };
        for (index, predicate) in config.predicates.iter().enumerate() {
            filter
                .add_predicate(predicate)
                .map_err(|error| format!("match[{index}]{error}"))?;
        }
        Ok(filter)
    }

    /// A filter that accepts everything (no `filter` in the config).
    pub fn accept_all() -> Filter {
        Filter {
            subjects: Vec::new(),
            exclude_subjects: Vec::new(),
            header_predicates: Vec::new(),
            field_predicates: Vec::new(),
            paths: PathNode::default(),
            slots: 0,
        }
    }

    /// Whether the filter accepts every message, so callers can skip it entirely.
    pub fn is_pass_through(&self) -> bool {
        self.subjects.is_empty()
            && self.exclude_subjects.is_empty()
            && self.header_predicates.is_empty()
            && self.field_predicates.is_empty()
    }

    /// Whether any `field` predicate exists, i.e. whether [`Filter::check`] may look at the document
    /// (callers that have to produce the document, e.g. by decoding, can skip that otherwise).
    pub fn needs_document(&self) -> bool {
        !self.field_predicates.is_empty()
    }

    /// The `subjects` list, which replicators hand to the server as their consumer's filter.
    pub fn server_subjects(&self) -> &[String] {
        &self.subjects
    }

    /// Judges one message. `document` is only read when a field predicate is reached, and then
    /// parsed once.
    pub fn check(&self, subject: &str, document: &[u8], headers: &dyn HeaderLookup) -> Verdict {
        if !self.subject_selected(subject) {
            return Verdict::SubjectExcluded;
        }
        let headers_hold = self
            .header_predicates
            .iter()
            .all(|predicate| header_holds(predicate, headers));
        if !headers_hold || !self.fields_hold(document) {
            return Verdict::NotMatched;
        }
        Verdict::Accept
    }

    fn subject_selected(&self, subject: &str) -> bool {
        let included = self.subjects.is_empty()
            || self
                .subjects
                .iter()
                .any(|pattern| crate::subject::matches(pattern, subject));
        included
            && !self
                .exclude_subjects
                .iter()
                .any(|pattern| crate::subject::matches(pattern, subject))
    }

    fn fields_hold(&self, document: &[u8]) -> bool {
        if self.field_predicates.is_empty() {
            return true;
        }
        let Some(values) = extract(&self.paths, self.slots, document) else {
            return false;
        };
        self.field_predicates
            .iter()
            .all(|predicate| field_holds(&predicate.test, values[predicate.slot].as_ref()))
    }

    /// Adds one `match` entry; errors start with the key they concern (`.regex: ...`).
    fn add_predicate(&mut self, config: &PredicateConfig) -> Result<(), String> {
        let test = compile_test(config)?;
        match (&config.field, &config.header) {
            (Some(path), None) => {
                let slot = self.add_path(path)?;
                self.field_predicates.push(FieldPredicate { slot, test });
            }
            (None, Some(name)) => {
                if name.trim().is_empty() {
                    return Err(".header: empty header name".to_string());
                }
                self.header_predicates.push(HeaderPredicate {
                    name: name.clone(),
                    test,
                });
            }
            _ => return Err(": needs exactly one of `field` or `header`".to_string()),
        }
        Ok(())
    }

    /// Adds a dot-separated path to the tree and returns its slot (shared by equal paths).
    fn add_path(&mut self, path: &str) -> Result<usize, String> {
        if path.split('.').any(str::is_empty) {
            return Err(format!(
                ".field: invalid path {path:?} (dot-separated keys)"
            ));
        }
        let mut node = &mut self.paths;
        for key in path.split('.') {
            node = node.children.entry(key.to_string()).or_default();
        }
        let slot = *node.slot.get_or_insert(self.slots);
        if slot == self.slots {
            self.slots += 1;
        }
        Ok(slot)
    }
}

/// Validates `subjects` or `exclude_subjects` patterns.
fn check_patterns(key: &str, patterns: &[String]) -> Result<(), String> {
    for (index, pattern) in patterns.iter().enumerate() {
        crate::subject::validate(pattern, true)
            .map_err(|error| format!("{key}[{index}]: {error}"))?;
    }
    Ok(())
}

/// Builds the single test of a predicate.
fn compile_test(config: &PredicateConfig) -> Result<Test, String> {
    let mut tests = Vec::with_capacity(1);
    if let Some(value) = &config.equals {
        tests.push(Test::Equals(value.clone()));
    }
    if let Some(pattern) = &config.regex {
        let regex = Regex::new(pattern).map_err(|error| format!(".regex: {error}"))?;
        tests.push(Test::Regex(regex));
    }
    if let Some(values) = &config.one_of {
        if values.is_empty() {
            return Err(".in: empty list (it could never match)".to_string());
        }
        tests.push(Test::OneOf(values.clone()));
    }
    if let Some(exists) = config.exists {
        tests.push(Test::Exists(exists));
    }
    match tests.len() {
        1 => Ok(tests.remove(0)),
        _ => Err(": needs exactly one of `equals`, `regex`, `in` or `exists`".to_string()),
    }
}

/// Evaluates a header predicate against the message's headers.
fn header_holds(predicate: &HeaderPredicate, headers: &dyn HeaderLookup) -> bool {
    let value = headers.header(&predicate.name);
    match (&predicate.test, value) {
        (Test::Exists(expected), value) => value.is_some() == *expected,
        (_, None) => false,
        (Test::Equals(expected), Some(value)) => header_equals(expected, value),
        (Test::OneOf(options), Some(value)) => options.iter().any(|o| header_equals(o, value)),
        (Test::Regex(regex), Some(value)) => regex.is_match(value),
    }
}

/// A header equals a string predicate value as is, any other value as its JSON text.
fn header_equals(expected: &Value, header: &str) -> bool {
    match expected {
        Value::String(text) => text == header,
        other => {
            // Not `*other == header`: serde_json's `Value == str` only matches JSON strings.
            let text = other.to_string();
            text == header
        }
    }
}

/// Evaluates a field predicate against the value found at its path (`None`: the path is absent).
fn field_holds(test: &Test, value: Option<&Value>) -> bool {
    match (test, value) {
        (Test::Exists(expected), value) => value.is_some() == *expected,
        (_, None) => false,
        (Test::Equals(expected), Some(value)) => json_equal(expected, value),
        (Test::OneOf(options), Some(value)) => options.iter().any(|o| json_equal(o, value)),
        (Test::Regex(regex), Some(value)) => regex_matches(regex, value),
    }
}

/// Strict JSON equality, except that numbers compare by value (`5` equals `5.0`).
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_equal(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, x)| y.get(key).is_some_and(|y| json_equal(x, y)))
        }
        _ => a == b,
    }
}

/// Integers compare exactly (no rounding through `f64` for large values); otherwise as floats.
fn numbers_equal(x: &serde_json::Number, y: &serde_json::Number) -> bool {
    if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
        return x == y;
    }
    match (x.as_f64(), y.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Regexes test strings, and numbers and booleans as their JSON text.
fn regex_matches(regex: &Regex, value: &Value) -> bool {
    match value {
        Value::String(text) => regex.is_match(text),
        Value::Number(number) => regex.is_match(&number.to_string()),
        Value::Bool(flag) => regex.is_match(if *flag { "true" } else { "false" }),
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

/// Parses `document` once, collecting the value at every path of the tree into its slot.
/// `None` when the document is not valid JSON.
fn extract(paths: &PathNode, slots: usize, document: &[u8]) -> Option<Vec<Option<Value>>> {
    let mut values = vec![None; slots];
    let mut deserializer = serde_json::Deserializer::from_slice(document);
    PathSeed {
        node: paths,
        values: &mut values,
    }
    .deserialize(&mut deserializer)
    .ok()?;
    deserializer.end().ok()?;
    Some(values)
}

/// Deserializes the value at one node of the path tree: materialised where a path ends, walked
/// key by key (skipping unrelated keys) where paths only pass through.
struct PathSeed<'a> {
    node: &'a PathNode,
    values: &'a mut Vec<Option<Value>>,
}

impl<'de> DeserializeSeed<'de> for PathSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.node.slot {
            Some(slot) => {
                let value = Value::deserialize(deserializer)?;
                fill_from_value(self.node, &value, self.values);
                self.values[slot] = Some(value);
                Ok(())
            }
            None => deserializer.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for PathSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(child) = map.next_key_seed(KeySeed(&self.node.children))? {
            match child {
                Some(node) => map.next_value_seed(PathSeed {
                    node,
                    values: &mut *self.values,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    // Anything but an object ends the paths through it; its content is validated and skipped.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// For a path that ends at `node` and continues below it (`data` and `data.identity`), fills the
/// deeper slots from the already materialised value.
fn fill_from_value(node: &PathNode, value: &Value, values: &mut [Option<Value>]) {
    for (key, child) in &node.children {
        let Some(inner) = value.get(key.as_str()) else {
            continue;
        };
        if let Some(slot) = child.slot {
            values[slot] = Some(inner.clone());
        }
        fill_from_value(child, inner, values);
    }
}

/// Reads an object key and looks it up among a node's children without allocating for it
/// (unless it contains escapes, which the parser must unescape first).
struct KeySeed<'a>(&'a BTreeMap<String, PathNode>);

impl<'de, 'a> DeserializeSeed<'de> for KeySeed<'a> {
    type Value = Option<&'a PathNode>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, 'a> Visitor<'de> for KeySeed<'a> {
    type Value = Option<&'a PathNode>;

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
    use ferry_adapter::NoHeaders;
    use serde_json::json;

    struct Headers(Vec<(&'static str, &'static str)>);

    impl HeaderLookup for Headers {
        fn header(&self, name: &str) -> Option<&str> {
            self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        }
    }

    fn field(path: &str) -> PredicateConfig {
        PredicateConfig {
            field: Some(path.into()),
            ..Default::default()
        }
    }

    fn header(name: &str) -> PredicateConfig {
        PredicateConfig {
            header: Some(name.into()),
            ..Default::default()
        }
    }

    fn equals(mut p: PredicateConfig, value: Value) -> PredicateConfig {
        p.equals = Some(value);
        p
    }

    fn regex(mut p: PredicateConfig, pattern: &str) -> PredicateConfig {
        p.regex = Some(pattern.into());
        p
    }

    fn one_of(mut p: PredicateConfig, values: Vec<Value>) -> PredicateConfig {
        p.one_of = Some(values);
        p
    }

    fn exists(mut p: PredicateConfig, flag: bool) -> PredicateConfig {
        p.exists = Some(flag);
        p
    }

    fn matching(predicates: Vec<PredicateConfig>) -> Filter {
        Filter::compile(&FilterConfig {
            predicates,
            ..Default::default()
        })
        .expect("compiles")
    }

    fn accepts(filter: &Filter, document: &Value) -> bool {
        let bytes = serde_json::to_vec(document).unwrap();
        filter.check("s", &bytes, &NoHeaders) == Verdict::Accept
    }

    #[test]
    fn accept_all_is_pass_through() {
        let filter = Filter::accept_all();
        assert!(filter.is_pass_through());
        assert!(!filter.needs_document());
        assert!(filter.server_subjects().is_empty());
        assert_eq!(
            filter.check("a.b", b"not json", &NoHeaders),
            Verdict::Accept
        );
        let compiled = Filter::compile(&FilterConfig::default()).unwrap();
        assert!(compiled.is_pass_through());
    }

    #[test]
    fn subjects_and_exclusions() {
        let filter = Filter::compile(&FilterConfig {
            subjects: vec!["NODES.eu.>".into(), "OTHER.*".into()],
            exclude_subjects: vec!["NODES.eu.test.>".into()],
            ..Default::default()
        })
        .unwrap();
        assert!(!filter.is_pass_through());
        assert!(!filter.needs_document());
        assert_eq!(filter.server_subjects(), ["NODES.eu.>", "OTHER.*"]);
        let check = |subject| filter.check(subject, b"", &NoHeaders);
        assert_eq!(check("NODES.eu.web1"), Verdict::Accept);
        assert_eq!(check("OTHER.x"), Verdict::Accept);
        assert_eq!(check("NODES.eu.test.web1"), Verdict::SubjectExcluded);
        assert_eq!(check("NODES.us.web1"), Verdict::SubjectExcluded);
        assert_eq!(check("OTHER.x.y"), Verdict::SubjectExcluded);

        let only_excluded = Filter::compile(&FilterConfig {
            exclude_subjects: vec!["a.*".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            only_excluded.check("a.b", b"", &NoHeaders),
            Verdict::SubjectExcluded
        );
        assert_eq!(only_excluded.check("b.b", b"", &NoHeaders), Verdict::Accept);
    }

    #[test]
    fn subject_verdict_comes_before_predicates() {
        let filter = Filter::compile(&FilterConfig {
            subjects: vec!["a".into()],
            predicates: vec![equals(field("x"), json!(1))],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            filter.check("b", b"{}", &NoHeaders),
            Verdict::SubjectExcluded
        );
        assert_eq!(filter.check("a", b"{}", &NoHeaders), Verdict::NotMatched);
        assert_eq!(
            filter.check("a", br#"{"x":1}"#, &NoHeaders),
            Verdict::Accept
        );
    }

    #[test]
    fn the_spec_example() {
        let filter = matching(vec![
            equals(field("component"), json!("server")),
            regex(field("data.identity"), r"^web\d+\."),
            exists(header("Ferry-Sender"), true),
            one_of(field("type"), vec![json!("startup"), json!("shutdown")]),
        ]);
        assert!(filter.needs_document());
        let doc = br#"{"component":"server","type":"startup","data":{"identity":"web12.example"}}"#;
        let with_sender = Headers(vec![("Ferry-Sender", "web12.example")]);
        assert_eq!(filter.check("s", doc, &with_sender), Verdict::Accept);
        assert_eq!(filter.check("s", doc, &NoHeaders), Verdict::NotMatched);
        let other = br#"{"component":"server","type":"alive","data":{"identity":"web12.example"}}"#;
        assert_eq!(filter.check("s", other, &with_sender), Verdict::NotMatched);
        let other = br#"{"component":"server","type":"startup","data":{"identity":"db1.example"}}"#;
        assert_eq!(filter.check("s", other, &with_sender), Verdict::NotMatched);
    }

    #[test]
    fn equality_is_strict_by_type_but_numeric_by_value() {
        let five = matching(vec![equals(field("n"), json!(5))]);
        assert!(accepts(&five, &json!({"n": 5})));
        assert!(accepts(&five, &json!({"n": 5.0})));
        assert!(!accepts(&five, &json!({"n": "5"})));
        assert!(!accepts(&five, &json!({"n": 6})));
        let text = matching(vec![equals(field("n"), json!("5"))]);
        assert!(accepts(&text, &json!({"n": "5"})));
        assert!(!accepts(&text, &json!({"n": 5})));
        let negative = matching(vec![equals(field("n"), json!(-1))]);
        assert!(accepts(&negative, &json!({"n": -1})));
        assert!(!accepts(&negative, &json!({"n": u64::MAX})));
        let big = matching(vec![equals(field("n"), json!(u64::MAX))]);
        assert!(accepts(&big, &json!({"n": u64::MAX})));
        assert!(!accepts(&big, &json!({"n": u64::MAX - 1})));
        let flag = matching(vec![equals(field("f"), json!(true))]);
        assert!(accepts(&flag, &json!({"f": true})));
        assert!(!accepts(&flag, &json!({"f": "true"})));
        let null = matching(vec![equals(field("v"), Value::Null)]);
        assert!(accepts(&null, &json!({"v": null})));
        assert!(!accepts(&null, &json!({})));
        let structured = matching(vec![equals(field("v"), json!({"a": [1, "x"]}))]);
        assert!(accepts(&structured, &json!({"v": {"a": [1.0, "x"]}})));
        assert!(!accepts(
            &structured,
            &json!({"v": {"a": [1, "x"], "b": 1}})
        ));
        assert!(!accepts(&structured, &json!({"v": {"a": [1]}})));
    }

    #[test]
    fn regex_on_strings_numbers_and_booleans() {
        let digits = matching(vec![regex(field("v"), r"^\d+$")]);
        assert!(accepts(&digits, &json!({"v": "123"})));
        assert!(accepts(&digits, &json!({"v": 123})));
        assert!(!accepts(&digits, &json!({"v": "x"})));
        assert!(!accepts(&digits, &json!({"v": [1]})));
        assert!(!accepts(&digits, &json!({"v": null})));
        assert!(!accepts(&digits, &json!({"v": {"a": 1}})));
        let truth = matching(vec![regex(field("v"), "^true$")]);
        assert!(accepts(&truth, &json!({"v": true})));
        assert!(!accepts(&truth, &json!({"v": false})));
    }

    #[test]
    fn in_and_exists_on_fields() {
        let any = matching(vec![one_of(field("t"), vec![json!("a"), json!(2)])]);
        assert!(accepts(&any, &json!({"t": "a"})));
        assert!(accepts(&any, &json!({"t": 2.0})));
        assert!(!accepts(&any, &json!({"t": "2"})));
        assert!(!accepts(&any, &json!({})));
        let present = matching(vec![exists(field("a.b"), true)]);
        let absent = matching(vec![exists(field("a.b"), false)]);
        for (doc, is_present) in [
            (json!({"a": {"b": null}}), true),
            (json!({"a": {"b": 0}}), true),
            (json!({"a": {"c": 0}}), false),
            (json!({"a": "b"}), false),
            (json!({"a": ["b"]}), false),
            (json!([{"a": {"b": 1}}]), false),
            (json!("text"), false),
        ] {
            assert_eq!(accepts(&present, &doc), is_present, "{doc}");
            assert_eq!(accepts(&absent, &doc), !is_present, "{doc}");
        }
    }

    #[test]
    fn non_json_fails_every_field_predicate() {
        let absent = matching(vec![exists(field("a"), false)]);
        for bad in [
            &b""[..],
            b"{",
            b"nope",
            b"{\"a\":1} trailing",
            b"\xff\xfe",
            b"{\"a\":}",
        ] {
            assert_eq!(absent.check("s", bad, &NoHeaders), Verdict::NotMatched);
        }
        assert_eq!(absent.check("s", b" {} ", &NoHeaders), Verdict::Accept);
        // Invalid JSON after the interesting key still fails: the whole document must parse.
        let present = matching(vec![exists(field("a"), true)]);
        assert_eq!(
            present.check("s", br#"{"a":1,"b":[}"#, &NoHeaders),
            Verdict::NotMatched
        );
        assert_eq!(
            present.check("s", br#"{"a":1,"b":[]}"#, &NoHeaders),
            Verdict::Accept
        );
    }

    #[test]
    fn overlapping_and_repeated_paths() {
        let filter = matching(vec![
            exists(field("data"), true),
            equals(field("data.identity"), json!("web1")),
            regex(field("data.identity"), "^web"),
            equals(field("data.inner.deep"), json!(1)),
            equals(field("type"), json!("alive")),
        ]);
        assert_eq!(filter.slots, 4, "equal paths share a slot");
        let doc = json!({"type": "alive", "x": [1, {"data": 2}], "data": {"identity": "web1", "inner": {"deep": 1}}});
        assert!(accepts(&filter, &doc));
        let doc = json!({"type": "alive", "data": {"identity": "web1", "inner": {"deep": 2}}});
        assert!(!accepts(&filter, &doc));
        // Path ending at a node with children, whose value is not an object.
        let doc = json!({"type": "alive", "data": "web1"});
        assert!(!accepts(&filter, &doc));
    }

    #[test]
    fn escaped_and_duplicate_keys() {
        let filter = matching(vec![equals(field("a\"b"), json!(1))]);
        assert_eq!(
            filter.check("s", br#"{"a\"b":1}"#, &NoHeaders),
            Verdict::Accept
        );
        let filter = matching(vec![equals(field("name"), json!("x"))]);
        assert_eq!(
            filter.check("s", br#"{"n\u0061me":"x"}"#, &NoHeaders),
            Verdict::Accept
        );
        // Where a path ends, the last of duplicate keys wins, as in serde_json's own maps.
        assert_eq!(
            filter.check("s", br#"{"name":"y","name":"x"}"#, &NoHeaders),
            Verdict::Accept
        );
        assert_eq!(
            filter.check("s", br#"{"name":"x","name":"y"}"#, &NoHeaders),
            Verdict::NotMatched
        );
    }

    #[test]
    fn header_predicates() {
        let headers = Headers(vec![
            ("Ferry-Sender", "web1"),
            ("Count", "5"),
            ("Flag", "true"),
        ]);
        let check = |p: PredicateConfig| matching(vec![p]).check("s", b"not json", &headers);
        assert_eq!(check(exists(header("Ferry-Sender"), true)), Verdict::Accept);
        assert_eq!(check(exists(header("Missing"), false)), Verdict::Accept);
        assert_eq!(check(exists(header("Missing"), true)), Verdict::NotMatched);
        assert_eq!(
            check(equals(header("Ferry-Sender"), json!("web1"))),
            Verdict::Accept
        );
        assert_eq!(
            check(equals(header("Ferry-Sender"), json!("web2"))),
            Verdict::NotMatched
        );
        assert_eq!(check(equals(header("Count"), json!(5))), Verdict::Accept);
        assert_eq!(check(equals(header("Flag"), json!(true))), Verdict::Accept);
        assert_eq!(
            check(equals(header("Missing"), json!(""))),
            Verdict::NotMatched
        );
        assert_eq!(
            check(regex(header("Ferry-Sender"), "^web\\d$")),
            Verdict::Accept
        );
        assert_eq!(check(regex(header("Missing"), ".*")), Verdict::NotMatched);
        assert_eq!(
            check(one_of(header("Count"), vec![json!("4"), json!(5)])),
            Verdict::Accept
        );
        assert_eq!(
            check(one_of(header("Count"), vec![json!(4)])),
            Verdict::NotMatched
        );
        let filter = matching(vec![exists(header("Ferry-Sender"), true)]);
        assert!(!filter.needs_document());
    }

    #[test]
    fn compile_errors_name_the_entry() {
        let compile = |predicates: Vec<PredicateConfig>| {
            Filter::compile(&FilterConfig {
                predicates,
                ..Default::default()
            })
            .unwrap_err()
        };
        let ok = equals(field("a"), json!(1));
        let error = compile(vec![ok.clone(), ok.clone(), regex(field("a"), "(")]);
        assert!(error.starts_with("match[2].regex: "), "{error}");
        let error = compile(vec![PredicateConfig {
            equals: Some(json!(1)),
            ..Default::default()
        }]);
        assert!(
            error.starts_with("match[0]: needs exactly one of `field`"),
            "{error}"
        );
        let mut both = equals(field("a"), json!(1));
        both.header = Some("H".into());
        assert!(compile(vec![both]).starts_with("match[0]: needs exactly one of `field`"));
        let error = compile(vec![field("a")]);
        assert!(
            error.starts_with("match[0]: needs exactly one of `equals`"),
            "{error}"
        );
        let error = compile(vec![exists(equals(field("a"), json!(1)), true)]);
        assert!(
            error.starts_with("match[0]: needs exactly one of `equals`"),
            "{error}"
        );
        for path in ["", "a..b", ".a", "a."] {
            let error = compile(vec![exists(field(path), true)]);
            assert!(error.starts_with("match[0].field: "), "{error}");
        }
        let error = compile(vec![ok, one_of(field("a"), vec![])]);
        assert!(error.starts_with("match[1].in: "), "{error}");
        let error = compile(vec![exists(header(" "), true)]);
        assert!(error.starts_with("match[0].header: "), "{error}");
        let error = Filter::compile(&FilterConfig {
            exclude_subjects: vec!["a.>".into(), "a..b".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(error.starts_with("exclude_subjects[1]: "), "{error}");
    }

    /// A small deterministic generator, so the fuzz test needs no extra crate and is reproducible.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn arbitrary_documents_never_panic() {
        let filter = matching(vec![
            exists(field("a"), false),
            regex(field("a.b"), "x"),
            one_of(field("a.b.c"), vec![json!(1), json!("x")]),
            equals(field("d"), json!({"k": [1]})),
        ]);
        let seeds: [&[u8]; 4] = [
            br#"{"a":{"b":{"c":1}},"d":{"k":[1]}}"#,
            br#"{"a":"x","d":[1,2,{"e":null}],"\u0041":true}"#,
            br#"[{"a":1e400},-0.0,"\ud800",{}]"#,
            b"{\"a\":\"\xff\"}",
        ];
        let alphabet = b"{}[]\":,.\\0123456789-+eEtrufalsn \x00\xffab";
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for round in 0..20_000 {
            let mut doc = seeds[round % seeds.len()].to_vec();
            for _ in 0..=rng.below(6) {
                let at = rng.below(doc.len() + 1);
                match rng.below(3) {
                    0 if at < doc.len() => {
                        doc.remove(at);
                    }
                    1 => doc.insert(at, alphabet[rng.below(alphabet.len())]),
                    _ => doc.insert(at, (rng.next() & 0xff) as u8),
                }
            }
            let _ = filter.check("s", &doc, &NoHeaders);
        }
        for _ in 0..2_000 {
            let len = rng.below(64);
            let doc: Vec<u8> = (0..len).map(|_| (rng.next() & 0xff) as u8).collect();
            let _ = filter.check("s", &doc, &NoHeaders);
        }
    }

    #[test]
    fn deep_nesting_is_rejected_not_overflowed() {
        let filter = matching(vec![exists(field("a"), true)]);
        let mut deep = b"{\"a\":1,\"b\":".to_vec();
        deep.extend(std::iter::repeat_n(b'[', 100_000));
        assert_eq!(filter.check("s", &deep, &NoHeaders), Verdict::NotMatched);
        let nested = "{\"a\":".repeat(50_000);
        let filter = matching(vec![exists(field("a.a.a"), true)]);
        assert_eq!(
            filter.check("s", nested.as_bytes(), &NoHeaders),
            Verdict::NotMatched
        );
        let filter = matching(vec![exists(field("a"), true)]);
        assert_eq!(
            filter.check("s", nested.as_bytes(), &NoHeaders),
            Verdict::NotMatched
        );
    }
}
