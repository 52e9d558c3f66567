//! The output stream's life cycle (SPEC section 4): created with the configured settings when
//! missing; refused while its subjects overlap another stream (events are spooled, not lost, and
//! flow once the operator resolves it); recreated when deleted under a running adapter; a
//! JetStream that is down when ferry starts; and the lifecycle duplicate-window warning.

mod common;

use std::time::Duration;

use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::Context;
use common::two_connections_yaml;
use common::{js_client, parse_metrics, wait_until, Ferry, NatsServer};

const DEADLINE: Duration = Duration::from_secs(60);

fn alive(i: usize) -> Vec<u8> {
    format!(
        r#"{{"protocol":"io.choria.lifecycle.v1.alive","id":"{i}","identity":"node{i}.example.net","component":"server","timestamp":1700000000,"version":"0.29.4"}}"#
    )
    .into_bytes()
}

fn yaml(input: &str, output: &str, output_extra: &str) -> String {
    two_connections_yaml(
        input,
        output,
        "",
        &format!(
            r#"  - name: lifecycle
    kind: choria_lifecycle
    connection: core
    subjects: ["choria.lifecycle.event.>"]
    output:
      connection: js
      stream: FERRY_LIFECYCLE
      subject: "ferry.lifecycle.{{type}}.{{component}}"
{output_extra}
"#
        ),
    )
}

