//! End-to-end tests of the adapters (SPEC sections 4, 6 and 8): real nats-servers, the real `ferry run`
//! binary, and the shared Choria wire-format fixtures. Every test starts its own servers and ferry
//! processes, so they run in parallel without sharing anything.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::Context;
use common::lifecycle_yaml;
use common::{alive_event, msg_id, ALIVE_SUBJECT};
use common::{js_client, stream_message_count, stream_messages, wait_until, Ferry, NatsServer};
use common::{Metrics, StoredMessage};
use serde_json::Value;

/// Deadline for counters and streams to reach the expected values.
const DEADLINE: Duration = Duration::from_secs(60);

/// Valid lifecycle fixtures: file, subject it arrives on, and the event's type, component, identity.
const LIFECYCLE_VALID: &[(&str, &str, &str, &str, &str)] = &[
    (
        "alive-server.choria.json",
        "choria.lifecycle.event.alive.server",
        "alive",
        "server",
        "edge-0042.sjc.acme.test",
    ),
    (
        "alive-server.cloudevent.json",
        "choria.lifecycle.event.alive.server",
        "alive",
        "server",
        "edge-0042.sjc.acme.test",
    ),
    (
        "governor-cli.choria.json",
        "choria.lifecycle.event.governor.CLI",
        "governor",
        "CLI",
        "web9.lhr.acme.test",
    ),
    (
        "governor-facts.choria.json",
        "choria.lifecycle.event.governor.facts",
        "governor",
        "facts",
        "web9.lhr.acme.test",
    ),
    (
        "provisioned-provision_mode_server.choria.json",
        "choria.lifecycle.event.provisioned.provision_mode_server",
        "provisioned",
        "provision_mode_server",
        "new-17.ams.acme.test",
    ),
    (
        "provisioned-provision_mode_server.cloudevent.json",
        "choria.lifecycle.event.provisioned.provision_mode_server",
        "provisioned",
        "provision_mode_server",
        "new-17.ams.acme.test",
    ),
    (
        "shutdown-server.choria.json",
        "choria.lifecycle.event.shutdown.server",
        "shutdown",
        "server",
        "db3.fra.acme.test",
    ),
    (
        "shutdown-server.cloudevent.json",
        "choria.lifecycle.event.shutdown.server",
        "shutdown",
        "server",
        "db3.fra.acme.test",
    ),
    (
        "startup-legacy.json",
        "choria.lifecycle.event.startup.server",
        "startup",
        "server",
        "old1.acme.test",
    ),
    (
        "startup-server.choria.json",
        "choria.lifecycle.event.startup.server",
        "startup",
        "server",
        "db3.fra.acme.test",
    ),
    (
        "startup-server.cloudevent.json",
        "choria.lifecycle.event.startup.server",
        "startup",
        "server",
        "db3.fra.acme.test",
    ),
    (
        "upgraded-provision_mode_server.choria.json",
        "choria.lifecycle.event.upgraded.provision_mode_server",
        "upgraded",
        "provision_mode_server",
        "new-17.ams.acme.test",
    ),
    (
        "upgraded-provision_mode_server.cloudevent.json",
        "choria.lifecycle.event.upgraded.provision_mode_server",
        "upgraded",
        "provision_mode_server",
        "new-17.ams.acme.test",
    ),
];

const REGISTRATION_SUBJECT: &str = "mcollective.broadcast.agent.registration";
const REGISTRATION_VALID: &[&str] = &["v1-filecontent", "v1-inventory", "v2-inventory"];

/// Valid reply fixtures: name, the replying node, the agent that replied.
const REPLY_VALID: &[(&str, &str, &str)] = &[
    ("v1-hello", "testing", "test"),
    ("v1-rpcutil", "web4.cdg.acme.test", "rpcutil"),
    ("v2-hello", "testing", "test"),
    ("v2-rpcutil-signed", "web4.cdg.acme.test", "rpcutil"),
];

fn fixture_dir(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(kind)
}

