//! Tests of the config checks, one per rule, through `validate` on YAML: the shared fixture and
//! helpers, the top level and connections here; adapters and replicators in their own files.

use super::*;
use crate::config::parse_str;
use std::path::Path;

const VALID: &str = r#"
name: ferry-dc1
state_dir: /var/lib/ferry
monitor: { listen: "127.0.0.1:9464" }
connections:
  east:
    servers: ["nats://10.0.0.1:4222", "10.0.0.2:4222"]
  west:
    servers: ["tls://nats.west.example.com:4222"]
    tls: { ca: /etc/ferry/ca.pem }
    user: ferry
    password: secret
adapters:
  - name: lifecycle
    kind: choria_lifecycle
    connection: east
    subjects: ["choria.lifecycle.event.>"]
    queue_group: ferry
    output:
      stream: FERRY_LIFECYCLE
      subject: "ferry.lifecycle.{type}.{component}"
      duplicate_window: 2m
    invalid_subject: ferry.invalid.lifecycle
    filter:
      subjects: ["choria.lifecycle.event.*.server"]
      match:
        - { field: "component", equals: "server" }
        - { field: "data.identity", regex: "^web\\d+\\." }
        - { header: "Ferry-Sender", exists: true }
        - { field: "type", in: ["startup", "shutdown"] }
  - name: registration
    kind: choria_registration
    connection: east
    subjects: ["mcollective.broadcast.agent.registration"]
    output:
      connection: west
      stream: CHORIA_REGISTRATION
      subject: "choria.stream.input.registration.{sender}"
  - name: archive
    kind: passthrough
    connection: east
    subjects: ["metrics.*.>"]
    sender_token: 2
    output:
      stream: ARCHIVE
      subject: "archive.{token.2}.{subject}"
      stream_subjects: ["archive.>"]
"#;

fn problems_of(yaml: &str) -> Vec<Problem> {
    match parse_str(yaml, Path::new("test.yaml")) {
        Ok(_) => Vec::new(),
        Err(error) => error.problems,
    }
}

/// The valid config with `from` replaced by `to` (which must occur).
fn broken(from: &str, to: &str) -> Vec<Problem> {
    assert!(VALID.contains(from), "fixture lacks {from:?}");
    problems_of(&VALID.replacen(from, to, 1))
}

