//! Configuration: the YAML schema, humane units, `${ENV}` expansion and validation (SPEC section 3).
//!
//! [`load`] is the one way in: it reads the file, expands `${VAR}` references, turns each section
//! (the top-level settings, each connection, each adapter, each replicator) into the schema on its own, and then runs
//! [`validate`]. Sections are deserialized separately, and within a section an offending key is
//! removed and the section retried, so a file with several mistakes reports all of them at once,
//! each with its path (`adapters[1].spool.max_bytes: invalid size "1x" ...`): the user fixes the
//! file in one pass instead of one error per run.

pub mod adapter;
pub mod common;
pub mod connection;
pub mod expand;
pub mod filter;
pub mod kinds;
mod parse;
pub mod permissions;
pub mod prescan;
pub mod redact;
pub mod replicator;
pub mod schema;
mod summary;
pub mod units;
pub mod validate;
mod yaml_path;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_norway::{Mapping, Value};

use parse::*;
pub use replicator::ReplicatorConfig;
pub use schema::*;
pub use summary::summary;
pub use validate::validate;

/// One thing wrong with the config: where (`adapters[0].output.stream`) and what, with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key's path in the file; empty for the file as a whole (unreadable, not YAML).
    pub path: String,
    /// What is wrong and, where there is one, how to fix it.
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one config file. Displays as `FILE: N problems` followed by one
/// indented `path: message` line per problem, which is what `ferry check` prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file the problems are in.
    pub file: PathBuf,
    /// Never empty.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        write!(
            f,
            "{}: {count} problem{}",
            self.file.display(),
            if count == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

/// Reads, expands, parses and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let unreadable = |error: std::io::Error| ConfigError {
        file: path.to_path_buf(),
        problems: vec![Problem::new(
            "",
            format!("cannot read the config file: {error}"),
        )],
    };
    // Read at most one byte more than the limit, so a huge file (or /dev/zero) is refused
    // without being read whole.
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| {
            use std::io::Read;
            file.take(prescan::MAX_FILE_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(unreadable)?;
    load_from_bytes(&bytes, path)
}

/// [`load`] for a file's bytes already in memory; `origin` names it in errors. This is what
/// `ferry check` and `ferry run` do after reading the file, so fuzzing it covers them: whatever
/// the bytes, it returns (bounded by [`prescan`]) and never panics.
pub fn load_from_bytes(bytes: &[u8], origin: &Path) -> Result<Config, ConfigError> {
    let text = std::str::from_utf8(bytes).map_err(|error| ConfigError {
        file: origin.to_path_buf(),
        problems: vec![Problem::new(
            "",
            format!("cannot read the config file: it is not valid UTF-8 ({error})"),
        )],
    })?;
    parse_str(text, origin)
}

/// [`load`] for text already in memory; `origin` names it in errors. Variables come from the
/// process environment.
pub fn parse_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    parse_with_env(text, origin, &|name| std::env::var(name))
}

