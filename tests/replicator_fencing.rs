//! Fenced writes (`to.writes: exclusive`, SPEC sections 5 and 10): exactly once at any distance in
//! time. Each copy carries `Nats-Expected-Last-Sequence`, so no replay can land, whatever happened
//! in between: a target full for longer than its duplicate window and a SIGKILL, a state directory
//! lost after the window, a frozen leader that wakes up after a failover, a target recreated, and
//! a second writer on the target.

mod common;

use std::time::Duration;

use async_nats::jetstream::stream::{Config as StreamConfig, DiscardPolicy};
use common::{
    assert_no_duplicate_stored, assert_same_per_subject, assert_same_set_per_subject,
    count_or_zero, fill_source, metric, read_stream, replicator_yaml, sites_with_source,
    wait_for_count, wait_until, Ferry, FerryOptions, Sites,
};

const DEADLINE: Duration = Duration::from_secs(90);
const PIPELINE: [(&str, &str); 1] = [("pipeline", "copy")];

/// The target holds every source message exactly once, per subject in source order, and the
/// copies are in source order overall (a fenced copy keeps the order exactly).
async fn assert_exact_copy(sites: &Sites) {
    let source = read_stream(&sites.east_js, "SRC").await;
    let target = read_stream(&sites.west_js, "DST").await;
    assert_same_per_subject(&source, &target);
    let sequences = assert_no_duplicate_stored(&target);
    let want: Vec<u64> = source.iter().map(|m| m.sequence).collect();
    assert_eq!(sequences, want, "every source sequence once, in order");
}

/// DST on west, made by the test (so its limits are the test's), with a one-second duplicate
/// window: anything a replay relied on the window for would be stored twice after it.
async fn create_target(sites: &Sites, max_messages: i64) {
    sites
        .west_js
        .create_stream(StreamConfig {
            name: "DST".into(),
            subjects: vec!["SRC.>".into()],
            max_messages,
            discard: DiscardPolicy::New,
            duplicate_window: Duration::from_secs(1),
            ..Default::default()
        })
        .await
        .expect("create DST");
}

