//! Configuration: the YAML schema, humane units, `${ENV}` expansion and validation (SPEC section 3).
//!
//! [`load`] is the one way in ([`check_file`] for `ferry check`, which also keeps the warnings
//! and the secrets to hide from the summary): it reads the file, expands `${VAR}` references,
//! turns each section (the top-level settings, each connection, each adapter, each replicator)
//! into the schema on its own, and then runs [`validate`]. Sections are deserialized separately, and within a section an offending key is
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
    check_file(path, CheckOptions::default()).into_result()
}

/// How `ferry check` reads a file.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// `--no-env`: `${VAR}` references are not expanded and an unset variable is not an error,
    /// so a file can be checked where its secrets are not (CI). What a key's checks say about
    /// a value that is still a reference depends on the value, so those checks are skipped and
    /// listed in [`Checked::unchecked`] instead.
    pub no_env: bool,
}

/// What checking one config file found.
#[derive(Debug)]
pub struct Checked {
    /// The file checked.
    pub file: PathBuf,
    /// The config, when it is valid (no problems).
    pub config: Option<Config>,
    /// Every problem, in the order `ferry check` lists them; empty when the file is valid.
    pub problems: Vec<Problem>,
    /// With `--no-env`: each key whose checks were skipped because its value is a `${VAR}`
    /// reference, with the variables it needs.
    pub unchecked: Vec<Problem>,
    /// Every value that holds a `${VAR}` reference, expanded or not.
    pub references: Vec<expand::Reference>,
    secrets: redact::Secrets,
}

impl Checked {
    fn failed(file: &Path, problem: Problem) -> Checked {
        Checked {
            file: file.to_path_buf(),
            config: None,
            problems: vec![problem],
            unchecked: Vec::new(),
            references: Vec::new(),
            secrets: Default::default(),
        }
    }

    /// The config, or every problem.
    pub fn into_result(self) -> Result<Config, ConfigError> {
        match self.config {
            Some(config) if self.problems.is_empty() => Ok(config),
            _ => Err(ConfigError {
                file: self.file,
                problems: self.problems,
            }),
        }
    }

    /// [`summary`] of the valid config (empty when it is not). Values show as ferry runs with
    /// them: expanded from the environment (or as written with `--no-env`), except that a
    /// connection's credentials never show (`***`), should one also be used elsewhere.
    pub fn summary(&self) -> Vec<String> {
        let Some(config) = &self.config else {
            return Vec::new();
        };
        summary(config)
            .into_iter()
            .map(|line| self.secrets.hide_credentials(&line))
            .collect()
    }

    /// The summary as `ferry check --json` gives it (`null` when the config is not valid).
    pub fn summary_json(&self) -> serde_json::Value {
        match &self.config {
            Some(config) => {
                summary::summary_json(config, &|text| self.secrets.hide_credentials(text))
            }
            None => serde_json::Value::Null,
        }
    }
}