/// [`parse_str`] reading `${VAR}` through `lookup`, so tests need not touch the process environment.
pub fn parse_with_env(
    text: &str,
    origin: &Path,
    lookup: &dyn Fn(&str) -> Result<String, std::env::VarError>,
) -> Result<Config, ConfigError> {
    let fail = |problems: Vec<Problem>| ConfigError {
        file: origin.to_path_buf(),
        problems,
    };
    prescan::check(text.as_bytes())
        .map_err(|limit| fail(vec![Problem::new("", limit.to_string())]))?;
    let mut root: Value = serde_norway::from_str(text).map_err(|error| {
        fail(vec![Problem::new(
            "",
            plain_types(&format!("not valid YAML: {error}")),
        )])
    })?;
    root.apply_merge().map_err(|error| {
        fail(vec![Problem::new(
            "",
            format!("invalid YAML merge: {error}"),
        )])
    })?;
    let mut problems = Vec::new();
    let mut secrets = redact::Secrets::default();
    expand::expand_value(&mut root, "", lookup, &mut problems, &mut secrets);
    secrets.collect_connection_secrets(&root, &problems);
    let Value::Mapping(mut top) = root else {
        return Err(fail(vec![Problem::new(
            "",
            "the file must be a YAML mapping with at least `state_dir:` (see config/ferry.yaml for every key)",
        )]));
    };
    let connections_value = top.shift_remove("connections");
    let adapters_value = top.shift_remove("adapters");
    let replicators_value = top.shift_remove("replicators");

    // Top-level settings (everything but the connections and pipelines).
    let parsed_top: Option<Config> = deserialize_section(Value::Mapping(top), "", &mut problems);

    // Connections, one by one.
    let mut connections = std::collections::BTreeMap::new();
    let mut broken_connections = BTreeSet::new();
    match connections_value {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(entries)) => {
            for (key, value) in entries {
                let name = match &key {
                    Value::String(name) => name.clone(),
                    Value::Number(number) => number.to_string(),
                    other => {
                        problems.push(Problem::new(
                            "connections",
                            format!(
                                "connection names must be strings, not {}",
                                describe(other)
                            ),
                        ));
                        continue;
                    }
                };
                let path = yaml_path::join_key("connections", &name);
                match deserialize_section::<ConnectionConfig>(value, &path, &mut problems) {
                    Some(connection) => {
                        connections.insert(name, connection);
                    }
                    None => {
                        broken_connections.insert(name);
                    }
                }
            }
        }
        Some(other) => problems.push(Problem::new(
            "connections",
            format!(
                "expected a mapping of connection name to settings (e.g. `east: {{ servers: [\"nats://127.0.0.1:4222\"] }}`), not {}",
                describe(&other)
            ),
        )),
    }

    // Pipelines, one by one, remembering their positions in the file.
    let (adapters, adapter_indices) =
        deserialize_list::<AdapterConfig>(adapters_value, "adapters", &mut problems);
    let (replicators, replicator_indices) =
        deserialize_list::<ReplicatorConfig>(replicators_value, "replicators", &mut problems);

    // Validate what parsed, so one run reports everything; a section that failed to parse is left
    // out (and references to a connection that failed are not reported twice), and problems
    // under a key that already has one are not reported again.
    let mut config = parsed_top.unwrap_or_else(|| Config {
        name: None,
        state_dir: PathBuf::from("."),
        monitor: None,
        shutdown_timeout: units::HumanDuration(Duration::from_secs(10)),
        connections: Default::default(),
        adapters: Vec::new(),
        replicators: Vec::new(),
    });
    config.connections = connections;
    config.adapters = adapters;
    config.replicators = replicators;
    let parse_problems = problems.clone();
    let positions = validate::Positions {
        adapters: &adapter_indices,
        replicators: &replicator_indices,
        broken_connections: &broken_connections,
    };
    for problem in validate::validate_parts(&config, &positions) {
        // A key that failed to parse was removed before validation; what validation then says
        // about it, its parents (`limit.sample` is missing) or its children is a consequence, not
        // news.
        let covered = parse_problems.iter().any(|seen| {
            !seen.path.is_empty()
                && !problem.path.is_empty()
                && (within(&problem.path, &seen.path) || within(&seen.path, &problem.path))
        });
        if !covered && !problems.contains(&problem) {
            problems.push(problem);
        }
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(fail(
            problems
                .into_iter()
                .map(|problem| secrets.redact(problem))
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::env::VarError;

    fn env(name: &str) -> Result<String, VarError> {
        match name {
            "NATS_TOKEN" => Ok("s3cret".into()),
            "STATE" => Ok("/tmp/ferry-state".into()),
            _ => Err(VarError::NotPresent),
        }
    }

    fn parse(yaml: &str) -> Result<Config, ConfigError> {
        parse_with_env(yaml, Path::new("ferry.yaml"), &env)
    }

    fn paths(result: Result<Config, ConfigError>) -> Vec<String> {
        match result {
            Ok(_) => Vec::new(),
            Err(error) => error.problems.into_iter().map(|p| p.path).collect(),
        }
    }

    const MINIMAL: &str = r#"
state_dir: ${STATE}
connections:
  east:
    servers: ["nats://127.0.0.1:4222"]
    token: "${NATS_TOKEN}"
adapters:
  - name: lifecycle
    kind: choria_lifecycle
    connection: east
    subjects: ["choria.lifecycle.event.>"]
    queue_group: ferry
    output:
      stream: FERRY_LIFECYCLE
      subject: "ferry.lifecycle.{type}.{component}"
"#;

    #[test]
    fn a_minimal_config_loads_with_defaults() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.state_dir, PathBuf::from("/tmp/ferry-state"));
        assert_eq!(
            config.connections["east"].token.as_ref().unwrap().expose(),
            "s3cret"
        );
        assert_eq!(config.shutdown_timeout.0, Duration::from_secs(10));
        let adapter = &config.adapters[0];
        assert_eq!(adapter.max_in_flight, 1024);
        assert_eq!(adapter.spool.max_bytes.0, 1 << 30);
        assert_eq!(adapter.output_connection(), "east");
        assert_eq!(adapter.stream_subjects(), ["ferry.lifecycle.>"]);
        assert!(adapter.output.create);
        assert_eq!(
            summary(&config),
            ["adapter lifecycle: choria_lifecycle on east [choria.lifecycle.event.>] queue ferry -> stream FERRY_LIFECYCLE on east as ferry.lifecycle.{type}.{component}"]
        );
    }

    #[test]
    fn unset_variables_are_reported_with_their_path() {
        let error = parse(&MINIMAL.replace("${NATS_TOKEN}", "${NOPE}")).unwrap_err();
        assert_eq!(error.problems.len(), 1, "{error}");
        assert_eq!(
            error.problems[0].to_string(),
            "connections.east.token: environment variable \"NOPE\" is not set (export it before starting ferry, or write $${NOPE} for a literal ${NOPE})"
        );
    }

    #[test]
    fn every_problem_is_collected_at_once() {
        let yaml = MINIMAL.replace(
            "    queue_group: ferry\n",
            "    queue_group: ferry\n    outptu: x\n",
        ) + r#"  - name: second
    kind: choria_registration
    connection: nowhere
    subjects: ["mcollective.broadcast.agent.registration"]
    spool: { max_bytes: 1x }
    output:
      stream: REG
      subject: "choria.stream.input.registration.{sender}"
  - name: third
    kind: choria_registration
    connection: nowhere
    subjects: ["a.b"]
    output:
      stream: REG3
      subject: "c.{sender}"
shutdown_timeout: 1x
replicators:
  - name: r
"#;
        let error = parse(&yaml).unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("ferry.yaml: 6 problems\n  "), "{text}");
        assert_eq!(
            error
                .problems
                .iter()
                .map(|p| p.path.as_str())
                .collect::<Vec<_>>(),
            [
                "shutdown_timeout",
                "adapters[0].outptu",
                "adapters[1].spool.max_bytes",
                "replicators[0].from",
                "adapters[1].connection",
                "adapters[2].connection",
            ],
            "{text}"
        );
        assert!(text.contains(
            "  adapters[0].outptu: unknown key \"outptu\" (did you mean \"output\"? valid keys: name, kind,"
        ), "{text}");
        assert!(
            text.contains("  adapters[1].spool.max_bytes: invalid size \"1x\""),
            "{text}"
        );
        assert!(
            text.contains("  shutdown_timeout: invalid duration \"1x\""),
            "{text}"
        );
    }

    #[test]
    fn several_problems_in_one_section() {
        let yaml = MINIMAL.replace(
            "    queue_group: ferry\n",
            "    queue_group: ferry\n    bogus: 1\n    max_in_flight: lots\n    spool: { max_bytes: 1x, extra: 2 }\n",
        );
        assert_eq!(
            paths(parse(&yaml)),
            [
                "adapters[0].bogus",
                "adapters[0].max_in_flight",
                "adapters[0].spool.max_bytes",
                "adapters[0].spool.extra",
            ]
        );
    }

    #[test]
    fn missing_keys_and_wrong_shapes() {
        assert_eq!(paths(parse("connections: {}\n")), ["state_dir"]);
        let error = parse("state_dir: x\nadapters:\n  - name: a\n").unwrap_err();
        assert_eq!(error.problems[0].path, "adapters[0].kind");
        assert!(error.problems[0].message.contains("is required"));
        assert_eq!(
            paths(parse("state_dir: x\nconnections: [a]\nadapters: {a: 1}\n")),
            ["connections", "adapters"]
        );
        assert_eq!(paths(parse("- a\n")), [""]);
        assert_eq!(paths(parse("a: [\n")), [""]);
        assert_eq!(
            paths(parse(
                "state_dir: x\nconnections:\n  east:\n    servers: nats://x\n"
            )),
            ["connections.east.servers"]
        );
        assert_eq!(
            paths(parse("state_dir: x\nconnections:\n  east:\n")),
            ["connections.east.servers"]
        );
        let error = parse("state_dir: x\nconnections:\n  east: [1]\n").unwrap_err();
        assert!(
            error.problems[0].message.contains("expected a mapping"),
            "{error}"
        );
    }

    #[test]
    fn unknown_kinds_say_the_choices() {
        let error = parse(&MINIMAL.replace("kind: choria_lifecycle", "kind: choria_lifecycel"))
            .unwrap_err();
        assert_eq!(error.problems.len(), 1, "{error}");
        assert_eq!(
            error.problems[0].to_string(),
            "adapters[0].kind: unknown value \"choria_lifecycel\" (did you mean \"choria_lifecycle\"? use one of: choria_lifecycle, choria_registration, passthrough)"
        );
    }

    #[test]
    fn a_broken_connection_is_not_reported_again_by_its_users() {
        let yaml = MINIMAL.replace("    token:", "    tokn:");
        assert_eq!(paths(parse(&yaml)), ["connections.east.tokn"]);
    }

    #[test]
    fn validation_does_not_repeat_expansion_problems() {
        let yaml = MINIMAL.replace("nats://127.0.0.1:4222", "${NATS_URL}");
        assert_eq!(paths(parse(&yaml)), ["connections.east.servers[0]"]);
    }

    #[test]
    fn merge_keys_work() {
        let yaml = r#"
state_dir: x
connections:
  east:
    servers: ["nats://127.0.0.1:4222"]
x-output: &output
  stream: S
adapters:
  - name: a
    kind: passthrough
    connection: east
    subjects: ["in.>"]
    output: { <<: *output, subject: "out.{subject}" }
"#;
        // `x-output` is not a key of the schema: extension keys are rejected like any other.
        assert_eq!(paths(parse(yaml)), ["x-output"]);
        let yaml = yaml
            .replace("x-output: &output\n  stream: S\n", "")
            .replace(
                "output: { <<: *output, subject",
                "output: { <<: { stream: S }, subject",
            );
        assert_eq!(parse(&yaml).unwrap().adapters[0].output.stream, "S");
    }

    /// [`MINIMAL`] with one replicator whose body (indented four spaces) is `body`.
    fn with_replicator(body: &str) -> String {
        format!("{MINIMAL}replicators:\n  - name: copy\n    from: {{ connection: east, stream: FERRY_LIFECYCLE }}\n    to: {{ connection: east, stream: COPY, subject_prefix: copy }}\n{body}")
    }

    #[test]
    fn replicator_sections_report_their_paths() {
        assert_eq!(paths(parse(&with_replicator(""))), Vec::<String>::new());
        // A mistake inside a value is reported there, not again at the value.
        let error = parse(&with_replicator("    start: { since: 1x }\n")).unwrap_err();
        assert_eq!(error.problems.len(), 1, "{error}");
        assert_eq!(
            error.problems[0].to_string(),
            "replicators[0].start.since: invalid duration \"1x\" (use e.g. 500ms, 30s, 5m, 1h30m, 7d)"
        );
        let error = parse(&with_replicator("    start: first\n")).unwrap_err();
        assert_eq!(
            error.problems[0].to_string(),
            "replicators[0].start: invalid start \"first\" (use all, new, { sequence: N }, { time: RFC3339 } or { since: DURATION })"
        );
        assert_eq!(
            paths(parse(&with_replicator(
                "    start: { sequence: 1, since: 1h }\n"
            ))),
            ["replicators[0].start"]
        );
        assert_eq!(
            paths(parse(&with_replicator("    start: { squence: 1 }\n"))),
            ["replicators[0].start.squence"]
        );
        let error = parse(&with_replicator(
            "    limit: { rate: fast, bytes: 1x/s, sample: { key: { field: a }, interval: 1x } }\n",
        ))
        .unwrap_err();
        assert_eq!(
            error
                .problems
                .iter()
                .map(|p| p.path.as_str())
                .collect::<Vec<_>>(),
            [
                "replicators[0].limit.rate",
                "replicators[0].limit.bytes",
                "replicators[0].limit.sample.interval",
            ],
            "{error}"
        );
        assert!(
            error.problems[0]
                .message
                .contains("invalid rate \"fast\" (use e.g. 2000/s"),
            "{error}"
        );
        // A sampling section that failed to parse is not reported again as missing by advisories.
        assert_eq!(
            paths(parse(&with_replicator(
                "    limit: { sample: { key: { field: a, header: b }, interval: 1h } }\n    advisories: { subject: \"adv.{event}\" }\n"
            ))),
            ["replicators[0].limit.sample.key"]
        );
        assert_eq!(
            paths(parse(&with_replicator(
                "    ordering: strict\n    on_reject: drop\n    bogus: 1\n"
            ))),
            [
                "replicators[0].ordering",
                "replicators[0].on_reject",
                "replicators[0].bogus"
            ]
        );
        // Positions stay those of the file when an earlier entry fails to parse.
        let yaml = with_replicator("")
            + "  - name: broken\n  - name: copy2\n    from: { connection: east, stream: X }\n    to: { connection: nowhere, stream: X }\n";
        assert_eq!(
            paths(parse(&yaml)),
            ["replicators[1].from", "replicators[2].to.connection"]
        );
        assert_eq!(
            paths(parse(&format!("{MINIMAL}replicators: {{ a: 1 }}\n"))),
            ["replicators"]
        );
    }

    #[test]
    fn replicators_are_summarised() {
        let config = parse(&with_replicator(
            "    filter: { subjects: [\"ferry.lifecycle.>\"] }\n    start: { since: 2h }\n    ordering: subject\n    limit:\n      rate: 100/m\n      bytes: 10MiB/s\n      sample: { key: { field: sender }, interval: 1h }\n    advisories: { subject: \"adv.{event}.{value}\" }\n    heartbeat: { subject: ferry.lifecycle.hb, interval: 30s }\n    leader_election: { bucket: ELECT, ttl: 10s }\n",
        ))
        .unwrap();
        assert_eq!(
            summary(&config)[1],
            "replicator copy: east/FERRY_LIFECYCLE [ferry.lifecycle.>] -> east/COPY prefix copy start since 2h, exclusive writes (fenced by sequence: exact at any distance, the target's only writer), ordered per subject, sampled by field sender every 1h, rate 100/m, bytes 10MiB/s, advisories on adv.{event}.{value}, heartbeat every 30s, elected in ELECT"
        );
        let config = parse(&with_replicator("")).unwrap();
        assert_eq!(
            summary(&config)[1],
            "replicator copy: east/FERRY_LIFECYCLE -> east/COPY prefix copy start all, exclusive writes (fenced by sequence: exact at any distance, the target's only writer)"
        );
        let mut config = parse(&with_replicator("")).unwrap();
        config.replicators[0].to.writes = replicator::Writes::Shared;
        assert!(summary(&config)[1].ends_with(
            "start all, shared writes (Nats-Msg-Id: exact while a replay falls inside the target's duplicate window)"
        ));
    }

    #[test]
    fn load_names_the_file() {
        let error = load(Path::new("/nonexistent/ferry.yaml")).unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("/nonexistent/ferry.yaml: 1 problem\n  cannot read the config file:"),
            "{text}"
        );
    }

    #[test]
    fn edit_distance_suggestions() {
        assert_eq!(closest("outptu", &["output", "name"]), Some("output"));
        assert_eq!(closest("subjcts", &["subjects"]), Some("subjects"));
        assert_eq!(closest("zzz", &["output", "name"]), None);
    }

    /// Every shipped config file (reference and examples) must be valid; those that reference no
    /// environment variable must load as they are.
    #[test]
    fn shipped_configs_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut files = Vec::new();
        for dir in [root.clone(), root.join("examples")] {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    files.push(path);
                }
            }
        }
        files.sort();
        let names: Vec<String> = files
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        for expected in [
            "ferry.yaml",
            "lifecycle.yaml",
            "registration.yaml",
            "archive.yaml",
            "demo.yaml",
            "replicate.yaml",
            "registration-sampled.yaml",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "config {expected} is missing"
            );
        }
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            if let Err(error) = parse_with_env(&text, &file, &|name| Ok(format!("value-of-{name}")))
            {
                panic!("{error}");
            }
        }
        for plain in ["ferry.yaml", "examples/demo.yaml"] {
            load(&root.join(plain)).unwrap_or_else(|error| panic!("{error}"));
        }
    }
}
