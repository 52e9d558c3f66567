//! The filter's tests: subjects, predicates and their semantics, compile errors, hostile documents.

use super::*;
use ferry_adapter::NoHeaders;
use serde_json::{json, Value};

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
    assert_eq!(filter.paths.slots(), 4, "equal paths share a slot");
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
        .to_string()
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
    assert!(
        matches!(
            error,
            FilterError::Pattern {
                key: "exclude_subjects",
                index: 1,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().starts_with("exclude_subjects[1]: "),
        "{error}"
    );
}

#[test]
fn compile_errors_keep_their_exact_text() {
    let compile = |predicate: PredicateConfig| {
        Filter::compile(&FilterConfig {
            predicates: vec![predicate],
            ..Default::default()
        })
        .unwrap_err()
    };
    let error = compile(exists(field("a..b"), true));
    assert!(matches!(
        error,
        FilterError::Predicate {
            index: 0,
            problem: PredicateError::Field(_)
        }
    ));
    assert_eq!(
        error.to_string(),
        r#"match[0].field: invalid path "a..b" (dot-separated keys)"#
    );
    assert_eq!(
        compile(one_of(field("a"), vec![])).to_string(),
        "match[0].in: empty list (it could never match)"
    );
    assert_eq!(
        compile(exists(header(""), true)).to_string(),
        "match[0].header: empty header name"
    );
    assert_eq!(
        compile(field("a")).to_string(),
        "match[0]: needs exactly one of `equals`, `regex`, `in` or `exists`"
    );
    assert_eq!(
        compile(equals(PredicateConfig::default(), json!(1))).to_string(),
        "match[0]: needs exactly one of `field` or `header`"
    );
    let error = compile(regex(field("a"), "("));
    assert!(matches!(
        &error,
        FilterError::Predicate {
            problem: PredicateError::Regex(inner),
            ..
        } if error.to_string() == format!("match[0].regex: {inner}")
    ));
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