/// Reads and checks the config file at `path`: [`load`] as `ferry check` needs it, with every
/// finding kept.
pub fn check_file(path: &Path, options: CheckOptions) -> Checked {
    // Read at most one byte more than the limit, so a huge file (or /dev/zero) is refused
    // without being read whole.
    let mut bytes = Vec::new();
    let read = std::fs::File::open(path).and_then(|file| {
        use std::io::Read;
        file.take(prescan::MAX_FILE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
    });
    if let Err(error) = read {
        return Checked::failed(
            path,
            Problem::new("", format!("cannot read the config file: {error}")),
        );
    }
    let process = |name: &str| std::env::var(name);
    let environment = if options.no_env {
        expand::Environment::Absent
    } else {
        expand::Environment::Lookup(&process)
    };
    check_bytes(&bytes, path, environment)
}

/// [`load`] for a file's bytes already in memory; `origin` names it in errors. This is what
/// `ferry check` and `ferry run` do after reading the file, so fuzzing it covers them: whatever
/// the bytes, it returns (bounded by [`prescan`]) and never panics.
pub fn load_from_bytes(bytes: &[u8], origin: &Path) -> Result<Config, ConfigError> {
    let process = |name: &str| std::env::var(name);
    check_bytes(bytes, origin, expand::Environment::Lookup(&process)).into_result()
}

fn check_bytes(bytes: &[u8], origin: &Path, environment: expand::Environment<'_>) -> Checked {
    match std::str::from_utf8(bytes) {
        Ok(text) => check_str(text, origin, environment),
        Err(error) => Checked::failed(
            origin,
            Problem::new(
                "",
                format!("cannot read the config file: it is not valid UTF-8 ({error})"),
            ),
        ),
    }
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
    check_str(text, origin, expand::Environment::Lookup(lookup)).into_result()
}

/// Expands, parses and validates `text`, keeping every finding (see [`Checked`]).
pub fn check_str(text: &str, origin: &Path, environment: expand::Environment<'_>) -> Checked {
    if let Err(limit) = prescan::check(text.as_bytes()) {
        return Checked::failed(origin, Problem::new("", limit.to_string()));
    }
    let mut root: Value = match serde_norway::from_str(text) {
        Ok(root) => root,
        Err(error) => {
            return Checked::failed(
                origin,
                Problem::new("", plain_types(&format!("not valid YAML: {error}"))),
            )
        }
    };
    if let Err(error) = root.apply_merge() {
        return Checked::failed(
            origin,
            Problem::new("", format!("invalid YAML merge: {error}")),
        );
    }
    let mut problems = Vec::new();
    let mut secrets = redact::Secrets::default();
    let mut references = Vec::new();
    expand::expand_value(
        &mut root,
        "",
        environment,
        &mut problems,
        &mut secrets,
        &mut references,
    );
    // The values that are not what ferry would run with: those whose expansion failed (their
    // problem says why) and, without an environment, every reference.
    let no_env = matches!(environment, expand::Environment::Absent);
    let mut unresolved: Vec<String> = problems.iter().map(|p| p.path.clone()).collect();
    if no_env {
        unresolved.extend(references.iter().map(|r| r.path.clone()));
    }
    let expansion_problems = problems.len();
    secrets.collect_connection_secrets(&root, &unresolved);
    let Value::Mapping(mut top) = root else {
        return Checked::failed(
            origin,
            Problem::new(
                "",
                "the file must be a YAML mapping with at least `state_dir:` (see config/ferry.yaml for every key)",
            ),
        );
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
    let adapters = deserialize_list::<AdapterConfig>(adapters_value, "adapters", &mut problems);
    let replicators =
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
    config.adapters = adapters.parsed;
    config.replicators = replicators.parsed;
    let parse_problems = problems.clone();
    let positions = validate::Positions {
        adapters: &adapters.positions,
        replicators: &replicators.positions,
        broken_connections: &broken_connections,
        broken_adapters: &adapters.broken_names,
        broken_replicators: &replicators.broken_names,
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

    // What parsing and validation say about a value that is not the one ferry would run with
    // depends on that value: after a failed expansion it is a consequence of the reported
    // problem; without an environment it is not known yet. Only a type that no string can have
    // (`max_in_flight: "${N}"` is a string wherever the number comes from) is wrong either way.
    let mut unchecked: Vec<Problem> = Vec::new();
    let mut kept = problems.split_off(expansion_problems);
    for problem in &mut kept {
        if problem.message.starts_with("invalid type: string")
            && references.iter().any(|r| r.path == problem.path)
        {
            problem.message.push_str(
                "; a value with a ${VAR} reference is always a string, so write this one in the file",
            );
        }
    }
    kept.retain(|problem| {
        let Some(at) = unresolved
            .iter()
            .find(|path| !problem.path.is_empty() && within(&problem.path, path))
        else {
            return true;
        };
        if problem.message.starts_with("invalid type: string") {
            return true;
        }
        if let Some(reference) = references.iter().find(|r| &r.path == at) {
            if no_env && !unchecked.iter().any(|u| &u.path == at) {
                let variables: Vec<String> = reference
                    .variables
                    .iter()
                    .map(|name| format!("${{{name}}}"))
                    .collect();
                unchecked.push(Problem::new(
                    at.clone(),
                    format!(
                        "not checked: the value comes from {}, which --no-env leaves unexpanded (checked when ferry runs, or by `ferry check` with the variables set)",
                        variables.join(", ")
                    ),
                ));
            }
        }
        false
    });
    problems.extend(kept);
    // In file order, as the references were found.
    unchecked.sort_by_key(|u| references.iter().position(|r| r.path == u.path));
    let problems: Vec<Problem> = problems
        .into_iter()
        .map(|problem| secrets.redact(problem))
        .collect();
    Checked {
        file: origin.to_path_buf(),
        config: problems.is_empty().then_some(config),
        problems,
        unchecked,
        references,
        secrets,
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
            "adapters[0].kind: unknown value \"choria_lifecycel\" (did you mean \"choria_lifecycle\"? use one of: choria_lifecycle, choria_registration, choria_reply, passthrough)"
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
    fn duplicate_names_are_reported_alongside_the_errors_of_entries_that_did_not_parse() {
        let yaml = MINIMAL.replace("kind: choria_lifecycle", "kind: choria_lifecycel")
            + "  - name: lifecycle\n    kind: passthrough\n    connection: east\n    subjects: [\"in.>\"]\n    output: { stream: IN, subject: \"out.{subject}\" }\n"
            + "replicators:\n  - name: copy\n    from: { connection: east, stream: IN }\n  - name: copy\n    from: { connection: east, stream: IN }\n    to: { connection: east, stream: COPY }\n";
        assert_eq!(
            paths(parse(&yaml)),
            [
                "adapters[0].kind",
                "replicators[0].to",
                "adapters[1].name",
                "replicators[1].name"
            ]
        );
    }

    fn check_without_env(yaml: &str) -> Checked {
        check_str(yaml, Path::new("ferry.yaml"), expand::Environment::Absent)
    }

    #[test]
    fn without_the_environment_checks_that_depend_on_a_reference_are_skipped() {
        let yaml = MINIMAL
            .replace("nats://127.0.0.1:4222", "nats://${HOST}:4222")
            .replace(
                "    queue_group: ferry\n",
                "    queue_group: ferry\n    spool: { max_bytes: \"${SPOOL}\" }\n",
            );
        let checked = check_without_env(&yaml);
        assert_eq!(checked.problems, [], "{:?}", checked.problems);
        let config = checked.config.as_ref().expect("valid");
        // As written, and the skipped key at its default for the other checks.
        assert_eq!(config.state_dir, PathBuf::from("${STATE}"));
        assert_eq!(config.adapters[0].spool.max_bytes.0, 1 << 30);
        let unchecked: Vec<&str> = checked.unchecked.iter().map(|u| u.path.as_str()).collect();
        assert_eq!(
            unchecked,
            ["connections.east.servers[0]", "adapters[0].spool.max_bytes"]
        );
        assert!(checked.unchecked[1].message.contains("${SPOOL}"));

        // Mistakes elsewhere, broken references and types no string can have are still found.
        let yaml = yaml
            .replace("queue_group: ferry", "queue_group: ferry\n    outptu: x")
            .replace("${NATS_TOKEN}", "${1X}")
            .replace(
                "    queue_group: ferry\n",
                "    queue_group: ferry\n    max_in_flight: \"${N}\"\n",
            );
        let checked = check_without_env(&yaml);
        let problems: Vec<&str> = checked.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            problems,
            [
                "connections.east.token",
                "adapters[0].max_in_flight",
                "adapters[0].outptu"
            ],
            "{:?}",
            checked.problems
        );
        assert!(checked.problems[1].message.ends_with(
            "a value with a ${VAR} reference is always a string, so write this one in the file"
        ));
    }

    #[test]
    fn a_failed_expansion_is_reported_once() {
        let yaml = MINIMAL.replace(
            "    queue_group: ferry\n",
            "    queue_group: ferry\n    spool: { max_bytes: \"${SPOOL}\" }\n",
        );
        assert_eq!(paths(parse(&yaml)), ["adapters[0].spool.max_bytes"]);
    }

    #[test]
    fn the_summary_never_shows_a_credential() {
        let yaml = MINIMAL.replace("choria.lifecycle.event.>", "events.${NATS_TOKEN}.>");
        let checked = check_str(
            &yaml.replace("s3cret", "x"),
            Path::new("ferry.yaml"),
            expand::Environment::Lookup(&|name| match name {
                "NATS_TOKEN" => Ok("tok3n-value".into()),
                other => env(other),
            }),
        );
        assert_eq!(checked.problems, []);
        assert!(
            checked.summary()[0].contains("[events.***.>]"),
            "{:?}",
            checked.summary()
        );
        let json = checked.summary_json().to_string();
        assert!(!json.contains("tok3n-value"), "{json}");
        assert!(json.contains("events.***.>"), "{json}");
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
