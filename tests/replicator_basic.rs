//! The replicator's basic promise, quickly: a stream on one server copied to another, with the
//! stamps of SPEC section 5, and a graceful restart that continues without a gap or a duplicate.

mod common;

use std::time::Duration;

use async_nats::jetstream::stream::Config as StreamConfig;
use async_nats::jetstream::Context;
use common::copy_yaml;
use common::{js_client, parse_metrics, stream_messages, wait_until, Ferry, NatsServer};

const DEADLINE: Duration = Duration::from_secs(60);

fn yaml(east: &str, west: &str) -> String {
    copy_yaml("dc1", east, west, "", "")
}

async fn fill(js: &Context, range: std::ops::Range<usize>) {
    let mut acks = Vec::new();
    for i in range {
        acks.push(
            js.publish(format!("src.{}", i % 7), format!("message {i}").into())
                .await
                .unwrap(),
        );
    }
    for ack in acks {
        ack.await.unwrap();
    }
}

async fn count(js: &Context, stream: &str) -> u64 {
    match js.get_stream(stream).await {
        Ok(mut stream) => stream.info().await.map_or(0, |info| info.state.messages),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_with_stamps_and_resumes_after_a_restart() {
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
    fill(&east_js, 0..500).await;

    let mut ferry = Ferry::start(&yaml(&east.url(), &west.url()));
    ferry.wait_ready().await;
    wait_until("500 copied", DEADLINE, || async {
        count(&west_js, "DST").await == 500
    })
    .await;

    let copied = stream_messages(&west_js, "DST").await;
    let first = &copied[0];
    assert_eq!(first.subject, "src.0");
    assert_eq!(&first.payload[..], b"message 0");
    assert_eq!(first.header("Nats-Msg-Id"), None, "exclusive by default");
    assert_eq!(first.header("Nats-Expected-Last-Sequence"), Some("0"));
    let stamp = first
        .header("Choria-SR-Source")
        .unwrap_or_default()
        .to_string();
    assert!(
        stamp.starts_with("SRC 1 dc1 copy "),
        "Choria-SR-Source: {stamp}"
    );
    assert_eq!(first.header("Ferry-Source"), None, "one provenance header");
    assert_eq!(
        first.header("Ferry-Origin").map(str::to_string),
        Some(format!("SRC@{created_ns}"))
    );

    ferry.sigterm();
    assert_eq!(
        ferry.wait_exit(Duration::from_secs(20)).await.code(),
        Some(0)
    );
    fill(&east_js, 500..800).await;
    ferry.restart();
    ferry.wait_ready().await;
    wait_until("800 copied", DEADLINE, || async {
        count(&west_js, "DST").await == 800
    })
    .await;
    let copied = stream_messages(&west_js, "DST").await;
    let payloads: Vec<String> = copied
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).to_string())
        .collect();
    let expected: Vec<String> = (0..800).map(|i| format!("message {i}")).collect();
    assert_eq!(payloads, expected, "no gap, no duplicate, in order");
    // The checkpoint follows within checkpoint_interval (1s).
    wait_until("checkpoint at 800", DEADLINE, || async {
        let (_, text) = ferry.get("/metrics").await.unwrap_or_default();
        parse_metrics(&text).get(
            "ferry_replicator_checkpoint_sequence",
            &[("pipeline", "copy")],
        ) == Some(800.0)
    })
    .await;
    let (_, text) = ferry.get("/metrics").await.unwrap();
    let metrics = parse_metrics(&text);
    assert_eq!(
        metrics.get("ferry_replicator_duplicates_total", &[("pipeline", "copy")]),
        Some(0.0),
        "the restart resumed at the checkpoint: nothing was sent twice; log: {}",
        ferry
            .log()
            .lines()
            .filter(|line| line.contains("panick")
                || line.contains("WARN")
                || line.contains("ERROR")
                || (line.contains("replicator")
                    && (!line.contains("DEBUG")
                        || line.contains("checkpoint")
                        || line.contains("stopping"))))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_copies_each_sender_once_per_interval_and_advises_new_ones() {
    const SENDERS: usize = 50;
    const ROUNDS: usize = 5;
    let east = NatsServer::start();
    let west = NatsServer::start();
    let (east_client, east_js) = js_client(&east.url()).await;
    let (_w, west_js) = js_client(&west.url()).await;
    east_js
        .create_stream(StreamConfig {
            name: "SRC".into(),
            subjects: vec!["src.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut advisories = east_client.subscribe("ferry.advisories.>").await.unwrap();
    east_client.flush().await.unwrap();
    let mut acks = Vec::new();
    for round in 0..ROUNDS {
        for sender in 0..SENDERS {
            let payload = format!(r#"{{"sender":"node{sender}.example.net","round":{round}}}"#);
            acks.push(
                east_js
                    .publish("src.registration", payload.into())
                    .await
                    .unwrap(),
            );
        }
    }
    for ack in acks {
        ack.await.unwrap();
    }
    let yaml = yaml(&east.url(), &west.url())
        + r#"    limit: { sample: { key: { field: sender }, interval: 1h } }
    advisories: { subject: "ferry.advisories.{event}.{value}" }
"#;
    let mut ferry = Ferry::start(&yaml);
    ferry.wait_ready().await;
    wait_until("one copy per sender", DEADLINE, || async {
        count(&west_js, "DST").await == SENDERS as u64
    })
    .await;
    let mut new_advisories = 0;
    while new_advisories < SENDERS {
        let message =
            tokio::time::timeout(DEADLINE, futures_util::StreamExt::next(&mut advisories))
                .await
                .expect("an advisory per sender")
                .expect("subscription open");
        let advisory: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(advisory["protocol"], "io.choria.sr.v2.age_advisory");
        assert_eq!(advisory["event"], "new");
        assert_eq!(advisory["replicator"], "dc1");
        new_advisories += 1;
    }
    wait_until("sampled out counted", DEADLINE, || async {
        let (_, text) = ferry.get("/metrics").await.unwrap_or_default();
        parse_metrics(&text).get(
            "ferry_replicator_skipped_total",
            &[("pipeline", "copy"), ("reason", "sampled")],
        ) == Some(((ROUNDS - 1) * SENDERS) as f64)
    })
    .await;
}