fn fixture(kind: &str, name: &str) -> Vec<u8> {
    let path = fixture_dir(kind).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

async fn metric(ferry: &Ferry, name: &str, labels: &[(&str, &str)]) -> f64 {
    ferry.metrics().await.sum(name, labels)
}

/// Waits until the sum of metric `name` with `labels` equals `want`.
async fn wait_metric(ferry: &Ferry, name: &str, labels: &[(&str, &str)], want: f64) {
    let what = format!("{name}{labels:?} == {want}");
    wait_until(&what, DEADLINE, move || async move {
        ferry.metrics().await.sum(name, labels) == want
    })
    .await;
}

/// Waits until `stream` on `js` holds at least `want` messages, then returns all of them.
async fn wait_stored(js: &Context, stream: &str, want: u64) -> Vec<StoredMessage> {
    let what = format!("{want} messages in stream {stream}");
    wait_until(&what, DEADLINE, || async move {
        match js.get_stream(stream).await {
            Ok(mut s) => s.info().await.is_ok_and(|i| i.state.messages >= want),
            Err(_) => false,
        }
    })
    .await;
    stream_messages(js, stream).await
}

/// Waits until adapter `pipeline` has received `valid` + `bad.len()` messages and published
/// `valid`, then checks that each of the `bad` (name, reason) messages was counted once under its
/// reason and nothing else was invalid.
async fn wait_decoded(ferry: &Ferry, pipeline: &str, valid: usize, bad: &[(&str, &str)]) {
    let labels = [("pipeline", pipeline)];
    let total = (valid + bad.len()) as f64;
    wait_metric(ferry, "ferry_adapter_received_total", &labels, total).await;
    wait_metric(
        ferry,
        "ferry_adapter_published_total",
        &labels,
        valid as f64,
    )
    .await;
    let m = ferry.metrics().await;
    for (name, reason) in bad {
        let with_reason = [("pipeline", pipeline), ("reason", reason)];
        assert_eq!(
            m.get("ferry_adapter_invalid_total", &with_reason),
            Some(1.0),
            "{name}"
        );
    }
    assert_eq!(
        m.sum("ferry_adapter_invalid_total", &labels),
        bad.len() as f64
    );
}

async fn publish(client: &async_nats::Client, subject: &str, payload: Vec<u8>) {
    client
        .publish(subject.to_string(), payload.into())
        .await
        .unwrap_or_else(|e| panic!("publish on {subject}: {e}"));
}

/// Checks the headers every adapter adds (SPEC section 4).
fn assert_common_headers(
    msg: &StoredMessage,
    adapter: &str,
    source_subject: &str,
    payload: &[u8],
    sender: Option<&str>,
    since: SystemTime,
) {
    let ctx = format!("seq {} on {}", msg.sequence, msg.subject);
    assert_eq!(
        msg.header("Nats-Msg-Id"),
        Some(msg_id(source_subject, payload).as_str()),
        "{ctx}"
    );
    assert_eq!(msg.header("Ferry-Adapter"), Some(adapter), "{ctx}");
    assert_eq!(
        msg.header("Ferry-Source-Subject"),
        Some(source_subject),
        "{ctx}"
    );
    assert_eq!(msg.header("Ferry-Sender"), sender, "{ctx}");
    let received = msg
        .header("Ferry-Received")
        .unwrap_or_else(|| panic!("{ctx}: no Ferry-Received header"));
    let received =
        time::OffsetDateTime::parse(received, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{ctx}: Ferry-Received {received:?} is not RFC3339: {e}"));
    let since = time::OffsetDateTime::from(since) - Duration::from_secs(5);
    let until = time::OffsetDateTime::now_utc() + Duration::from_secs(5);
    assert!(
        received >= since && received <= until,
        "{ctx}: Ferry-Received {received} not within the test run"
    );
}

/// The lifecycle adapter on `url`, republishing what it cannot decode to `ferry.invalid.lifecycle`.
fn lifecycle_adapter_yaml(url: &str) -> String {
    lifecycle_yaml(
        Some("ferry-e2e"),
        "core",
        url,
        "    invalid_subject: ferry.invalid.lifecycle\n",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_fixtures_are_stored_with_subjects_and_headers() {
    // Every valid fixture is in the table (so a new fixture cannot be silently skipped).
    let on_disk: BTreeSet<String> = std::fs::read_dir(fixture_dir("lifecycle"))
        .expect("lifecycle fixture dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| !n.starts_with("bad-"))
        .collect();
    let in_table: BTreeSet<String> = LIFECYCLE_VALID.iter().map(|f| f.0.to_string()).collect();
    assert_eq!(on_disk, in_table, "valid lifecycle fixtures");

    let server = NatsServer::start();
    let mut ferry = Ferry::start(&lifecycle_adapter_yaml(&server.url()));
    ferry.wait_ready().await;
    let since = SystemTime::now();

    let (client, js) = js_client(&server.url()).await;
    let mut expected = HashMap::new();
    for &(file, subject, kind, component, identity) in LIFECYCLE_VALID {
        let payload = fixture("lifecycle", file);
        expected.insert(
            msg_id(subject, &payload),
            (file, subject, kind, component, identity, payload.clone()),
        );
        publish(&client, subject, payload).await;
    }
    client.flush().await.unwrap();
    let n = LIFECYCLE_VALID.len() as f64;
    wait_metric(
        &ferry,
        "ferry_adapter_received_total",
        &[("pipeline", "lifecycle")],
        n,
    )
    .await;
    wait_metric(
        &ferry,
        "ferry_adapter_published_total",
        &[("pipeline", "lifecycle")],
        n,
    )
    .await;

    let stored = wait_stored(&js, "FERRY_LIFECYCLE", LIFECYCLE_VALID.len() as u64).await;
    assert_eq!(stored.len(), LIFECYCLE_VALID.len());
    let mut seen = BTreeSet::new();
    for msg in &stored {
        let id = msg.header("Nats-Msg-Id").expect("Nats-Msg-Id").to_string();
        let (file, subject, kind, component, identity, payload) = expected
            .get(&id)
            .unwrap_or_else(|| panic!("unexpected message {msg:?}"));
        assert!(seen.insert(id.clone()), "{file} stored twice");
        assert_eq!(
            msg.subject,
            format!("ferry.lifecycle.{kind}.{component}"),
            "{file}"
        );
        // format: upgrade_legacy (the default) stores current events unchanged and rewrites only
        // the protocol of a legacy one (which go-choria's parser would refuse), re-encoded
        // without the whitespace around it.
        let received = String::from_utf8_lossy(payload);
        let stored = String::from_utf8_lossy(&msg.payload);
        if *file == "startup-legacy.json" {
            let upgraded = received.trim().replace(
                "\"choria:lifecycle:startup:1\"",
                "\"io.choria.lifecycle.v1.startup\"",
            );
            assert_eq!(stored, upgraded, "{file}");
        } else {
            assert_eq!(stored, received, "{file}");
        }
        assert_common_headers(msg, "lifecycle", subject, payload, Some(identity), since);
    }

    // The stream was created with the template's literal prefix + ">".
    let info = js
        .get_stream("FERRY_LIFECYCLE")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.subjects, ["ferry.lifecycle.>"]);
    assert_eq!(info.config.duplicate_window, Duration::from_secs(120));

    let m = ferry.metrics().await;
    let lc = [("pipeline", "lifecycle")];
    assert_eq!(m.sum("ferry_adapter_invalid_total", &lc), 0.0);
    assert_eq!(m.sum("ferry_adapter_dropped_total", &lc), 0.0);
    assert_eq!(m.sum("ferry_adapter_duplicates_total", &lc), 0.0);
    assert_eq!(m.sum("ferry_adapter_filtered_total", &lc), 0.0);

    // Publishing the very same bytes again is absorbed by the duplicate window.
    let (file, subject, ..) = LIFECYCLE_VALID[0];
    publish(&client, subject, fixture("lifecycle", file)).await;
    client.flush().await.unwrap();
    wait_metric(&ferry, "ferry_adapter_duplicates_total", &lc, 1.0).await;
    assert_eq!(
        stream_message_count(&js, "FERRY_LIFECYCLE").await,
        LIFECYCLE_VALID.len() as u64
    );

    ferry.sigterm();
    let status = ferry.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "graceful stop exits 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_fixtures_are_stored_as_choria_streams_output() {
    let server = NatsServer::start();
    let yaml = r#"
state_dir: "{state_dir}"
monitor: { listen: "{monitor}" }
connections:
  core: { servers: ["@URL@"] }
adapters:
  - name: registration
    kind: choria_registration
    connection: core
    subjects: ["mcollective.broadcast.agent.registration"]
    output: { stream: CHORIA_REGISTRATION, subject: "choria.stream.input.registration.{sender}" }
    invalid_subject: ferry.invalid.registration
"#
    .replace("@URL@", &server.url());
    let mut ferry = Ferry::start(&yaml);
    ferry.wait_ready().await;
    let since = SystemTime::now();

    let (client, js) = js_client(&server.url()).await;
    let mut invalid = client
        .subscribe("ferry.invalid.registration")
        .await
        .unwrap();
    client.flush().await.unwrap();

    let mut expected = HashMap::new();
    for name in REGISTRATION_VALID {
        let wire = fixture("registration", &format!("{name}.wire.json"));
        let want = json(&fixture("registration", &format!("{name}.expected.json")));
        expected.insert(
            msg_id(REGISTRATION_SUBJECT, &wire),
            (*name, wire.clone(), want),
        );
        publish(&client, REGISTRATION_SUBJECT, wire).await;
    }
    // The bad ones, interleaved after: counted by reason, republished raw, adapter keeps going.
    let bad = [
        ("bad-base64", "bad_base64"),
        ("bad-protocol", "unknown_protocol"),
        ("bad-inner", "not_json"),
        ("bad-empty", "empty"),
    ];
    let mut bad_payloads = Vec::new();
    for (name, _) in bad {
        let wire = fixture("registration", &format!("{name}.wire.json"));
        bad_payloads.push(wire.clone());
        publish(&client, REGISTRATION_SUBJECT, wire).await;
    }
    client.flush().await.unwrap();

    wait_decoded(&ferry, "registration", REGISTRATION_VALID.len(), &bad).await;

    let stored = wait_stored(&js, "CHORIA_REGISTRATION", REGISTRATION_VALID.len() as u64).await;
    assert_eq!(stored.len(), REGISTRATION_VALID.len());
    for msg in &stored {
        let id = msg.header("Nats-Msg-Id").expect("Nats-Msg-Id");
        let (name, wire, want) = expected
            .remove(id)
            .unwrap_or_else(|| panic!("unexpected or repeated message {msg:?}"));
        // The sender id's dots are kept in the last token.
        assert_eq!(
            msg.subject, "choria.stream.input.registration.web4.cdg.acme.test",
            "{name}"
        );
        assert_eq!(json(&msg.payload), want, "{name}");
        assert_common_headers(
            msg,
            "registration",
            REGISTRATION_SUBJECT,
            &wire,
            Some("web4.cdg.acme.test"),
            since,
        );
    }
    assert!(expected.is_empty(), "not stored: {:?}", expected.keys());

    let info = js
        .get_stream("CHORIA_REGISTRATION")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.subjects, ["choria.stream.input.registration.>"]);

    // Raw republish of every invalid message.
    let mut republished = Vec::new();
    while republished.len() < bad_payloads.len() {
        let msg = tokio::time::timeout(DEADLINE, futures_util::StreamExt::next(&mut invalid))
            .await
            .expect("invalid messages republished on invalid_subject")
            .expect("subscription open");
        republished.push(msg.payload.to_vec());
    }
    republished.sort();
    bad_payloads.sort();
    assert_eq!(republished, bad_payloads);
    ferry.wait_ready().await;
}

/// Choria replies on core NATS, both generations, into one adapter that takes either and one
/// pinned to v2: each stores the document Choria's streams adapter stores for a reply, and the
/// pinned one counts the v1 replies as `unknown_protocol`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_fixtures_are_stored_as_choria_streams_output() {
    let server = NatsServer::start();
    let yaml = r#"
state_dir: "{state_dir}"
monitor: { listen: "{monitor}" }
connections:
  core: { servers: ["@URL@"] }
adapters:
  - name: replies
    kind: choria_reply
    connection: core
    subjects: ["mcollective.reply.>"]
    output: { stream: CHORIA_REPLIES, subject: "choria.stream.input.reply.{agent}.{sender}" }
  - name: replies-v2
    kind: choria_reply
    protocol_version: v2
    connection: core
    subjects: ["mcollective.reply.>"]
    output: { stream: CHORIA_REPLIES_V2, subject: "v2.reply.{sender}" }
"#
    .replace("@URL@", &server.url());
    let mut ferry = Ferry::start(&yaml);
    ferry.wait_ready().await;
    let since = SystemTime::now();
    let (client, js) = js_client(&server.url()).await;

    let mut expected = HashMap::new();
    for (index, (name, sender, agent)) in REPLY_VALID.iter().enumerate() {
        // Replies arrive on the subjects the requesters asked for, one per request.
        let subject = format!("mcollective.reply.client{index}.{index}");
        let wire = fixture("reply", &format!("{name}.wire.json"));
        let want = json(&fixture("reply", &format!("{name}.expected.json")));
        expected.insert(
            msg_id(&subject, &wire),
            (*name, subject.clone(), *sender, *agent, wire.clone(), want),
        );
        publish(&client, &subject, wire).await;
    }
    let bad = [
        ("bad-request", "unknown_protocol"),
        ("bad-no-envelope", "invalid_field"),
        ("bad-reply-base64", "bad_base64"),
    ];
    for (name, _) in bad {
        let wire = fixture("reply", &format!("{name}.wire.json"));
        publish(&client, "mcollective.reply.client9.9", wire).await;
    }
    client.flush().await.unwrap();

    wait_decoded(&ferry, "replies", REPLY_VALID.len(), &bad).await;
    let total = (REPLY_VALID.len() + bad.len()) as f64;

    let stored = wait_stored(&js, "CHORIA_REPLIES", REPLY_VALID.len() as u64).await;
    assert_eq!(stored.len(), REPLY_VALID.len());
    for msg in &stored {
        let id = msg.header("Nats-Msg-Id").expect("Nats-Msg-Id");
        let (name, subject, sender, agent, wire, want) = expected
            .remove(id)
            .unwrap_or_else(|| panic!("unexpected or repeated message {msg:?}"));
        assert_eq!(
            msg.subject,
            format!("choria.stream.input.reply.{agent}.{sender}"),
            "{name}"
        );
        assert_eq!(json(&msg.payload), want, "{name}");
        assert_common_headers(msg, "replies", &subject, &wire, Some(sender), since);
    }
    assert!(expected.is_empty(), "not stored: {:?}", expected.keys());

    // The adapter pinned to v2 stores the v2 replies only and counts the v1 ones.
    let pinned = [("pipeline", "replies-v2")];
    wait_metric(&ferry, "ferry_adapter_received_total", &pinned, total).await;
    wait_metric(&ferry, "ferry_adapter_published_total", &pinned, 2.0).await;
    let m = ferry.metrics().await;
    let refused = [("pipeline", "replies-v2"), ("reason", "unknown_protocol")];
    // The two v1 replies, the v1 request and the v1 reply without an envelope: the transport
    // check refuses them before anything else is looked at.
    assert_eq!(m.get("ferry_adapter_invalid_total", &refused), Some(4.0));
    let stored = wait_stored(&js, "CHORIA_REPLIES_V2", 2).await;
    let mut senders: Vec<String> = stored.iter().map(|msg| msg.subject.clone()).collect();
    senders.sort();
    assert_eq!(senders, ["v2.reply.testing", "v2.reply.web4.cdg.acme.test"]);

    ferry.sigterm();
    let status = ferry.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "graceful stop exits 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_output_formats_choria_and_cloudevents() {
    let server = NatsServer::start();
    let yaml = r#"
state_dir: "{state_dir}"
monitor: { listen: "{monitor}" }
connections:
  core: { servers: ["@URL@"] }
adapters:
  - name: as-choria
    kind: choria_lifecycle
    connection: core
    subjects: ["choria.lifecycle.event.>"]
    format: choria
    allow_unknown_types: true
    output: { stream: LC_CHORIA, subject: "fmt.choria.{type}.{component}", duplicate_window: 2m }
  - name: as-cloudevents
    kind: choria_lifecycle
    connection: core
    subjects: ["choria.lifecycle.event.>"]
    format: cloudevents
    output: { stream: LC_CE, subject: "fmt.ce.{type}.{identity}", duplicate_window: 2m }
"#
    .replace("@URL@", &server.url());
    let mut ferry = Ferry::start(&yaml);
    ferry.wait_ready().await;

    let (client, js) = js_client(&server.url()).await;
    let files = [
        (
            "startup-server.cloudevent.json",
            "startup-server.choria.json",
        ),
        ("alive-server.choria.json", "alive-server.cloudevent.json"),
    ];
    for (file, _) in files {
        publish(
            &client,
            "choria.lifecycle.event.startup.server",
            fixture("lifecycle", file),
        )
        .await;
    }
    // Unknown types: stored by the adapter that allows them, invalid for the other.
    publish(
        &client,
        "choria.lifecycle.event.startup.server",
        fixture("lifecycle", "bad-unknown-type.json"),
    )
    .await;
    client.flush().await.unwrap();

    wait_metric(
        &ferry,
        "ferry_adapter_published_total",
        &[("pipeline", "as-choria")],
        3.0,
    )
    .await;
    wait_metric(
        &ferry,
        "ferry_adapter_published_total",
        &[("pipeline", "as-cloudevents")],
        2.0,
    )
    .await;
    wait_metric(
        &ferry,
        "ferry_adapter_invalid_total",
        &[("pipeline", "as-cloudevents"), ("reason", "unknown_type")],
        1.0,
    )
    .await;

    let choria = wait_stored(&js, "LC_CHORIA", 3).await;
    assert_eq!(choria.len(), 3);
    let by_subject: HashMap<&str, &StoredMessage> =
        choria.iter().map(|m| (m.subject.as_str(), m)).collect();
    assert_eq!(
        json(&by_subject["fmt.choria.startup.server"].payload),
        json(&fixture("lifecycle", "startup-server.choria.json"))
    );
    assert_eq!(
        json(&by_subject["fmt.choria.alive.server"].payload),
        json(&fixture("lifecycle", "alive-server.choria.json"))
    );
    assert_eq!(
        json(&by_subject["fmt.choria.exploded.server"].payload),
        json(&fixture("lifecycle", "bad-unknown-type.json"))
    );
    assert_eq!(
        by_subject["fmt.choria.exploded.server"].header("Ferry-Sender"),
        Some("x.acme.test")
    );

    let ce = wait_stored(&js, "LC_CE", 2).await;
    assert_eq!(ce.len(), 2);
    let by_subject: HashMap<&str, &StoredMessage> =
        ce.iter().map(|m| (m.subject.as_str(), m)).collect();
    // {identity} is the template's last token: its dots are kept.
    assert_eq!(
        json(&by_subject["fmt.ce.startup.db3.fra.acme.test"].payload),
        json(&fixture("lifecycle", "startup-server.cloudevent.json"))
    );
    assert_eq!(
        json(&by_subject["fmt.ce.alive.edge-0042.sjc.acme.test"].payload),
        json(&fixture("lifecycle", "alive-server.cloudevent.json"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_tokens_and_senders() {
    let server = NatsServer::start();
    let yaml = r#"
state_dir: "{state_dir}"
monitor: { listen: "{monitor}" }
connections:
  core: { servers: ["@URL@"] }
adapters:
  - name: archive
    kind: passthrough
    connection: core
    subjects: ["sensors.>"]
    sender_token: 3
    output: { stream: ARCHIVE, subject: "archive.{token.2}.{subject}" }
  - name: byhost
    kind: passthrough
    connection: core
    subjects: ["metrics.>"]
    sender_header: X-Node
    sender_token: 2
    output: { stream: BYHOST, subject: "byhost.{sender}" }
"#
    .replace("@URL@", &server.url());
    let mut ferry = Ferry::start(&yaml);
    ferry.wait_ready().await;
    let since = SystemTime::now();

    let (client, js) = js_client(&server.url()).await;
    // Passthrough stores anything, even bytes that are neither JSON nor UTF-8.
    let binary: Vec<u8> = (0..=255u8).rev().collect();
    publish(&client, "sensors.eu.temp.r1", b"21.5".to_vec()).await;
    publish(&client, "sensors.us.hum", binary.clone()).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("X-Node", "node-7.eu");
    client
        .publish_with_headers("metrics.web1.cpu", headers, "0.93".into())
        .await
        .unwrap();
    publish(&client, "metrics.web2.cpu", b"0.12".to_vec()).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("X-Node", "bad node*name");
    client
        .publish_with_headers("metrics.web3.cpu", headers, "0.5".into())
        .await
        .unwrap();
    client.flush().await.unwrap();

    wait_metric(
        &ferry,
        "ferry_adapter_published_total",
        &[("pipeline", "archive")],
        2.0,
    )
    .await;
    wait_metric(
        &ferry,
        "ferry_adapter_published_total",
        &[("pipeline", "byhost")],
        3.0,
    )
    .await;

    let archive = wait_stored(&js, "ARCHIVE", 2).await;
    let by_subject: HashMap<&str, &StoredMessage> =
        archive.iter().map(|m| (m.subject.as_str(), m)).collect();
    assert_eq!(archive.len(), 2);
    let m = by_subject
        .get("archive.eu.sensors.eu.temp.r1")
        .unwrap_or_else(|| panic!("{:?}", by_subject.keys()));
    assert_eq!(&m.payload[..], b"21.5");
    assert_common_headers(
        m,
        "archive",
        "sensors.eu.temp.r1",
        b"21.5",
        Some("temp"),
        since,
    );
    let m = by_subject
        .get("archive.us.sensors.us.hum")
        .unwrap_or_else(|| panic!("{:?}", by_subject.keys()));
    assert_eq!(&m.payload[..], &binary[..]);
    assert_common_headers(m, "archive", "sensors.us.hum", &binary, Some("hum"), since);

    let byhost = wait_stored(&js, "BYHOST", 3).await;
    assert_eq!(byhost.len(), 3);
    let by_subject: HashMap<&str, &StoredMessage> =
        byhost.iter().map(|m| (m.subject.as_str(), m)).collect();
    // Header wins over the token; the last token keeps its dots.
    let m = by_subject
        .get("byhost.node-7.eu")
        .unwrap_or_else(|| panic!("{:?}", by_subject.keys()));
    assert_eq!(&m.payload[..], b"0.93");
    assert_common_headers(
        m,
        "byhost",
        "metrics.web1.cpu",
        b"0.93",
        Some("node-7.eu"),
        since,
    );
    // No header: the token.
    let m = by_subject
        .get("byhost.web2")
        .unwrap_or_else(|| panic!("{:?}", by_subject.keys()));
    assert_common_headers(
        m,
        "byhost",
        "metrics.web2.cpu",
        b"0.12",
        Some("web2"),
        since,
    );
    // Whitespace and wildcards from content never reach the subject.
    let m = by_subject
        .get("byhost.bad_node_name")
        .unwrap_or_else(|| panic!("{:?}", by_subject.keys()));
    assert_eq!(&m.payload[..], b"0.5");

    let info = js
        .get_stream("BYHOST")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.subjects, ["byhost.>"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_drops_and_counts_events_that_do_not_match() {
    let server = NatsServer::start();
    let yaml = r#"
state_dir: "{state_dir}"
monitor: { listen: "{monitor}" }
connections:
  core: { servers: ["@URL@"] }
adapters:
  - name: lifecycle
    kind: choria_lifecycle
    connection: core
    subjects: ["choria.lifecycle.event.>"]
    output: { stream: FERRY_LIFECYCLE, subject: "ferry.lifecycle.{type}.{component}", duplicate_window: 2m }
    filter:
      subjects: ["choria.lifecycle.event.>"]
      exclude_subjects: ["choria.lifecycle.event.shutdown.>"]
      match:
        - { field: "component", equals: "server" }
        - { field: "identity", regex: "^db3\\." }
"#
    .replace("@URL@", &server.url());
    let mut ferry = Ferry::start(&yaml);
    ferry.wait_ready().await;

    let (client, js) = js_client(&server.url()).await;
    for &(file, subject, ..) in LIFECYCLE_VALID {
        publish(&client, subject, fixture("lifecycle", file)).await;
    }
    client.flush().await.unwrap();

    // Only startup-server in both encodings passes: the CloudEvent's fields are the inner event's.
    let lc = [("pipeline", "lifecycle")];
    let n = LIFECYCLE_VALID.len() as f64;
    wait_metric(&ferry, "ferry_adapter_received_total", &lc, n).await;
    wait_metric(&ferry, "ferry_adapter_filtered_total", &lc, n - 2.0).await;
    wait_metric(&ferry, "ferry_adapter_published_total", &lc, 2.0).await;
    let stored = wait_stored(&js, "FERRY_LIFECYCLE", 2).await;
    let mut got: Vec<Value> = stored.iter().map(|m| json(&m.payload)).collect();
    got.sort_by_key(|v| v.to_string());
    let mut want = vec![
        json(&fixture("lifecycle", "startup-server.choria.json")),
        json(&fixture("lifecycle", "startup-server.cloudevent.json")),
    ];
    want.sort_by_key(|v| v.to_string());
    assert_eq!(got, want);
    assert!(stored
        .iter()
        .all(|m| m.subject == "ferry.lifecycle.startup.server"));
    let m = ferry.metrics().await;
    assert_eq!(m.sum("ferry_adapter_invalid_total", &lc), 0.0);
    assert_eq!(m.sum("ferry_adapter_dropped_total", &lc), 0.0);
}

fn fleet_yaml(url: &str, queue_group: Option<&str>) -> String {
    let group = queue_group
        .map(|g| format!("    queue_group: {g}\n"))
        .unwrap_or_default();
    format!(
        r#"
state_dir: "{{state_dir}}"
monitor: {{ listen: "{{monitor}}" }}
connections:
  core: {{ servers: ["{url}"] }}
adapters:
  - name: lifecycle
    kind: choria_lifecycle
    connection: core
    subjects: ["choria.lifecycle.event.>"]
{group}    output: {{ stream: FERRY_LIFECYCLE, subject: "ferry.lifecycle.{{type}}.{{component}}", duplicate_window: 2m }}
"#
    )
}

/// Checks `stream` holds exactly the alive events `0..n`, once each.
async fn assert_alive_events_stored_once(js: &Context, stream: &str, n: usize) {
    let stored = stream_messages(js, stream).await;
    assert_eq!(stored.len(), n, "messages in {stream}");
    let mut ids = BTreeSet::new();
    let want: HashMap<String, Vec<u8>> = (0..n)
        .map(|i| {
            let p = alive_event(i);
            (msg_id(ALIVE_SUBJECT, &p), p)
        })
        .collect();
    for msg in &stored {
        let id = msg.header("Nats-Msg-Id").expect("Nats-Msg-Id");
        assert!(ids.insert(id.to_string()), "{id} stored twice");
        let payload = want
            .get(id)
            .unwrap_or_else(|| panic!("unexpected message {msg:?}"));
        assert_eq!(&msg.payload[..], &payload[..]);
        assert_eq!(msg.subject, "ferry.lifecycle.alive.server");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_active_without_queue_group_stores_each_event_once() {
    const N: usize = 300;
    let server = NatsServer::start();
    let yaml = fleet_yaml(&server.url(), None);
    let mut a = Ferry::start(&yaml);
    a.wait_ready().await;
    let mut b = Ferry::start(&yaml);
    b.wait_ready().await;

    let (client, js) = js_client(&server.url()).await;
    for i in 0..N {
        publish(&client, ALIVE_SUBJECT, alive_event(i)).await;
    }
    client.flush().await.unwrap();

    let lc = [("pipeline", "lifecycle")];
    // Both instances see every event ...
    wait_metric(&a, "ferry_adapter_received_total", &lc, N as f64).await;
    wait_metric(&b, "ferry_adapter_received_total", &lc, N as f64).await;
    // ... and the stream's duplicate window keeps one copy: the other is acked as a duplicate.
    let (ar, br) = (&a, &b);
    wait_until(
        "duplicates on both instances to add up to N",
        DEADLINE,
        || async move {
            metric(ar, "ferry_adapter_duplicates_total", &lc).await
                + metric(br, "ferry_adapter_duplicates_total", &lc).await
                == N as f64
        },
    )
    .await;
    wait_stored(&js, "FERRY_LIFECYCLE", N as u64).await;
    assert_alive_events_stored_once(&js, "FERRY_LIFECYCLE", N).await;
    for f in [&a, &b] {
        let m: Metrics = f.metrics().await;
        assert_eq!(m.sum("ferry_adapter_dropped_total", &lc), 0.0);
        assert_eq!(m.sum("ferry_adapter_invalid_total", &lc), 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_group_shares_the_load_and_loses_nothing() {
    const N: usize = 1000;
    let server = NatsServer::start();
    let yaml = fleet_yaml(&server.url(), Some("ferry"));
    let mut a = Ferry::start(&yaml);
    a.wait_ready().await;
    let mut b = Ferry::start(&yaml);
    b.wait_ready().await;

    let (client, js) = js_client(&server.url()).await;
    for i in 0..N {
        publish(&client, ALIVE_SUBJECT, alive_event(i)).await;
    }
    client.flush().await.unwrap();

    let lc = [("pipeline", "lifecycle")];
    let (ar, br) = (&a, &b);
    wait_until(
        "received on both instances to add up to N",
        DEADLINE,
        || async move {
            metric(ar, "ferry_adapter_received_total", &lc).await
                + metric(br, "ferry_adapter_received_total", &lc).await
                == N as f64
        },
    )
    .await;
    let received_a = metric(&a, "ferry_adapter_received_total", &lc).await;
    let received_b = metric(&b, "ferry_adapter_received_total", &lc).await;
    assert!(
        received_a > 0.0 && received_b > 0.0,
        "load not shared: {received_a} + {received_b}"
    );
    wait_stored(&js, "FERRY_LIFECYCLE", N as u64).await;
    assert_alive_events_stored_once(&js, "FERRY_LIFECYCLE", N).await;
    wait_until("published to add up to N", DEADLINE, || async move {
        metric(ar, "ferry_adapter_published_total", &lc).await
            + metric(br, "ferry_adapter_published_total", &lc).await
            == N as f64
    })
    .await;
    for f in [&a, &b] {
        let m = f.metrics().await;
        assert_eq!(m.sum("ferry_adapter_duplicates_total", &lc), 0.0);
        assert_eq!(m.sum("ferry_adapter_dropped_total", &lc), 0.0);
    }
}
