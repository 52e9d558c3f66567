//! What ferry shows during and after an outage is what is true: readiness drops as soon as a
//! connection is lost (even for a pipeline with nothing to publish), an error clears once the
//! pipeline recovers, a permanent error is `failed` rather than retried forever, and a server that
//! comes back is used within seconds.

mod common;

use std::time::{Duration, Instant};

use common::*;

const DEADLINE: Duration = Duration::from_secs(60);

fn pipeline(status: &serde_json::Value, name: &str) -> serde_json::Value {
    status["pipelines"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("{name} in {status}"))
}

async fn status(ferry: &Ferry) -> serde_json::Value {
    let (code, body) = ferry.get("/status").await.expect("GET /status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status JSON")
}

/// `n` source messages, and a ferry copying them with `extra` replicator keys, ready and done.
async fn start_copying(sites: &Sites, n: usize, extra: &str) -> Ferry {
    fill_source(&sites.east_js, 0..n).await;
    let yaml = copy_yaml(
        "dc1",
        &sites.east.url(),
        &sites.west.url(),
        "",
        &format!("    start: all\n{extra}"),
    );
    let mut ferry = Ferry::start(&yaml);
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "DST", n as u64, DEADLINE).await;
    ferry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_sampled_replicator_is_not_ready_as_soon_as_its_target_is_lost() {
    let mut sites = sites_with_source().await;
    let mut ferry = start_copying(
        &sites,
        10,
        "    limit: { sample: { key: { subject_token: 2 }, interval: 1h } }\n",
    )
    .await;

    // Nothing to copy: only the connection can tell that the target is gone.
    sites.west.stop();
    let lost = Instant::now();
    wait_until(
        "/readyz 503 naming the replicator within 1.5 s of the lost target",
        Duration::from_millis(1500),
        || async {
            matches!(ferry.get("/readyz").await, Ok((503, body)) if body.contains("copy") && body.contains("connection west is down"))
        },
    )
    .await;
    let noticed = lost.elapsed();
    let metrics = ferry.metrics().await;
    assert_eq!(
        metrics.get("ferry_pipeline_ready", &[("pipeline", "copy")]),
        Some(0.0),
        "/metrics agrees with /readyz"
    );
    assert_eq!(
        pipeline(&status(&ferry).await, "copy")["state"],
        "disconnected"
    );

    sites.west.restart();
    ferry.wait_ready().await;
    let copy = pipeline(&status(&ferry).await, "copy");
    assert_eq!(copy["state"], "running");
    assert!(copy["last_error"].is_null(), "recovered: {copy}");
    eprintln!("not ready {noticed:?} after the target was lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_missing_at_start_is_an_error_only_until_it_exists() {
    let sites = two_sites().await;
    let yaml = copy_yaml(
        "dc1",
        &sites.east.url(),
        &sites.west.url(),
        "",
        "    start: all\n",
    );
    let ferry = Ferry::start(&yaml);
    wait_until("the missing source on /status", DEADLINE, || async {
        let Ok((200, body)) = ferry.get("/status").await else {
            return false;
        };
        let Ok(status) = serde_json::from_str::<serde_json::Value>(&body) else {
            return false;
        };
        pipeline(&status, "copy")["last_error"]
            .as_str()
            .is_some_and(|error| error.contains("SRC"))
    })
    .await;
    sites
        .east_js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "SRC".into(),
            subjects: vec!["SRC.>".into()],
            ..Default::default()
        })
        .await
        .expect("create SRC");
    fill_source(&sites.east_js, 0..5).await;
    wait_for_count(&sites.west_js, "DST", 5, DEADLINE).await;
    let copy = pipeline(&status(&ferry).await, "copy");
    assert_eq!(copy["state"], "running");
    assert!(copy["last_error"].is_null(), "the error is history: {copy}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_target_subjects_fail_the_replicator_until_fixed_and_reloaded() {
    let sites = sites_with_source().await;
    sites
        .west_js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "OTHER".into(),
            subjects: vec!["SRC.>".into()],
            ..Default::default()
        })
        .await
        .expect("create OTHER");
    fill_source(&sites.east_js, 0..5).await;
    let yaml = copy_yaml(
        "dc1",
        &sites.east.url(),
        &sites.west.url(),
        "",
        "    start: all\n",
    );
    let mut ferry = Ferry::start(&yaml);
    wait_until("the replicator failed", DEADLINE, || async {
        matches!(ferry.get("/readyz").await, Ok((503, body)) if body.contains("\"failed\"") && body.contains("overlap"))
    })
    .await;
    let copy = pipeline(&status(&ferry).await, "copy");
    assert!(
        copy["reason"].as_str().is_some_and(
            |reason| reason.contains("overlap another stream") && reason.contains("DST")
        ),
        "names the cause and the fix: {copy}"
    );
    assert!(
        !ferry.log().contains("replicator interrupted; retrying"),
        "a permanent error is not retried as an outage"
    );

    // The operator removes the other stream and reloads: the failed replicator starts again.
    sites
        .west_js
        .delete_stream("OTHER")
        .await
        .expect("delete OTHER");
    let log = ferry.reload().await;
    assert!(log.contains("1 failed restarted (copy)"), "{log}");
    wait_for_count(&sites.west_js, "DST", 5, DEADLINE).await;
    ferry.wait_ready().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_comes_back_is_used_within_seconds_not_after_the_backoff() {
    let mut sites = sites_with_source().await;
    let ferry = start_copying(&sites, 100, "").await;

    sites.west.stop();
    fill_source(&sites.east_js, 100..200).await;
    // Long enough for the retry backoff (200 ms doubling up to 15 s) to reach steps of 6 s
    // and more.
    wait_until("the outage to be noticed", DEADLINE, || async {
        let log = ferry.log();
        log.contains("the target is not accepting writes") || log.contains("replicator interrupted")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    sites.west.restart();
    let back = Instant::now();
    let (_, west_js) = js_client(&sites.west.url()).await;
    wait_for_count(&west_js, "DST", 200, Duration::from_secs(5)).await;
    eprintln!(
        "copying resumed {:?} after the target came back",
        back.elapsed()
    );
    assert!(
        ferry.log().contains("the server is back; retrying now"),
        "the wait ended because the target came back, not because a backoff step ran out"
    );
    let copies = payload_counts(&west_js, "DST").await;
    assert_eq!(copies.len(), 200, "every source message on the target");
    assert!(copies.values().all(|&n| n == 1), "none twice");
}
