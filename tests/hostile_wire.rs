//! Hostile wire data (SPEC section 10): messages whose header block or subject does not follow the
//! NATS format. nats-server 2.15.1 forwards and stores them without complaint, so any fleet node can
//! send one. ferry must count each as invalid, keep every other event, and keep its connection.

mod common;

use std::time::Duration;

use async_nats::jetstream::stream::Config as StreamConfig;
use common::{
    alive_event, js_client, stream_messages, wait_until, Ferry, NatsServer, RawNats, ALIVE_SUBJECT,
    UNPARSEABLE_HEADER_BLOCKS,
};
use common::{copy_yaml, lifecycle_yaml};

const DEADLINE: Duration = Duration::from_secs(60);
const EAST: [(&str, &str); 1] = [("connection", "east")];
const LC: [(&str, &str); 1] = [("pipeline", "lifecycle")];

/// A lifecycle adapter on `url`, republishing what it cannot decode to `ferry.invalid.lifecycle`.
fn adapter_yaml(url: &str) -> String {
    lifecycle_yaml(
        None,
        "east",
        url,
        "    invalid_subject: ferry.invalid.lifecycle\n",
    )
}

/// Sends one round of hostile messages, each carrying an otherwise valid alive event numbered from
/// `first`: every unparseable header block, then a non-UTF-8 subject without and with headers.
/// Returns how many of each kind were sent: (bad header blocks, bad subjects).
fn send_hostile_round(raw: &mut RawNats, first: usize) -> (usize, usize) {
    let mut n = first;
    for (_, block) in UNPARSEABLE_HEADER_BLOCKS {
        raw.hpub(ALIVE_SUBJECT.as_bytes(), block, &alive_event(n));
        n += 1;
    }
    let bad_subject = b"choria.lifecycle.event.alive.\xffserver";
    raw.publish(bad_subject, &alive_event(n));
    raw.hpub(
        bad_subject,
        b"NATS/1.0\r\nX-Node: web1\r\n\r\n",
        &alive_event(n + 1),
    );
    raw.sync();
    (UNPARSEABLE_HEADER_BLOCKS.len(), 2)
}

