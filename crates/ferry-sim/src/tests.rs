use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use choria_lifecycle::LifecycleDecoder;
use choria_registration::RegistrationDecoder;
use ferry_adapter::{Decoder, Input, Payload};
use serde_json::Value;

use crate::*;

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join("fixtures")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
        .trim_end()
        .to_string()
}

fn uuid(text: &str) -> u128 {
    u128::from_str_radix(&text.replace('-', ""), 16).expect("uuid")
}

fn lifecycle_event(
    kind: LifecycleType,
    format: LifecycleFormat,
    fields: (&str, &'static str, i64, &'static str, &'static str),
    id: &str,
    governor: Option<Governor>,
) -> SimEvent {
    let (identity, component, timestamp, version, new_version) = fields;
    SimEvent::Lifecycle {
        identity: identity.into(),
        kind,
        component,
        format,
        id: uuid(id),
        timestamp,
        version,
        new_version,
        governor,
    }
}

/// The renderers reproduce the lifecycle fixtures byte for byte.
#[test]
fn lifecycle_rendering_matches_the_fixtures() {
    use LifecycleFormat as F;
    use LifecycleType as T;
    let facts = |sequence, event_type| {
        Some(Governor {
            name: "FACTS",
            sequence,
            event_type,
        })
    };
    let db3 = "db3.fra.acme.test";
    let new17 = "new-17.ams.acme.test";
    let cases = [
        (
            "lifecycle/startup-server.choria.json",
            T::Startup,
            F::Choria,
            (db3, "server", 1767225600, "0.29.4", ""),
            "4b0e6a52-6f0e-4c1e-9d7a-2f4f3c0b9a11",
            None,
        ),
        (
            "lifecycle/startup-server.cloudevent.json",
            T::Startup,
            F::CloudEvents,
            (db3, "server", 1767225600, "0.29.4", ""),
            "4b0e6a52-6f0e-4c1e-9d7a-2f4f3c0b9a11",
            None,
        ),
        (
            "lifecycle/shutdown-server.cloudevent.json",
            T::Shutdown,
            F::CloudEvents,
            (db3, "server", 1767229200, "", ""),
            "9a7d1c3e-2b4f-4e8a-b1c2-d3e4f5a6b7c8",
            None,
        ),
        (
            "lifecycle/alive-server.cloudevent.json",
            T::Alive,
            F::CloudEvents,
            (
                "edge-0042.sjc.acme.test",
                "server",
                1767225000,
                "0.29.4",
                "",
            ),
            "c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f",
            None,
        ),
        (
            "lifecycle/provisioned-provision_mode_server.cloudevent.json",
            T::Provisioned,
            F::CloudEvents,
            (new17, "provision_mode_server", 1767225700, "", ""),
            "0d1e2f3a-4b5c-4d6e-8f7a-9b0c1d2e3f4a",
            None,
        ),
        (
            "lifecycle/upgraded-provision_mode_server.cloudevent.json",
            T::Upgraded,
            F::CloudEvents,
            (
                new17,
                "provision_mode_server",
                1767225650,
                "0.28.0",
                "0.29.4",
            ),
            "7b8c9d0e-1f2a-4b3c-a4d5-e6f7a8b9c0d1",
            None,
        ),
        (
            "lifecycle/governor-cli.choria.json",
            T::Governor,
            F::Choria,
            ("web9.lhr.acme.test", "CLI", 1767225860, "", ""),
            "6a7b8c9d-0e1f-4a2b-93c4-d5e6f7a8b9c0",
            facts(7, "timeouts"),
        ),
        (
            "lifecycle/startup-legacy.json",
            T::Startup,
            F::Legacy,
            ("old1.acme.test", "server", 1546257701, "0.99.0", ""),
            "0",
            None,
        ),
    ];
    for (name, kind, format, fields, id, governor) in cases {
        let event = lifecycle_event(kind, format, fields, id, governor);
        let payload = String::from_utf8(event.payload()).unwrap();
        assert_eq!(payload, fixture(name), "{name}");
    }
}

/// The envelope builders reproduce the registration fixtures byte for byte.
#[test]
fn registration_envelopes_match_the_fixtures() {
    let expected: Value =
        serde_json::from_str(&fixture("registration/v1-inventory.expected.json")).unwrap();
    let payload = expected["data"].as_str().unwrap();
    let envelope = RequestEnvelope {
        sender: "web4.cdg.acme.test",
        request_id: "9f3c2a1b0e7d4c6b8a5f4e3d2c1b0a99",
        collective: "mcollective",
        agent: "registration",
        ttl: 60,
        time: 1_767_225_600,
        broker: "nats://broker2.acme.test:4222",
    };
    assert_eq!(
        registration_v1(payload, &envelope),
        fixture("registration/v1-inventory.wire.json")
    );
    assert_eq!(
        registration_v2(payload.as_bytes(), &envelope),
        fixture("registration/v2-inventory.wire.json")
    );
    let filecontent: Value =
        serde_json::from_str(&fixture("registration/v1-filecontent.expected.json")).unwrap();
    assert_eq!(
        registration_v1(filecontent["data"].as_str().unwrap(), &envelope),
        fixture("registration/v1-filecontent.wire.json")
    );
}

#[test]
fn go_style_json_strings() {
    let input = "a\"b\\c\n<&>\u{1}\u{1f}\u{2028}\u{2029}é€\u{2020}\u{e2}";
    let mut out = String::new();
    push_json_string(&mut out, input);
    let escaped = r#""a\"b\\c\n\u003c\u0026\u003e\u0001\u001f\u2028\u2029"#;
    assert_eq!(out, format!("{escaped}é€\u{2020}\u{e2}\""));
    assert_eq!(serde_json::from_str::<String>(&out).unwrap(), input);
}

/// The pre-escaped templates give exactly what escaping the rendered document gives.
#[test]
fn escaped_templates_equal_escaping_the_document() {
    let roles = ROLES.iter().map(|(role, _)| *role).chain(["other"]);
    for role in roles {
        let inventory = Inventory {
            identity: "web0001.dc1.example.net",
            role,
            dc: 1,
            version: "0.29.4",
            time: DEFAULT_EPOCH,
            uptime: 300,
            requests: 2,
        };
        let mut raw = String::new();
        inventory.write(&mut raw, 0);
        let document: Value = serde_json::from_str(&raw).expect("inventory is JSON");
        assert_eq!(
            document["content"]["status"]["identity"],
            inventory.identity
        );
        assert_eq!(
            document["content"]["status"]["last_message"],
            DEFAULT_EPOCH - 30
        );
        assert_eq!(
            document["content"]["agents"][0]["author"],
            "ops <ops@example.net>"
        );
        assert!(
            raw.contains(r"ops \u003cops@example.net\u003e"),
            "Go escaping"
        );
        for level in 1..=MAX_LEVEL {
            let mut fast = String::new();
            inventory.write(&mut fast, level);
            let mut slow = String::new();
            push_escaped(&mut slow, &raw, level);
            assert_eq!(fast, slow, "{role} level {level}");
        }
    }
}

#[test]
fn rfc3339_dates() {
    assert_eq!(Rfc3339::seconds(0).to_string(), "1970-01-01T00:00:00Z");
    assert_eq!(
        Rfc3339::seconds(DEFAULT_EPOCH).to_string(),
        "2026-01-01T00:00:00Z"
    );
    assert_eq!(
        Rfc3339::seconds(1_767_225_000).to_string(),
        "2025-12-31T23:50:00Z"
    );
    assert_eq!(
        Rfc3339::seconds(951_782_400).to_string(),
        "2000-02-29T00:00:00Z"
    );
    assert_eq!(Rfc3339::seconds(-1).to_string(), "1969-12-31T23:59:59Z");
    let with_nanos = |seconds, nanos| Rfc3339 { seconds, nanos }.to_string();
    assert_eq!(with_nanos(0, 500_000_000), "1970-01-01T00:00:00.5Z");
    assert_eq!(with_nanos(0, 1), "1970-01-01T00:00:00.000000001Z");
    assert_eq!(with_nanos(-1, 120_000), "1969-12-31T23:59:59.00012Z");
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let render = |fleet: &Fleet| -> Vec<(String, Vec<u8>)> {
        (0..40)
            .flat_map(|tick| fleet.events_for_tick(tick))
            .map(|event| (event.subject(), event.payload()))
            .collect()
    };
    let a = render(&Fleet::new(50, 7));
    assert_eq!(a, render(&Fleet::new(50, 7)));
    assert_ne!(a, render(&Fleet::new(50, 8)));
}

#[test]
fn identities_are_unique_and_varied() {
    let fleet = Fleet::new(5_000, 1);
    let identities: HashSet<&str> = fleet.nodes().iter().map(|n| &*n.identity).collect();
    assert_eq!(identities.len(), 5_000);
    let roles: HashSet<&str> = fleet.nodes().iter().map(|n| n.role).collect();
    assert_eq!(roles.len(), ROLES.len());
    let sample = &fleet.nodes()[0].identity;
    let parts: Vec<&str> = sample.split('.').collect();
    assert_eq!(parts.len(), 4, "{sample}");
    assert!(
        parts[1].starts_with("dc") && parts[2..] == ["example", "net"],
        "{sample}"
    );
    let formats: HashSet<LifecycleFormat> =
        fleet.nodes().iter().map(|n| n.lifecycle_format).collect();
    assert_eq!(formats.len(), 3);
}

/// Every event of a simulated day decodes with the real decoders, yielding the subject
/// fields and sender the adapter needs.
#[test]
fn every_generated_payload_decodes() {
    let fleet = Fleet::new(300, 42);
    let lifecycle = LifecycleDecoder::new(false, Default::default());
    let registration = RegistrationDecoder::default();
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    let mut protocols = HashSet::new();
    let mut buffer = Vec::new();
    // The first hour, plus the restart of a node that upgrades on it.
    let mut ticks: Vec<u64> = (0..60).collect();
    let upgrading = fleet
        .nodes()
        .iter()
        .find(|node| node.upgrades)
        .expect("an upgrade");
    let restart = upgrading.startup_tick + upgrading.first_restart;
    ticks.extend([restart - 1, restart]);
    for tick in ticks {
        for event in fleet.events_for_tick(tick) {
            buffer.clear();
            event.write_payload(&mut buffer);
            let subject = event.subject();
            let input = Input::new(&subject, &buffer);
            match &event {
                SimEvent::Lifecycle {
                    kind, component, ..
                } => {
                    let decoded = lifecycle.decode(&input).unwrap_or_else(|e| {
                        panic!("{subject}: {e}: {}", String::from_utf8_lossy(&buffer))
                    });
                    assert_eq!(decoded.field("type"), Some(kind.as_str()));
                    assert_eq!(decoded.field("component"), Some(*component));
                    assert_eq!(decoded.sender.as_deref(), Some(event.sender()));
                    assert_eq!(subject, lifecycle_subject(*kind, component));
                    *kinds.entry(kind.as_str()).or_default() += 1;
                }
                SimEvent::Registration { protocol, time, .. } => {
                    assert_eq!(subject, REGISTRATION_SUBJECT);
                    let decoded = registration
                        .decode(&input)
                        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&buffer)));
                    assert_eq!(decoded.sender.as_deref(), Some(event.sender()));
                    assert_eq!(decoded.field("agent"), Some("registration"));
                    assert_eq!(decoded.field("collective"), Some("mcollective"));
                    let Payload::Replaced(stored) = &decoded.payload else {
                        panic!("registration output must be replaced")
                    };
                    let stored: Value = serde_json::from_slice(stored).unwrap();
                    assert_eq!(stored["sender"], event.sender());
                    assert_eq!(stored["time"], Rfc3339::seconds(*time).to_string());
                    let data: Value =
                        serde_json::from_str(stored["data"].as_str().unwrap()).unwrap();
                    assert_eq!(data["content"]["status"]["identity"], event.sender());
                    assert_eq!(data["protocol"], "choria:registration:inventorycontent:1");
                    protocols.insert(*protocol);
                }
            }
        }
    }
    for kind in LifecycleType::ALL {
        assert!(
            kinds.get(kind.as_str()).copied().unwrap_or(0) > 0,
            "no {kind:?} in {kinds:?}"
        );
    }
    assert_eq!(protocols.len(), 2);
}

