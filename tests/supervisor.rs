//! The pipeline supervisor: a task that panics or ends while ferry runs is noticed at once (the
//! pipeline shows `failed` on /readyz and /status with the task and the cause, one ERROR line,
//! `ferry_pipeline_restarts_total`), and the pipeline is restarted and carries on exactly.
//!
//! Every kind of task is made to fail through the test-only hook `FERRY_FAULT` (src/fault.rs),
//! which exists only in builds with the `fault-injection` feature, as the test command builds.
#![cfg(feature = "fault-injection")]

mod common;

use std::time::Duration;

use async_nats::jetstream::stream::Config as StreamConfig;
use common::{copy_yaml, lifecycle_yaml};
use common::{
    js_client, publish_alive, stream_messages, wait_until, Ferry, FerryOptions, NatsServer,
};

const DEADLINE: Duration = Duration::from_secs(60);
/// When the injected fault fires, counted from the task's start: long enough for the first batch
/// of events to be handled before it.
const FAULT_AFTER: &str = "3s";

/// Waits for the failure to show, then for the pipeline to be back, and checks what was reported.
async fn expect_failure_and_restart(ferry: &mut Ferry, pipeline: &str, task: &str, cause: &str) {
    let what = format!("/readyz to show {pipeline} failed in task {task}");
    wait_until(&what, DEADLINE, || async {
        matches!(ferry.get("/readyz").await, Ok((503, body)) if body.contains("\"failed\"") && body.contains(&format!("task {task} {cause}")))
    })
    .await;
    ferry.wait_ready().await;
    let labels = [("pipeline", pipeline)];
    assert_eq!(
        ferry
            .metrics()
            .await
            .sum("ferry_pipeline_restarts_total", &labels),
        1.0
    );
    let (_, status) = ferry.get("/status").await.expect("/status");
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    let entry = status["pipelines"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == pipeline))
        .unwrap_or_else(|| panic!("{pipeline} in {status}"));
    // Running again: the restart's cause is history (the log and the counter keep it).
    assert!(
        entry["last_error"].is_null(),
        "last_error clears once the pipeline recovered: {entry}"
    );
    let log = ferry.log();
    assert!(
        log.contains("a pipeline task ended while ferry runs") && log.contains(task),
        "one ERROR line naming the task"
    );
}

fn adapter_yaml(url: &str) -> String {
    lifecycle_yaml(None, "east", url, "")
}

async fn adapter_task_fails(task: &str, action: &str, cause: &str) {
    let server = NatsServer::start();
    let (client, js) = js_client(&server.url()).await;
    let mut ferry = Ferry::start_with(
        &adapter_yaml(&server.url()),
        FerryOptions::default().env(
            "FERRY_FAULT",
            format!("lifecycle/{task}:{action}:{FAULT_AFTER}"),
        ),
    );
    ferry.wait_ready().await;
    publish_alive(&client, 0..300).await;
    common::wait_for_count(&js, "FERRY_LIFECYCLE", 300, DEADLINE).await;

    expect_failure_and_restart(&mut ferry, "lifecycle", task, cause).await;
    publish_alive(&client, 300..600).await;
    common::wait_for_count(&js, "FERRY_LIFECYCLE", 600, DEADLINE).await;
    let mut stored: Vec<String> = stream_messages(&js, "FERRY_LIFECYCLE")
        .await
        .iter()
        .map(|m| m.payload_str().to_string())
        .collect();
    stored.sort();
    stored.dedup();
    assert_eq!(stored.len(), 600, "every event stored once");
    let metrics = ferry.metrics().await;
    assert_eq!(
        metrics.sum("ferry_adapter_dropped_total", &[("pipeline", "lifecycle")]),
        0.0,
        "nothing in flight when the task failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_intake_that_panics_is_restarted() {
    adapter_task_fails("intake", "panic", "panicked").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_publisher_that_panics_is_restarted() {
    adapter_task_fails("publisher", "panic", "panicked").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_spool_flusher_that_ends_is_restarted() {
    adapter_task_fails("flusher", "return", "ended").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_status_reporter_that_panics_is_restarted() {
    adapter_task_fails("status", "panic", "panicked").await;
}

/// A replicator with every optional task: election (and so the sampling sharer), heartbeat,
/// sampling with advisories.
fn replicator_yaml(east: &str, west: &str) -> String {
    copy_yaml(
        "dc1",
        east,
        west,
        "",
        r#"    leader_election: { bucket: ELECT, ttl: 3s }
    heartbeat: { subject: "src.heartbeat", interval: 1s }
    limit: { sample: { key: { subject_token: 2 }, interval: 1h } }
    advisories: { subject: "ferry.advisories.{event}.{value}" }
"#,
    )
}

async fn fill(js: &async_nats::jetstream::Context, range: std::ops::Range<usize>) {
    for i in range {
        js.publish(format!("src.node{i}"), format!("message {i}").into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
}

/// Source messages other than ferry's own heartbeats (none while the stream does not exist yet).
async fn data_payloads(js: &async_nats::jetstream::Context, stream: &str) -> Vec<String> {
    if common::count_or_zero(js, stream).await == 0 {
        return Vec::new();
    }
    stream_messages(js, stream)
        .await
        .iter()
        .filter(|m| m.subject != "src.heartbeat")
        .map(|m| m.payload_str().to_string())
        .collect()
}

async fn replicator_task_fails(task: &str, action: &str, cause: &str) {
    let east = NatsServer::start();
    let west = NatsServer::start();
    let (_e, east_js) = js_client(&east.url()).await;
    let (_w, west_js) = js_client(&west.url()).await;
    east_js
        .create_stream(StreamConfig {
            name: "SRC".into(),
            subjects: vec!["src.>".into()],
            ..Default::default()
        })
        .await
        .expect("create SRC");
    fill(&east_js, 0..200).await;
    let mut ferry = Ferry::start_with(
        &replicator_yaml(&east.url(), &west.url()),
        FerryOptions::default().env("FERRY_FAULT", format!("copy/{task}:{action}:{FAULT_AFTER}")),
    );
    ferry.wait_ready().await;
    wait_until("the first 200 copied", DEADLINE, || async {
        data_payloads(&west_js, "DST").await.len() == 200
    })
    .await;

    expect_failure_and_restart(&mut ferry, "copy", task, cause).await;
    fill(&east_js, 200..400).await;
    let expected: Vec<String> = (0..400).map(|i| format!("message {i}")).collect();
    wait_until("all 400 copied", DEADLINE, || async {
        data_payloads(&west_js, "DST").await.len() >= 400
    })
    .await;
    assert_eq!(
        data_payloads(&west_js, "DST").await,
        expected,
        "the target holds the source exactly, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicator_copier_that_panics_is_restarted() {
    replicator_task_fails("copier", "panic", "panicked").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicator_heartbeat_that_ends_is_restarted() {
    replicator_task_fails("heartbeat", "return", "ended").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicator_election_that_panics_is_restarted() {
    replicator_task_fails("election", "panic", "panicked").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicator_sampling_sharer_that_panics_is_restarted() {
    replicator_task_fails("sharer", "panic", "panicked").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicator_advisory_publisher_that_ends_is_restarted() {
    replicator_task_fails("advisories", "return", "ended").await;
}
