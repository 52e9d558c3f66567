//! What a replicator writes (SPEC sections 5 and 6), checked message by message against real
//! servers: an exact copy of 50,000 messages with every stamp, header hygiene, subject rewrites,
//! filters, `max_age`, and two-way replication without echoes.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_nats::jetstream::stream::Config as StreamConfig;
use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use bytes::Bytes;
use common::{
    assert_no_duplicate_stored, count_or_zero, header_values, metric, publish_pipelined,
    read_stream, replicator_yaml, stream_created_ns, wait_for_count, wait_for_metric, wait_until,
    Ferry, Outgoing, SourceStamp, StoredMessage,
};
use common::{copy_yaml, two_sites, Sites};

const DEADLINE: Duration = Duration::from_secs(90);

async fn create_stream(js: &Context, config: StreamConfig) {
    let name = config.name.clone();
    js.create_stream(config)
        .await
        .unwrap_or_else(|e| panic!("create stream {name}: {e}"));
}

async fn source_stream(js: &Context, subjects: &[&str]) -> i128 {
    create_stream(
        js,
        StreamConfig {
            name: "SRC".into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
    )
    .await;
    stream_created_ns(js, "SRC").await
}

/// The instance `dc1` with one replicator `copy` from east SRC to west DST.
fn config(sites: &Sites, to_extra: &str, extra: &str) -> String {
    replicator_yaml(&sites.east.url(), &sites.west.url(), to_extra, extra)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, *value);
    }
    map
}

fn outgoing(subject: &str, pairs: &[(&str, &str)], payload: impl Into<Bytes>) -> Outgoing {
    (subject.to_string(), headers(pairs), payload.into())
}

/// Everything SPEC section 5 says about one copied message, given the source message it came from,
/// for the default `writes: exclusive`.
fn assert_stamped_copy(
    source: &StoredMessage,
    copy: &StoredMessage,
    source_created_ns: i128,
    target_subject: &str,
) {
    let seq = source.sequence;
    assert_eq!(copy.subject, target_subject, "subject of source seq {seq}");
    assert_eq!(copy.payload, source.payload, "payload of source seq {seq}");
    assert_eq!(
        header_values(copy, "Nats-Msg-Id"),
        Vec::<String>::new(),
        "no Nats-Msg-Id on an exclusive copy (source seq {seq})"
    );
    let stamp = SourceStamp::of(copy);
    let source_ms = i64::try_from(source.time.unix_timestamp_nanos() / 1_000_000).unwrap();
    assert_eq!(
        stamp,
        SourceStamp {
            stream: "SRC".into(),
            sequence: seq,
            instance: "dc1".into(),
            replicator: "copy".into(),
            timestamp_ms: source_ms,
        },
        "Choria-SR-Source of source seq {seq}"
    );
    assert_eq!(
        header_values(copy, "Choria-SR-Source").len(),
        1,
        "one provenance header on source seq {seq}"
    );
    assert!(
        copy.header("Ferry-Source").is_none(),
        "source seq {seq}: the provenance is not written twice"
    );
    // Every source header other than the control headers and stamps is kept as is.
    for (name, value) in source.header_pairs() {
        if is_control_header(&name)
            || matches!(
                name.as_str(),
                "Nats-Msg-Id" | "Ferry-Source" | "Choria-SR-Source" | "Ferry-Origin"
            )
        {
            continue;
        }
        assert!(
            header_values(copy, &name).contains(&value),
            "source seq {seq}: header {name}: {value} lost; copy has {:?}",
            copy.header_pairs()
        );
    }
    match source.header("Nats-Msg-Id") {
        Some(id) => assert_eq!(
            header_values(copy, "Ferry-Source-Msg-Id"),
            vec![id.to_string()],
            "source Nats-Msg-Id of seq {seq} kept as Ferry-Source-Msg-Id"
        ),
        None => assert!(
            copy.header("Ferry-Source-Msg-Id").is_none(),
            "source seq {seq} had no Nats-Msg-Id, yet the copy has a Ferry-Source-Msg-Id"
        ),
    }
    let origin = match source.header("Ferry-Origin") {
        Some(origin) => origin.to_string(),
        None => format!("SRC@{source_created_ns}"),
    };
    assert_eq!(
        header_values(copy, "Ferry-Origin"),
        vec![origin],
        "Ferry-Origin of source seq {seq}"
    );
    // Control headers of the source never reach the target. The one control header there is the
    // fence ferry itself publishes with (the server stores it): the target sequence right before
    // the copy's own.
    assert_eq!(
        header_values(copy, "Nats-Expected-Last-Sequence"),
        vec![(copy.sequence - 1).to_string()],
        "source seq {seq}: fenced to follow the target's previous message"
    );
    for (name, value) in copy.header_pairs() {
        if name == "Nats-Expected-Last-Sequence" {
            continue;
        }
        assert!(
            !is_control_header(&name),
            "source seq {seq}: control header {name}: {value} reached the target: {:?}",
            copy.header_pairs()
        );
    }
}