#[test]
fn every_node_starts_once_then_stays_up() {
    let fleet = Fleet::new(1_000, 3);
    let mut startups: HashMap<String, u64> = HashMap::new();
    for tick in 0..STARTUP_SPREAD_TICKS + 5 {
        for event in fleet.events_for_tick(tick) {
            if let SimEvent::Lifecycle {
                kind: LifecycleType::Startup,
                ..
            } = event
            {
                *startups.entry(event.sender().to_string()).or_default() += 1;
            }
        }
    }
    assert_eq!(startups.len(), 1_000);
    assert!(startups.values().all(|count| *count == 1));
}

/// Alive events repeat the same bytes within one boot, 30 ticks apart, as Choria's do.
#[test]
fn alive_events_repeat_their_bytes_within_a_boot() {
    let fleet = Fleet::new(20, 9);
    let node = &fleet.nodes()[0];
    let (_, boot) = node.boot(STARTUP_SPREAD_TICKS).unwrap();
    let first = fleet.lifecycle(0, LifecycleType::Alive, boot + ALIVE_INTERVAL_TICKS);
    let second = fleet.lifecycle(0, LifecycleType::Alive, boot + 2 * ALIVE_INTERVAL_TICKS);
    assert_eq!(first.payload(), second.payload());
    let events = fleet.events_for_tick(boot + ALIVE_INTERVAL_TICKS);
    assert!(events.iter().any(|event| matches!(
        event,
        SimEvent::Lifecycle { kind: LifecycleType::Alive, identity, .. } if **identity == *node.identity
    )));
}

