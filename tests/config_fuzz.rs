//! The config loader fuzzed: arbitrary bytes, the shipped configs damaged with YAML-aware
//! mutations (anchors, aliases, brackets, `${`, numbers at and past their limits), and YAML
//! generated from the schema's keys with anchors, aliases and deep nesting, all fed to
//! `ferry::config::load_from_bytes`, what `ferry check` and `ferry run` call after reading the file.
//!
//! Each case must return (never panic) within [`CASE_LIMIT`]; a file that loads must pass
//! validation again and summarise; an error never shows the value of a `${VAR}`.
//!
//! The normal run tries [`CI_CASES`] cases; the ignored test runs a million
//! (`FERRY_CONFIG_FUZZ_CASES` overrides): see docs/reliability.md for the command and result.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Cases in the normal test run.
const CI_CASES: u32 = 1_000;
/// Cases in the long, ignored run.
const LONG_CASES: u32 = 1_000_000;
/// Longest one case may take. Inputs here are at most a few dozen kilobytes, which load in
/// milliseconds; the limit leaves room for a loaded machine and a debug build.
const CASE_LIMIT: Duration = Duration::from_secs(5);

/// A variable the generated files reference, and its value, which no error may show.
const SECRET_VARIABLE: &str = "FERRY_FUZZ_SECRET";
const SECRET_VALUE: &str = "fuzz-s3cret-value";

fn shipped_configs() -> Vec<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut out = Vec::new();
    for dir in [root.clone(), root.join("examples")] {
        for entry in std::fs::read_dir(&dir).expect("config dir") {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                out.push(std::fs::read(&path).expect("read config"));
            }
        }
    }
    assert!(out.len() >= 7, "the shipped configs are missing");
    out
}

/// Pieces that matter to a YAML parser or to ferry's checks.
const SNIPPETS: &[&str] = &[
    "&a ",
    "*a",
    "<<: *a\n",
    "[",
    "]",
    "{",
    "}",
    ", ",
    ": ",
    "\n- ",
    "\n  ",
    "? ",
    "---\n",
    "...\n",
    "!!binary ",
    "!tag ",
    "|\n",
    ">-\n",
    "\"",
    "'",
    "#",
    "\t",
    "${FERRY_FUZZ_SECRET}",
    "${",
    "$${",
    "${UNSET_FERRY_FUZZ}",
    "0",
    "-1",
    "18446744073709551615",
    "18446744073709551616",
    "2305843009213693952",
    "1e400",
    ".nan",
    "106752d",
    "213503d",
    "1ns",
    "1e300/1ns",
    "0/s",
    "nats://u:p@h:1",
    "\u{feff}",
    "\u{0}",
];

/// One way of damaging a file.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(prop::sample::Index),
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, &'static str),
    Delete(prop::sample::Index, prop::sample::Index),
    /// Copies a slice of the file elsewhere (repeated keys, nested layers).
    Duplicate(
        prop::sample::Index,
        prop::sample::Index,
        prop::sample::Index,
    ),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let index = any::<prop::sample::Index>;
    prop_oneof![
        1 => index().prop_map(Mutation::Truncate),
        1 => (index(), any::<u8>()).prop_map(|(at, byte)| Mutation::Flip(at, byte)),
        3 => (index(), prop::sample::select(SNIPPETS))
            .prop_map(|(at, snippet)| Mutation::Insert(at, snippet)),
        1 => (index(), index()).prop_map(|(a, b)| Mutation::Delete(a, b)),
        1 => (index(), index(), index()).prop_map(|(a, b, c)| Mutation::Duplicate(a, b, c)),
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
            Mutation::Insert(at, snippet) => {
                let at = at.index(out.len() + 1);
                out.splice(at..at, snippet.bytes());
            }
            Mutation::Delete(a, b) => {
                let (a, b) = (a.index(len).min(out.len()), b.index(len).min(out.len()));
                out.drain(a.min(b)..a.max(b));
            }
            Mutation::Duplicate(a, b, to) => {
                let (a, b) = (a.index(len).min(out.len()), b.index(len).min(out.len()));
                let piece = out[a.min(b)..a.max(b)].to_vec();
                let at = to.index(out.len() + 1);
                out.splice(at..at, piece);
            }
        }
    }
    out
}

/// Keys of the schema, so generated files get past the first unknown key.
const KEYS: &[&str] = &[
    "state_dir",
    "name",
    "monitor",
    "listen",
    "shutdown_timeout",
    "connections",
    "east",
    "servers",
    "token",
    "user",
    "password",
    "subscription_capacity",
    "adapters",
    "kind",
    "connection",
    "subjects",
    "output",
    "stream",
    "subject",
    "max_age",
    "duplicate_window",
    "replicas",
    "max_in_flight",
    "spool",
    "max_bytes",
    "filter",
    "match",
    "field",
    "equals",
    "replicators",
    "from",
    "to",
    "start",
    "sequence",
    "since",
    "limit",
    "rate",
    "bytes",
    "sample",
    "key",
    "interval",
    "advisories",
    "heartbeat",
    "leader_election",
    "bucket",
    "ttl",
];