/// JetStream control headers that must never be copied (SPEC section 5).
fn is_control_header(name: &str) -> bool {
    name.starts_with("Nats-Expected-")
        || name.starts_with("Nats-Batch-")
        || name == "Nats-Rollup"
        || name == "Nats-TTL"
}

/// Source messages by sequence, for matching copies to their originals via `Ferry-Source`.
fn by_sequence(source: &[StoredMessage]) -> HashMap<u64, &StoredMessage> {
    source.iter().map(|m| (m.sequence, m)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_messages_are_copied_exactly() {
    const N: usize = 50_000;
    const SUBJECTS: usize = 16;
    let sites = two_sites().await;
    let created = source_stream(&sites.east_js, &["SRC.>"]).await;
    // Every third message carries an application Nats-Msg-Id, every fifth a repeated header.
    publish_pipelined(
        &sites.east_js,
        (0..N).map(|i| {
            let mut pairs = vec![("App-Index", i.to_string())];
            if i % 3 == 0 {
                pairs.push(("Nats-Msg-Id", format!("app-{i}")));
            }
            if i % 5 == 0 {
                pairs.push(("X-Tag", "a".into()));
                pairs.push(("X-Tag", format!("b{i}")));
            }
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (*n, v.as_str())).collect();
            outgoing(
                &format!("SRC.node{}.data", i % SUBJECTS),
                &pairs,
                format!("payload {i:06} {}", "x".repeat(i % 40)),
            )
        }),
    )
    .await;

    let mut ferry = Ferry::start(&config(&sites, "", ""));
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "DST", N as u64, DEADLINE).await;

    let source = read_stream(&sites.east_js, "SRC").await;
    let target = read_stream(&sites.west_js, "DST").await;
    assert_eq!(source.len(), N);
    assert_eq!(target.len(), N, "messages in the target");
    let sequences = assert_no_duplicate_stored(&target);
    assert_eq!(
        sequences,
        (1..=N as u64).collect::<Vec<_>>(),
        "every source sequence copied once"
    );
    let originals = by_sequence(&source);
    let mut last_per_subject: BTreeMap<String, u64> = BTreeMap::new();
    for copy in &target {
        let original = originals[&SourceStamp::of(copy).sequence];
        assert_stamped_copy(original, copy, created, &original.subject);
        if let Some(previous) = last_per_subject.insert(copy.subject.clone(), original.sequence) {
            assert!(
                previous < original.sequence,
                "per-subject order on {}: source seq {previous} stored after {}",
                copy.subject,
                original.sequence
            );
        }
    }
    common::assert_same_per_subject(&source, &target);

    let pipeline = [("pipeline", "copy")];
    wait_for_metric(
        &ferry,
        "ferry_replicator_checkpoint_sequence",
        &pipeline,
        N as f64,
        DEADLINE,
    )
    .await;
    assert_eq!(
        metric(&ferry, "ferry_replicator_copied_total", &pipeline).await,
        N as f64
    );
    let payload_bytes: usize = source.iter().map(|m| m.payload.len()).sum();
    let copied_bytes = metric(&ferry, "ferry_replicator_copied_bytes_total", &pipeline).await;
    assert!(
        copied_bytes >= payload_bytes as f64,
        "copied bytes {copied_bytes} < payload bytes {payload_bytes}"
    );
    assert_eq!(
        metric(&ferry, "ferry_replicator_source_sequence", &pipeline).await,
        N as f64
    );
    assert_eq!(
        metric(&ferry, "ferry_replicator_lag_messages", &pipeline).await,
        0.0
    );
    assert_eq!(
        metric(&ferry, "ferry_replicator_duplicates_total", &pipeline).await,
        0.0
    );
    assert_eq!(
        metric(&ferry, "ferry_replicator_skipped_total", &pipeline).await,
        0.0,
        "nothing skipped"
    );
    let metrics = ferry.metrics().await;
    assert_eq!(
        metrics.metric_type("ferry_replicator_copy_delay_seconds"),
        Some("histogram")
    );
    assert_eq!(
        metrics.histogram_count("ferry_replicator_copy_delay_seconds", &pipeline),
        Some(N as f64),
        "one copy delay observation per copied message"
    );

    // The created target: Limits retention, the source's subjects, the configured window.
    let info = sites
        .west_js
        .get_stream("DST")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .clone();
    assert_eq!(info.subjects, vec!["SRC.>".to_string()]);
    assert_eq!(info.duplicate_window, Duration::from_secs(600));
    assert_eq!(
        info.retention,
        async_nats::jetstream::stream::RetentionPolicy::Limits
    );
    ferry.sigterm();
    assert_eq!(
        ferry.wait_exit(Duration::from_secs(20)).await.code(),
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_cleaned_and_stamped() {
    let sites = two_sites().await;
    create_stream(
        &sites.east_js,
        StreamConfig {
            name: "SRC".into(),
            subjects: vec!["SRC.>".into()],
            allow_rollup: true,
            allow_message_ttl: true,
            allow_atomic_publish: true,
            ..Default::default()
        },
    )
    .await;
    let created = stream_created_ns(&sites.east_js, "SRC").await;
    let earlier_created = created - 1_000_000_000;
    publish_pipelined(
        &sites.east_js,
        vec![
            // 1: no headers at all.
            outgoing("SRC.plain", &[], "plain"),
            // 2: an application id and ordinary headers, one repeated.
            outgoing(
                "SRC.app",
                &[
                    ("Nats-Msg-Id", "order-42"),
                    ("Content-Type", "application/json"),
                    ("X-Multi", "one"),
                    ("X-Multi", "two"),
                ],
                r#"{"order":42}"#,
            ),
            // 3: expectations the source server checked; they must not be checked again in the target.
            outgoing(
                "SRC.expect",
                &[
                    ("Nats-Expected-Stream", "SRC"),
                    ("Nats-Expected-Last-Sequence", "2"),
                    ("Keep", "me"),
                ],
                "expect",
            ),
            // 4: a per-message TTL.
            outgoing("SRC.ttl", &[("Nats-TTL", "1h"), ("Keep", "ttl")], "ttl"),
            // 5: a rollup of its subject.
            outgoing(
                "SRC.rollup",
                &[("Nats-Rollup", "sub"), ("Keep", "rollup")],
                "rollup",
            ),
            // 6: a message that came from another ferry hop: its origin stays, its stamps are replaced.
            outgoing(
                "SRC.hop",
                &[
                    ("Ferry-Origin", &format!("FAR@{earlier_created}")),
                    ("Ferry-Source", "FAR 7 dc0 far 1700000000000"),
                    ("Choria-SR-Source", "FAR 7 dc0 far 1700000000000"),
                    ("Nats-Msg-Id", "FAR:1:7"),
                ],
                "hop",
            ),
        ],
    )
    .await;
    // 7 and 8: an atomic batch of two.
    let client = sites.east_js.client();
    client
        .publish_with_headers(
            "SRC.batch",
            headers(&[
                ("Nats-Batch-Id", "batch-1"),
                ("Nats-Batch-Sequence", "1"),
                ("Keep", "batch"),
            ]),
            "batch 1".into(),
        )
        .await
        .unwrap();
    publish_pipelined(
        &sites.east_js,
        vec![outgoing(
            "SRC.batch",
            &[
                ("Nats-Batch-Id", "batch-1"),
                ("Nats-Batch-Sequence", "2"),
                ("Nats-Batch-Commit", "1"),
                ("Keep", "batch"),
            ],
            "batch 2",
        )],
    )
    .await;
    let source = read_stream(&sites.east_js, "SRC").await;
    assert_eq!(source.len(), 8, "source: {source:?}");

    let mut ferry = Ferry::start(&config(&sites, "", ""));
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "DST", 8, DEADLINE).await;
    let target = read_stream(&sites.west_js, "DST").await;
    let originals = by_sequence(&source);
    for copy in &target {
        let original = originals[&SourceStamp::of(copy).sequence];
        assert_stamped_copy(original, copy, created, &original.subject);
    }
    let find = |subject: &str| {
        target
            .iter()
            .find(|m| m.subject == subject)
            .unwrap_or_else(|| panic!("no copy on {subject}"))
    };
    assert_eq!(
        header_values(find("SRC.app"), "X-Multi"),
        vec!["one", "two"]
    );
    assert_eq!(
        find("SRC.app").header("Content-Type"),
        Some("application/json")
    );
    assert_eq!(
        find("SRC.app").header("Ferry-Source-Msg-Id"),
        Some("order-42")
    );
    assert_eq!(find("SRC.expect").header("Keep"), Some("me"));
    assert_eq!(find("SRC.ttl").header("Keep"), Some("ttl"));
    assert_eq!(find("SRC.rollup").header("Keep"), Some("rollup"));
    let hop = find("SRC.hop");
    assert_eq!(
        header_values(hop, "Ferry-Origin"),
        vec![format!("FAR@{earlier_created}")],
        "an existing origin is kept"
    );
    assert_eq!(hop.header("Ferry-Source-Msg-Id"), Some("FAR:1:7"));
    assert_eq!(
        SourceStamp::of(hop).stream,
        "SRC",
        "earlier stamps replaced"
    );
    let plain = find("SRC.plain");
    let names: Vec<String> = plain.header_pairs().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        vec![
            "Choria-SR-Source",
            "Ferry-Origin",
            "Nats-Expected-Last-Sequence"
        ],
        "a message without headers gets exactly the stamps and the fence"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subjects_are_rewritten_strip_then_prefix() {
    let sites = two_sites().await;
    create_stream(
        &sites.east_js,
        StreamConfig {
            name: "SRC".into(),
            subjects: vec!["NODE_DATA.>".into()],
            ..Default::default()
        },
    )
    .await;
    let created = stream_created_ns(&sites.east_js, "SRC").await;
    publish_pipelined(
        &sites.east_js,
        (0..300).map(|i| {
            outgoing(
                &format!("NODE_DATA.node{}.{}", i % 7, ["cpu", "mem", "disk"][i % 3]),
                &[],
                format!("reading {i}"),
            )
        }),
    )
    .await;
    let yaml = config(
        &sites,
        ", subject_strip_prefix: NODE_DATA, subject_prefix: FLEET",
        "",
    );
    let mut ferry = Ferry::start(&yaml);
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "DST", 300, DEADLINE).await;

    let source = read_stream(&sites.east_js, "SRC").await;
    let target = read_stream(&sites.west_js, "DST").await;
    let originals = by_sequence(&source);
    for copy in &target {
        let original = originals[&SourceStamp::of(copy).sequence];
        let rewritten = format!("FLEET.{}", &original.subject["NODE_DATA.".len()..]);
        assert_stamped_copy(original, copy, created, &rewritten);
    }
    let subjects = sites
        .west_js
        .get_stream("DST")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .subjects
        .clone();
    assert_eq!(
        subjects,
        vec!["FLEET.>".to_string()],
        "the created target listens on the rewritten source subjects"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stripped_prefix_alone_is_removed_from_every_copy() {
    let sites = two_sites().await;
    create_stream(
        &sites.east_js,
        StreamConfig {
            name: "SRC".into(),
            subjects: vec!["DC1.NODE_DATA.>".into()],
            ..Default::default()
        },
    )
    .await;
    let created = stream_created_ns(&sites.east_js, "SRC").await;
    publish_pipelined(
        &sites.east_js,
        (0..100).map(|i| {
            outgoing(
                &format!("DC1.NODE_DATA.node{}", i % 5),
                &[],
                format!("reading {i}"),
            )
        }),
    )
    .await;
    let yaml = config(&sites, ", subject_strip_prefix: DC1", "");
    let mut ferry = Ferry::start(&yaml);
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "DST", 100, DEADLINE).await;

    let source = read_stream(&sites.east_js, "SRC").await;
    let target = read_stream(&sites.west_js, "DST").await;
    assert_eq!(target.len(), 100);
    let originals = by_sequence(&source);
    for copy in &target {
        let original = originals[&SourceStamp::of(copy).sequence];
        let stripped = &original.subject["DC1.".len()..];
        assert_stamped_copy(original, copy, created, stripped);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_and_count_what_they_skip() {
    let sites = two_sites().await;
    source_stream(&sites.east_js, &["SRC.>"]).await;
    // (subject, headers, payload, copied?)
    let cases: Vec<FilterCase> = vec![
        // Outside filter.subjects: never even delivered.
        (
            "SRC.us.web1",
            vec![("Ferry-Sender", "web1")],
            web("server", "web1.us"),
            false,
        ),
        // Matches everything.
        (
            "SRC.eu.web1",
            vec![("Ferry-Sender", "web1")],
            web("server", "web1.eu"),
            true,
        ),
        (
            "SRC.eu.web2",
            vec![("Ferry-Sender", "web2")],
            web("server", "web22.eu"),
            true,
        ),
        // Excluded subject.
        (
            "SRC.eu.test.web3",
            vec![("Ferry-Sender", "web3")],
            web("server", "web3.eu"),
            false,
        ),
        // Wrong component.
        (
            "SRC.eu.web4",
            vec![("Ferry-Sender", "web4")],
            web("client", "web4.eu"),
            false,
        ),
        // Identity does not match the regex.
        (
            "SRC.eu.db1",
            vec![("Ferry-Sender", "db1")],
            web("server", "db1.eu"),
            false,
        ),
        // Header missing.
        ("SRC.eu.web5", vec![], web("server", "web5.eu"), false),
        // Type not in the list.
        (
            "SRC.eu.web6",
            vec![("Ferry-Sender", "web6")],
            web("server", "web6.eu").replace("startup", "alive"),
            false,
        ),
        // Not JSON: fails every field predicate (filtered, not an error).
        (
            "SRC.eu.web7",
            vec![("Ferry-Sender", "web7")],
            "not json {".to_string(),
            false,
        ),
        // Matches; last, so the copy's completion means everything before was looked at.
        (
            "SRC.eu.web8",
            vec![("Ferry-Sender", "web8")],
            web("server", "web8.eu"),
            true,
        ),
    ];
    let expected_copies: Vec<&str> = cases.iter().filter(|c| c.3).map(|c| c.0).collect();
    // Of those the server delivers (filter.subjects), these are skipped by ferry itself.
    let skipped_by_ferry = cases
        .iter()
        .filter(|c| !c.3 && c.0.starts_with("SRC.eu."))
        .count();
    publish_pipelined(
        &sites.east_js,
        cases
            .iter()
            .map(|(subject, pairs, payload, _)| outgoing(subject, pairs, payload.clone())),
    )
    .await;
    let extra = r#"    filter:
      subjects: ["SRC.eu.>"]
      exclude_subjects: ["SRC.eu.test.>"]
      match:
        - { field: "component", equals: "server" }
        - { field: "data.identity", regex: "^web\\d+\\." }
        - { header: "Ferry-Sender", exists: true }
        - { field: "type", in: ["startup", "shutdown"] }
"#;
    let mut ferry = Ferry::start(&config(&sites, "", extra));
    ferry.wait_ready().await;
    wait_until("the last matching message copied", DEADLINE, || async {
        count_or_zero(&sites.west_js, "DST").await > 0
            && read_stream(&sites.west_js, "DST")
                .await
                .iter()
                .any(|m| m.subject == "SRC.eu.web8")
    })
    .await;
    let pipeline = [("pipeline", "copy")];
    wait_until("filtered messages counted", DEADLINE, || async {
        common::try_metric(
            &ferry,
            "ferry_replicator_skipped_total",
            &[("pipeline", "copy"), ("reason", "filtered")],
        )
        .await
            >= Some(skipped_by_ferry as f64)
    })
    .await;
    let target = read_stream(&sites.west_js, "DST").await;
    let subjects: Vec<&str> = target.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(subjects, expected_copies);
    let filtered = metric(
        &ferry,
        "ferry_replicator_skipped_total",
        &[("pipeline", "copy"), ("reason", "filtered")],
    )
    .await;
    let not_copied = cases.len() - expected_copies.len();
    assert!(
        filtered >= skipped_by_ferry as f64 && filtered <= not_copied as f64,
        "filtered = {filtered}, expected {skipped_by_ferry}..={not_copied}"
    );
    assert_eq!(
        metric(&ferry, "ferry_replicator_copied_total", &pipeline).await,
        expected_copies.len() as f64
    );
    for reason in ["age", "loop", "sampled"] {
        assert_eq!(
            metric(
                &ferry,
                "ferry_replicator_skipped_total",
                &[("pipeline", "copy"), ("reason", reason)]
            )
            .await,
            0.0,
            "nothing skipped as {reason}"
        );
    }
}

/// Subject, headers, payload, and whether the filter lets it through.
type FilterCase = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    String,
    bool,
);

/// A Choria-like lifecycle event.
fn web(component: &str, identity: &str) -> String {
    format!(
        r#"{{"type":"startup","component":"{component}","data":{{"identity":"{identity}.example.net"}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_skips_older_messages() {
    let sites = two_sites().await;
    source_stream(&sites.east_js, &["SRC.>"]).await;
    publish_pipelined(
        &sites.east_js,
        (0..30).map(|i| outgoing("SRC.old", &[], format!("old {i}"))),
    )
    .await;
    // By the time ferry reads them, the old messages are older than max_age.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut ferry = Ferry::start(&config(&sites, "", "    max_age: 3s\n"));
    ferry.wait_ready().await;
    let pipeline = [("pipeline", "copy")];
    let age = [("pipeline", "copy"), ("reason", "age")];
    wait_for_metric(
        &ferry,
        "ferry_replicator_skipped_total",
        &age,
        30.0,
        DEADLINE,
    )
    .await;
    // Fresh messages published now are young enough.
    publish_pipelined(
        &sites.east_js,
        (0..20).map(|i| outgoing("SRC.new", &[], format!("new {i}"))),
    )
    .await;
    wait_for_count(&sites.west_js, "DST", 20, DEADLINE).await;
    let target = read_stream(&sites.west_js, "DST").await;
    let payloads: Vec<String> = target
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert_eq!(
        payloads,
        (0..20).map(|i| format!("new {i}")).collect::<Vec<_>>()
    );
    wait_for_metric(
        &ferry,
        "ferry_replicator_checkpoint_sequence",
        &pipeline,
        50.0,
        DEADLINE,
    )
    .await;
    assert_eq!(
        metric(&ferry, "ferry_replicator_skipped_total", &age).await,
        30.0
    );
    assert_eq!(
        metric(&ferry, "ferry_replicator_copied_total", &pipeline).await,
        20.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_way_replication_does_not_echo() {
    let sites = two_sites().await;
    // The same stream name and subjects on both sides, as two-way setups usually have.
    for js in [&sites.east_js, &sites.west_js] {
        create_stream(
            js,
            StreamConfig {
                name: "ORDERS".into(),
                subjects: vec!["orders.>".into()],
                duplicate_window: Duration::from_secs(600),
                ..Default::default()
            },
        )
        .await;
    }
    let east_created = stream_created_ns(&sites.east_js, "ORDERS").await;
    let west_created = stream_created_ns(&sites.west_js, "ORDERS").await;
    assert_ne!(east_created, west_created);
    publish_pipelined(
        &sites.east_js,
        (0..100).map(|i| outgoing(&format!("orders.east.{}", i % 5), &[], format!("east {i}"))),
    )
    .await;
    publish_pipelined(
        &sites.west_js,
        (0..60).map(|i| outgoing(&format!("orders.west.{}", i % 3), &[], format!("west {i}"))),
    )
    .await;
    let yaml = format!(
        r#"name: dc1
state_dir: "{{state_dir}}"
monitor: {{ listen: "{{monitor}}" }}
connections:
  east: {{ servers: ["{east}"] }}
  west: {{ servers: ["{west}"] }}
replicators:
  - name: e2w
    from: {{ connection: east, stream: ORDERS }}
    to: {{ connection: west, stream: ORDERS, writes: shared }}
    start: all
  - name: w2e
    from: {{ connection: west, stream: ORDERS }}
    to: {{ connection: east, stream: ORDERS, writes: shared }}
    start: all
"#,
        east = sites.east.url(),
        west = sites.west.url(),
    );
    let mut ferry = Ferry::start(&yaml);
    ferry.wait_ready().await;
    wait_for_count(&sites.east_js, "ORDERS", 160, DEADLINE).await;
    wait_for_count(&sites.west_js, "ORDERS", 160, DEADLINE).await;
    // Each side's copies come back to it and are skipped as loops.
    wait_for_metric(
        &ferry,
        "ferry_replicator_skipped_total",
        &[("pipeline", "w2e"), ("reason", "loop")],
        100.0,
        DEADLINE,
    )
    .await;
    wait_for_metric(
        &ferry,
        "ferry_replicator_skipped_total",
        &[("pipeline", "e2w"), ("reason", "loop")],
        60.0,
        DEADLINE,
    )
    .await;
    // Let the checkpoints catch up with the whole streams, then make sure nothing more appeared.
    wait_for_metric(
        &ferry,
        "ferry_replicator_checkpoint_sequence",
        &[("pipeline", "e2w")],
        160.0,
        DEADLINE,
    )
    .await;
    wait_for_metric(
        &ferry,
        "ferry_replicator_checkpoint_sequence",
        &[("pipeline", "w2e")],
        160.0,
        DEADLINE,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count_or_zero(&sites.east_js, "ORDERS").await, 160);
    assert_eq!(count_or_zero(&sites.west_js, "ORDERS").await, 160);

    for (js, local, remote, remote_created) in [
        (&sites.east_js, "east", "west", west_created),
        (&sites.west_js, "west", "east", east_created),
    ] {
        let messages = read_stream(js, "ORDERS").await;
        let mut payloads: Vec<String> = messages
            .iter()
            .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
            .collect();
        payloads.sort();
        let mut expected: Vec<String> = (0..100)
            .map(|i| format!("east {i}"))
            .chain((0..60).map(|i| format!("west {i}")))
            .collect();
        expected.sort();
        assert_eq!(payloads, expected, "{local} holds each message once");
        for message in &messages {
            let from_remote = message.subject.starts_with(&format!("orders.{remote}."));
            if from_remote {
                assert_eq!(
                    message.header("Ferry-Origin").map(str::to_string),
                    Some(format!("ORDERS@{remote_created}")),
                    "origin of a copy in {local}"
                );
            } else {
                assert!(
                    message.header("Choria-SR-Source").is_none(),
                    "{local}'s own message was overwritten by an echo"
                );
            }
        }
    }
    let e2w_copied = metric(
        &ferry,
        "ferry_replicator_copied_total",
        &[("pipeline", "e2w")],
    )
    .await;
    let w2e_copied = metric(
        &ferry,
        "ferry_replicator_copied_total",
        &[("pipeline", "w2e")],
    )
    .await;
    assert_eq!((e2w_copied, w2e_copied), (100.0, 60.0));
}

/// The target is created from the source's whole configuration, as Choria's stream replicator
/// does: Choria's registration stream keeps one message per node (`max_msgs_per_subject: 1`) and
/// a copy that kept every message would grow without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_target_keeps_the_sources_limits_and_features() {
    use async_nats::jetstream::stream::{Compression, DiscardPolicy, StorageType};
    let sites = two_sites().await;
    create_stream(
        &sites.east_js,
        StreamConfig {
            name: "SRC".into(),
            subjects: vec!["SRC.>".into()],
            max_messages_per_subject: 1,
            max_messages: 10_000,
            max_bytes: 64 << 20,
            max_message_size: 64 << 10,
            discard: DiscardPolicy::Old,
            allow_rollup: true,
            allow_direct: true,
            compression: Some(Compression::S2),
            description: Some("registration".into()),
            metadata: HashMap::from([("owner".to_string(), "fleet".to_string())]),
            storage: StorageType::File,
            ..Default::default()
        },
    )
    .await;
    for node in 0..5 {
        for round in 0..3 {
            sites
                .east_js
                .publish(format!("SRC.node{node}"), format!("round {round}").into())
                .await
                .expect("publish")
                .await
                .expect("ack");
        }
    }
    let yaml = copy_yaml(
        "dc1",
        &sites.east.url(),
        &sites.west.url(),
        ", storage: memory",
        "    start: all\n",
    );
    let mut ferry = Ferry::start(&yaml);
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "DST", 5, Duration::from_secs(60)).await;
    let target = sites
        .west_js
        .get_stream("DST")
        .await
        .expect("DST")
        .info()
        .await
        .expect("DST info")
        .config
        .clone();
    assert_eq!(target.max_messages_per_subject, 1);
    assert_eq!(target.max_messages, 10_000);
    assert_eq!(target.max_bytes, 64 << 20);
    assert_eq!(target.max_message_size, 64 << 10);
    assert_eq!(target.discard, DiscardPolicy::Old);
    assert!(target.allow_rollup && target.allow_direct);
    assert_eq!(target.compression, Some(Compression::S2));
    assert_eq!(target.description.as_deref(), Some("registration"));
    assert_eq!(
        target.metadata.get("owner").map(String::as_str),
        Some("fleet")
    );
    // The overrides still win, and the retention is always limits.
    assert_eq!(target.storage, StorageType::Memory);
    assert_eq!(target.duplicate_window, Duration::from_secs(600));
    assert_eq!(
        target.retention,
        async_nats::jetstream::stream::RetentionPolicy::Limits
    );
    // One message per node, the newest: what the source holds.
    let payloads: Vec<String> = read_stream(&sites.west_js, "DST")
        .await
        .iter()
        .map(|message| message.payload_str().to_string())
        .collect();
    assert_eq!(payloads, vec!["round 2"; 5]);
}