#[test]
fn registrations_are_unique_and_periodic() {
    let fleet = Fleet::new(200, 11);
    let mut payloads = HashSet::new();
    let mut count = 0;
    for tick in
        STARTUP_SPREAD_TICKS..STARTUP_SPREAD_TICKS + 10 * DEFAULT_REGISTRATION_INTERVAL_TICKS
    {
        for event in fleet.events_for_tick(tick) {
            if !event.is_lifecycle() {
                count += 1;
                assert!(payloads.insert(event.payload()), "repeated registration");
            }
        }
    }
    // Ten intervals: ten registrations per node, give or take restarts.
    assert!((1_900..=2_100).contains(&count), "{count}");
}

#[test]
fn restarts_say_shutdown_then_startup() {
    let fleet = Fleet::new(50, 5);
    let node = &fleet.nodes()[0];
    let restart = node.startup_tick + node.first_restart;
    let before = fleet.events_for_tick(restart - 1);
    let after = fleet.events_for_tick(restart);
    let mine = |events: &[SimEvent], wanted: LifecycleType| {
        events.iter().any(|event| {
            matches!(event, SimEvent::Lifecycle { kind, .. } if *kind == wanted)
                && event.sender() == &*node.identity
        })
    };
    assert!(mine(&before, LifecycleType::Shutdown));
    assert!(mine(&after, LifecycleType::Startup));
    assert_eq!(mine(&after, LifecycleType::Upgraded), node.upgrades);
}