#[track_caller]
fn assert_problem(problems: &[Problem], path: &str, needle: &str) {
    assert!(
        problems
            .iter()
            .any(|p| p.path == path && p.message.contains(needle)),
        "expected a problem at {path} containing {needle:?}, got:\n{}",
        problems
            .iter()
            .map(|p| format!("  {p}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_valid_fixture_passes() {
    assert_eq!(problems_of(VALID), Vec::new());
}

#[test]
fn names() {
    assert_problem(
        &broken("name: ferry-dc1", "name: ferry dc1"),
        "name",
        "may only use",
    );
    assert_problem(&broken("name: ferry-dc1", "name: \"\""), "name", "is empty");
    assert_problem(
        &broken("  east:\n", "  ea.st:\n"),
        "connections.ea.st",
        "may only use",
    );
    assert_problem(
        &broken("name: lifecycle", "name: life/cycle"),
        "adapters[0].name",
        "may only use",
    );
    assert_problem(
        &broken("name: archive", "name: lifecycle"),
        "adapters[2].name",
        "already the name of adapters[0]",
    );
}

#[test]
fn top_level_settings() {
    assert_problem(
        &broken("state_dir: /var/lib/ferry", "state_dir: \"\""),
        "state_dir",
        "is empty",
    );
    for bad in [
        "9464",
        "127.0.0.1",
        "localhost:x",
        "bad host:80",
        "127.0.0.1:99999",
    ] {
        assert_problem(
            &broken("127.0.0.1:9464", bad),
            "monitor.listen",
            "use host:port",
        );
    }
    for good in [
        "localhost:9464",
        "[::1]:9464",
        "0.0.0.0:0",
        "monitor.local:80",
    ] {
        assert_eq!(broken("127.0.0.1:9464", good), Vec::new(), "{good}");
    }
    assert_problem(
        &broken("name: ferry-dc1", "name: ferry-dc1\nshutdown_timeout: 0"),
        "shutdown_timeout",
        "longer than 0",
    );
}

#[test]
fn connections() {
    assert_problem(
        &broken(r#"["nats://10.0.0.1:4222", "10.0.0.2:4222"]"#, "[]"),
        "connections.east.servers",
        "is empty",
    );
    for (bad, needle) in [
        ("http://x:4222", "unsupported scheme"),
        ("nats://x:port", "invalid port"),
        ("nats://", "invalid host"),
        ("nats://a b:4222", "whitespace"),
        ("nats://x:4222/path", "has a path"),
        ("nats://::1:4222", "IPv6"),
        (
            "nats://user:pw@host.example.com:4222",
            "carries credentials",
        ),
        ("tls://t0ken@host.example.com:4222", "carries credentials"),
    ] {
        assert_problem(
            &broken("\"10.0.0.2:4222\"", &format!("{bad:?}")),
            "connections.east.servers[1]",
            needle,
        );
    }
    for good in [
        "ws://127.0.0.1:8080/nats",
        "wss://nats.example.com",
        "nats://[::1]:4222",
        "localhost",
    ] {
        assert_eq!(
            broken("\"10.0.0.2:4222\"", &format!("{good:?}")),
            Vec::new(),
            "{good}"
        );
    }
    assert_problem(
        &broken("    tls: { ca: /etc/ferry/ca.pem }\n", ""),
        "connections.west.tls",
        "uses tls://",
    );
    assert_problem(
        &broken("    user: ferry\n", "    user: ferry\n    token: t\n"),
        "connections.west",
        "use only one of",
    );
    assert_problem(
        &broken("    user: ferry\n", ""),
        "connections.west.user",
        "is required with password",
    );
    assert_problem(
        &broken("    password: secret\n", ""),
        "connections.west.password",
        "is required with user",
    );
    assert_problem(
        &broken(
            "    password: secret\n",
            "    password: secret\n    credentials: \"\"\n",
        ),
        "connections.west.credentials",
        "is empty",
    );
    assert_problem(
        &broken("{ ca: /etc/ferry/ca.pem }", "{ cert: /c.pem }"),
        "connections.west.tls.key",
        "is required with tls.cert",
    );
    assert_problem(
        &broken(
            "    user: ferry\n",
            "    user: ferry\n    jetstream_domain: a.b\n",
        ),
        "connections.west.jetstream_domain",
        "not a valid JetStream domain",
    );
}

#[test]
fn choria_logins() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (jwt, seed) = crate::choria::testing::write_login(dir.path(), "ferry", "choria=ferry", 3);
    let (_, other_seed) = crate::choria::testing::write_login(dir.path(), "other", "choria=x", 4);
    let east = "    servers: [\"nats://10.0.0.1:4222\", \"10.0.0.2:4222\"]\n";
    let with = |jwt: &Path, seed: &Path, collective: &str, extra: &str| {
        broken(
            east,
            &format!(
                "{east}    choria: {{ jwt_file: \"{}\", seed_file: \"{}\", collective: \"{collective}\" }}\n{extra}",
                jwt.display(),
                seed.display()
            ),
        )
    };
    assert_eq!(with(&jwt, &seed, "choria", ""), Vec::new());
    assert_problem(
        &with(&jwt, &seed, "choria", "    token: t\n"),
        "connections.east",
        "sets token and choria at once",
    );
    let missing = dir.path().join("missing.seed");
    assert_problem(
        &with(&jwt, &missing, "choria", ""),
        "connections.east.choria.seed_file",
        &format!("cannot read {}", missing.display()),
    );
    assert_problem(
        &with(&jwt, &other_seed, "choria", ""),
        "connections.east.choria.seed_file",
        "is not the key of the JWT",
    );
    assert_problem(
        &with(&seed, &seed, "choria", ""),
        "connections.east.choria.jwt_file",
        "is not a JWT",
    );
    assert_problem(
        &with(&jwt, &seed, "choria.eu", ""),
        "connections.east.choria.collective",
        "is not a collective name",
    );
    assert_problem(
        &problems_of(&VALID.replacen(
            east,
            &format!("{east}    choria: {{ jwt_file: x, seed_file: y, colective: c }}\n"),
            1,
        )),
        "connections.east.choria.colective",
        "unknown key",
    );
}

#[test]
fn references() {
    assert_problem(
        &broken(
            "connection: east\n    subjects: [\"choria.lifecycle",
            "connection: north\n    subjects: [\"choria.lifecycle",
        ),
        "adapters[0].connection",
        "\"north\", which is not defined (defined: east, west)",
    );
    assert_problem(
        &broken("connection: west", "connection: south"),
        "adapters[1].output.connection",
        "not defined",
    );
}

/// Replicators appended to [`VALID`]: the first reads the stream the `registration` adapter
/// creates (so its subjects are known), the second one the adapters do not create.
const REPLICATORS: &str = r#"replicators:
  - name: registration-to-east
    from: { connection: west, stream: CHORIA_REGISTRATION }
    to:
      connection: east
      stream: CHORIA_REGISTRATION
      create: true
      duplicate_window: 10m
      subject_prefix: FLEET
      subject_strip_prefix: choria
      replicas: 3
      storage: file
      max_age: 1d
    start: { time: "2026-01-01T00:00:00Z" }
    max_age: 1h
    max_in_flight: 2048
    ordering: subject
    on_reject: skip
    on_source_reset: restart
    checkpoint_interval: 5s
    filter:
      subjects: ["choria.stream.input.registration.>"]
      exclude_subjects: ["choria.stream.input.registration.test.>"]
      match:
        - { field: "sender", regex: "^web" }
    limit:
      rate: 2000/s
      bytes: 10MiB/s
      sample:
        key: { field: sender }
        interval: 1h
        size_trigger: 1KiB
        force_field: force_copy
    advisories:
      subject: "ferry.advisories.{event}.{value}"
      timeout_after: 12m
      reliable: true
    heartbeat: { subject: "choria.stream.input.registration._heartbeat", interval: 30s }
    leader_election: { bucket: FERRY_ELECTIONS, ttl: 10s }
  - name: orders-to-west
    from: { connection: east, stream: ORDERS }
    to: { connection: west, stream: ORDERS }
"#;

/// [`VALID`] with [`REPLICATORS`], whose first `from` is replaced by `to` (which must occur).
fn broken_replicator(from: &str, to: &str) -> Vec<Problem> {
    assert!(REPLICATORS.contains(from), "fixture lacks {from:?}");
    problems_of(&format!("{VALID}{}", REPLICATORS.replacen(from, to, 1)))
}

mod adapters;
mod replicators;
