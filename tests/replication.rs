//! Replicators against two real servers, under the faults SPEC section 5 names: a large exact
//! copy, SIGKILL mid-copy (five times), a lost state directory, the target down for 10 s, and
//! rewrites, filters and `max_age`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::stream::Config as StreamConfig;
use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use common::{
    js_client, parse_metrics, stream_messages, wait_until, Ferry, NatsServer, StoredMessage,
};

const DEADLINE: Duration = Duration::from_secs(120);

struct DataCentres {
    east: NatsServer,
    west: NatsServer,
    east_js: Context,
    west_js: Context,
    created_ns: i128,
}

/// East with stream SRC on `src.>`, west empty.
async fn data_centres() -> DataCentres {
    let east = NatsServer::start();
    let west = NatsServer::start();
    let (_e, east_js) = js_client(&east.url()).await;
    let (_w, west_js) = js_client(&west.url()).await;
    let mut source = east_js
        .create_stream(StreamConfig {
            name: "SRC".into(),
            subjects: vec!["src.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let created_ns = source.info().await.unwrap().created.unix_timestamp_nanos();
    DataCentres {
        east,
        west,
        east_js,
        west_js,
        created_ns,
    }
}

fn yaml(dc: &DataCentres, extra: &str) -> String {
    format!(
        r#"
name: dc1
state_dir: "{{state_dir}}"
monitor: {{ listen: "{{monitor}}" }}
connections:
  east: {{ servers: ["{}"] }}
  west: {{ servers: ["{}"] }}
replicators:
  - name: copy
    from: {{ connection: east, stream: SRC }}
    to: {{ connection: west, stream: DST, create: true, duplicate_window: 10m }}
{extra}"#,
        dc.east.url(),
        dc.west.url()
    )
}

/// Publishes `range` to the source with pipelined acks; subjects cycle over 10 so per-subject
/// order can be checked; every message carries a header and a source `Nats-Msg-Id`.
async fn fill(js: &Context, range: std::ops::Range<usize>) {
    let mut acks = Vec::with_capacity(range.len());
    for i in range {
        let mut headers = HeaderMap::new();
        headers.insert("App", format!("h{i}").as_str());
        headers.insert("Nats-Msg-Id", format!("app-{i}").as_str());
        acks.push(
            js.publish_with_headers(format!("src.s{}", i % 10), headers, payload(i).into())
                .await
                .unwrap(),
        );
        if acks.len() >= 2000 {
            for ack in acks.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in acks {
        ack.await.unwrap();
    }
}

fn payload(i: usize) -> String {
    format!("message {i:06}")
}

async fn count(js: &Context, stream: &str) -> u64 {
    match js.get_stream(stream).await {
        Ok(mut stream) => stream.info().await.map_or(0, |info| info.state.messages),
        Err(_) => 0,
    }
}

async fn wait_count(js: &Context, stream: &str, want: u64) {
    wait_until(
        &format!("{want} messages in {stream}"),
        DEADLINE,
        || async { count(js, stream).await == want },
    )
    .await;
}

async fn metric(ferry: &Ferry, name: &str, labels: &[(&str, &str)]) -> f64 {
    match ferry.get("/metrics").await {
        Ok((200, text)) => parse_metrics(&text).sum(name, labels),
        _ => -1.0,
    }
}

/// The target holds exactly messages 0..n: no gap, no duplicate, per-subject order kept,
/// payloads, subjects and headers as SPEC section 5 says.
fn assert_exact_copy(copied: &[StoredMessage], n: usize, created_ns: i128) {
    assert_eq!(copied.len(), n, "count");
    let mut last_per_subject: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = vec![false; n];
    for message in copied {
        let text = std::str::from_utf8(&message.payload).unwrap();
        let i: usize = text["message ".len()..].parse().unwrap();
        assert!(!seen[i], "message {i} stored twice");
        seen[i] = true;
        assert_eq!(message.subject, format!("src.s{}", i % 10));
        if let Some(previous) = last_per_subject.insert(message.subject.clone(), i) {
            assert!(previous < i, "per-subject order: {previous} then {i}");
        }
        let sequence = i + 1;
        assert_eq!(
            message.header("Nats-Msg-Id").map(str::to_string),
            Some(format!("SRC:{created_ns}:{sequence}"))
        );
        assert_eq!(
            message.header("Ferry-Source-Msg-Id").map(str::to_string),
            Some(format!("app-{i}"))
        );
        assert_eq!(
            message.header("App").map(str::to_string),
            Some(format!("h{i}"))
        );
        let stamp = message.header("Ferry-Source").unwrap_or_default();
        assert!(
            stamp.starts_with(&format!("SRC {sequence} dc1 copy ")),
            "Ferry-Source {stamp}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_messages_are_copied_exactly() {
    const N: usize = 50_000;
    let dc = data_centres().await;
    fill(&dc.east_js, 0..N).await;
    let mut ferry = Ferry::start(&yaml(&dc, ""));
    ferry.wait_ready().await;
    wait_count(&dc.west_js, "DST", N as u64).await;
    assert_exact_copy(&stream_messages(&dc.west_js, "DST").await, N, dc.created_ns);
    wait_until("checkpoint at the end", DEADLINE, || async {
        metric(
            &ferry,
            "ferry_replicator_checkpoint_sequence",
            &[("pipeline", "copy")],
        )
        .await
            == N as f64
    })
    .await;
    assert_eq!(
        metric(
            &ferry,
            "ferry_replicator_copied_total",
            &[("pipeline", "copy")]
        )
        .await,
        N as f64
    );
    assert_eq!(
        metric(
            &ferry,
            "ferry_replicator_lag_messages",
            &[("pipeline", "copy")]
        )
        .await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_copy_five_times_then_the_target_equals_the_source() {
    const N: usize = 20_000;
    let dc = data_centres().await;
    fill(&dc.east_js, 0..N).await;
    let mut ferry = Ferry::start(&yaml(&dc, "    max_in_flight: 256\n"));
    for round in 1..=5u64 {
        ferry.wait_ready().await;
        let at_least = round * (N as u64) / 7;
        wait_until(
            &format!("round {round}: some progress"),
            DEADLINE,
            || async { count(&dc.west_js, "DST").await >= at_least },
        )
        .await;
        ferry.sigkill();
        ferry.wait_exit(Duration::from_secs(10)).await;
        ferry.restart();
    }
    ferry.wait_ready().await;
    wait_count(&dc.west_js, "DST", N as u64).await;
    assert_exact_copy(&stream_messages(&dc.west_js, "DST").await, N, dc.created_ns);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_state_directory_resumes_from_the_target() {
    const N: usize = 3_000;
    let dc = data_centres().await;
    fill(&dc.east_js, 0..N).await;
    let mut ferry = Ferry::start(&yaml(&dc, "    max_in_flight: 100\n"));
    ferry.wait_ready().await;
    wait_count(&dc.west_js, "DST", N as u64).await;
    ferry.sigterm();
    ferry.wait_exit(Duration::from_secs(20)).await;
    fill(&dc.east_js, N..2 * N).await;

    // A new host: fresh state directory, same target.
    let mut replacement = Ferry::start(&yaml(&dc, "    max_in_flight: 100\n"));
    replacement.wait_ready().await;
    wait_count(&dc.west_js, "DST", 2 * N as u64).await;
    assert_exact_copy(
        &stream_messages(&dc.west_js, "DST").await,
        2 * N,
        dc.created_ns,
    );
    let log = replacement.log();
    assert!(
        log.contains(&format!("target's last copy {N}")),
        "resumed from the target's Ferry-Source header: {log}"
    );
    let duplicates = metric(
        &replacement,
        "ferry_replicator_duplicates_total",
        &[("pipeline", "copy")],
    )
    .await;
    assert!(
        duplicates <= 100.0,
        "at most max_in_flight replayed: {duplicates}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_down_for_ten_seconds_mid_copy_completes_exactly() {
    const N: usize = 10_000;
    let mut dc = data_centres().await;
    fill(&dc.east_js, 0..N / 2).await;
    let mut ferry = Ferry::start(&yaml(&dc, ""));
    ferry.wait_ready().await;
    wait_count(&dc.west_js, "DST", (N / 2) as u64).await;

    dc.west.stop();
    fill(&dc.east_js, N / 2..N).await;
    wait_until("not ready while the target is down", DEADLINE, || async {
        matches!(ferry.get("/readyz").await, Ok((503, body)) if body.contains("copy"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    dc.west.restart();
    let (_w, west_js) = js_client(&dc.west.url()).await;
    wait_count(&west_js, "DST", N as u64).await;
    assert_exact_copy(&stream_messages(&west_js, "DST").await, N, dc.created_ns);
    ferry.wait_ready().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_filters_and_max_age() {
    let dc = data_centres().await;
    // Old messages first, then a pause longer than max_age, then new ones.
    fill(&dc.east_js, 0..20).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    fill(&dc.east_js, 20..60).await;
    let extra = r#"    max_age: 2s
    filter:
      exclude_subjects: ["src.s9"]
      match:
        - { header: App, regex: "^h[0-9]*[02468]$" }
"#;
    let yaml = yaml(&dc, extra).replace(
        "create: true, duplicate_window: 10m }",
        "create: true, duplicate_window: 10m, subject_strip_prefix: src, subject_prefix: FLEET }",
    );
    let mut ferry = Ferry::start(&yaml);
    ferry.wait_ready().await;
    // 20..60: even only (the header regex), s9 excluded (odd anyway) → 20 messages.
    wait_count(&dc.west_js, "DST", 20).await;
    let copied = stream_messages(&dc.west_js, "DST").await;
    for message in &copied {
        assert!(
            message.subject.starts_with("FLEET.s"),
            "{}",
            message.subject
        );
        let i: usize = std::str::from_utf8(&message.payload).unwrap()["message ".len()..]
            .parse()
            .unwrap();
        assert!(
            i >= 20 && i % 2 == 0,
            "message {i} should have been skipped"
        );
    }
    wait_until("skips counted", DEADLINE, || async {
        metric(
            &ferry,
            "ferry_replicator_skipped_total",
            &[("pipeline", "copy"), ("reason", "age")],
        )
        .await
            == 20.0
            && metric(
                &ferry,
                "ferry_replicator_skipped_total",
                &[("pipeline", "copy"), ("reason", "filtered")],
            )
            .await
                == 20.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_way_replication_does_not_echo() {
    let dc = data_centres().await;
    dc.west_js
        .create_stream(StreamConfig {
            name: "BACK".into(),
            subjects: vec!["back.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    fill(&dc.east_js, 0..50).await;
    // east SRC → west BACK (rewritten into back.>), and west BACK → east SRC (rewritten into src.>).
    let yaml = format!(
        r#"
name: dc1
state_dir: "{{state_dir}}"
monitor: {{ listen: "{{monitor}}" }}
connections:
  east: {{ servers: ["{}"] }}
  west: {{ servers: ["{}"] }}
replicators:
  - name: there
    from: {{ connection: east, stream: SRC }}
    to: {{ connection: west, stream: BACK, subject_strip_prefix: src, subject_prefix: back }}
  - name: back
    from: {{ connection: west, stream: BACK }}
    to: {{ connection: east, stream: SRC, subject_strip_prefix: back, subject_prefix: src }}
"#,
        dc.east.url(),
        dc.west.url()
    );
    let mut ferry = Ferry::start(&yaml);
    ferry.wait_ready().await;
    wait_count(&dc.west_js, "BACK", 50).await;
    wait_until("echoes skipped as loops", DEADLINE, || async {
        metric(
            &ferry,
            "ferry_replicator_skipped_total",
            &[("pipeline", "back"), ("reason", "loop")],
        )
        .await
            == 50.0
    })
    .await;
    assert_eq!(count(&dc.east_js, "SRC").await, 50, "nothing echoed back");
}
