//! Tests of the config checks, one per rule, through `validate` on YAML.

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

#[test]
fn subjects_and_groups() {
    assert_problem(
        &broken(r#"subjects: ["choria.lifecycle.event.>"]"#, "subjects: []"),
        "adapters[0].subjects",
        "is empty",
    );
    assert_problem(
        &broken("choria.lifecycle.event.>", "choria..x"),
        "adapters[0].subjects[0]",
        "empty token",
    );
    assert_problem(
        &broken("queue_group: ferry", "queue_group: \"a b\""),
        "adapters[0].queue_group",
        "not a valid queue group",
    );
}

#[test]
fn templates() {
    assert_problem(
            &broken("ferry.lifecycle.{type}.{component}", "ferry.lifecycle.{sender}.{agent}"),
            "adapters[0].output.subject",
            "token {agent} is not provided by kind choria_lifecycle (it provides: {type}, {component}, {identity}, {sender})",
        );
    assert_problem(
        &broken("ferry.lifecycle.{type}.{component}", "{type}.lifecycle"),
        "adapters[0].output.subject",
        "no literal prefix",
    );
    assert_problem(
        &broken("ferry.lifecycle.{type}.{component}", "ferry.{type"),
        "adapters[0].output.subject",
        "unclosed",
    );
    assert_problem(
        &broken("\"metrics.*.>\"", "\"metrics\""),
        "adapters[2].output.subject",
        "uses {token.2}, but no input subject has 2 tokens",
    );
}

#[test]
fn passthrough_sender() {
    assert_problem(
        &broken("    sender_token: 2\n", "    sender_token: 0\n"),
        "adapters[2].sender_token",
        "must be 1 or more",
    );
    assert_problem(
        &problems_of(
            &VALID
                .replace("archive.{token.2}.{subject}", "archive.{sender}")
                .replace("    sender_token: 2\n", ""),
        ),
        "adapters[2].output.subject",
        "uses {sender}, but passthrough has no sender",
    );
    assert_problem(
        &broken(
            "    sender_token: 2\n",
            "    sender_token: 2\n    sender_header: \"a b\"\n",
        ),
        "adapters[2].sender_header",
        "not a valid header name",
    );
    assert_problem(
        &broken("\"metrics.*.>\"", "\"metrics\""),
        "adapters[2].sender_token",
        "no input subject has 2 tokens",
    );
    // A header with a token fallback is allowed: the decoder tries the header first.
    assert_eq!(
        broken(
            "    sender_token: 2\n",
            "    sender_token: 2\n    sender_header: X-Node\n"
        ),
        Vec::new()
    );
}

#[test]
fn kind_specific_options() {
    assert_problem(
        &broken(
            "    sender_token: 2\n",
            "    sender_token: 2\n    format: choria\n",
        ),
        "adapters[2].format",
        "only applies to kind choria_lifecycle (this adapter is passthrough)",
    );
    assert_problem(
        &broken(
            "    queue_group: ferry\n",
            "    queue_group: ferry\n    sender_header: X\n",
        ),
        "adapters[0].sender_header",
        "only applies to kind passthrough",
    );
    assert_problem(
        &broken(
            "    queue_group: ferry\n",
            "    queue_group: ferry\n    sender_token: 1\n",
        ),
        "adapters[0].sender_token",
        "only applies to kind passthrough",
    );
    assert_problem(
            &broken(
                "      subject: \"choria.stream.input.registration.{sender}\"\n",
                "      subject: \"choria.stream.input.registration.{sender}\"\n    allow_unknown_types: true\n",
            ),
            "adapters[1].allow_unknown_types",
            "only applies to kind choria_lifecycle",
        );
    assert_eq!(
        broken(
            "    queue_group: ferry\n",
            "    queue_group: ferry\n    format: cloudevents\n    allow_unknown_types: true\n"
        ),
        Vec::new()
    );
}

#[test]
fn streams() {
    for bad in ["FERRY.LIFECYCLE", "A B", "A/B", "A*"] {
        assert_problem(
            &broken("stream: FERRY_LIFECYCLE", &format!("stream: {bad:?}")),
            "adapters[0].output.stream",
            "not a valid stream name",
        );
    }
    assert_problem(
        &broken(
            "stream_subjects: [\"archive.>\"]",
            "stream_subjects: [\"metrics.>\"]",
        ),
        "adapters[2].output.stream_subjects[0]",
        "overlaps input subject \"metrics.*.>\"",
    );
    assert_problem(
        &broken(
            "stream_subjects: [\"archive.>\"]",
            "stream_subjects: [\"other.>\"]",
        ),
        "adapters[2].output.stream_subjects",
        "no entry covers the subjects the template renders (\"archive.>\")",
    );
    assert_problem(
        &broken("stream_subjects: [\"archive.>\"]", "stream_subjects: []"),
        "adapters[2].output.stream_subjects",
        "is empty",
    );
    assert_problem(
        &broken(
            "stream_subjects: [\"archive.>\"]",
            "stream_subjects: [\"archive..x\"]",
        ),
        "adapters[2].output.stream_subjects[0]",
        "empty token",
    );
    // The default stream subject (template prefix + ">") overlapping the input.
    assert_problem(
        &broken(
            "ferry.lifecycle.{type}.{component}",
            "choria.lifecycle.event.{type}",
        ),
        "adapters[0].output.subject",
        "default stream subject \"choria.lifecycle.event.>\"",
    );
    assert_problem(
        &broken(
            "      duplicate_window: 2m\n",
            "      duplicate_window: 1h\n",
        ),
        "adapters[0].output.duplicate_window",
        "must be shorter than 30m for choria_lifecycle",
    );
    assert_problem(
        &broken(
            "      duplicate_window: 2m\n",
            "      duplicate_window: 30m\n",
        ),
        "adapters[0].output.duplicate_window",
        "Choria servers resend",
    );
    assert_problem(
        &broken(
            "      duplicate_window: 2m\n",
            "      duplicate_window: 2m\n      max_age: 1m\n",
        ),
        "adapters[0].output.duplicate_window",
        "longer than output.max_age",
    );
    for bad in ["0", "6"] {
        assert_problem(
            &broken(
                "      duplicate_window: 2m\n",
                &format!("      duplicate_window: 2m\n      replicas: {bad}\n"),
            ),
            "adapters[0].output.replicas",
            "between 1 and 5",
        );
    }
    // A long window is fine for other kinds.
    assert_eq!(
            broken(
                "      subject: \"choria.stream.input.registration.{sender}\"\n",
                "      subject: \"choria.stream.input.registration.{sender}\"\n      duplicate_window: 1h\n",
            ),
            Vec::new()
        );
}

#[test]
fn streams_across_adapters() {
    // Another stream on the same connection taking the same subjects.
    assert_problem(
            &broken("stream: ARCHIVE\n      subject: \"archive.{token.2}.{subject}\"\n      stream_subjects: [\"archive.>\"]",
                "stream: ARCHIVE\n      subject: \"ferry.lifecycle.{token.2}\"\n      stream_subjects: [\"ferry.lifecycle.x.>\"]"),
            "adapters[2].output.stream_subjects",
            "of stream FERRY_LIFECYCLE (adapters[0]) on connection east",
        );
    // The same stream created with different subjects.
    assert_problem(
        &broken("stream: ARCHIVE", "stream: FERRY_LIFECYCLE"),
        "adapters[2].output.stream_subjects",
        "also created by adapters[0]",
    );
    // Not created by ferry: no check.
    assert_eq!(
        broken(
            "stream: ARCHIVE\n",
            "stream: FERRY_LIFECYCLE\n      create: false\n"
        ),
        Vec::new()
    );
}

#[test]
fn invalid_subject() {
    assert_problem(
        &broken(
            "invalid_subject: ferry.invalid.lifecycle",
            "invalid_subject: ferry.invalid.>",
        ),
        "adapters[0].invalid_subject",
        "must not contain wildcards",
    );
    assert_problem(
        &broken(
            "invalid_subject: ferry.invalid.lifecycle",
            "invalid_subject: choria.lifecycle.event.bad",
        ),
        "adapters[0].invalid_subject",
        "overlaps input subject",
    );
    assert_problem(
        &broken(
            "invalid_subject: ferry.invalid.lifecycle",
            "invalid_subject: ferry.lifecycle.invalid",
        ),
        "adapters[0].invalid_subject",
        "overlaps stream subject \"ferry.lifecycle.>\"",
    );
}

#[test]
fn limits() {
    for bad in ["0", "65537"] {
        assert_problem(
            &broken(
                "    queue_group: ferry\n",
                &format!("    queue_group: ferry\n    max_in_flight: {bad}\n"),
            ),
            "adapters[0].max_in_flight",
            "between 1 and 65536",
        );
    }
    assert_problem(
        &broken(
            "    queue_group: ferry\n",
            "    queue_group: ferry\n    spool: { max_bytes: 512KiB }\n",
        ),
        "adapters[0].spool.max_bytes",
        "is 512KiB; must be at least 1MiB",
    );
    assert_eq!(
        broken(
            "    queue_group: ferry\n",
            "    queue_group: ferry\n    spool: { max_bytes: 1MiB }\n    max_in_flight: 65536\n"
        ),
        Vec::new()
    );
}

#[test]
fn ack_subscriptions_must_hold_every_publish_in_flight() {
    let east = "    servers: [\"nats://10.0.0.1:4222\", \"10.0.0.2:4222\"]\n";
    assert_problem(
        &broken(east, &format!("{east}    subscription_capacity: 100\n")),
        "adapters[0].max_in_flight",
        "is 1024, more than connections.east.subscription_capacity (100)",
    );
    assert_eq!(
        broken(east, &format!("{east}    subscription_capacity: 1024\n")),
        Vec::new()
    );
    let west = "    servers: [\"tls://nats.west.example.com:4222\"]\n";
    let yaml = format!("{VALID}{REPLICATORS}").replacen(
        west,
        &format!("{west}    subscription_capacity: 512\n"),
        1,
    );
    let problems = problems_of(&yaml);
    assert_problem(
        &problems,
        "adapters[1].max_in_flight",
        "more than connections.west.subscription_capacity (512)",
    );
    assert!(
        problems
            .iter()
            .any(|p| p.path.starts_with("replicators[") && p.path.ends_with(".max_in_flight")),
        "{problems:?}"
    );
    // A replicator reading from east (two batches of 1,024 ahead) needs room for 2,048.
    let yaml = format!("{VALID}{REPLICATORS}").replacen(
        east,
        &format!("{east}    subscription_capacity: 1500\n"),
        1,
    );
    let problems = problems_of(&yaml);
    assert!(
        problems.iter().any(|p| p.path.starts_with("replicators[")
            && p.message
                .contains("up to 2048 source messages arrive ahead")),
        "{problems:?}"
    );
    assert!(
        !problems.iter().any(|p| p.path.starts_with("adapters[")),
        "1,500 holds the adapters' 1,024 acks: {problems:?}"
    );
}

#[test]
fn filters() {
    let with_match = |entry: &str| {
        broken(
            "        - { field: \"component\", equals: \"server\" }\n",
            &format!("        - {entry}\n"),
        )
    };
    assert_problem(
        &with_match("{ field: a, header: b, exists: true }"),
        "adapters[0].filter.match[0]",
        "has both field and header",
    );
    assert_problem(
        &with_match("{ exists: true }"),
        "adapters[0].filter.match[0]",
        "needs exactly one of field",
    );
    assert_problem(
        &with_match("{ field: a, equals: 1, regex: x }"),
        "adapters[0].filter.match[0]",
        "(found: equals, regex)",
    );
    assert_problem(
        &with_match("{ field: a }"),
        "adapters[0].filter.match[0]",
        "(found: none)",
    );
    assert_problem(
        &with_match("{ field: a, regex: \"(\" }"),
        "adapters[0].filter.match[0].regex",
        "invalid regex",
    );
    assert_problem(
        &with_match("{ field: \"a..b\", exists: true }"),
        "adapters[0].filter.match[0].field",
        "not a valid field path",
    );
    assert_problem(
        &with_match("{ field: \"\", exists: true }"),
        "adapters[0].filter.match[0].field",
        "not a valid field path",
    );
    assert_problem(
        &with_match("{ field: a, in: [] }"),
        "adapters[0].filter.match[0].in",
        "is empty",
    );
    assert_problem(
        &broken("choria.lifecycle.event.*.server", "other.>"),
        "adapters[0].filter.subjects[0]",
        "matches none of the adapter's subjects",
    );
    assert_problem(
        &broken("choria.lifecycle.event.*.server", "a b"),
        "adapters[0].filter.subjects[0]",
        "whitespace",
    );
}

#[test]
fn validate_is_callable_on_a_built_config() {
    let config = crate::config::parse_str(VALID, Path::new("x.yaml")).unwrap();
    assert!(validate(&config).is_empty());
    let mut broken = config.clone();
    broken.adapters[1].output.replicas = 9;
    broken.adapters[0].connection = "nowhere".into();
    let paths: Vec<String> = validate(&broken).into_iter().map(|p| p.path).collect();
    assert_eq!(
        paths,
        ["adapters[0].connection", "adapters[1].output.replicas"]
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

#[test]
fn valid_replicators_pass() {
    assert_eq!(problems_of(&format!("{VALID}{REPLICATORS}")), Vec::new());
    let config = parse_str(&format!("{VALID}{REPLICATORS}"), Path::new("x.yaml")).unwrap();
    let replicator = &config.replicators[0];
    assert_eq!(replicator.expire_after(), Some(Duration::from_secs(3600)));
    assert_eq!(
        replicator
            .to
            .rewrite_subject("choria.stream.input.registration.n1"),
        "FLEET.stream.input.registration.n1"
    );
    let plain = &config.replicators[1];
    assert_eq!(plain.start, StartPosition::All);
    assert_eq!(plain.max_in_flight, 1024);
    assert_eq!(plain.checkpoint_interval.0, Duration::from_secs(1));
    assert!(!plain.to.create);
    // The shortest settings the rules allow.
    assert_eq!(
            broken_replicator(
                "    to: { connection: west, stream: ORDERS }\n",
                "    to: { connection: west, stream: ORDERS }\n    start: { sequence: 1 }\n    max_in_flight: 1\n    checkpoint_interval: 1h\n    limit: { rate: 1/h, bytes: 1MiB/s }\n    heartbeat: { subject: ORDERS.heartbeat, interval: 1s }\n    leader_election: { bucket: E, ttl: 1001ms }\n"
            ),
            Vec::new()
        );
}

#[test]
fn replicator_names_are_unique_across_pipelines() {
    assert_problem(
        &broken_replicator("name: orders-to-west", "name: orders.to.west"),
        "replicators[1].name",
        "replicator name \"orders.to.west\" may only use",
    );
    assert_problem(
            &broken_replicator("name: orders-to-west", "name: lifecycle"),
            "replicators[1].name",
            "\"lifecycle\" is already the name of adapters[0] (pipeline names must be unique across adapters and replicators",
        );
    assert_problem(
        &broken_replicator("name: orders-to-west", "name: registration-to-east"),
        "replicators[1].name",
        "already the name of replicators[0]",
    );
}

#[test]
fn replicator_connections_and_streams() {
    assert_problem(
        &broken_replicator(
            "from: { connection: east, stream: ORDERS }",
            "from: { connection: north, stream: ORDERS }",
        ),
        "replicators[1].from.connection",
        "\"north\", which is not defined (defined: east, west)",
    );
    assert_problem(
        &broken_replicator(
            "to: { connection: west, stream: ORDERS }",
            "to: { connection: south, stream: ORDERS }",
        ),
        "replicators[1].to.connection",
        "not defined",
    );
    assert_problem(
        &broken_replicator("stream: ORDERS }", "stream: ORDERS.X }"),
        "replicators[1].from.stream",
        "not a valid stream name",
    );
    assert_problem(
        &broken_replicator(
            "to: { connection: west, stream: ORDERS }",
            "to: { connection: west, stream: \"\" }",
        ),
        "replicators[1].to.stream",
        "is empty",
    );
    assert_problem(
        &broken_replicator(
            "to: { connection: west, stream: ORDERS }",
            "to: { connection: east, stream: ORDERS }",
        ),
        "replicators[1].to.stream",
        "is the source stream itself (east/ORDERS)",
    );
    // The same stream name in another deployment, or another stream in the same one, is fine.
    assert_eq!(
        broken_replicator(
            "to: { connection: west, stream: ORDERS }",
            "to: { connection: east, stream: ORDERS_COPY, subject_prefix: COPY }",
        ),
        Vec::new()
    );
}

#[test]
fn replicator_subject_rewrites() {
    for (bad, needle) in [
        ("FLEET.>", "must not contain wildcards"),
        ("FLEET.", "empty token"),
        ("\"\"", "is empty"),
        ("\"a b\"", "whitespace"),
    ] {
        assert_problem(
            &broken_replicator("subject_prefix: FLEET", &format!("subject_prefix: {bad}")),
            "replicators[0].to.subject_prefix",
            needle,
        );
    }
    assert_problem(
        &broken_replicator(
            "subject_strip_prefix: choria",
            "subject_strip_prefix: \"*\"",
        ),
        "replicators[0].to.subject_strip_prefix",
        "give a literal subject prefix of whole tokens",
    );
}

#[test]
fn replicator_start_and_limits() {
    let start = |value: &str| {
        broken_replicator(
            "start: { time: \"2026-01-01T00:00:00Z\" }",
            &format!("start: {value}"),
        )
    };
    assert_problem(
        &start("{ sequence: 0 }"),
        "replicators[0].start.sequence",
        "must be 1 or more",
    );
    for bad in [
        "yesterday",
        "2026-01-01 00:00:00",
        "2026-01-01T00:00:00",
        "2026-13-01T00:00:00Z",
    ] {
        assert_problem(
            &start(&format!("{{ time: {bad:?} }}")),
            "replicators[0].start.time",
            "use RFC3339 with a zone",
        );
    }
    assert_problem(
        &start("{ since: 0 }"),
        "replicators[0].start.since",
        "use start: new",
    );
    for good in [
        "all",
        "new",
        "{ since: 2h }",
        "{ time: \"2026-01-01T01:00:00.5+01:00\" }",
    ] {
        assert_eq!(start(good), Vec::new(), "{good}");
    }
    assert_problem(
        &broken_replicator("    max_age: 1h\n", "    max_age: 0\n"),
        "replicators[0].max_age",
        "must be longer than 0",
    );
    for bad in ["0", "65537"] {
        assert_problem(
            &broken_replicator("max_in_flight: 2048", &format!("max_in_flight: {bad}")),
            "replicators[0].max_in_flight",
            "between 1 and 65536",
        );
    }
    assert_problem(
        &broken_replicator("checkpoint_interval: 5s", "checkpoint_interval: 0"),
        "replicators[0].checkpoint_interval",
        "must be longer than 0",
    );
    assert_problem(
        &broken_replicator("checkpoint_interval: 5s", "checkpoint_interval: 61m"),
        "replicators[0].checkpoint_interval",
        "is 61m; must be at most 1h",
    );
}

#[test]
fn replicator_target_stream_settings() {
    assert_problem(
        &broken_replicator("replicas: 3", "replicas: 6"),
        "replicators[0].to.replicas",
        "between 1 and 5",
    );
    assert_problem(
        &broken_replicator("max_age: 1d", "max_age: 5m"),
        "replicators[0].to.duplicate_window",
        "longer than to.max_age (5m)",
    );
}

#[test]
fn replicator_filters() {
    assert_problem(
        &broken_replicator("regex: \"^web\"", "regex: \"(\""),
        "replicators[0].filter.match[0].regex",
        "invalid regex",
    );
    assert_problem(
        &broken_replicator(
            "subjects: [\"choria.stream.input.registration.>\"]",
            "subjects: [\"choria..x\"]",
        ),
        "replicators[0].filter.subjects[0]",
        "empty token",
    );
    // The source stream is created by adapters[1], so its subjects are known.
    assert_problem(
            &broken_replicator(
                "subjects: [\"choria.stream.input.registration.>\"]",
                "subjects: [\"other.>\", \"choria.stream.input.registration.>\"]",
            ),
            "replicators[0].filter.subjects[0]",
            "matches none of the subjects of stream CHORIA_REGISTRATION ([choria.stream.input.registration.>], created by adapters[1])",
        );
    assert_problem(
            &broken_replicator(
                "subjects: [\"choria.stream.input.registration.>\"]",
                "subjects: [\"choria.stream.input.registration.>\", \"choria.stream.input.registration.web1\"]",
            ),
            "replicators[0].filter.subjects[1]",
            "overlaps filter.subjects[0]",
        );
    assert_problem(
        &broken_replicator(
            "exclude_subjects: [\"choria.stream.input.registration.test.>\"]",
            "exclude_subjects: [\"a.>.b\"]",
        ),
        "replicators[0].filter.exclude_subjects[0]",
        "'>' must be the last token",
    );
}

#[test]
fn replicator_rates_and_sampling() {
    assert_problem(
        &broken_replicator("rate: 2000/s", "rate: 0.5/s"),
        "replicators[0].limit.rate",
        "is 0.5/s: its burst (one period's worth) is 0.5 messages",
    );
    let problems = broken_replicator("bytes: 10MiB/s", "bytes: 512KiB/s");
    assert_problem(
            &problems,
            "replicators[0].limit.bytes",
            "is 512KiB/s: its burst (one period's worth, 512KiB) is smaller than 1MiB, the NATS default max payload",
        );
    assert_problem(
        &problems,
        "replicators[0].limit.bytes",
        "checked again when the replicator starts",
    );
    // The same average with a larger burst is fine.
    assert_eq!(
        broken_replicator("bytes: 10MiB/s", "bytes: 30MiB/m"),
        Vec::new()
    );
    assert_problem(
        &broken_replicator("interval: 1h\n", "interval: 0\n"),
        "replicators[0].limit.sample.interval",
        "must be longer than 0",
    );
    for bad in ["0", "-2"] {
        assert_problem(
            &broken_replicator(
                "key: { field: sender }",
                &format!("key: {{ subject_token: {bad} }}"),
            ),
            "replicators[0].limit.sample.key.subject_token",
            "must be -1 (the whole subject) or 1 or more",
        );
    }
    for good in ["-1", "5"] {
        assert_eq!(
            broken_replicator(
                "key: { field: sender }",
                &format!("key: {{ subject_token: {good} }}")
            ),
            Vec::new(),
            "{good}"
        );
    }
    // Token 6 of subjects that have 5.
    let yaml = format!(
        "{VALID}{}",
        REPLICATORS
            .replacen(
                "subjects: [\"choria.stream.input.registration.>\"]",
                "subjects: [\"choria.stream.input.registration.*\"]",
                1
            )
            .replacen("key: { field: sender }", "key: { subject_token: 6 }", 1)
    );
    assert_problem(
        &problems_of(&yaml),
        "replicators[0].limit.sample.key.subject_token",
        "is 6, but no subject read ([choria.stream.input.registration.*]) has 6 tokens",
    );
    assert_problem(
        &broken_replicator("key: { field: sender }", "key: { field: \"a..b\" }"),
        "replicators[0].limit.sample.key.field",
        "not a valid field path",
    );
    assert_problem(
        &broken_replicator("key: { field: sender }", "key: { header: \"a b\" }"),
        "replicators[0].limit.sample.key.header",
        "not a valid header name",
    );
    assert_problem(
        &broken_replicator("size_trigger: 1KiB", "size_trigger: 0"),
        "replicators[0].limit.sample.size_trigger",
        "must be more than 0",
    );
    assert_problem(
        &broken_replicator("force_field: force_copy", "force_field: \".x\""),
        "replicators[0].limit.sample.force_field",
        "not a valid field path",
    );
}

#[test]
fn replicator_advisories() {
    let without_sample = REPLICATORS.replacen(
            "      sample:\n        key: { field: sender }\n        interval: 1h\n        size_trigger: 1KiB\n        force_field: force_copy\n",
            "",
            1,
        );
    assert_ne!(without_sample, REPLICATORS);
    assert_problem(
        &problems_of(&format!("{VALID}{without_sample}")),
        "replicators[0].limit.sample",
        "is required when advisories are set: advisories report on sampled senders",
    );
    assert_problem(
        &broken_replicator("{event}.{value}\"", "{event}.{sender}\""),
        "replicators[0].advisories.subject",
        "token {sender} is not available in advisory subjects (only {event} and {value}",
    );
    assert_problem(
        &broken_replicator(
            "\"ferry.advisories.{event}.{value}\"",
            "\"{event}.{value}\"",
        ),
        "replicators[0].advisories.subject",
        "has no literal prefix",
    );
    assert_problem(
        &broken_replicator("\"ferry.advisories.{event}.{value}\"", "\"ferry.{event\""),
        "replicators[0].advisories.subject",
        "unclosed",
    );
    // expire_after defaults to the sample interval (1h).
    assert_problem(
            &broken_replicator("timeout_after: 12m", "timeout_after: 1h"),
            "replicators[0].advisories.timeout_after",
            "is 1h; must be shorter than expire_after (1h from limit.sample.interval, the default of expire_after)",
        );
    assert_problem(
        &broken_replicator(
            "timeout_after: 12m",
            "timeout_after: 12m\n      expire_after: 10m",
        ),
        "replicators[0].advisories.timeout_after",
        "(10m from advisories.expire_after)",
    );
    assert_eq!(
        broken_replicator(
            "timeout_after: 12m",
            "timeout_after: 2h\n      expire_after: 3h"
        ),
        Vec::new()
    );
    assert_problem(
        &broken_replicator("timeout_after: 12m", "timeout_after: 0"),
        "replicators[0].advisories.timeout_after",
        "must be longer than 0",
    );
    assert_problem(
        &broken_replicator("timeout_after: 12m", "expire_after: 0"),
        "replicators[0].advisories.expire_after",
        "must be longer than 0",
    );
}

#[test]
fn replicator_heartbeats() {
    let heartbeat = "choria.stream.input.registration._heartbeat";
    assert_problem(
        &broken_replicator(heartbeat, "choria.stream.input.registration.*"),
        "replicators[0].heartbeat.subject",
        "must not contain wildcards",
    );
    assert_problem(
        &broken_replicator(
            "subjects: [\"choria.stream.input.registration.>\"]",
            "subjects: [\"choria.stream.input.registration.web.>\"]",
        ),
        "replicators[0].heartbeat.subject",
        "is not selected by filter.subjects",
    );
    assert_problem(
        &broken_replicator(heartbeat, "ferry.heartbeat"),
        "replicators[0].heartbeat.subject",
        "is not among the subjects of stream CHORIA_REGISTRATION",
    );
    assert_problem(
        &broken_replicator("interval: 30s", "interval: 500ms"),
        "replicators[0].heartbeat.interval",
        "is 500ms; must be at least 1s",
    );
}

#[test]
fn replicator_leader_election() {
    assert_problem(
        &broken_replicator("bucket: FERRY_ELECTIONS", "bucket: FERRY.ELECTIONS"),
        "replicators[0].leader_election.bucket",
        "not a valid key-value bucket name",
    );
    for bad in ["1s", "500ms"] {
        assert_problem(
            &broken_replicator("ttl: 10s", &format!("ttl: {bad}")),
            "replicators[0].leader_election.ttl",
            "must be longer than 1s",
        );
    }
    // Sharing a bucket on one connection means sharing its ttl.
    let second = "    to: { connection: west, stream: ORDERS }\n    leader_election: { bucket: FERRY_ELECTIONS, ttl: 20s }\n";
    let problems = broken_replicator("    to: { connection: west, stream: ORDERS }\n", second);
    assert_eq!(problems, Vec::new(), "another connection, another bucket");
    let problems = broken_replicator(
        "    to: { connection: west, stream: ORDERS }\n",
        &second.replace("west, stream: ORDERS", "east, stream: ORDERS_EAST"),
    );
    assert_problem(
        &problems,
        "replicators[1].leader_election.ttl",
        "is 20s, but replicators[0] uses bucket FERRY_ELECTIONS on connection east with ttl 10s",
    );
}

#[test]
fn validate_checks_built_replicators() {
    let mut config = parse_str(&format!("{VALID}{REPLICATORS}"), Path::new("x.yaml")).unwrap();
    assert!(validate(&config).is_empty());
    config.replicators[1].start = StartPosition::Time("soon".into());
    config.replicators[0].to.subject_prefix = Some("A.*".into());
    let paths: Vec<String> = validate(&config).into_iter().map(|p| p.path).collect();
    assert_eq!(
        paths,
        [
            "replicators[0].to.subject_prefix",
            "replicators[1].start.time"
        ]
    );
}