async fn publish_alive(client: &async_nats::Client, range: std::ops::Range<usize>) {
    for i in range {
        client
            .publish("choria.lifecycle.event.alive.server", alive(i).into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
}

/// Messages in `stream`; 0 while it does not exist.
async fn count(js: &Context, stream: &str) -> u64 {
    match js.get_stream(stream).await {
        Ok(mut stream) => stream.info().await.map_or(0, |info| info.state.messages),
        Err(_) => 0,
    }
}

async fn wait_count(js: &Context, want: u64) {
    wait_until(&format!("{want} stored events"), DEADLINE, || async {
        count(js, "FERRY_LIFECYCLE").await == want
    })
    .await;
}

async fn readyz(ferry: &Ferry) -> (u16, String) {
    ferry
        .get("/readyz")
        .await
        .unwrap_or((0, "unreachable".into()))
}

async fn metric(ferry: &Ferry, name: &str) -> f64 {
    match ferry.get("/metrics").await {
        Ok((200, text)) => parse_metrics(&text).sum(name, &[("pipeline", "lifecycle")]),
        _ => -1.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_stream_is_created_with_the_configured_settings() {
    let server = NatsServer::start();
    let mut ferry = Ferry::start(&yaml(
        &server.url(),
        &server.url(),
        "      max_age: 7d\n      storage: memory\n      duplicate_window: 5m\n      replicas: 1",
    ));
    ferry.wait_ready().await;
    let (client, js) = js_client(&server.url()).await;
    publish_alive(&client, 0..1).await;
    wait_count(&js, 1).await;
    let mut stream = js.get_stream("FERRY_LIFECYCLE").await.unwrap();
    let config = &stream.info().await.unwrap().config;
    assert_eq!(
        config.subjects,
        ["ferry.lifecycle.>"],
        "default: prefix + >"
    );
    assert_eq!(config.max_age, Duration::from_secs(7 * 86_400));
    assert_eq!(config.storage, StorageType::Memory);
    assert_eq!(config.duplicate_window, Duration::from_secs(300));
    assert_eq!(config.num_replicas, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_stream_is_refused_then_events_flow_once_resolved() {
    let server = NatsServer::start();
    let (client, js) = js_client(&server.url()).await;
    js.create_stream(StreamConfig {
        name: "SQUATTER".into(),
        subjects: vec!["ferry.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let ferry = Ferry::start(&yaml(&server.url(), &server.url(), ""));
    wait_until("the refusal is reported", DEADLINE, || async {
        let (code, body) = readyz(&ferry).await;
        code == 503 && body.contains("SQUATTER")
    })
    .await;
    assert!(ferry.log().contains("overlap"), "logged: {}", ferry.log());

    // Nothing is lost meanwhile: events wait in the spool.
    publish_alive(&client, 0..20).await;
    wait_until("20 spooled", DEADLINE, || async {
        metric(&ferry, "ferry_adapter_spool_messages").await == 20.0
    })
    .await;
    assert_eq!(count(&js, "SQUATTER").await, 0);

    // The operator removes the overlapping stream: ferry creates its own and drains the spool.
    js.delete_stream("SQUATTER").await.unwrap();
    wait_count(&js, 20).await;
    wait_until("ready again", DEADLINE, || async {
        readyz(&ferry).await.0 == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_deleted_under_a_running_adapter_is_recreated() {
    let server = NatsServer::start();
    let mut ferry = Ferry::start(&yaml(&server.url(), &server.url(), ""));
    ferry.wait_ready().await;
    let (client, js) = js_client(&server.url()).await;
    publish_alive(&client, 0..10).await;
    wait_count(&js, 10).await;

    js.delete_stream("FERRY_LIFECYCLE").await.unwrap();
    publish_alive(&client, 10..30).await;
    wait_count(&js, 20).await;
    assert_eq!(
        metric(&ferry, "ferry_adapter_dropped_total").await,
        0.0,
        "a missing stream is an outage, not a reject"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_down_at_start_spools_then_drains() {
    let input = NatsServer::start();
    let mut output = NatsServer::start();
    let output_url = output.url();
    output.stop();
    let ferry = Ferry::start(&yaml(&input.url(), &output_url, ""));
    // Intake works without JetStream: wait for the subscription, shown by the status reason.
    wait_until("subscribed while JetStream is down", DEADLINE, || async {
        let (_, body) = ferry.get("/status").await.unwrap_or((0, String::new()));
        body.contains("spooling") || body.contains("JetStream")
    })
    .await;
    let (client, _) = js_client(&input.url()).await;
    publish_alive(&client, 0..50).await;
    wait_until("50 spooled", DEADLINE, || async {
        metric(&ferry, "ferry_adapter_spool_messages").await == 50.0
    })
    .await;
    output.restart();
    let (_out, js) = js_client(&output.url()).await;
    wait_count(&js, 50).await;
    wait_until("spool drained", DEADLINE, || async {
        metric(&ferry, "ferry_adapter_spool_messages").await == 0.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_duplicate_window_on_an_existing_lifecycle_stream_is_warned_about() {
    let server = NatsServer::start();
    let (_client, js) = js_client(&server.url()).await;
    js.create_stream(StreamConfig {
        name: "FERRY_LIFECYCLE".into(),
        subjects: vec!["ferry.lifecycle.>".into()],
        duplicate_window: Duration::from_secs(3600),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut ferry = Ferry::start(&yaml(&server.url(), &server.url(), ""));
    ferry.wait_ready().await;
    wait_until("the warning", DEADLINE, || async {
        ferry
            .log()
            .contains("duplicate window is 30 minutes or longer")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_takes_over_the_output_subjects_stops_the_adapter_until_fixed() {
    let server = NatsServer::start();
    let (client, js) = js_client(&server.url()).await;
    js.create_stream(StreamConfig {
        name: "FERRY_LIFECYCLE".into(),
        subjects: vec!["ferry.lifecycle.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut ferry = Ferry::start(&yaml(&server.url(), &server.url(), "      create: false"));
    ferry.wait_ready().await;
    publish_alive(&client, 0..10).await;
    wait_count(&js, 10).await;

    // Another stream takes over the subjects. Nothing stored with the events names their stream
    // (no Nats-Expected-Stream), so the first ack from the other stream must stop the adapter.
    js.delete_stream("FERRY_LIFECYCLE").await.unwrap();
    js.create_stream(StreamConfig {
        name: "OTHER".into(),
        subjects: vec!["ferry.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    publish_alive(&client, 10..11).await;
    wait_until("the takeover reported on /readyz", DEADLINE, || async {
        let (code, body) = readyz(&ferry).await;
        code == 503 && body.contains("FERRY_LIFECYCLE does not exist")
    })
    .await;
    publish_alive(&client, 11..30).await;
    wait_until("20 spooled", DEADLINE, || async {
        metric(&ferry, "ferry_adapter_spool_messages").await == 20.0
    })
    .await;
    assert_eq!(
        count(&js, "OTHER").await,
        1,
        "only the event whose ack showed the takeover went astray"
    );
    assert!(ferry.log().contains("instead of \"FERRY_LIFECYCLE\""));

    // Fixed: every event reaches the right stream, the one that went astray too.
    js.delete_stream("OTHER").await.unwrap();
    js.create_stream(StreamConfig {
        name: "FERRY_LIFECYCLE".into(),
        subjects: vec!["ferry.lifecycle.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    wait_count(&js, 20).await;
    assert_eq!(metric(&ferry, "ferry_adapter_dropped_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_stream_that_does_not_listen_on_the_output_subjects_is_refused() {
    let server = NatsServer::start();
    let (client, js) = js_client(&server.url()).await;
    js.create_stream(StreamConfig {
        name: "FERRY_LIFECYCLE".into(),
        subjects: vec!["elsewhere.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let ferry = Ferry::start(&yaml(&server.url(), &server.url(), ""));
    wait_until("refused on /readyz", DEADLINE, || async {
        let (code, body) = readyz(&ferry).await;
        code == 503 && body.contains("does not listen on ferry.lifecycle.>")
    })
    .await;
    publish_alive(&client, 0..5).await;
    wait_until("5 spooled", DEADLINE, || async {
        metric(&ferry, "ferry_adapter_spool_messages").await == 5.0
    })
    .await;
    assert_eq!(count(&js, "FERRY_LIFECYCLE").await, 0);
}
