//! The checks of `replicators` entries.

use super::*;

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
    // The Choria form: several subjects, each with its own interval and headers.
    let choria = r#"heartbeat:
      format: choria
      headers: { Site: dc1 }
      subjects:
        - { subject: "choria.stream.input.registration._hb.a", interval: 10s }
        - { subject: "choria.stream.input.registration._hb.b", headers: { Role: hub } }
"#;
    let line = r#"heartbeat: { subject: "choria.stream.input.registration._heartbeat", interval: 30s }
"#;
    assert_eq!(broken_replicator(line, choria), Vec::new());
    assert_problem(
        &broken_replicator(line, &choria.replace("interval: 10s", "interval: 10ms")),
        "replicators[0].heartbeat.subjects[0].interval",
        "must be at least 1s",
    );
    assert_problem(
        &broken_replicator(line, &choria.replace("Role: hub", "\"Bad Name\": x")),
        "replicators[0].heartbeat.subjects[1].headers",
        "is not a valid header name",
    );
    assert_problem(
        &broken_replicator(line, &choria.replace("_hb.b", "_hb.*")),
        "replicators[0].heartbeat.subjects[1].subject",
        "must not contain wildcards",
    );
    assert_problem(
        &broken_replicator(line, "heartbeat: { interval: 30s }\n"),
        "replicators[0].heartbeat",
        "needs a subject",
    );
}

#[test]
fn heartbeat_targets_merge_headers_and_intervals() {
    let config: crate::config::replicator::HeartbeatConfig = serde_norway::from_str(
        "{ interval: 30s, headers: { A: top, B: top }, subject: x.one, subjects: [ { subject: x.two, interval: 5s, headers: { B: own } } ] }",
    )
    .expect("parses");
    let targets = config.targets();
    assert_eq!(targets.len(), 2);
    assert_eq!(targets[0].subject, "x.one");
    assert_eq!(targets[0].interval, std::time::Duration::from_secs(30));
    assert_eq!(targets[1].interval, std::time::Duration::from_secs(5));
    assert_eq!(
        targets[1].headers,
        vec![
            ("A".to_string(), "top".to_string()),
            ("B".to_string(), "own".to_string())
        ]
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