/// Whether `stored` holds the header lines of `sent` byte for byte. The server itself drops a status
/// and description from a `NATS/1.0` version line when it stores a message, so only the version
/// token is compared on that line.
fn keeps_header_lines(stored: &[u8], sent: &[u8]) -> bool {
    let split = |block: &[u8]| {
        let end = block
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or(block.len());
        let version = block[..end]
            .splitn(2, |b| *b == b' ')
            .next()
            .unwrap_or_default()
            .to_vec();
        (version, block[end..].to_vec())
    };
    let (stored_version, stored_lines) = split(stored);
    let (sent_version, sent_lines) = split(sent);
    let sent_lines = sent_lines.strip_suffix(b"\r\n").unwrap_or(&sent_lines);
    stored_version == sent_version && stored_lines.starts_with(sent_lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparseable_messages_are_counted_and_the_adapter_keeps_its_connection() {
    let server = NatsServer::start();
    let (client, js) = js_client(&server.url()).await;
    js.create_stream(StreamConfig {
        name: "INVALID".into(),
        subjects: vec!["ferry.invalid.>".into()],
        ..Default::default()
    })
    .await
    .expect("create INVALID");
    let mut ferry = Ferry::start(&adapter_yaml(&server.url()));
    ferry.wait_ready().await;

    let mut raw = RawNats::connect(&server.url());
    let (mut bad_headers, mut bad_subjects) = (0, 0);
    let rounds = [0..300, 300..600, 600..1000];
    for (round, valid) in rounds.into_iter().enumerate() {
        for i in valid {
            client
                .publish(ALIVE_SUBJECT, alive_event(i).into())
                .await
                .expect("publish");
        }
        client.flush().await.expect("flush");
        let (headers, subjects) = send_hostile_round(&mut raw, 10_000 + round * 100);
        bad_headers += headers;
        bad_subjects += subjects;
    }
    let hostile = bad_headers + bad_subjects;

    wait_until("every message received", DEADLINE, || async {
        ferry
            .metrics()
            .await
            .sum("ferry_adapter_received_total", &LC)
            >= (1000 + hostile) as f64
    })
    .await;
    wait_until("1,000 events stored", DEADLINE, || async {
        common::count_or_zero(&js, "FERRY_LIFECYCLE").await == 1000
    })
    .await;
    wait_until("hostile messages republished", DEADLINE, || async {
        common::count_or_zero(&js, "INVALID").await == hostile as u64
    })
    .await;
    let metrics = ferry.metrics().await;
    let invalid = |reason: &str| {
        metrics.sum(
            "ferry_adapter_invalid_total",
            &[("pipeline", "lifecycle"), ("reason", reason)],
        )
    };
    assert_eq!(
        metrics.sum("ferry_adapter_received_total", &LC),
        (1000 + hostile) as f64
    );
    assert_eq!(invalid("unparseable_headers"), bad_headers as f64);
    assert_eq!(invalid("unparseable_subject"), bad_subjects as f64);
    assert_eq!(
        metrics.sum("ferry_adapter_invalid_total", &LC),
        hostile as f64
    );
    assert_eq!(
        metrics.sum("ferry_reconnects_total", &EAST),
        0.0,
        "a hostile message must not cost ferry its connection"
    );

    // What was republished for inspection keeps the hostile bytes and says why it was refused.
    let republished = stream_messages(&js, "INVALID").await;
    let raw_blocks: Vec<&[u8]> = republished
        .iter()
        .filter_map(|m| m.raw_headers.as_deref())
        .collect();
    for (name, block) in UNPARSEABLE_HEADER_BLOCKS {
        let copies = raw_blocks
            .iter()
            .filter(|stored| keeps_header_lines(stored, block))
            .count();
        assert_eq!(
            copies, 3,
            "{name}: each round's message, its lines kept as sent"
        );
    }
    for message in &republished {
        let raw = String::from_utf8_lossy(message.raw_headers.as_deref().unwrap_or_default());
        assert!(
            raw.contains("Ferry-Invalid-Reason: unparseable_"),
            "seq {}: {raw:?}",
            message.sequence
        );
        assert!(raw.contains("Ferry-Adapter: lifecycle\r\n"), "{raw:?}");
    }
    assert!(ferry.is_running());
}

/// A replicator from east's SRC to west's DST, with `extra` appended to the replicator.
fn replicator_yaml(east: &str, west: &str, extra: &str) -> String {
    copy_yaml("dc1", east, west, "", extra)
}

async fn create_source(js: &async_nats::jetstream::Context) {
    js.create_stream(StreamConfig {
        name: "SRC".into(),
        subjects: vec!["src.>".into()],
        ..Default::default()
    })
    .await
    .expect("create SRC");
}

/// Publishes `good.{i}` messages for `range` through JetStream (acked), so they are stored in order.
async fn publish_good(js: &async_nats::jetstream::Context, range: std::ops::Range<usize>) {
    for i in range {
        js.publish(format!("src.good.{i}"), format!("good {i}").into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
}

/// The `Choria-SR-Source` line ferry adds to a copy of source sequence `sequence`.
fn provenance_line(sequence: u64) -> String {
    format!("Choria-SR-Source: SRC {sequence} dc1 copy ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_header_block_that_does_not_parse_is_copied_byte_for_byte() {
    let east = NatsServer::start();
    let west = NatsServer::start();
    let (_e, east_js) = js_client(&east.url()).await;
    let (_w, west_js) = js_client(&west.url()).await;
    create_source(&east_js).await;
    publish_good(&east_js, 0..100).await;
    let mut raw = RawNats::connect(&east.url());
    for (k, (_, block)) in UNPARSEABLE_HEADER_BLOCKS.iter().enumerate() {
        raw.hpub(format!("src.hostile.{k}").as_bytes(), block, b"hostile");
    }
    raw.sync();
    let hostile = UNPARSEABLE_HEADER_BLOCKS.len() as u64;
    common::wait_for_count(&east_js, "SRC", 100 + hostile, DEADLINE).await;

    let state = tempfile::tempdir().expect("state dir");
    let yaml = replicator_yaml(&east.url(), &west.url(), "");
    let mut ferry = Ferry::start_in(state.path().to_path_buf(), &yaml);
    ferry.wait_ready().await;
    common::wait_for_count(&west_js, "DST", 100 + hostile, DEADLINE).await;
    let (code, body) = ferry.get("/readyz").await.expect("readyz");
    assert_eq!(code, 200, "{body}");

    // The state directory is lost: the resume position must come from the target's newest
    // message, which is one of the raw blocks.
    ferry.sigterm();
    assert_eq!(
        ferry.wait_exit(Duration::from_secs(20)).await.code(),
        Some(0)
    );
    drop(ferry);
    std::fs::remove_dir_all(state.path().join("ferry.db")).expect("remove the state store");
    publish_good(&east_js, 100..200).await;
    let mut ferry = Ferry::start_in(state.path().to_path_buf(), &yaml);
    ferry.wait_ready().await;
    common::wait_for_count(&west_js, "DST", 200 + hostile, DEADLINE).await;
    let copy = [("pipeline", "copy")];
    wait_until("100 acknowledged copies", DEADLINE, || async {
        ferry
            .metrics()
            .await
            .sum("ferry_replicator_copied_total", &copy)
            == 100.0
    })
    .await;
    // The provenance was read from the raw block: the resume starts right after it, not from
    // `start`, and nothing is copied twice.
    let log = ferry.log();
    let resumed: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("replicator reading"))
        .collect();
    assert_eq!(resumed.len(), 1, "{resumed:?}");

    let mut raw_copies = 0;
    let source = stream_messages(&east_js, "SRC").await;
    let target = stream_messages(&west_js, "DST").await;
    assert_eq!(target.len(), source.len(), "no gap, no duplicate");
    for (from, to) in source.iter().zip(&target) {
        assert_eq!(
            (&to.subject, &to.payload),
            (&from.subject, &from.payload),
            "seq {}",
            from.sequence
        );
        let stored = to.raw_headers.as_deref().unwrap_or_default();
        let text = String::from_utf8_lossy(stored);
        assert!(
            text.contains(&provenance_line(from.sequence)),
            "seq {}: {text:?}",
            from.sequence
        );
        let sent = from.raw_headers.as_deref().unwrap_or_default();
        if from.subject.starts_with("src.hostile.") && from.headers.is_empty() {
            let body = sent.strip_suffix(b"\r\n").expect("ends in an empty line");
            assert!(stored.starts_with(body), "seq {}: {text:?}", from.sequence);
            assert!(to.headers.is_empty(), "the copy does not parse either");
            raw_copies += 1;
        }
    }
    // The server itself drops a status from a `NATS/1.0` line when it stores a message, so that
    // block arrives parseable; every other one is copied raw.
    assert_eq!(raw_copies, hostile - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_subject_that_is_not_utf8_pauses_the_replicator_until_skip_is_chosen() {
    let east = NatsServer::start();
    let west = NatsServer::start();
    let (_e, east_js) = js_client(&east.url()).await;
    let (_w, west_js) = js_client(&west.url()).await;
    create_source(&east_js).await;
    publish_good(&east_js, 0..50).await;
    let mut raw = RawNats::connect(&east.url());
    raw.publish(b"src.caf\xe9", b"unpublishable");
    raw.sync();
    common::wait_for_count(&east_js, "SRC", 51, DEADLINE).await;
    publish_good(&east_js, 50..100).await;

    let state = tempfile::tempdir().expect("state dir");
    let mut ferry = Ferry::start_in(
        state.path().to_path_buf(),
        &replicator_yaml(&east.url(), &west.url(), ""),
    );
    common::wait_for_count(&west_js, "DST", 50, DEADLINE).await;
    wait_until("/readyz reports the pause", DEADLINE, || async {
        matches!(ferry.get("/readyz").await, Ok((503, body)) if body.contains("source sequence 51") && body.contains("not UTF-8"))
    })
    .await;
    let (_, status) = ferry.get("/status").await.expect("status");
    assert!(status.contains("not UTF-8"), "{status}");
    let copy = [("pipeline", "copy")];
    let metrics = ferry.metrics().await;
    assert_eq!(metrics.sum("ferry_replicator_copied_total", &copy), 50.0);
    assert_eq!(
        metrics.sum(
            "ferry_replicator_skipped_total",
            &[("pipeline", "copy"), ("reason", "rejected")]
        ),
        0.0
    );
    assert!(
        ferry.log().contains("source_sequence=51"),
        "logged with its sequence"
    );
    ferry.sigterm();
    assert_eq!(
        ferry.wait_exit(Duration::from_secs(20)).await.code(),
        Some(0)
    );
    drop(ferry);

    let mut ferry = Ferry::start_in(
        state.path().to_path_buf(),
        &replicator_yaml(&east.url(), &west.url(), "    on_reject: skip\n"),
    );
    ferry.wait_ready().await;
    common::wait_for_count(&west_js, "DST", 100, DEADLINE).await;
    wait_until("the skip is counted", DEADLINE, || async {
        ferry.metrics().await.sum(
            "ferry_replicator_skipped_total",
            &[("pipeline", "copy"), ("reason", "rejected")],
        ) == 1.0
    })
    .await;
    let payloads: Vec<String> = stream_messages(&west_js, "DST")
        .await
        .iter()
        .map(|m| m.payload_str().to_string())
        .collect();
    let expected: Vec<String> = (0..100).map(|i| format!("good {i}")).collect();
    assert_eq!(payloads, expected);
}
