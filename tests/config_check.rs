//! `ferry check -c FILE` as a user runs it (SPEC sections 2 and 3): exit 0 with one summary line per
//! pipeline for a valid file, exit 1 with every problem listed, each with its path, otherwise.
//! No server is needed: `check` connects nowhere.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::ferry_command;

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Runs `ferry check -c path` with `env` set and the variables in `unset` removed.
fn check(path: &Path, env: &[(&str, &str)], unset: &[&str]) -> Output {
    let mut command = ferry_command();
    command.arg("check").arg("-c").arg(path);
    for (key, value) in env {
        command.env(key, value);
    }
    for key in unset {
        command.env_remove(key);
    }
    command.output().expect("ferry binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn assert_valid(output: &Output, file: &Path) {
    assert_eq!(
        output.status.code(),
        Some(0),
        "ferry check -c {} failed\nstdout:\n{}\nstderr:\n{}",
        file.display(),
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// Writes `yaml` to a fresh temporary file; the directory lives as long as the returned guard.
fn write_config(yaml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ferry.yaml");
    std::fs::write(&path, yaml).expect("write config");
    (dir, path)
}

#[test]
fn the_reference_config_is_valid() {
    let file = repo_file("config/ferry.yaml");
    let output = check(&file, &[], &[]);
    assert_valid(&output, &file);
    let stdout = text(&output.stdout);
    for name in ["lifecycle", "registration", "replies", "archive"] {
        assert!(
            stdout.contains(&format!("adapter {name}: ")),
            "no summary line for {name}:\n{stdout}"
        );
    }
    assert!(
        stdout.lines().any(|l| l.starts_with(
            "replicator registration-to-west: east/CHORIA_REGISTRATION [choria.stream.input.registration.>, ferry.heartbeat.registration] -> west/CHORIA_REGISTRATION start all, exclusive writes (fenced by sequence: exact at any distance, the target's only writer), sampled by field sender every 1h"
        )),
        "no summary line for the replicator:\n{stdout}"
    );
}

#[test]
fn the_examples_are_valid() {
    for (example, line) in [
        (
            "lifecycle.yaml",
            "adapter lifecycle: choria_lifecycle on east [choria.lifecycle.event.>] queue ferry -> stream FERRY_LIFECYCLE on east as ferry.lifecycle.{type}.{component}",
        ),
        (
            "registration.yaml",
            "adapter registration: choria_registration on choria [*.broadcast.agent.registration] queue ferry -> stream CHORIA_REGISTRATION on choria as choria.stream.input.registration.{sender}",
        ),
        (
            "archive.yaml",
            "adapter telemetry: passthrough on edge [telemetry.*.>] queue ferry-archive -> stream TELEMETRY_ARCHIVE on archive as archive.telemetry.{subject}",
        ),
        (
            "demo.yaml",
            "adapter registration: choria_registration on local [*.broadcast.agent.registration] -> stream CHORIA_REGISTRATION on local as choria.stream.input.registration.{sender}",
        ),
        (
            "replicate.yaml",
            "replicator orders-to-west: east/ORDERS -> west/ORDERS start all, exclusive writes (fenced by sequence: exact at any distance, the target's only writer)",
        ),
        (
            "registration-sampled.yaml",
            "replicator registration-to-west: east/CHORIA_REGISTRATION -> west/CHORIA_REGISTRATION start new, exclusive writes (fenced by sequence: exact at any distance, the target's only writer), sampled by field sender every 1h, advisories on ferry.advisories.registration.{event}.{value}, heartbeat every 30s",
        ),
    ] {
        let file = repo_file(&format!("config/examples/{example}"));
        let output = check(&file, &[], &[]);
        assert_valid(&output, &file);
        let stdout = text(&output.stdout);
        assert!(
            stdout.lines().any(|l| l == line),
            "{example}: expected the summary line\n  {line}\ngot:\n{stdout}"
        );
    }
}

/// Every config file the repository ships: the reference file and everything in
/// config/examples/, whatever its name, so a new example cannot be left out.
fn shipped_configs() -> Vec<PathBuf> {
    let mut files = vec![repo_file("config/ferry.yaml")];
    let examples = repo_file("config/examples");
    let entries = std::fs::read_dir(&examples)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", examples.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[test]
fn every_shipped_config_passes_check_as_shipped_without_warnings() {
    let files = shipped_configs();
    // The reference file and the six examples at least: an empty listing must not pass.
    assert!(files.len() >= 7, "{files:?}");
    let dir = tempfile::tempdir().expect("temp dir");
    for file in files {
        let name = file.file_name().expect("a file name").to_owned();
        // Checked as a copy that other users can read (the mode git gives it on most
        // checkouts), so the warning about literal secrets in such a file is always in play.
        // Paths in the files are relative to the working directory, not to the file, so the
        // copy means the same.
        let copy = dir.path().join(&name);
        std::fs::copy(&file, &copy).expect("copy config");
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).expect("chmod 644");
        let output = ferry_command()
            .env_clear()
            .arg("check")
            .arg("-c")
            .arg(&copy)
            .output()
            .expect("ferry binary runs");
        assert_valid(&output, &file);
        let stderr = text(&output.stderr);
        assert!(
            stderr.trim().is_empty(),
            "{} as shipped: ferry check says more than ok:\n{stderr}",
            file.display()
        );
    }
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let yaml = r#"
state_dir: /tmp/ferry-check-test
connections:
  east:
    servers: ["nats://127.0.0.1:4222"]
    token: "${FERRY_CHECK_TEST_UNSET_TOKEN}"
adapters:
  - name: lifecycle
    kind: choria_lifecycle
    connection: east
    subjects: ["choria.lifecycle.event.>"]
    outptu: typo
    output:
      stream: FERRY_LIFECYCLE
      subject: "ferry.lifecycle.{type}.{component}"
      duplicate_window: 1h
  - name: registration
    kind: choria_registration
    connection: nowhere
    subjects: ["mcollective.broadcast.agent.registration"]
    spool: { max_bytes: 1x }
    output:
      stream: CHORIA_REGISTRATION
      subject: "choria.stream.input.registration.{sender}"
      max_age: 1x
  - name: loop
    kind: passthrough
    connection: east
    subjects: ["events.>"]
    output:
      stream: EVENTS
      subject: "events.copy.{subject}"
"#;
    let (_dir, file) = write_config(yaml);
    let output = check(&file, &[], &["FERRY_CHECK_TEST_UNSET_TOKEN"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!("{}: 7 problems", file.display())),
        "the header names the file and the count:\n{stderr}"
    );
    for (path, needle) in [
        (
            "connections.east.token",
            "environment variable \"FERRY_CHECK_TEST_UNSET_TOKEN\" is not set",
        ),
        ("adapters[0].outptu", "unknown key \"outptu\""),
        (
            "adapters[0].output.duplicate_window",
            "must be shorter than 30m",
        ),
        (
            "adapters[1].connection",
            "\"nowhere\", which is not defined",
        ),
        ("adapters[1].spool.max_bytes", "invalid size \"1x\""),
        ("adapters[1].output.max_age", "invalid duration \"1x\""),
        (
            "adapters[2].output.subject",
            "overlaps input subject \"events.>\"",
        ),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{path}: ")) && l.contains(needle)),
            "expected a line `{path}: ...{needle}...` in:\n{stderr}"
        );
    }
    assert!(
        !text(&output.stdout).contains("adapter "),
        "no summary for an invalid file"
    );
}

#[test]
fn wrong_types_are_named_in_config_terms_not_rust_types() {
    let yaml = r#"
state_dir: /tmp/ferry-check-test
connections:
  east:
    servers: ["nats://127.0.0.1:4222"]
    subscription_capacity: lots
adapters:
  - name: lifecycle
    kind: choria_lifecycle
    connection: east
    subjects: ["choria.lifecycle.event.>"]
    max_in_flight: 1.5
    allow_unknown_types: maybe
    output:
      stream: FERRY_LIFECYCLE
      subject: "ferry.lifecycle.{type}.{component}"
      storage: { kind: file }
replicators:
  - name: copy
    from: { connection: east, stream: A }
    to: { connection: east, stream: B }
    start: { sequence: abc }
"#;
    let (_dir, file) = write_config(yaml);
    let output = check(&file, &[], &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    for line in [
        "connections.east.subscription_capacity: invalid type: string \"lots\", expected a whole number (0 or more)",
        "adapters[0].max_in_flight: invalid type: floating point `1.5`, expected a whole number (0 or more)",
        "adapters[0].allow_unknown_types: invalid type: string \"maybe\", expected true or false",
        "adapters[0].output.storage: invalid type: map, expected one of this key's words, written plainly (not a mapping or list)",
        "replicators[0].start.sequence: invalid type: string \"abc\", expected a whole number (0 or more)",
    ] {
        assert!(
            stderr.lines().any(|l| l.trim() == line),
            "expected\n  {line}\nin:\n{stderr}"
        );
    }
    for rust in ["usize", "u64", "a boolean", "Value::", "Tagged"] {
        assert!(!stderr.contains(rust), "{rust} in:\n{stderr}");
    }
}

#[test]
fn a_set_variable_is_expanded() {
    let yaml = r#"
state_dir: /tmp/ferry-check-test
connections:
  east:
    servers: ["${FERRY_CHECK_TEST_URL}"]
adapters:
  - name: registration
    kind: choria_registration
    connection: east
    subjects: ["mcollective.broadcast.agent.registration"]
    output:
      stream: CHORIA_REGISTRATION
      subject: "choria.stream.input.registration.{sender}"
"#;
    let (_dir, file) = write_config(yaml);
    let output = check(
        &file,
        &[("FERRY_CHECK_TEST_URL", "nats://127.0.0.1:4222")],
        &[],
    );
    assert_valid(&output, &file);
    let output = check(
        &file,
        &[("FERRY_CHECK_TEST_URL", "http://127.0.0.1:4222")],
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    // Values from the environment are shown as their reference, never expanded.
    assert!(
        text(&output.stderr).contains(
            "connections.east.servers[0]: \"${FERRY_CHECK_TEST_URL}\" has unsupported scheme"
        ),
        "{}",
        text(&output.stderr)
    );
}

/// A file with one valid replicator; tests break one key at a time.
const REPLICATOR: &str = r#"
state_dir: /tmp/ferry-check-test
connections:
  east:
    servers: ["nats://127.0.0.1:4222"]
  west:
    servers: ["nats://127.0.0.1:4223"]
replicators:
  - name: registration-to-west
    from: { connection: east, stream: CHORIA_REGISTRATION }
    to:
      connection: west
      stream: CHORIA_REGISTRATION
      create: true
      subject_prefix: FLEET
    start: { since: 1h }
    limit:
      rate: 2000/s
      sample: { key: { field: sender }, interval: 1h, size_trigger: 1KiB }
    advisories: { subject: "ferry.advisories.{event}.{value}", timeout_after: 20m }
    heartbeat: { subject: CHORIA_REGISTRATION._heartbeat, interval: 30s }
"#;

#[test]
fn a_valid_replicator_passes() {
    let (_dir, file) = write_config(REPLICATOR);
    let output = check(&file, &[], &[]);
    assert_valid(&output, &file);
    let stdout = text(&output.stdout);
    assert!(
        stdout.lines().any(|l| l
            == "replicator registration-to-west: east/CHORIA_REGISTRATION -> west/CHORIA_REGISTRATION prefix FLEET start since 1h, exclusive writes (fenced by sequence: exact at any distance, the target's only writer), sampled by field sender every 1h, rate 2000/s, advisories on ferry.advisories.{event}.{value}, heartbeat every 30s"),
        "{stdout}"
    );
}

#[test]
fn broken_replicators_report_their_paths() {
    for (from, to, path, needle) in [
        (
            "start: { since: 1h }",
            "start: { time: \"last tuesday\" }",
            "replicators[0].start.time",
            "invalid time \"last tuesday\"",
        ),
        (
            "start: { since: 1h }",
            "start: first",
            "replicators[0].start",
            "invalid start \"first\" (use all, new,",
        ),
        (
            "rate: 2000/s",
            "rate: lots",
            "replicators[0].limit.rate",
            "invalid rate \"lots\" (use e.g. 2000/s",
        ),
        (
            "rate: 2000/s",
            "rate: 2000/s\n      bytes: 100KiB/s",
            "replicators[0].limit.bytes",
            "smaller than 1MiB, the NATS default max payload",
        ),
        (
            "connection: west",
            "connection: nowhere",
            "replicators[0].to.connection",
            "\"nowhere\", which is not defined (defined: east, west)",
        ),
        (
            "      sample: { key: { field: sender }, interval: 1h, size_trigger: 1KiB }\n",
            "",
            "replicators[0].limit.sample",
            "is required when advisories are set",
        ),
        (
            "subject_prefix: FLEET",
            "subject_prefix: FLEET.>",
            "replicators[0].to.subject_prefix",
            "must not contain wildcards",
        ),
    ] {
        assert!(REPLICATOR.contains(from), "fixture lacks {from:?}");
        let (_dir, file) = write_config(&REPLICATOR.replacen(from, to, 1));
        let output = check(&file, &[], &[]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{path}: stderr:\n{stderr}");
        assert!(
            stderr.contains(&format!("{}: 1 problem\n", file.display())),
            "{path}: exactly one problem expected:\n{stderr}"
        );
        assert!(
            stderr
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{path}: ")) && l.contains(needle)),
            "expected a line `{path}: ...{needle}...` in:\n{stderr}"
        );
        assert!(
            !text(&output.stdout).contains("replicator "),
            "no summary for an invalid file"
        );
    }
}

#[test]
fn every_replicator_problem_is_reported_at_once() {
    let yaml = REPLICATOR
        .replacen("start: { since: 1h }", "start: { sequence: 0 }", 1)
        .replacen("from: { connection: east", "from: { connection: north", 1)
        .replacen("interval: 30s", "interval: 10ms", 1)
        + "  - name: registration-to-west\n    from: { connection: east, stream: X }\n    to: { connection: east, stream: X }\n";
    let (_dir, file) = write_config(&yaml);
    let output = check(&file, &[], &[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr:\n{stderr}");
    for (path, needle) in [
        (
            "replicators[0].from.connection",
            "\"north\", which is not defined",
        ),
        ("replicators[0].start.sequence", "must be 1 or more"),
        ("replicators[0].heartbeat.interval", "must be at least 1s"),
        (
            "replicators[1].to.stream",
            "is the source stream itself (east/X)",
        ),
        ("replicators[1].name", "already the name of replicators[0]"),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{path}: ")) && l.contains(needle)),
            "expected a line `{path}: ...{needle}...` in:\n{stderr}"
        );
    }
    assert!(
        stderr.contains(&format!("{}: 5 problems", file.display())),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_is_named() {
    let file = PathBuf::from("/nonexistent/ferry-check-test.yaml");
    let output = check(&file, &[], &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/ferry-check-test.yaml") && stderr.contains("cannot read"),
        "{stderr}"
    );
}

/// Runs `ferry check -c path`, killing it if it has not finished within `deadline`: a file that
/// would take the parser minutes or gigabytes must be refused at once.
fn check_within(path: &Path, deadline: std::time::Duration) -> Output {
    use std::io::Read;
    let mut child = ferry_command()
        .arg("check")
        .arg("-c")
        .arg(path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ferry binary runs");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for ferry") {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ferry check -c {} still ran after {deadline:?}",
                path.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    if let Some(mut pipe) = child.stdout.take() {
        pipe.read_to_end(&mut stdout).expect("stdout");
    }
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_end(&mut stderr).expect("stderr");
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// `ferry check` refuses `yaml` within a few seconds with exactly one problem, `problem`.
#[track_caller]
fn assert_refused_quickly(yaml: &[u8], problem: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("ferry.yaml");
    std::fs::write(&file, yaml).expect("write config");
    let output = check_within(&file, std::time::Duration::from_secs(10));
    assert_eq!(
        text(&output.stderr),
        format!("{}: 1 problem\n  {problem}\n", file.display())
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stdout), "");
}

#[test]
fn an_alias_bomb_padded_past_the_parsers_repetition_limit_is_refused() {
    // 17 KB: one anchored list of 3,500 values used 3,500 times would expand to 12 million
    // values (about a gigabyte); the long list lifts the parser's own repetition limit.
    let bomb = format!(
        "state_dir: /tmp/x\nx: &a [{}]\ny: [{}]\n",
        "1,".repeat(3_500),
        "*a,".repeat(3_500)
    );
    assert_refused_quickly(
        bomb.as_bytes(),
        "YAML aliases would add more than 10000 values once expanded, the limit (each use of an alias copies its anchored node, the aliases inside it included): write the repeated settings out, or share fewer of them (at line 3, column 11)",
    );
    // Aliases of aliases ("billion laughs"): nine levels of nine uses.
    let mut laughs =
        String::from("state_dir: /tmp/x\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..10 {
        let uses = vec![format!("*a{}", level - 1); 9].join(", ");
        laughs.push_str(&format!("a{level}: &a{level} [{uses}]\n"));
    }
    assert_refused_quickly(
        laughs.as_bytes(),
        "YAML aliases would add more than 10000 values once expanded, the limit (each use of an alias copies its anchored node, the aliases inside it included): write the repeated settings out, or share fewer of them (at line 6, column 10)",
    );
}

#[test]
fn deep_nesting_is_refused() {
    // 100,000 nested lists took the parser 20 s (its cost grows with the square of the depth).
    let deep = format!("state_dir: {}", "[".repeat(100_000));
    assert_refused_quickly(
        deep.as_bytes(),
        "lists and mappings nest more than 64 levels deep, the limit (a ferry config needs fewer than ten) (at line 1, column 75)",
    );
}

#[test]
fn a_file_over_one_mebibyte_is_refused() {
    let mut big = b"state_dir: /tmp/x\n".to_vec();
    big.extend(std::iter::repeat_n(b"# padding\n".as_slice(), 200_000).flatten());
    assert_refused_quickly(
        &big,
        "the file is larger than 1048576 bytes (1 MiB), the limit for a config file: a ferry config is a few kilobytes, so check that this is the right file",
    );
}

#[test]
fn anchors_shared_between_pipelines_still_work() {
    let yaml = r#"
state_dir: /tmp/ferry-check-test
connections:
  east:
    servers: ["nats://127.0.0.1:4222"]
adapters:
  - name: lifecycle
    kind: choria_lifecycle
    connection: east
    subjects: ["choria.lifecycle.event.>"]
    filter: &servers_only { match: [ { field: component, equals: server } ] }
    output: { stream: FERRY_LIFECYCLE, subject: "ferry.lifecycle.{type}.{component}" }
  - name: lifecycle-archive
    kind: choria_lifecycle
    connection: east
    subjects: ["choria.lifecycle.event.>"]
    filter: *servers_only
    output: { stream: FERRY_ARCHIVE, subject: "ferry.archive.{type}.{component}" }
"#;
    let (_dir, file) = write_config(yaml);
    assert_valid(&check(&file, &[], &[]), &file);
}

/// Every number `check` accepts, `run` can run: values past what the NATS client or server takes
/// are refused with their path (they passed `check` before, then panicked or failed in `run`).
#[test]
fn numbers_beyond_what_ferry_can_run_are_refused_with_their_paths() {
    let yaml = r#"
state_dir: /tmp/ferry-check-test
connections:
  east:
    servers: ["nats://127.0.0.1:4222"]
    subscription_capacity: 2305843009213693952
adapters:
  - name: pass
    kind: passthrough
    connection: east
    subjects: ["in.>"]
    output:
      stream: PASS
      subject: "out.{subject}"
      max_age: 106752d
      duplicate_window: 106752d
replicators:
  - name: copy
    from: { connection: east, stream: PASS }
    to: { connection: east, stream: COPY, create: true, subject_prefix: copy, max_age: 150000d, duplicate_window: 106752d }
    limit:
      rate: 1e300/1ns
      sample: { key: { field: sender }, interval: 53376d }
    leader_election: { bucket: ELECT, ttl: 106752d }
"#;
    let (_dir, file) = write_config(yaml);
    let output = check(&file, &[], &[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let server = "must be at most 106751d (about 292 years): the NATS server reads durations as 64-bit nanoseconds";
    let expected = [
        "connections.east.subscription_capacity: is 2305843009213693952; must be at most 2305843009213693951, the most the NATS client's subscription buffer can hold (default 65536)".to_string(),
        format!("adapters[0].output.max_age: is 106752d; {server}"),
        format!("adapters[0].output.duplicate_window: is 106752d; {server}"),
        format!("replicators[0].to.max_age: is 150000d; {server}"),
        format!("replicators[0].to.duplicate_window: is 106752d; {server}"),
        "replicators[0].limit.rate: is 1e300/1ns, more messages per second than a number can hold; write a rate a replicator could reach (e.g. 100000/s)".to_string(),
        format!("replicators[0].leader_election.ttl: is 106752d; {server}"),
        "replicators[0].limit.sample.interval: is 53376d; must be at most 53375d with leader_election: the shared sampling state is kept twice this long in a key-value bucket, and the NATS server takes at most 106751d".to_string(),
    ];
    let lines: Vec<&str> = stderr.lines().skip(1).map(str::trim).collect();
    assert_eq!(lines, expected, "{stderr}");
    assert!(stderr.starts_with(&format!("{}: 8 problems\n", file.display())));
}

/// `ferry check` never prints a secret: not a value from the environment (even where it lands in
/// a number field, whose type error would quote it), not a token or password written in the file
/// (even one with a broken `${`), not credentials in a server URL, and not at debug level either.
#[test]
fn check_never_prints_a_secret() {
    let yaml = r#"
state_dir: /tmp/ferry-check-test
connections:
  east:
    servers: ["nats://ferry:url-pa55word@127.0.0.1:4222", "nats://${FERRY_CHECK_TEST_HOST}"]
    subscription_capacity: "${FERRY_CHECK_TEST_SECRET}"
    user: ferry
    password: "lit3ral-pa55${word"
  west:
    servers: ["tls://t0ken-in-url@127.0.0.1:4223"]
    tls: {}
    token: 98765432101
adapters:
  - name: pass
    kind: passthrough
    connection: east
    subjects: ["in.${FERRY_CHECK_TEST_SECRET}.>"]
    max_in_flight: "${FERRY_CHECK_TEST_SECRET}"
    output: { stream: PASS, subject: "out.{subject}" }
"#;
    let (_dir, file) = write_config(yaml);
    let secrets = [
        "s3cret-from-env",
        "url-pa55word",
        "lit3ral-pa55",
        "t0ken-in-url",
        "98765432101",
        "host-pa55",
    ];
    let env = [
        ("FERRY_CHECK_TEST_SECRET", "s3cret-from-env"),
        ("FERRY_CHECK_TEST_HOST", "u:host-pa55@h:zz"),
    ];
    for level in ["warn", "debug", "trace"] {
        let mut command = ferry_command();
        command
            .args(["check", "--log-level", level, "-c"])
            .arg(&file);
        for (key, value) in env {
            command.env(key, value);
        }
        let output = command.output().expect("ferry check");
        let stdout = text(&output.stdout);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        for secret in secrets {
            assert!(
                !stdout.contains(secret) && !stderr.contains(secret),
                "{secret} printed at --log-level {level}:\n{stdout}{stderr}"
            );
        }
        let problems: Vec<&str> = stderr.lines().skip(1).map(str::trim).collect();
        assert_eq!(
            problems,
            [
                "connections.east.password: unterminated \"${\" at character 13 (close it with '}', or write $${ for a literal ${)",
                "connections.east.subscription_capacity: invalid type: string \"${FERRY_CHECK_TEST_SECRET}\", expected a whole number (0 or more); a value with a ${VAR} reference is always a string, so write this one in the file",
                "connections.west.token: invalid type: integer `***`, expected a string (quote it)",
                "adapters[0].max_in_flight: invalid type: string \"${FERRY_CHECK_TEST_SECRET}\", expected a whole number (0 or more); a value with a ${VAR} reference is always a string, so write this one in the file",
                "connections.east.servers[0]: \"nats://***@127.0.0.1:4222\" carries credentials in the URL, which ferry does not use (the NATS client ignores them, so authentication would fail, and URLs are logged): remove them and set them on the connection instead, as user and password (e.g. user: ferry, password: \"${NATS_PASSWORD}\") or token",
                "connections.east.servers[1]: \"nats://***@h:zz\" carries credentials in the URL, which ferry does not use (the NATS client ignores them, so authentication would fail, and URLs are logged): remove them and set them on the connection instead, as user and password (e.g. user: ferry, password: \"${NATS_PASSWORD}\") or token",
                "connections.west.servers[0]: \"tls://***@127.0.0.1:4223\" carries credentials in the URL, which ferry does not use (the NATS client ignores them, so authentication would fail, and URLs are logged): remove them and set them on the connection instead, as user and password (e.g. user: ferry, password: \"${NATS_PASSWORD}\") or token",
            ],
            "{stderr}"
        );
    }
}

/// Runs `ferry check` with `args` before `-c path`, without any of the variables in `unset`.
fn check_with(args: &[&str], path: &Path, env: &[(&str, &str)], unset: &[&str]) -> Output {
    let mut command = ferry_command();
    command.arg("check").args(args).arg("-c").arg(path);
    for (key, value) in env {
        command.env(key, value);
    }
    for key in unset {
        command.env_remove(key);
    }
    command.output().expect("ferry binary runs")
}

/// Type errors and the checks across entries come out of one run: an entry that fails to parse
/// still counts for unique names, so the duplicate does not surface only after the fix.
#[test]
fn type_errors_and_duplicate_names_are_reported_together() {
    let yaml = r#"
state_dir: /tmp/ferry-check-test
connections:
  east:
    servers: ["nats://127.0.0.1:4222"]
adapters:
  - name: events
    kind: passthru
    connection: east
    subjects: ["in.>"]
    output: { stream: IN, subject: "out.{subject}" }
  - name: events
    kind: passthrough
    connection: east
    subjects: ["in2.>"]
    max_in_flight: lots
    output: { stream: IN2, subject: "out2.{subject}" }
replicators:
  - name: events
    from: { connection: east, stream: IN }
    to: { connection: east, stream: COPY, subject_prefix: copy }
    start: first
"#;
    let (_dir, file) = write_config(yaml);
    let output = check(&file, &[], &[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().skip(1).map(str::trim).collect();
    let paths: Vec<&str> = lines
        .iter()
        .filter_map(|line| line.split_once(": ").map(|(path, _)| path))
        .collect();
    assert_eq!(
        paths,
        [
            "adapters[0].kind",
            "adapters[1].max_in_flight",
            "replicators[0].start",
            "adapters[1].name",
            "replicators[0].name",
        ],
        "{stderr}"
    );
    assert!(
        lines[3].contains("\"events\" is already the name of adapters[0]"),
        "{stderr}"
    );
}

/// A config as CI sees it: the secrets and the per-site values come from the environment.
const FROM_ENVIRONMENT: &str = r#"
state_dir: ${FERRY_NOENV_STATE_DIR}
monitor: { listen: "0.0.0.0:${FERRY_NOENV_PORT}" }
shutdown_timeout: ${FERRY_NOENV_SHUTDOWN}
connections:
  east:
    servers: ["nats://${FERRY_NOENV_HOST}:4222"]
    user: ferry
    password: "${FERRY_NOENV_PASSWORD}"
adapters:
  - name: lifecycle
    kind: choria_lifecycle
    connection: east
    subjects: ["choria.lifecycle.event.>"]
    output:
      stream: ${FERRY_NOENV_STREAM}
      subject: "ferry.lifecycle.{type}.{component}"
      duplicate_window: "${FERRY_NOENV_WINDOW}"
replicators:
  - name: copy
    from: { connection: east, stream: "${FERRY_NOENV_STREAM}" }
    to: { connection: east, stream: COPY, subject_prefix: copy }
    heartbeat: { subject: ferry.lifecycle.hb, interval: "${FERRY_NOENV_HEARTBEAT}" }
"#;

const NOENV_VARIABLES: [(&str, &str); 8] = [
    ("FERRY_NOENV_STATE_DIR", "/var/lib/ferry"),
    ("FERRY_NOENV_PORT", "9464"),
    ("FERRY_NOENV_SHUTDOWN", "10s"),
    ("FERRY_NOENV_HOST", "10.0.0.1"),
    ("FERRY_NOENV_PASSWORD", "no-env-pa55word"),
    ("FERRY_NOENV_STREAM", "FERRY_LIFECYCLE"),
    ("FERRY_NOENV_WINDOW", "2m"),
    ("FERRY_NOENV_HEARTBEAT", "30s"),
];

fn noenv_names() -> Vec<&'static str> {
    NOENV_VARIABLES.iter().map(|(name, _)| *name).collect()
}

#[test]
fn no_env_checks_a_file_without_its_secrets() {
    let (_dir, file) = write_config(FROM_ENVIRONMENT);
    // Without the variables, a plain check fails on each of them ...
    let output = check(&file, &[], &noenv_names());
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("environment variable \"FERRY_NOENV_PORT\" is not set"),
        "{}",
        text(&output.stderr)
    );
    // ... and --no-env passes: typed values (a port, durations) that are still references are no
    // type errors; their checks are listed as skipped.
    let output = check_with(&["--no-env"], &file, &[], &noenv_names());
    let stderr = text(&output.stderr);
    assert_valid(&output, &file);
    for (path, variable) in [
        ("monitor.listen", "FERRY_NOENV_PORT"),
        ("shutdown_timeout", "FERRY_NOENV_SHUTDOWN"),
        ("connections.east.servers[0]", "FERRY_NOENV_HOST"),
        ("adapters[0].output.duplicate_window", "FERRY_NOENV_WINDOW"),
        ("replicators[0].heartbeat.interval", "FERRY_NOENV_HEARTBEAT"),
    ] {
        assert!(
            stderr.lines().any(|line| line.starts_with(&format!(
                "warning: {path}: not checked: the value comes from ${{{variable}}}"
            ))),
            "no warning for {path} in:\n{stderr}"
        );
    }
    // The summary shows the references as written.
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("-> stream ${FERRY_NOENV_STREAM} on east"),
        "{stdout}"
    );
    // With the variables set, --no-env does not read them: same result.
    let with_env = check_with(&["--no-env"], &file, &NOENV_VARIABLES, &[]);
    assert_eq!(text(&with_env.stdout), stdout);

    // A mistake that does not depend on the environment is still found.
    let (_dir, broken) = write_config(
        &FROM_ENVIRONMENT
            .replace("subject_prefix: copy", "subject_prefix: \"copy.>\"")
            .replace("${FERRY_NOENV_HOST}", "${FERRY-NOENV-HOST}"),
    );
    let output = check_with(&["--no-env"], &broken, &[], &noenv_names());
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: 2 problems", broken.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("connections.east.servers[0]: invalid environment variable reference"),
        "{stderr}"
    );
    assert!(
        stderr.contains("replicators[0].to.subject_prefix: "),
        "{stderr}"
    );
}

/// With the environment, the summary shows what ferry runs with: values expanded, but a
/// connection's credential never, even where it is also used in a summarised value.
#[test]
fn the_summary_shows_expanded_values_but_no_credential() {
    let yaml = FROM_ENVIRONMENT.replace(
        "subjects: [\"choria.lifecycle.event.>\"]",
        "subjects: [\"choria.lifecycle.${FERRY_NOENV_PASSWORD}.>\"]",
    );
    let (_dir, file) = write_config(&yaml);
    let output = check(&file, &NOENV_VARIABLES, &[]);
    assert_valid(&output, &file);
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("[choria.lifecycle.***.>] -> stream FERRY_LIFECYCLE on east"),
        "{stdout}"
    );
    assert!(
        stdout.contains("replicator copy: east/FERRY_LIFECYCLE -> east/COPY"),
        "{stdout}"
    );
    assert!(!stdout.contains("no-env-pa55word"), "{stdout}");
}

fn json_report(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}):\n{}\nstderr:\n{}",
            text(&output.stdout),
            text(&output.stderr)
        )
    })
}

#[test]
fn json_output_for_machines() {
    // Valid: the summary per pipeline, exit 0, nothing else on stdout.
    let file = repo_file("config/examples/replicate.yaml");
    let output = check_with(&["--json"], &file, &[], &[]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report = json_report(&output);
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert_eq!(report["summary"]["replicators"], 1, "{report}");
    let pipeline = &report["summary"]["pipelines"][0];
    assert_eq!(pipeline["kind"], "replicator", "{report}");
    assert_eq!(pipeline["name"], "orders-to-west", "{report}");
    assert_eq!(pipeline["from"]["stream"], "ORDERS", "{report}");
    assert_eq!(
        pipeline["text"],
        "replicator orders-to-west: east/ORDERS -> west/ORDERS start all, exclusive writes (fenced by sequence: exact at any distance, the target's only writer)",
        "the same line as the text output: {report}"
    );

    // Invalid: every problem with its path, no summary, exit 1.
    let (_dir, broken) = write_config(
        &REPLICATOR
            .replacen("rate: 2000/s", "rate: lots", 1)
            .replacen("connection: west", "connection: nowhere", 1),
    );
    let output = check_with(&["--json"], &broken, &[], &[]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report = json_report(&output);
    assert_eq!(report["valid"], false, "{report}");
    assert!(report["summary"].is_null(), "{report}");
    let problems = report["problems"].as_array().expect("problems");
    let paths: Vec<&str> = problems
        .iter()
        .map(|p| p["path"].as_str().expect("path"))
        .collect();
    assert_eq!(
        paths,
        ["replicators[0].limit.rate", "replicators[0].to.connection"],
        "{report}"
    );
    assert!(
        problems[0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("invalid rate \"lots\"")),
        "{report}"
    );

    // The skipped checks of --no-env are warnings; a file that cannot be read is a problem
    // without a path.
    let (_dir, file) = write_config(FROM_ENVIRONMENT);
    let report = json_report(&check_with(
        &["--no-env", "--json"],
        &file,
        &[],
        &noenv_names(),
    ));
    assert_eq!(report["valid"], true, "{report}");
    let warnings = report["warnings"].as_array().expect("warnings");
    assert!(
        warnings.iter().any(|w| w["path"] == "monitor.listen"
            && w["message"]
                .as_str()
                .is_some_and(|m| m.contains("${FERRY_NOENV_PORT}"))),
        "{report}"
    );
    let missing = PathBuf::from("/nonexistent/ferry-check-test.yaml");
    let output = check_with(&["--json"], &missing, &[], &[]);
    assert_eq!(output.status.code(), Some(1));
    let report = json_report(&output);
    assert_eq!(report["valid"], false);
    assert_eq!(report["problems"][0]["path"], "", "{report}");
    assert!(
        report["problems"][0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("cannot read the config file")),
        "{report}"
    );
}