const SCALARS: &[&str] = &[
    "east",
    "passthrough",
    "choria_lifecycle",
    "S",
    "\"in.>\"",
    "\"out.{subject}\"",
    "\"nats://127.0.0.1:4222\"",
    "\"${FERRY_FUZZ_SECRET}\"",
    "\"nats://h:${FERRY_FUZZ_SECRET}\"",
    "\"x${FERRY_FUZZ_SECRET}\"",
    "\"${UNSET_FERRY_FUZZ}\"",
    "\"abc${def\"",
    "1",
    "0",
    "-1",
    "65536",
    "18446744073709551615",
    "2305843009213693952",
    "1.5",
    "1h",
    "106752d",
    "0s",
    "2000/s",
    "1e300/1ns",
    "1GiB",
    "~",
    "true",
    "\"\"",
];

/// A YAML value written as text: scalars, flow and block collections, anchors and aliases.
fn yaml_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        6 => prop::sample::select(SCALARS).prop_map(str::to_string),
        1 => Just("*a".to_string()),
        1 => Just("*b".to_string()),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        let entry = (prop::sample::select(KEYS), inner.clone());
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6)
                .prop_map(|items| format!("[{}]", items.join(", "))),
            prop::collection::vec(entry.clone(), 0..6).prop_map(|entries| {
                let body: Vec<String> = entries.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{{}}}", body.join(", "))
            }),
            (prop::sample::select(&["&a ", "&b "][..]), inner.clone())
                .prop_map(|(anchor, value)| format!("{anchor}{value}")),
            prop::collection::vec(inner, 0..4).prop_map(|items| {
                // A block list, indented under its key by the caller's newline.
                items
                    .iter()
                    .map(|item| format!("\n  - {item}"))
                    .collect::<String>()
            }),
        ]
    })
}

/// A generated file: a top-level mapping of schema keys.
fn generated_file() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((prop::sample::select(KEYS), yaml_value()), 1..8).prop_map(|entries| {
        entries
            .iter()
            .map(|(key, value)| format!("{key}: {value}\n"))
            .collect::<String>()
            .into_bytes()
    })
}

/// Any input: arbitrary bytes, a damaged shipped config, or a generated file (which may be
/// damaged too).
fn config_text(corpus: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..1024),
        3 => (prop::sample::select(corpus), prop::collection::vec(mutation(), 1..6))
            .prop_map(|(input, mutations)| mutate(&input, &mutations)),
        3 => (generated_file(), prop::collection::vec(mutation(), 0..3))
            .prop_map(|(input, mutations)| mutate(&input, &mutations)),
    ]
}

/// Loads `bytes` as `ferry check` would and checks the properties; returns the time it took.
fn load_one(bytes: &[u8]) -> Result<Duration, TestCaseError> {
    let origin = Path::new("fuzz.yaml");
    let started = Instant::now();
    let result = ferry::config::load_from_bytes(bytes, origin);
    let took = started.elapsed();
    prop_assert!(took < CASE_LIMIT, "took {took:?} for {} bytes", bytes.len());
    match result {
        Ok(config) => {
            // What loads is valid, and summarises.
            prop_assert_eq!(ferry::config::validate(&config), Vec::new());
            let _ = ferry::config::summary(&config);
        }
        Err(error) => {
            let written = String::from_utf8_lossy(bytes);
            if !written.contains(SECRET_VALUE) {
                let shown = error.to_string();
                prop_assert!(
                    !shown.contains(SECRET_VALUE),
                    "the value of ${{{SECRET_VARIABLE}}} is shown:\n{shown}"
                );
            }
        }
    }
    Ok(took)
}

/// Runs `cases` cases; returns the slowest.
fn fuzz(cases: u32) -> Duration {
    // The only variable these tests set; nothing else in this test binary reads it.
    std::env::set_var(SECRET_VARIABLE, SECRET_VALUE);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let slowest = std::cell::Cell::new(Duration::ZERO);
    runner
        .run(&config_text(shipped_configs()), |bytes| {
            let took = load_one(&bytes)?;
            slowest.set(slowest.get().max(took));
            Ok(())
        })
        .unwrap();
    slowest.get()
}

#[test]
fn the_config_loader_survives_damaged_and_generated_files() {
    fuzz(CI_CASES);
}

#[test]
#[ignore = "long: a million cases; run with --release --ignored"]
fn a_million_config_files() {
    let cases = std::env::var("FERRY_CONFIG_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(LONG_CASES);
    let started = Instant::now();
    let slowest = fuzz(cases);
    eprintln!(
        "{cases} cases in {:?}, slowest {slowest:?}, no panic",
        started.elapsed()
    );
}
