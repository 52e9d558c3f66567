//! The link between data centres under faults (a fault-injecting proxy between ferry and the
//! target): cut for 20 s mid-copy, 200 ms of latency, and flapping every 2 s for a minute. Each
//! ends with an exact reconciliation of source and target.

mod common;

use std::time::{Duration, Instant};

use common::{
    assert_no_duplicate_stored, assert_same_set_per_subject, count_or_zero, fill_source, metric,
    read_stream, replicator_yaml, same_order_per_subject, sites_with_source, wait_for_count,
    wait_until, Ferry, Proxy, Sites,
};

const DEADLINE: Duration = Duration::from_secs(180);
const PIPELINE: [(&str, &str); 1] = [("pipeline", "copy")];

/// East with SRC, west, and the link between ferry and west.
struct Setup {
    sites: Sites,
    /// Between ferry and west.
    link: Proxy,
}

async fn setup() -> Setup {
    let sites = sites_with_source().await;
    let west_addr = format!("127.0.0.1:{}", sites.west.port())
        .parse()
        .expect("address");
    let link = Proxy::start(west_addr).await;
    Setup { sites, link }
}

fn start(setup: &Setup, extra: &str) -> Ferry {
    Ferry::start(&replicator_yaml(
        &setup.sites.east.url(),
        &setup.link.url(),
        "",
        extra,
    ))
}

/// Every source message once in the target; per-subject order kept, or its changes counted.
async fn reconcile(sites: &Sites, ferry: &Ferry) {
    let source = read_stream(&sites.east_js, "SRC").await;
    let target = read_stream(&sites.west_js, "DST").await;
    assert_same_set_per_subject(&source, &target);
    let sequences = assert_no_duplicate_stored(&target);
    let want: Vec<u64> = source.iter().map(|m| m.sequence).collect();
    assert_eq!(sequences, want, "every source sequence stored once");
    if !same_order_per_subject(&source, &target) {
        assert!(
            metric(ferry, "ferry_replicator_reordered_total", &PIPELINE).await > 0.0,
            "per-subject order changed without being counted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_cut_for_twenty_seconds_mid_copy() {
    const N: usize = 20_000;
    let setup = setup().await;
    let sites = &setup.sites;
    fill_source(&sites.east_js, 0..N).await;
    let mut ferry = start(
        &setup,
        "    max_in_flight: 256\n    limit: { rate: 3000/s }\n",
    );
    ferry.wait_ready().await;
    wait_until("a part copied", DEADLINE, || async {
        count_or_zero(&sites.west_js, "DST").await >= (N / 4) as u64
    })
    .await;
    setup.link.cut();
    let cut = Instant::now();
    wait_until(
        "not ready while cut off",
        Duration::from_secs(15),
        || async { matches!(ferry.get("/readyz").await, Ok((503, _))) },
    )
    .await;
    let during = count_or_zero(&sites.west_js, "DST").await;
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(cut.elapsed())).await;
    assert_eq!(
        count_or_zero(&sites.west_js, "DST").await,
        during,
        "nothing reached the target through a cut link"
    );
    setup.link.up();
    wait_for_count(&sites.west_js, "DST", N as u64, DEADLINE).await;
    ferry.wait_ready().await;
    reconcile(sites, &ferry).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_ms_link_is_pipelined() {
    const N: usize = 5_000;
    const ROUND_TRIP: Duration = Duration::from_millis(200);
    let setup = setup().await;
    let sites = &setup.sites;
    fill_source(&sites.east_js, 0..N).await;
    setup.link.delay(ROUND_TRIP / 2);
    let started = Instant::now();
    let mut ferry = start(&setup, "    max_in_flight: 1024\n");
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "DST", N as u64, DEADLINE).await;
    let elapsed = started.elapsed();
    // One message per round trip would take N × 200 ms = 1,000 s. Pipelining must do far better:
    // at least 50 messages per round trip (a very loose bound; it is usually hundreds).
    let per_round_trip = N as f64 / (elapsed.as_secs_f64() / ROUND_TRIP.as_secs_f64());
    assert!(
        per_round_trip >= 50.0,
        "{N} messages over a 200 ms link took {elapsed:?}: {per_round_trip:.1} per round trip"
    );
    reconcile(sites, &ferry).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_flapping_every_two_seconds_for_a_minute() {
    const N: usize = 30_000;
    let setup = setup().await;
    let sites = &setup.sites;
    fill_source(&sites.east_js, 0..N).await;
    // Slow enough that the copy spans the whole minute of flapping.
    let mut ferry = start(
        &setup,
        "    max_in_flight: 256\n    limit: { rate: 1000/s }\n",
    );
    ferry.wait_ready().await;
    let flapping = Instant::now();
    let mut flaps = 0;
    while flapping.elapsed() < Duration::from_secs(60) {
        setup.link.down();
        tokio::time::sleep(Duration::from_secs(2)).await;
        setup.link.up();
        tokio::time::sleep(Duration::from_secs(2)).await;
        flaps += 1;
    }
    assert!(flaps >= 14);
    let copied_while_flapping = count_or_zero(&sites.west_js, "DST").await;
    assert!(
        copied_while_flapping > 0,
        "something got through in the up phases"
    );
    wait_for_count(&sites.west_js, "DST", N as u64, DEADLINE).await;
    ferry.wait_ready().await;
    reconcile(sites, &ferry).await;
    assert!(
        metric(&ferry, "ferry_reconnects_total", &[("connection", "west")]).await >= 5.0,
        "the flapping link forced reconnects"
    );
}
