//! Leader election (SPEC section 8) with several real ferry processes on one replicator: exactly
//! one copies; a SIGKILLed leader is replaced within 2 × ttl and the target ends equal to the
//! source; a leader cut off from the target stops copying within ttl; and a new leader takes over
//! the sampling state instead of re-flooding the target.

mod common;

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use common::copy_yaml;
use common::{
    assert_no_duplicate_stored, assert_same_per_subject, count_or_zero, fill_source, js_client,
    metric, publish_pipelined, read_stream, sites_with_source, try_metric, wait_for_count,
    wait_until, Ferry, Proxy, Sites,
};
use futures_util::StreamExt;

const DEADLINE: Duration = Duration::from_secs(120);
const PIPELINE: [(&str, &str); 1] = [("pipeline", "copy")];
const TTL: Duration = Duration::from_secs(3);

/// Instance `name` of an elected replicator `copy` from east's SRC to west's DST.
fn elected_yaml(name: &str, east: &str, west: &str, extra: &str) -> String {
    copy_yaml(
        name,
        east,
        west,
        "",
        &format!("    start: all\n    leader_election: {{ bucket: ELECT, ttl: 3s }}\n{extra}"),
    )
}

async fn is_leader(ferry: &Ferry) -> Option<bool> {
    try_metric(ferry, "ferry_replicator_is_leader", &PIPELINE)
        .await
        .map(|v| v == 1.0)
}

/// Indexes of the instances that say they lead (unreachable ones count as not leading).
async fn leaders(ferries: &[Ferry]) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, ferry) in ferries.iter().enumerate() {
        if is_leader(ferry).await == Some(true) {
            out.push(i);
        }
    }
    out
}

