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

const DEADLINE: Duration = Duration::from_secs(60);
const EAST: [(&str, &str); 1] = [("connection", "east")];
const LC: [(&str, &str); 1] = [("pipeline", "lifecycle")];

/// A lifecycle adapter on `url`, republishing what it cannot decode to `ferry.invalid.lifecycle`.
fn adapter_yaml(url: &str) -> String {
    format!(
        r#"
state_dir: "{{state_dir}}"
monitor: {{ listen: "{{monitor}}" }}
connections:
  east: {{ servers: ["{url}"] }}
adapters:
  - name: lifecycle
    kind: choria_lifecycle
    connection: east
    subjects: ["choria.lifecycle.event.>"]
    invalid_subject: ferry.invalid.lifecycle
    output: {{ stream: FERRY_LIFECYCLE, subject: "ferry.lifecycle.{{type}}.{{component}}", duplicate_window: 2m }}
"#
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
