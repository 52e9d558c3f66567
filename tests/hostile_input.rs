//! Hostile input (SPEC section 10): the decoders, the filters, the sampler's key reader, subject
//! rendering and the config loader, fed arbitrary bytes and mutated versions of the real fixtures
//! and configs. Nothing may panic or hang, and subjects built from content must stay valid.
//!
//! CI runs a few thousand cases per property; `cargo test --release --test hostile_input -- --ignored`
//! runs 1,000,000 of each (`FERRY_FUZZ_CASES` overrides the count).

use std::path::{Path, PathBuf};
use std::time::Duration;

use choria_lifecycle::{LifecycleDecoder, OutputFormat};
use choria_registration::RegistrationDecoder;
use choria_reply::{ProtocolVersion, ReplyDecoder};
use ferry::config::replicator::{SampleConfig, SampleKey};
use ferry::config::schema::{FilterConfig, PredicateConfig};
use ferry::config::units::HumanDuration;
use ferry::filter::Filter;
use ferry::replicator::sampling::Sampler;
use ferry::state::SledStore;
use ferry::subject::{self, Template};
use ferry_adapter::{Decoder, HeaderLookup, Input};
use passthrough::PassthroughDecoder;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Cases per property in the normal test run.
const CI_CASES: u32 = 3_000;
/// Cases per property in the long, ignored run.
const LONG_CASES: u32 = 1_000_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` (recursively), as bytes.
fn files_in(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .is_some_and(|e| e == "json" || e == "txt" || e == "yaml")
            {
                out.push(std::fs::read(&path).expect("read"));
            }
        }
    }
    assert!(!out.is_empty(), "no inputs under {}", dir.display());
    out
}

/// One way of damaging an input.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(prop::sample::Index),
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Delete(prop::sample::Index, prop::sample::Index),
    /// Copies a slice of the input elsewhere (duplicated keys, nested layers).
    Splice(
        prop::sample::Index,
        prop::sample::Index,
        prop::sample::Index,
    ),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let index = any::<prop::sample::Index>;
    prop_oneof![
        index().prop_map(Mutation::Truncate),
        (index(), any::<u8>()).prop_map(|(at, b)| Mutation::Flip(at, b)),
        (
            index(),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 1..16),
                Just(b"{\"a\":".to_vec()),
                Just(b"\\u0000".to_vec()),
                Just(vec![0xff, 0xfe]),
                Just(b"\"\\\"".to_vec()),
            ]
        )
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        (index(), index()).prop_map(|(a, b)| Mutation::Delete(a, b)),
        (index(), index(), index()).prop_map(|(a, b, c)| Mutation::Splice(a, b, c)),
    ]
}

fn mutate(input: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut out = input.to_vec();
    for mutation in mutations {
        let len = out.len().max(1);
        match mutation {
            Mutation::Truncate(at) => out.truncate(at.index(len)),
            Mutation::Flip(at, byte) => {
                if !out.is_empty() {
                    let at = at.index(out.len());
                    out[at] = *byte;
                }
            }
            Mutation::Insert(at, bytes) => {
                let at = at.index(out.len() + 1);
                out.splice(at..at, bytes.iter().copied());
            }
            Mutation::Delete(a, b) => {
                let (a, b) = (a.index(len), b.index(len));
                let (from, to) = (a.min(b).min(out.len()), a.max(b).min(out.len()));
                out.drain(from..to);
            }
            Mutation::Splice(a, b, to) => {
                let (a, b) = (a.index(len).min(out.len()), b.index(len).min(out.len()));
                let piece = out[a.min(b)..a.max(b)].to_vec();
                let at = to.index(out.len() + 1);
                out.splice(at..at, piece);
            }
        }
    }
    out
}

/// An input: arbitrary bytes, or a real fixture damaged a few times.
fn hostile(corpus: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        (
            prop::sample::select(corpus),
            proptest::collection::vec(mutation(), 1..5)
        )
            .prop_map(|(input, mutations)| mutate(&input, &mutations)),
    ]
}

fn decoders() -> Vec<Box<dyn Decoder>> {
    let mut all: Vec<Box<dyn Decoder>> = Vec::new();
    for format in [
        OutputFormat::UpgradeLegacy,
        OutputFormat::AsReceived,
        OutputFormat::Choria,
        OutputFormat::CloudEvents,
    ] {
        for allow in [false, true] {
            all.push(Box::new(LifecycleDecoder::new(allow, format)));
        }
    }
    all.push(Box::new(RegistrationDecoder::default()));
    for version in [
        ProtocolVersion::Any,
        ProtocolVersion::V1,
        ProtocolVersion::V2,
    ] {
        all.push(Box::new(ReplyDecoder::new(version)));
    }
    all.push(Box::new(PassthroughDecoder::new(
        Some("Sender".into()),
        None,
    )));
    all.push(Box::new(PassthroughDecoder::new(None, Some(3))));
    all
}

struct OneHeader(String);

impl HeaderLookup for OneHeader {
    fn header(&self, name: &str) -> Option<&str> {
        (name == "Sender").then_some(self.0.as_str())
    }
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

fn cases(default: u32) -> u32 {
    std::env::var("FERRY_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn fuzz_decoders(cases: u32) {
    let corpus = files_in(&root().join("fixtures"));
    let decoders = decoders();
    let subject = "[ -~]{0,80}";
    let template = Template::parse("out.{type}.{component}.{sender}").expect("template");
    runner(cases)
        .run(
            &(hostile(corpus), subject, "[ -~\\PC]{0,40}"),
            |(payload, subject, header)| {
                for decoder in &decoders {
                    let headers = OneHeader(header.clone());
                    if let Ok(event) =
                        decoder.decode(&Input::with_headers(&subject, &payload, &headers))
                    {
                        // Whatever the content, the subject built from it is a valid, bounded one.
                        let rendered = template.render(|name| event.field(name));
                        prop_assert!(rendered.len() <= 256, "{rendered}");
                        prop_assert!(
                            subject::validate(&rendered, false).is_ok(),
                            "invalid subject {rendered:?}"
                        );
                    }
                }
                Ok(())
            },
        )
        .unwrap();
}

fn fuzz_filters(cases: u32) {
    let corpus = files_in(&root().join("fixtures"));
    let predicate = |field: Option<&str>, header: Option<&str>| PredicateConfig {
        field: field.map(str::to_string),
        header: header.map(str::to_string),
        ..Default::default()
    };
    let filter = Filter::compile(&FilterConfig {
        subjects: vec!["choria.>".into(), "*.lifecycle.*".into()],
        exclude_subjects: vec!["choria.test.>".into()],
        predicates: vec![
            PredicateConfig {
                equals: Some(serde_json::json!("server")),
                ..predicate(Some("component"), None)
            },
            PredicateConfig {
                regex: Some("^[a-z0-9.]+$".into()),
                ..predicate(Some("data.identity"), None)
            },
            PredicateConfig {
                one_of: Some(vec![serde_json::json!(1), serde_json::json!("alive")]),
                ..predicate(Some("type"), None)
            },
            PredicateConfig {
                exists: Some(true),
                ..predicate(None, Some("Sender"))
            },
        ],
    })
    .expect("filter compiles");
    runner(cases)
        .run(
            &(hostile(corpus), "[ -~]{0,64}", "[ -~\\PC]{0,32}"),
            |(payload, subject, header)| {
                let _ = filter.check(&subject, &payload, &OneHeader(header));
                Ok(())
            },
        )
        .unwrap();
}

fn fuzz_sampler(cases: u32) {
    let corpus = files_in(&root().join("fixtures"));
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open(dir.path()).expect("store");
    let config = SampleConfig {
        key: SampleKey::Field("data.identity".into()),
        interval: HumanDuration(Duration::from_secs(3600)),
        size_trigger: None,
        force_field: Some("force".into()),
    };
    let sampler = Sampler::open(&store, "fuzz", &config, None).expect("sampler");
    let now = std::cell::Cell::new(1_000.0);
    runner(cases)
        .run(&hostile(corpus), |payload| {
            now.set(now.get() + 1.0);
            let _ = sampler.decide("s", None, &payload, now.get());
            Ok(())
        })
        .unwrap();
}

fn fuzz_config(cases: u32) {
    let mut corpus = files_in(&root().join("config"));
    corpus.push(b"state_dir: /x\nconnections: { a: { servers: [\"nats://h:1\"] } }\n".to_vec());
    let origin = Path::new("fuzz.yaml");
    runner(cases)
        .run(&hostile(corpus), |text| {
            let text = String::from_utf8_lossy(&text);
            let _ = ferry::config::parse_with_env(&text, origin, &|name| {
                if name.len() < 8 {
                    Ok(format!("value-of-{name}"))
                } else {
                    Err(std::env::VarError::NotPresent)
                }
            });
            Ok(())
        })
        .unwrap();
}

#[test]
fn decoders_survive_arbitrary_and_damaged_input() {
    fuzz_decoders(cases(CI_CASES));
}

#[test]
fn filters_survive_arbitrary_and_damaged_input() {
    fuzz_filters(cases(CI_CASES));
}

#[test]
fn the_sampler_survives_arbitrary_and_damaged_input() {
    fuzz_sampler(cases(CI_CASES));
}

#[test]
fn the_config_loader_survives_arbitrary_and_damaged_files() {
    fuzz_config(cases(CI_CASES));
}

#[test]
#[ignore = "long: a million cases per property; run with --release --ignored"]
fn a_million_cases_each() {
    let n = cases(LONG_CASES);
    fuzz_decoders(n);
    fuzz_filters(n);
    fuzz_sampler(n);
    fuzz_config(n);
}

/// `depth` levels of nesting around `inner`: `{"a":{"a":...inner...}}`.
fn nested(depth: usize, inner: &str) -> Vec<u8> {
    let mut out = String::with_capacity(depth * 6 + inner.len());
    for _ in 0..depth {
        out.push_str("{\"a\":");
    }
    out.push_str(inner);
    for _ in 0..depth {
        out.push('}');
    }
    out.into_bytes()
}

#[test]
fn deep_nesting_huge_payloads_and_invalid_utf8_are_errors_not_crashes() {
    let decoders = decoders();
    let filter = Filter::compile(&FilterConfig {
        predicates: vec![PredicateConfig {
            field: Some("a.a.a.b".into()),
            exists: Some(true),
            ..Default::default()
        }],
        ..Default::default()
    })
    .expect("filter");
    let deep_lifecycle = {
        // A valid-looking event whose `data` nests a million levels deep.
        let mut event = br#"{"protocol":"io.choria.lifecycle.v1.startup","component":"server","identity":"x","data":"#.to_vec();
        event.extend(nested(1_000_000, "1"));
        event.push(b'}');
        event
    };
    let huge = format!(
        r#"{{"protocol":"io.choria.lifecycle.v1.startup","id":"1","identity":"{}","component":"server","timestamp":1}}"#,
        "w".repeat(16 * 1024 * 1024)
    )
    .into_bytes();
    let invalid_utf8 = {
        let mut event = br#"{"protocol":"io.choria.lifecycle.v1.startup","identity":""#.to_vec();
        event.extend([0xc3, 0x28, 0xff]);
        event.extend(br#"","component":"server","timestamp":1}"#);
        event
    };
    let inputs = [
        ("deeply nested", nested(1_000_000, "1")),
        ("deeply nested arrays", "[".repeat(1_000_000).into_bytes()),
        ("deep data", deep_lifecycle),
        ("huge", huge),
        ("invalid UTF-8", invalid_utf8),
    ];
    for (what, input) in &inputs {
        let headers = OneHeader("web1".into());
        for decoder in &decoders {
            let result = decoder.decode(&Input::with_headers("a.b.c", input, &headers));
            if let Ok(event) = result {
                // Only passthrough stores anything as is; its fields stay bounded.
                let rendered = Template::parse("out.{sender}")
                    .expect("template")
                    .render(|name| event.field(name));
                assert!(rendered.len() <= 256, "{what}");
            }
        }
        let _ = filter.check("a.b.c", input, &headers);
    }
    // The huge identity is refused or cut, never a 16 MiB subject.
    let lifecycle = LifecycleDecoder::new(false, OutputFormat::AsReceived);
    if let Ok(event) = lifecycle.decode(&Input::new("x", &inputs[3].1)) {
        let rendered = Template::parse("ferry.{identity}")
            .expect("template")
            .render(|name| event.field(name));
        assert!(rendered.len() <= 256);
    }
    assert!(
        lifecycle.decode(&Input::new("x", &inputs[4].1)).is_err(),
        "invalid UTF-8 is an error"
    );
}