async fn assert_target_equals_source(sites: &Sites) {
    let source = read_stream(&sites.east_js, "SRC").await;
    let target = read_stream(&sites.west_js, "DST").await;
    assert_same_per_subject(&source, &target);
    let sequences = assert_no_duplicate_stored(&target);
    let want: Vec<u64> = source.iter().map(|m| m.sequence).collect();
    assert_eq!(sequences, want, "every source sequence stored once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_three_instances_one_copies_and_a_standby_replaces_a_killed_leader() {
    const N: usize = 24_000;
    let sites = sites_with_source().await;
    fill_source(&sites.east_js, 0..N).await;
    let extra = "    max_in_flight: 256\n    limit: { rate: 3000/s }\n";
    let mut ferries: Vec<Ferry> = (1..=3)
        .map(|i| {
            Ferry::start(&elected_yaml(
                &format!("dc{i}"),
                &sites.east.url(),
                &sites.west.url(),
                extra,
            ))
        })
        .collect();
    for ferry in &mut ferries {
        // A healthy standby is ready too.
        ferry.wait_ready().await;
    }
    wait_until("exactly one leader", DEADLINE, || async {
        leaders(&ferries).await.len() == 1
    })
    .await;
    let leader = leaders(&ferries).await[0];
    wait_until("a quarter copied", DEADLINE, || async {
        count_or_zero(&sites.west_js, "DST").await >= (N / 4) as u64
    })
    .await;
    // Only the leader copies; the others stand by.
    for (i, ferry) in ferries.iter().enumerate() {
        let copied = metric(ferry, "ferry_replicator_copied_total", &PIPELINE).await;
        if i == leader {
            assert!(copied > 0.0, "the leader copies");
        } else {
            assert_eq!(copied, 0.0, "standby {i} copied");
            let status = ferry.get("/status").await.expect("status");
            assert!(status.1.contains("standby"), "{}", status.1);
        }
    }
    assert_eq!(leaders(&ferries).await, vec![leader], "still one leader");

    ferries[leader].sigkill();
    ferries[leader].wait_exit(Duration::from_secs(10)).await;
    let killed = Instant::now();
    let before = count_or_zero(&sites.west_js, "DST").await;
    assert!(before < N as u64, "the kill was meant to land mid-copy");
    wait_until(
        "a standby takes over",
        2 * TTL + Duration::from_secs(3),
        || async { leaders(&ferries).await.len() == 1 },
    )
    .await;
    let took = killed.elapsed();
    assert!(
        took <= 2 * TTL + Duration::from_millis(1500),
        "takeover took {took:?}, more than 2 × ttl"
    );
    let next = leaders(&ferries).await[0];
    assert_ne!(next, leader);

    wait_for_count(&sites.west_js, "DST", N as u64, DEADLINE).await;
    assert_target_equals_source(&sites).await;
    let copied = metric(&ferries[next], "ferry_replicator_copied_total", &PIPELINE).await;
    assert!(
        copied <= (N as u64 - before) as f64 + 256.0,
        "the new leader resumed near the old one's position (copied {copied}, {before} were there)"
    );
    for (i, ferry) in ferries.iter().enumerate() {
        if i != leader && i != next {
            assert_eq!(
                metric(ferry, "ferry_replicator_copied_total", &PIPELINE).await,
                0.0,
                "the remaining standby never copied"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_target_stops_copying_within_ttl() {
    const N: usize = 30_000;
    let sites = sites_with_source().await;
    fill_source(&sites.east_js, 0..N).await;
    let west_addr = format!("127.0.0.1:{}", sites.west.port())
        .parse()
        .expect("address");
    let link = Proxy::start(west_addr).await;
    let extra = "    max_in_flight: 256\n    limit: { rate: 2000/s }\n";
    let mut first = Ferry::start(&elected_yaml("dc1", &sites.east.url(), &link.url(), extra));
    first.wait_ready().await;
    wait_until("the first instance leads", DEADLINE, || async {
        is_leader(&first).await == Some(true)
    })
    .await;
    let mut second = Ferry::start(&elected_yaml(
        "dc2",
        &sites.east.url(),
        &sites.west.url(),
        extra,
    ));
    second.wait_ready().await;
    wait_until("some copied", DEADLINE, || async {
        count_or_zero(&sites.west_js, "DST").await >= (N / 5) as u64
    })
    .await;

    link.cut();
    let cut = Instant::now();
    wait_until(
        "the cut-off leader steps down",
        TTL + Duration::from_secs(2),
        || async { is_leader(&first).await == Some(false) },
    )
    .await;
    assert!(
        cut.elapsed() <= TTL + Duration::from_millis(500),
        "stepped down {:?} after the cut, later than ttl",
        cut.elapsed()
    );
    // It stays quiet: nothing more counted as copied by it.
    let copied_then = metric(&first, "ferry_replicator_copied_total", &PIPELINE).await;
    wait_until(
        "the other instance takes over",
        2 * TTL + Duration::from_secs(2),
        || async { is_leader(&second).await == Some(true) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        metric(&first, "ferry_replicator_copied_total", &PIPELINE).await,
        copied_then,
        "a demoted leader kept copying"
    );

    // The link comes back: what the old leader had sent before the cut arrives late and is
    // dropped as a duplicate; the copy completes exactly.
    link.up();
    wait_for_count(&sites.west_js, "DST", N as u64, DEADLINE).await;
    assert_target_equals_source(&sites).await;
    assert_eq!(is_leader(&first).await, Some(false), "no second leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_takes_over_the_sampling_state() {
    const SENDERS: usize = 500;
    let sites = sites_with_source().await;
    let (east_client, _) = js_client(&sites.east.url()).await;
    let mut advisories = east_client
        .subscribe("ferry.advisories.>")
        .await
        .expect("subscribe to advisories");
    let extra = "    limit: { sample: { key: { field: sender }, interval: 1h } }\n    advisories: { subject: \"ferry.advisories.{event}.{value}\" }\n";
    let registration = |sender: usize, round: usize| {
        (
            format!("SRC.s{}", sender % 10),
            HeaderMap::new(),
            format!(r#"{{"sender":"node{sender:04}.example.net","round":{round}}}"#).into(),
        )
    };
    let mut first = Ferry::start(&elected_yaml(
        "dc1",
        &sites.east.url(),
        &sites.west.url(),
        extra,
    ));
    first.wait_ready().await;
    wait_until("the first instance leads", DEADLINE, || async {
        is_leader(&first).await == Some(true)
    })
    .await;
    let mut second = Ferry::start(&elected_yaml(
        "dc2",
        &sites.east.url(),
        &sites.west.url(),
        extra,
    ));
    second.wait_ready().await;
    publish_pipelined(&sites.east_js, (0..SENDERS).map(|s| registration(s, 1))).await;
    wait_for_count(&sites.west_js, "DST", SENDERS as u64, DEADLINE).await;
    let mut news = 0;
    while news < SENDERS {
        let message = tokio::time::timeout(Duration::from_secs(20), advisories.next())
            .await
            .expect("an advisory")
            .expect("subscription open");
        assert!(message.subject.starts_with("ferry.advisories.new."));
        news += 1;
    }
    // The leader shares every copied sender within 10 s.
    wait_until(
        "the shared state holds every sender",
        Duration::from_secs(20),
        || async { count_or_zero(&sites.west_js, "KV_ELECT_STATE").await >= SENDERS as u64 },
    )
    .await;

    first.sigkill();
    first.wait_exit(Duration::from_secs(10)).await;
    wait_until(
        "the standby takes over",
        2 * TTL + Duration::from_secs(3),
        || async { is_leader(&second).await == Some(true) },
    )
    .await;
    // Every sender again, within the hour: the new leader samples them all out.
    publish_pipelined(&sites.east_js, (0..SENDERS).map(|s| registration(s, 2))).await;
    wait_until("the new leader examined everything", DEADLINE, || async {
        try_metric(&second, "ferry_replicator_checkpoint_sequence", &PIPELINE).await
            == Some((2 * SENDERS) as f64)
    })
    .await;
    assert_eq!(
        count_or_zero(&sites.west_js, "DST").await,
        SENDERS as u64,
        "no re-flood after the takeover"
    );
    // The takeover replays from the target's last copy − max_in_flight (here: the start), so
    // the first round is examined again too, and sampled out like the second.
    assert!(
        metric(
            &second,
            "ferry_replicator_skipped_total",
            &[("pipeline", "copy"), ("reason", "sampled")]
        )
        .await
            >= SENDERS as f64
    );
    assert_eq!(
        metric(&second, "ferry_advisories_total", &[("event", "new")]).await,
        0.0,
        "no repeated new advisories"
    );
    let extra_advisory = tokio::time::timeout(Duration::from_millis(500), advisories.next()).await;
    assert!(
        extra_advisory.is_err(),
        "no further advisory: {extra_advisory:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_election_bucket_with_another_max_age_is_refused() {
    let sites = sites_with_source().await;
    sites
        .west_js
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: "ELECT".into(),
            history: 1,
            max_age: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .expect("create ELECT");
    let ferry = Ferry::start(&elected_yaml(
        "dc1",
        &sites.east.url(),
        &sites.west.url(),
        "",
    ));
    wait_until("the replicator fails with the reason", DEADLINE, || async {
        matches!(ferry.get("/status").await, Ok((200, body))
            if body.contains("\"failed\"") && body.contains("max_age"))
    })
    .await;
    assert!(matches!(ferry.get("/readyz").await, Ok((503, _))));
    assert_eq!(is_leader(&ferry).await, Some(false));
    assert_eq!(count_or_zero(&sites.west_js, "DST").await, 0);
}
