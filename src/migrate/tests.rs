//! The translation of Choria stream replicator files (`tests/fixtures/stream-replicator`).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::translate::sr_duration;
use super::{stream_replicator, Migration};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/stream-replicator")
        .join(name)
}

fn translate(name: &str) -> (Migration, Value) {
    let (_, migration) = stream_replicator(&fixture(name)).expect("the fixture translates");
    let value: Value = serde_norway::from_str(&migration.yaml).expect("the output is YAML");
    (migration, value)
}

fn translate_text(text: &str) -> Result<(Migration, Value), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("sr.yaml");
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    let (_, migration) = stream_replicator(&path).map_err(|e| e.to_string())?;
    let value = serde_norway::from_str(&migration.yaml).map_err(|e| e.to_string())?;
    Ok((migration, value))
}

fn noted(migration: &Migration, at: &str) -> bool {
    migration.notes.iter().any(|note| note.at == at)
}

#[test]
fn the_registration_walkthrough_becomes_a_file_ferry_check_accepts() {
    let (migration, value) = translate("registration.yaml");
    let problems = super::check_translation(&migration, Path::new("out.yaml"));
    assert!(problems.is_empty(), "{problems:?}\n{}", migration.yaml);
    assert_eq!(value["name"], "US-EAST");
    assert_eq!(value["monitor"]["listen"], "0.0.0.0:9100");
    let registration = &value["replicators"][0];
    assert_eq!(registration["from"]["stream"], "CHORIA_REGISTRATION");
    assert_eq!(registration["to"]["create"], true);
    assert_eq!(
        registration["limit"]["sample"],
        json!({"key": {"field": "sender"}, "interval": "1h", "size_trigger": 1024})
    );
    assert_eq!(
        registration["advisories"],
        json!({
            "subject": "choria.stream.input.registration_advisories",
            "timeout_after": "11m",
            "reliable": true
        })
    );
    assert_eq!(registration["heartbeat"]["format"], "choria");
    assert_eq!(
        registration["heartbeat"]["subjects"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(
        migration
            .replicators
            .iter()
            .map(|m| (m.name.as_str(), m.samples))
            .collect::<Vec<_>>(),
        [
            ("US-EAST_CHORIA_REGISTRATION", true),
            ("US-EAST_CHORIA_REGISTRATION_ADVISORIES", false)
        ]
    );
    for at in ["loglevel", "logfile"] {
        assert!(noted(&migration, at), "{at}: {:?}", migration.notes);
    }
}

/// Every key of SR's config is either translated (found at its ferry place) or noted.
#[test]
fn every_key_is_translated_or_noted() {
    let (migration, value) = translate("every-key.yaml");
    let nodes = &value["replicators"][0];
    let translated: [(&str, &Value, Value); 20] = [
        ("name", &value["name"], json!("DC1")),
        (
            "monitor_port",
            &value["monitor"]["listen"],
            json!("0.0.0.0:8080"),
        ),
        ("streams[0].name", &nodes["name"], json!("nodes")),
        (
            "streams[0].stream",
            &nodes["from"]["stream"],
            json!("NODE_DATA"),
        ),
        (
            "streams[0].filter_subject",
            &nodes["filter"]["subjects"],
            json!(["fleet.nodes.>"]),
        ),
        (
            "streams[0].target_stream",
            &nodes["to"]["stream"],
            json!("FLEET_NODES"),
        ),
        (
            "streams[0].target_subject_prefix",
            &nodes["to"]["subject_prefix"],
            json!("FLEET_NODES"),
        ),
        (
            "streams[0].target_subject_remove",
            &nodes["to"]["subject_remove"],
            json!("NODE_DATA"),
        ),
        (
            "streams[0].no_target_create",
            &nodes["to"]["create"],
            json!(false),
        ),
        (
            "streams[0].ephemeral",
            &nodes["recopy_at_start"],
            json!(true),
        ),
        (
            "streams[0].start_sequence",
            &nodes["start"],
            json!({"sequence": 1024}),
        ),
        ("streams[0].max_age", &nodes["max_age"], json!("1d")),
        (
            "streams[0].inspect_field",
            &nodes["limit"]["sample"]["key"],
            json!({"field": "sender"}),
        ),
        (
            "streams[0].inspect_force_field",
            &nodes["limit"]["sample"]["force_field"],
            json!("force_copy"),
        ),
        (
            "streams[0].inspect_duration",
            &nodes["limit"]["sample"]["interval"],
            json!("2h"),
        ),
        (
            "streams[0].size_trigger",
            &nodes["limit"]["sample"]["size_trigger"],
            json!(513),
        ),
        (
            "streams[0].warn_duration",
            &nodes["advisories"]["timeout_after"],
            json!("30m"),
        ),
        (
            "streams[0].advisory",
            &nodes["advisories"]["subject"],
            json!("fleet.advisories.{event}.{value}"),
        ),
        (
            "streams[0].leader_election_name",
            &nodes["leader_election"]["bucket"],
            json!("FERRY_LEADER_ELECTION"),
        ),
        (
            "heartbeats",
            &nodes["heartbeat"]["subjects"][0]["subject"],
            json!("fleet.nodes._monitor"),
        ),
    ];
    for (key, found, expected) in translated {
        assert_eq!(found, &expected, "{key}\n{}", migration.yaml);
    }
    // Connections: URLs split, logins moved out, TLS and Choria blocks by precedence
    // (source_tls over tls over the file's tls; source_choria likewise).
    let source = &value["connections"]["source"];
    assert_eq!(
        source["servers"],
        json!([
            "nats://src.example.net:4222",
            "nats://src2.example.net:4222"
        ])
    );
    // With a Choria login the URL's is dropped (and noted).
    assert_eq!(source.get("user"), None);
    assert!(noted(&migration, "streams[0].source_url"));
    assert_eq!(source["tls"]["ca"], "/etc/sr/source-ca.pem");
    assert_eq!(source["choria"]["seed_file"], "/etc/sr/source.seed");
    let target = &value["connections"]["target"];
    assert_eq!(target["token"], "token123");
    assert_eq!(target["tls"], json!({"ca": "/etc/sr/target-ca.pem"}));
    // SR ignores a choria block without both files.
    assert_eq!(target.get("choria"), None);
    assert!(noted(&migration, "streams[0].target_choria"));
    // The file-wide tls and choria reach the entries that set none.
    assert_eq!(
        value["connections"]["source_2"]["tls"]["ca"],
        "/etc/sr/ca.pem"
    );
    assert_eq!(
        value["connections"]["source_2"]["choria"]["jwt_file"],
        "/etc/sr/choria.jwt"
    );
    // start_at_end wins over the other start keys, as in SR.
    assert_eq!(value["replicators"][2]["start"], "new");
    for at in [
        "streams[0].start_sequence",
        "streams[0].inspect_force_field",
        "streams[1].inspect_header",
        "streams[1].target_initiated",
        "streams[2].inspect_subject_token",
        "heartbeats.leader_election",
        "heartbeats.tls/choria",
        "loglevel",
        "logfile",
        "profiling",
    ] {
        assert!(noted(&migration, at), "{at}: {:?}", migration.notes);
    }
    // What SR ignores without inspect_field is not sampled here either.
    assert_eq!(value["replicators"][1].get("limit"), None);
    assert!(migration.yaml.contains("# NOTE streams[1].inspect_header:"));
}

#[test]
fn logins_move_out_of_urls() {
    let (migration, value) = translate_text(
        "name: s\nstreams:\n  - stream: A\n    source_url: nats://sr:p%40ss@a:4222,nats://a2:4222\n    target_url: nats://tok@b:4222\n",
    )
    .unwrap();
    let source = &value["connections"]["source"];
    assert_eq!(
        source["servers"],
        json!(["nats://a:4222", "nats://a2:4222"])
    );
    assert_eq!(
        (&source["user"], &source["password"]),
        (&json!("sr"), &json!("p@ss"))
    );
    assert_eq!(value["connections"]["target"]["token"], "tok");
    assert!(super::check_translation(&migration, Path::new("x")).is_empty());
}

#[test]
fn warn_duration_defaults_to_half_the_inspect_duration() {
    let (_, value) = translate_text(
        "name: s\nstreams:\n  - stream: REG\n    source_url: nats://a:4222\n    target_url: nats://b:4222\n    inspect_field: sender\n    inspect_duration: 1h\n    advisory: { subject: 'adv.%s.%v' }\n",
    )
    .unwrap();
    let advisories = &value["replicators"][0]["advisories"];
    assert_eq!(advisories["timeout_after"], "30m");
    assert_eq!(advisories["subject"], "adv.{event}.{value}");
    assert_eq!(advisories.get("reliable"), None);
}

#[test]
fn connections_are_shared_by_entries_with_the_same_servers_and_login() {
    let (migration, value) = translate_text(
        "name: s\nstreams:\n  - stream: A\n    source_url: nats://a:4222\n    target_url: nats://b:4222\n  - stream: B\n    target_stream: B_COPY\n    source_url: nats://a:4222\n    target_url: nats://a:4222\n",
    )
    .unwrap();
    let names: Vec<&String> = value["connections"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["source", "target"]);
    assert_eq!(value["replicators"][1]["to"]["connection"], "source");
    // Two entries with the file's name are told apart by their streams.
    assert_eq!(value["replicators"][0]["name"], "s_A");
    assert!(super::check_translation(&migration, Path::new("x")).is_empty());
}

#[test]
fn what_sr_refuses_is_refused_with_the_key() {
    for (text, expected) in [
        ("streams: []\n", "name is required"),
        ("name: s\n", "nothing to migrate"),
        ("name: s\nstreams: [{ stream: A, target_url: 'nats://b' }]\n", "source_url and target_url are required"),
        (
            "name: s\nstreams: [{ stream: A, source_url: 'nats://a', target_url: 'nats://b', inspect_field: x, inspect_header: y }]\n",
            "only one of inspect_field",
        ),
        (
            "name: s\nstreams: [{ stream: A, source_url: 'nats://a', target_url: 'nats://b', max_age: 1x }]\n",
            "streams[0].max_age",
        ),
        ("name: [x]\n", "not a stream replicator config"),
    ] {
        let error = translate_text(text).unwrap_err();
        assert!(error.contains(expected), "{text}: {error}");
    }
}

#[test]
fn durations_are_read_as_sr_reads_them() {
    let hours = |h: u64| std::time::Duration::from_secs(h * 3600);
    assert_eq!(sr_duration("1w", "k").unwrap(), hours(168));
    assert_eq!(sr_duration("1.5d", "k").unwrap(), hours(36));
    assert_eq!(sr_duration("1M", "k").unwrap(), hours(720));
    assert_eq!(sr_duration("1Y", "k").unwrap(), hours(8760));
    assert_eq!(
        sr_duration("1h30m", "k").unwrap(),
        std::time::Duration::from_secs(5400)
    );
    assert!(sr_duration("5x", "k").unwrap_err().contains("k:"));
}

#[test]
fn keys_are_matched_ignoring_case_as_go_does_but_header_names_are_kept() {
    let (migration, value) = translate_text(
        "Name: s\nStreams:\n  - Stream: A\n    Source_URL: nats://a:4222\n    target_url: nats://b:4222\nheartbeats:\n  url: nats://a:4222\n  Headers: { X-Site: dc1 }\n  subjects: [{ subject: A._monitor }]\n",
    )
    .unwrap();
    assert_eq!(value["name"], "s");
    assert_eq!(value["replicators"][0]["from"]["stream"], "A");
    assert_eq!(
        value["replicators"][0]["heartbeat"]["headers"],
        json!({"X-Site": "dc1"})
    );
    assert!(migration
        .notes
        .iter()
        .all(|n| !n.text.contains("not a stream-replicator key")));
}

#[test]
fn a_file_that_cannot_be_a_config_is_refused_without_reading_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    std::fs::write(&big, "#".repeat(2 << 20)).unwrap();
    let error = stream_replicator(&big).unwrap_err().to_string();
    assert!(error.contains("larger than"), "{error}");
    let binary = dir.path().join("binary.yaml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
    let error = stream_replicator(&binary).unwrap_err().to_string();
    assert!(error.contains("not UTF-8"), "{error}");
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n";
    assert!(translate_text(bomb).unwrap_err().contains("alias"));
}

#[test]
fn url_options_become_connection_keys_or_notes() {
    let (migration, value) = translate_text(
        "name: s\nstreams:\n  - stream: A\n    source_url: nats://a:4222?credentials=/etc/sr/a.creds&tls_handshake_first=true&connect_timeout=30s&insecure=true\n    target_url: nats://b:4222?jwt=/j&nkey=/n&bogus=1\nheartbeats:\n  url: nats://a:4222\n  subjects: [{ subject: A._monitor }]\n",
    )
    .unwrap();
    let source = &value["connections"]["source"];
    assert_eq!(source["servers"], json!(["nats://a:4222"]));
    assert_eq!(source["credentials"], "/etc/sr/a.creds");
    assert_eq!(source["tls"]["handshake_first"], true);
    assert_eq!(source["connect_timeout"], "30s");
    assert_eq!(
        value["connections"]["target"]["servers"],
        json!(["nats://b:4222"])
    );
    let texts: Vec<&str> = migration.notes.iter().map(|n| n.text.as_str()).collect();
    for expected in ["?insecure", "?jwt and ?nkey", "?bogus"] {
        assert!(
            texts.iter().any(|t| t.contains(expected)),
            "{expected}: {texts:?}"
        );
    }
    // The heartbeat finds its replicator whatever the URL's query.
    assert_eq!(
        value["replicators"][0]["heartbeat"]["subjects"][0]["subject"],
        "A._monitor"
    );
}

#[test]
fn names_that_become_equal_are_kept_apart() {
    let (_, value) = translate_text(
        "name: s\nstreams:\n  - { name: dc.1, stream: A, source_url: 'nats://a', target_url: 'nats://b' }\n  - { name: dc_1, stream: B, source_url: 'nats://a', target_url: 'nats://b' }\n",
    )
    .unwrap();
    assert_eq!(value["replicators"][0]["name"], "dc_1");
    assert_eq!(value["replicators"][1]["name"], "dc_1_2");
}

#[test]
fn a_choria_login_that_sr_would_not_verify_is_noted() {
    let (migration, _) = translate_text(
        "name: s\nstreams:\n  - stream: A\n    source_url: nats://a:4222\n    target_url: nats://b:4222\n    source_tls: { ca: /ca.pem }\n    source_choria: { jwt_file: /j, seed_file: /s, collective: choria }\n",
    )
    .unwrap();
    assert!(
        migration
            .notes
            .iter()
            .any(|n| n.at == "streams[0].source_url" && n.text.contains("always verifies")),
        "{:?}",
        migration.notes
    );
}

#[test]
fn durations_sr_refuses_are_refused() {
    for text in ["1d12h", "1H", "-1h", "5"] {
        assert!(sr_duration(text, "k").is_err(), "{text}");
    }
}
