//! The checks of `adapters` entries.

use super::*;

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

/// The adapter entry for Choria replies that the tests below vary.
const REPLY: &str = r#"  - name: replies
    kind: choria_reply
    connection: east
    subjects: ["choria.reply.>"]
    output: { stream: CHORIA_REPLIES, subject: "choria.stream.input.reply.{agent}.{sender}" }
"#;

fn with_reply(from: &str, to: &str) -> Vec<Problem> {
    assert!(REPLY.contains(from), "reply entry lacks {from:?}");
    broken(
        "  - name: archive\n",
        &format!("{}  - name: archive\n", REPLY.replacen(from, to, 1)),
    )
}

#[test]
fn choria_reply_takes_a_protocol_version() {
    assert_eq!(with_reply("", ""), Vec::new());
    for version in ["any", "v1", "v2"] {
        let set = format!("    kind: choria_reply\n    protocol_version: {version}\n");
        assert_eq!(
            with_reply("    kind: choria_reply\n", &set),
            Vec::new(),
            "{version}"
        );
    }
    assert_problem(
        &with_reply(
            "    kind: choria_reply\n",
            "    kind: choria_reply\n    protocol_version: v3\n",
        ),
        "adapters[2].protocol_version",
        "use one of: any, v1, v2",
    );
    // Replies name no collective.
    assert_problem(
        &with_reply("{agent}.{sender}", "{collective}.{sender}"),
        "adapters[2].output.subject",
        "collective",
    );
    // protocol_version belongs to the Choria RPC kinds alone.
    assert_problem(
        &broken(
            "    queue_group: ferry\n",
            "    queue_group: ferry\n    protocol_version: v1\n",
        ),
        "adapters[0].protocol_version",
        "only applies to kinds choria_registration and choria_reply (this adapter is choria_lifecycle)",
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
fn subject_prefixes_of_a_connection() {
    let east = "    servers: [\"nats://10.0.0.1:4222\", \"10.0.0.2:4222\"]\n";
    assert_eq!(
        broken(
            east,
            &format!("{east}    inbox_prefix: choria.reply.c0ffee\n    jetstream_api_prefix: choria.streams\n")
        ),
        Vec::new()
    );
    for (key, bad) in [("inbox_prefix", "a..b"), ("jetstream_api_prefix", "x.>")] {
        assert_problem(
            &broken(east, &format!("{east}    {key}: \"{bad}\"\n")),
            &format!("connections.east.{key}"),
            "is not a valid subject prefix",
        );
    }
    assert_problem(
        &broken(
            east,
            &format!("{east}    jetstream_api_prefix: choria.streams\n    jetstream_domain: hub\n"),
        ),
        "connections.east.jetstream_api_prefix",
        "and jetstream_domain both name the JetStream API",
    );
}

#[test]
fn connect_timeouts_are_bounded() {
    let east = "    servers: [\"nats://10.0.0.1:4222\", \"10.0.0.2:4222\"]\n";
    for bad in ["0s", "6m"] {
        assert_problem(
            &broken(east, &format!("{east}    connect_timeout: {bad}\n")),
            "connections.east.connect_timeout",
            "must be more than 0 and at most 5m (default 5s)",
        );
    }
    assert_eq!(
        broken(east, &format!("{east}    connect_timeout: 30s\n")),
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