fn config(sites: &Sites, extra: &str) -> String {
    replicator_yaml(&sites.east.url(), &sites.west.url(), "", extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_full_past_its_duplicate_window_then_sigkill_copies_exactly() {
    const N: usize = 3_000;
    const ROOM: i64 = 1_000;
    let sites = sites_with_source().await;
    create_target(&sites, ROOM).await;
    fill_source(&sites.east_js, 0..N).await;
    let mut ferry = Ferry::start(&config(&sites, "    max_in_flight: 1024\n"));
    wait_for_count(&sites.west_js, "DST", ROOM as u64, DEADLINE).await;
    // Full for longer than the duplicate window, with publishes refused all along.
    wait_until("the full target reported", DEADLINE, || async {
        matches!(ferry.get("/readyz").await, Ok((503, _)))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    ferry.sigkill();
    ferry.wait_exit(Duration::from_secs(10)).await;

    let mut stream = sites.west_js.get_stream("DST").await.expect("DST");
    let mut raised = stream.info().await.expect("DST info").config.clone();
    raised.max_messages = -1;
    sites
        .west_js
        .update_stream(raised)
        .await
        .expect("raise the limit");
    ferry.restart();
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "DST", N as u64, DEADLINE).await;
    assert_exact_copy(&sites).await;
    assert_eq!(
        metric(&ferry, "ferry_replicator_duplicates_total", &PIPELINE).await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_directory_lost_after_the_window_replays_nothing() {
    const N: usize = 2_000;
    let sites = sites_with_source().await;
    create_target(&sites, -1).await;
    fill_source(&sites.east_js, 0..N).await;
    let mut ferry = Ferry::start(&config(&sites, ""));
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "DST", N as u64, DEADLINE).await;
    ferry.sigkill();
    ferry.wait_exit(Duration::from_secs(10)).await;
    std::fs::remove_dir_all(ferry.state_dir()).expect("remove the state directory");
    // Well past the target's duplicate window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    fill_source(&sites.east_js, N..2 * N).await;
    ferry.restart();
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "DST", 2 * N as u64, DEADLINE).await;
    assert_exact_copy(&sites).await;
    assert_eq!(
        metric(&ferry, "ferry_replicator_copied_total", &PIPELINE).await,
        N as f64
    );
}

/// Two instances under leader election, copying slowly so the leader is frozen mid-copy.
fn elected(sites: &Sites) -> String {
    config(
        sites,
        "    max_in_flight: 256\n    limit: { rate: 2000/s }\n    leader_election: { bucket: ELECT, ttl: 3s }\n",
    )
}

async fn is_leader(ferry: &Ferry) -> bool {
    common::try_metric(ferry, "ferry_replicator_is_leader", &PIPELINE)
        .await
        .is_some_and(|value| value == 1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_that_wakes_after_a_failover_writes_nothing() {
    const N: usize = 20_000;
    let sites = sites_with_source().await;
    fill_source(&sites.east_js, 0..N).await;
    let yaml = elected(&sites);
    let mut first = Ferry::start(&yaml);
    first.wait_ready().await;
    wait_until("the first instance leads", DEADLINE, || async {
        is_leader(&first).await
    })
    .await;
    let mut second = Ferry::start(&yaml);
    second.wait_ready().await;
    wait_until("a fifth copied", DEADLINE, || async {
        count_or_zero(&sites.west_js, "DST").await >= (N / 5) as u64
    })
    .await;

    // Frozen with publishes in flight: the standby takes over once the key expires.
    first.signal(libc::SIGSTOP);
    wait_until("the standby leads", DEADLINE, || async {
        is_leader(&second).await
    })
    .await;
    let at_takeover = count_or_zero(&sites.west_js, "DST").await;
    wait_until("the new leader copies", DEADLINE, || async {
        count_or_zero(&sites.west_js, "DST").await > at_takeover + 1_000
    })
    .await;
    // The old leader wakes up believing it leads, its buffered publishes go out: the server
    // refuses every one (the target's last sequence moved on).
    first.signal(libc::SIGCONT);
    wait_for_count(&sites.west_js, "DST", N as u64, DEADLINE).await;
    wait_until("the old leader steps down", DEADLINE, || async {
        !is_leader(&first).await
    })
    .await;
    assert_exact_copy(&sites).await;
    assert!(first.is_running() && second.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_target_pauses_until_recopy_is_chosen() {
    const N: usize = 1_000;
    let sites = sites_with_source().await;
    fill_source(&sites.east_js, 0..N).await;
    let state = tempfile::tempdir().expect("state dir");
    let mut ferry = Ferry::start_with(
        &config(&sites, ""),
        FerryOptions::default().state_dir(state.path()),
    );
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "DST", N as u64, DEADLINE).await;
    ferry.sigterm();
    ferry.wait_exit(Duration::from_secs(20)).await;
    drop(ferry);

    // Someone recreates the target (a restore, a rebuild).
    sites
        .west_js
        .delete_stream("DST")
        .await
        .expect("delete DST");
    let mut ferry = Ferry::start_with(
        &config(&sites, ""),
        FerryOptions::default().state_dir(state.path()),
    );
    wait_until("/readyz reports the target reset", DEADLINE, || async {
        matches!(ferry.get("/readyz").await, Ok((503, body)) if body.contains("on_target_reset"))
    })
    .await;
    assert_eq!(
        count_or_zero(&sites.west_js, "DST").await,
        0,
        "nothing copied"
    );
    assert!(ferry.log().contains("holds less than ferry wrote"));
    ferry.sigterm();
    ferry.wait_exit(Duration::from_secs(20)).await;
    drop(ferry);

    let mut ferry = Ferry::start_with(
        &config(&sites, "    on_target_reset: recopy\n"),
        FerryOptions::default().state_dir(state.path()),
    );
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "DST", N as u64, DEADLINE).await;
    assert_exact_copy(&sites).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_on_an_exclusive_target_stops_the_copy_with_a_clear_error() {
    const N: usize = 6_000;
    let sites = sites_with_source().await;
    create_target(&sites, -1).await;
    fill_source(&sites.east_js, 0..N).await;
    let state = tempfile::tempdir().expect("state dir");
    let slow = "    max_in_flight: 64\n    limit: { rate: 2000/s }\n";
    let mut ferry = Ferry::start_with(
        &config(&sites, slow),
        FerryOptions::default().state_dir(state.path()),
    );
    ferry.wait_ready().await;
    wait_until("some copied", DEADLINE, || async {
        count_or_zero(&sites.west_js, "DST").await >= 1_000
    })
    .await;
    sites
        .west_js
        .publish("SRC.intruder", "not a copy".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    wait_until("/readyz names the other writer", DEADLINE, || async {
        matches!(ferry.get("/readyz").await, Ok((503, body)) if body.contains("another writer"))
    })
    .await;
    let stopped_at = count_or_zero(&sites.west_js, "DST").await;
    assert!(stopped_at < N as u64 + 1, "the copy stopped");
    ferry.sigterm();
    ferry.wait_exit(Duration::from_secs(20)).await;
    drop(ferry);

    // The operator shares the target on purpose: the copy goes on from its checkpoint. The
    // publish the intruder displaced is copied now (after later ones of its subject, which were
    // in flight then), the copies the target already holds are not written again.
    let mut ferry = Ferry::start_with(
        &replicator_yaml(
            &sites.east.url(),
            &sites.west.url(),
            ", writes: shared",
            slow,
        ),
        FerryOptions::default().state_dir(state.path()),
    );
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "DST", N as u64 + 1, DEADLINE).await;
    let source = read_stream(&sites.east_js, "SRC").await;
    let target: Vec<_> = read_stream(&sites.west_js, "DST")
        .await
        .into_iter()
        .filter(|message| message.subject != "SRC.intruder")
        .collect();
    assert_same_set_per_subject(&source, &target);
    assert_eq!(assert_no_duplicate_stored(&target).len(), N, "each once");
}

/// `writes: shared` after a crash: the copies the target took since the last checkpoint are read
/// back and not written again, so even a restart after the duplicate window stores each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_writes_killed_three_times_past_the_window_store_each_message_once() {
    const N: usize = 12_000;
    let sites = sites_with_source().await;
    create_target(&sites, -1).await;
    fill_source(&sites.east_js, 0..N).await;
    let yaml = replicator_yaml(
        &sites.east.url(),
        &sites.west.url(),
        ", writes: shared",
        "    max_in_flight: 512\n    limit: { rate: 4000/s }\n",
    );
    let mut ferry = Ferry::start(&yaml);
    for round in 1..=3u64 {
        ferry.wait_ready().await;
        let at_least = round * N as u64 / 5;
        wait_until(
            &format!("round {round}: {at_least} copied"),
            DEADLINE,
            || async { count_or_zero(&sites.west_js, "DST").await >= at_least },
        )
        .await;
        ferry.sigkill();
        ferry.wait_exit(Duration::from_secs(10)).await;
        assert!(
            count_or_zero(&sites.west_js, "DST").await < N as u64,
            "round {round} was meant to land mid-copy"
        );
        // Past the target's one-second duplicate window: it cannot absorb a replay.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        ferry.restart();
    }
    ferry.wait_ready().await;
    wait_until("everything copied", DEADLINE, || async {
        metric(&ferry, "ferry_replicator_checkpoint_sequence", &PIPELINE).await == N as f64
    })
    .await;
    let source = read_stream(&sites.east_js, "SRC").await;
    let target = read_stream(&sites.west_js, "DST").await;
    assert_same_set_per_subject(&source, &target);
    assert_eq!(assert_no_duplicate_stored(&target).len(), N, "each once");
}

/// nats-server stores `Nats-Expected-Last-Sequence` with each fenced copy. A mirror of the target
/// must not apply it again (servers before the fix for nats-server issue 5240 did, and stalled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_of_a_fenced_target_receives_every_copy() {
    const N: usize = 3_000;
    let sites = sites_with_source().await;
    create_target(&sites, -1).await;
    fill_source(&sites.east_js, 0..N).await;
    let mut ferry = Ferry::start(&config(&sites, ""));
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "DST", N as u64, DEADLINE).await;
    sites
        .west_js
        .create_stream(StreamConfig {
            name: "DST_MIRROR".into(),
            mirror: Some(async_nats::jetstream::stream::Source {
                name: "DST".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("create the mirror");
    wait_for_count(&sites.west_js, "DST_MIRROR", N as u64, DEADLINE).await;
    let target = read_stream(&sites.west_js, "DST").await;
    assert!(
        target
            .iter()
            .all(|m| m.header("Nats-Expected-Last-Sequence").is_some()),
        "the server stores the fence with each copy (what a mirror must not apply again)"
    );
    let mirror = read_stream(&sites.west_js, "DST_MIRROR").await;
    assert_eq!(
        mirror.iter().map(|m| &m.payload).collect::<Vec<_>>(),
        target.iter().map(|m| &m.payload).collect::<Vec<_>>(),
        "the mirror holds the target's messages in order"
    );
}
