//! Switching a site from Choria's stream replicator (SR) to ferry: the target's newest message,
//! written by SR with its `Choria-SR-Source` header (`<stream> <sequence> <name> <stream name>
//! <unix ms>`), is where ferry resumes on its first run, so nothing is copied twice and nothing is
//! skipped.

mod common;

use std::time::Duration;

use common::*;

const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_resumes_after_the_last_message_stream_replicator_copied() {
    const TOTAL: usize = 100;
    const COPIED_BY_SR: usize = 60;
    let sites = sites_with_source().await;
    fill_source(&sites.east_js, 0..TOTAL).await;
    sites
        .west_js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "DST".into(),
            subjects: vec!["SRC.>".into()],
            duplicate_window: Duration::from_secs(600),
            ..Default::default()
        })
        .await
        .expect("create DST");
    // What SR left behind: copies of the source's first 60 messages, headers in SR's layout.
    let source = read_stream(&sites.east_js, "SRC").await;
    copy_as_stream_replicator(
        &sites.west_js,
        "SRC",
        "US-EAST-1 PARTITION1",
        &source[..COPIED_BY_SR],
    )
    .await;

    let yaml = copy_yaml(
        "dc1",
        &sites.east.url(),
        &sites.west.url(),
        "",
        "    start: all\n",
    );
    let mut ferry = Ferry::start(&yaml);
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "DST", TOTAL as u64, DEADLINE).await;
    let copies = payload_counts(&sites.west_js, "DST").await;
    assert_eq!(copies.len(), TOTAL, "every source message is on the target");
    assert!(copies.values().all(|&n| n == 1), "none twice");
    let metrics = ferry.metrics().await;
    assert_eq!(
        metrics.get("ferry_replicator_copied_total", &[("pipeline", "copy")]),
        Some((TOTAL - COPIED_BY_SR) as f64),
        "ferry copied only what SR had not"
    );
    assert!(
        ferry
            .log()
            .contains(&format!("after sequence {COPIED_BY_SR}")),
        "the resume position is logged"
    );
}
