//! Replicators under the faults SPEC sections 5 and 10 promise to survive: a graceful restart and
//! repeated SIGKILLs mid-copy, a lost state directory, the target down for 10 s, and operators
//! moving the position with `ferry reset` and reading it with `ferry status`.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use common::{
    assert_no_duplicate_stored, assert_same_per_subject, assert_same_set_per_subject,
    count_or_zero, ferry_command, find_pipeline, js_client, metric, publish_pipelined, read_stream,
    replicator_yaml, same_order_per_subject, try_metric, wait_for_count, wait_for_metric,
    wait_until, Ferry, SourceStamp, StoredMessage,
};
use common::{sites_with_source, Sites};

const DEADLINE: Duration = Duration::from_secs(90);
const PIPELINE: [(&str, &str); 1] = [("pipeline", "copy")];

fn config(sites: &Sites, extra: &str) -> String {
    replicator_yaml(&sites.east.url(), &sites.west.url(), "", extra)
}

/// Publishes messages `range` to SRC: ten subjects, payloads naming the index.
async fn fill(js: &Context, range: std::ops::Range<usize>) {
    publish_pipelined(
        js,
        range.map(|i| {
            let mut headers = HeaderMap::new();
            headers.insert("App-Index", i.to_string().as_str());
            (
                format!("SRC.s{}", i % 10),
                headers,
                format!("message {i:06}").into(),
            )
        }),
    )
    .await;
}

/// The target holds exactly the source: per subject the same payloads in the same order, each
/// source message once.
async fn assert_target_equals_source(sites: &Sites) -> Vec<StoredMessage> {
    let source = read_stream(&sites.east_js, "SRC").await;
    let target = read_stream(&sites.west_js, "DST").await;
    assert_same_per_subject(&source, &target);
    let sequences = assert_no_duplicate_stored(&target);
    let want: Vec<u64> = source.iter().map(|m| m.sequence).collect();
    assert_eq!(sequences, want, "every source sequence stored once");
    target
}

/// Fills SRC with `n` messages and starts a replicator slowed to 3,000 messages/s, returning once
/// a fifth is copied: a fault injected then surely lands mid-copy.
async fn start_slow_copy(sites: &Sites, n: usize) -> Ferry {
    fill(&sites.east_js, 0..n).await;
    let mut ferry = Ferry::start(&config(
        sites,
        "    max_in_flight: 256\n    limit: { rate: 3000/s }\n",
    ));
    ferry.wait_ready().await;
    wait_until("some copied", DEADLINE, || async {
        count_or_zero(&sites.west_js, "DST").await >= (n / 5) as u64
    })
    .await;
    ferry
}

/// The target holds each source message once and per subject the same messages; their order may
/// differ where a retried publish landed late (allowed under `ordering: relaxed` when counted).
async fn assert_target_holds_source_once(
    sites: &Sites,
) -> (Vec<StoredMessage>, Vec<StoredMessage>) {
    let source = read_stream(&sites.east_js, "SRC").await;
    let target = read_stream(&sites.west_js, "DST").await;
    assert_same_set_per_subject(&source, &target);
    let sequences = assert_no_duplicate_stored(&target);
    let want: Vec<u64> = source.iter().map(|m| m.sequence).collect();
    assert_eq!(sequences, want, "every source sequence stored once");
    (source, target)
}

fn run_cli(args: &[&str]) -> Output {
    ferry_command()
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run ferry {args:?}: {e}"))
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `ferry status -c FILE --json`, parsed.
fn status_json(ferry: &Ferry) -> serde_json::Value {
    let config = ferry.config_path().display().to_string();
    let output = run_cli(&["status", "-c", &config, "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {}", describe(&output)))
}

/// The `copy` replicator's `position` and `lag` in `ferry status --json`.
fn status_position(ferry: &Ferry) -> (Option<u64>, Option<u64>) {
    let json = status_json(ferry);
    let pipeline = find_pipeline(&json, "copy")
        .unwrap_or_else(|| panic!("no pipeline named copy in status: {json}"));
    (
        pipeline.get("position").and_then(|v| v.as_u64()),
        pipeline.get("lag").and_then(|v| v.as_u64()),
    )
}

fn reset(ferry: &Ferry, to: &str) -> Output {
    let config = ferry.config_path().display().to_string();
    run_cli(&["reset", "-c", &config, "copy", "--to", to])
}

async fn stop(ferry: &mut Ferry) {
    ferry.sigterm();
    let status = ferry.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "graceful stop exits 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_mid_copy_resumes_without_gap_or_duplicate() {
    const N: usize = 20_000;
    let sites = sites_with_source().await;
    fill(&sites.east_js, 0..N).await;
    // The rate limit stretches the copy over seconds, so the stop surely lands in the middle.
    let mut ferry = Ferry::start(&config(
        &sites,
        "    max_in_flight: 256\n    limit: { rate: 4000/s }\n",
    ));
    ferry.wait_ready().await;
    wait_until("a quarter copied", DEADLINE, || async {
        count_or_zero(&sites.west_js, "DST").await >= (N / 4) as u64
    })
    .await;
    stop(&mut ferry).await;
    let first_run = count_or_zero(&sites.west_js, "DST").await;
    assert!(
        first_run < N as u64,
        "the stop was meant to land mid-copy, yet all {N} were copied"
    );
    let (position, _) = status_position(&ferry);
    assert_eq!(
        position,
        Some(first_run),
        "the checkpoint saved on shutdown covers exactly what the target acknowledged"
    );

    ferry.restart();
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "DST", N as u64, DEADLINE).await;
    assert_target_equals_source(&sites).await;
    wait_for_metric(
        &ferry,
        "ferry_replicator_checkpoint_sequence",
        &PIPELINE,
        N as f64,
        DEADLINE,
    )
    .await;
    assert_eq!(
        metric(&ferry, "ferry_replicator_duplicates_total", &PIPELINE).await,
        0.0,
        "a graceful restart replays nothing"
    );
    assert_eq!(
        metric(&ferry, "ferry_replicator_copied_total", &PIPELINE).await,
        (N as u64 - first_run) as f64,
        "the second run copied exactly the rest"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_copy_five_times_then_the_target_equals_the_source() {
    const N: usize = 30_000;
    let sites = sites_with_source().await;
    fill(&sites.east_js, 0..N).await;
    let mut ferry = Ferry::start(&config(
        &sites,
        "    max_in_flight: 512\n    limit: { rate: 5000/s }\n",
    ));
    let mut progress = Vec::new();
    for round in 1..=5u64 {
        ferry.wait_ready().await;
        let at_least = round * N as u64 / 7;
        wait_until(
            &format!("kill round {round}: {at_least} copied"),
            DEADLINE,
            || async { count_or_zero(&sites.west_js, "DST").await >= at_least },
        )
        .await;
        ferry.sigkill();
        ferry.wait_exit(Duration::from_secs(10)).await;
        progress.push(count_or_zero(&sites.west_js, "DST").await);
        ferry.restart();
    }
    assert!(
        progress.iter().all(|&copied| copied < N as u64),
        "every kill was meant to land mid-copy: {progress:?}"
    );
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "DST", N as u64, DEADLINE).await;
    assert_target_equals_source(&sites).await;
    wait_for_metric(
        &ferry,
        "ferry_replicator_checkpoint_sequence",
        &PIPELINE,
        N as f64,
        DEADLINE,
    )
    .await;
    // Fenced writes resume exactly after the target's newest copy: no replay at all.
    let duplicates = metric(&ferry, "ferry_replicator_duplicates_total", &PIPELINE).await;
    let copied = metric(&ferry, "ferry_replicator_copied_total", &PIPELINE).await;
    assert!(
        copied <= (N as u64 - progress[4]) as f64,
        "the last run copied {copied}, more than was missing after the last kill ({})",
        N as u64 - progress[4]
    );
    assert_eq!(duplicates, 0.0, "the last run replayed messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_state_directory_resumes_from_the_target() {
    const N: usize = 5_000;
    let sites = sites_with_source().await;
    fill(&sites.east_js, 0..N).await;
    let mut ferry = Ferry::start(&config(&sites, "    max_in_flight: 100\n"));
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "DST", N as u64, DEADLINE).await;
    // The host dies and its disk with it.
    ferry.sigkill();
    ferry.wait_exit(Duration::from_secs(10)).await;
    std::fs::remove_dir_all(ferry.state_dir()).expect("remove the state directory");
    fill(&sites.east_js, N..2 * N).await;

    ferry.restart();
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "DST", 2 * N as u64, DEADLINE).await;
    assert_target_equals_source(&sites).await;
    wait_for_metric(
        &ferry,
        "ferry_replicator_checkpoint_sequence",
        &PIPELINE,
        (2 * N) as f64,
        DEADLINE,
    )
    .await;
    // Resumed right after the target's newest copy (N, from its Choria-SR-Source), not from the
    // start the config asks for on a first run: nothing is written twice.
    let duplicates = metric(&ferry, "ferry_replicator_duplicates_total", &PIPELINE).await;
    let copied = metric(&ferry, "ferry_replicator_copied_total", &PIPELINE).await;
    assert_eq!(duplicates, 0.0, "nothing replayed");
    assert_eq!(copied, N as f64, "copied exactly the new messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_down_for_ten_seconds_mid_copy_completes_exactly() {
    const N: usize = 20_000;
    const EXTRA: usize = 2_000;
    let mut sites = sites_with_source().await;
    let mut ferry = start_slow_copy(&sites, N).await;

    let down_at = Instant::now();
    sites.west.stop();
    // The source keeps growing meanwhile.
    fill(&sites.east_js, N..N + EXTRA).await;
    wait_until(
        "/readyz 503 naming the replicator while the target is down",
        Duration::from_secs(8),
        || async { matches!(ferry.get("/readyz").await, Ok((503, body)) if body.contains("copy")) },
    )
    .await;
    // Reading pauses: the source position stops moving.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let read_before = metric(&ferry, "ferry_replicator_source_sequence", &PIPELINE).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let read_after = metric(&ferry, "ferry_replicator_source_sequence", &PIPELINE).await;
    assert_eq!(
        read_before, read_after,
        "ferry kept reading the source while the target was down"
    );
    assert!(
        read_after < (N + EXTRA) as f64,
        "ferry read the whole source while the target was down"
    );
    assert!(
        matches!(ferry.get("/readyz").await, Ok((503, _))),
        "still not ready while the target is down"
    );
    // The lag keeps counting the backlog while reading pauses: at least everything not read
    // yet, and /status says the same as /metrics.
    let unread = (N + EXTRA) as f64 - read_after;
    let lag = metric(&ferry, "ferry_replicator_lag_messages", &PIPELINE).await;
    assert!(
        lag >= unread,
        "lag {lag} while {unread} source messages are not even read"
    );
    let (position, status_lag) = status_position(&ferry);
    let checkpoint = metric(&ferry, "ferry_replicator_checkpoint_sequence", &PIPELINE).await;
    assert_eq!(
        status_lag.map(|lag| lag as f64),
        Some(metric(&ferry, "ferry_replicator_lag_messages", &PIPELINE).await),
        "/status and /metrics disagree on the lag"
    );
    assert!(
        position.is_some_and(|position| position as f64 >= checkpoint),
        "/status position {position:?}, checkpoint {checkpoint}"
    );
    let last_error = find_pipeline(&status_json(&ferry), "copy").and_then(|pipeline| {
        pipeline
            .get("last_error")
            .and_then(|e| e.as_str())
            .map(str::to_string)
    });
    assert!(
        last_error
            .as_deref()
            .is_some_and(|e| e.contains("target unavailable") || e.contains("connection west")),
        "last_error while the target is down: {last_error:?}"
    );
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(down_at.elapsed())).await;

    sites.west.restart();
    let (_, west_js) = js_client(&sites.west.url()).await;
    sites.west_js = west_js;
    wait_for_count(&sites.west_js, "DST", (N + EXTRA) as u64, DEADLINE).await;
    // Publishes caught by the outage are retried, and the client also resends what it had
    // buffered when the link broke, so under `ordering: relaxed` a retry may land after later
    // messages of its subject: allowed, but only when counted.
    let (source, target) = assert_target_holds_source_once(&sites).await;
    if !same_order_per_subject(&source, &target) {
        assert!(
            metric(&ferry, "ferry_replicator_reordered_total", &PIPELINE).await > 0.0,
            "per-subject order changed without being counted in ferry_replicator_reordered_total"
        );
    }
    ferry.wait_ready().await;
    wait_for_metric(
        &ferry,
        "ferry_replicator_checkpoint_sequence",
        &PIPELINE,
        (N + EXTRA) as f64,
        DEADLINE,
    )
    .await;
    assert_eq!(
        metric(&ferry, "ferry_replicator_lag_messages", &PIPELINE).await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_position_and_reset_moves_it() {
    const N: usize = 1_000;
    let sites = sites_with_source().await;
    fill(&sites.east_js, 0..N).await;
    let mut ferry = Ferry::start(&config(&sites, ""));
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "DST", N as u64, DEADLINE).await;
    wait_for_metric(
        &ferry,
        "ferry_replicator_checkpoint_sequence",
        &PIPELINE,
        N as f64,
        DEADLINE,
    )
    .await;

    // Running: status asks the instance.
    wait_until(
        "status --json shows position 1000, lag 0",
        DEADLINE,
        || async { status_position(&ferry) == (Some(N as u64), Some(0)) },
    )
    .await;
    let from_monitor: serde_json::Value = match ferry.get("/status").await {
        Ok((200, body)) => serde_json::from_str(&body).expect("/status is JSON"),
        other => panic!("/status: {other:?}"),
    };
    let entry = find_pipeline(&from_monitor, "copy").expect("copy in /status");
    assert_eq!(entry["position"], N as u64);

    // Reset refuses while an instance holds the state directory.
    let refused = reset(&ferry, "sequence:400");
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));

    // Offline: status reads the store.
    stop(&mut ferry).await;
    assert_eq!(status_position(&ferry).0, Some(N as u64), "offline status");

    // Forced to sequence 400, into a fresh target.
    sites
        .west_js
        .delete_stream("DST")
        .await
        .expect("delete DST");
    let output = reset(&ferry, "sequence:400");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    ferry.restart();
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "DST", (N - 399) as u64, DEADLINE).await;
    wait_for_metric(
        &ferry,
        "ferry_replicator_checkpoint_sequence",
        &PIPELINE,
        N as f64,
        DEADLINE,
    )
    .await;
    let source = read_stream(&sites.east_js, "SRC").await;
    let target = read_stream(&sites.west_js, "DST").await;
    assert_same_per_subject(&source[399..], &target);
    assert_eq!(
        assert_no_duplicate_stored(&target),
        (400..=N as u64).collect::<Vec<_>>(),
        "copied from sequence 400 on"
    );

    // Forced to the end: what is in the source at the next start is not copied, what comes later is.
    stop(&mut ferry).await;
    fill(&sites.east_js, N..N + 100).await;
    let output = reset(&ferry, "end");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    ferry.restart();
    ferry.wait_ready().await;
    fill(&sites.east_js, N + 100..N + 150).await;
    wait_for_metric(
        &ferry,
        "ferry_replicator_checkpoint_sequence",
        &PIPELINE,
        (N + 150) as f64,
        DEADLINE,
    )
    .await;
    let target = read_stream(&sites.west_js, "DST").await;
    let sequences = assert_no_duplicate_stored(&target);
    let want: Vec<u64> = (400..=N as u64)
        .chain(N as u64 + 101..=N as u64 + 150)
        .collect();
    assert_eq!(sequences, want, "after reset --to end only new messages");

    // Forced to a time: from the first source message stored at or after it.
    stop(&mut ferry).await;
    sites
        .west_js
        .delete_stream("DST")
        .await
        .expect("delete DST");
    let source = read_stream(&sites.east_js, "SRC").await;
    let pivot = &source[N + 120];
    let when = pivot
        .time
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let output = reset(&ferry, &format!("time:{when}"));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    ferry.restart();
    ferry.wait_ready().await;
    let want: Vec<u64> = source
        .iter()
        .filter(|m| m.time >= pivot.time)
        .map(|m| m.sequence)
        .collect();
    wait_for_count(&sites.west_js, "DST", want.len() as u64, DEADLINE).await;
    let target = read_stream(&sites.west_js, "DST").await;
    assert_eq!(
        assert_no_duplicate_stored(&target),
        want,
        "copied from {when}"
    );
    assert!(
        target
            .iter()
            .all(|m| SourceStamp::of(m).sequence >= pivot.sequence),
        "nothing from before {when}"
    );
    assert!(
        try_metric(&ferry, "ferry_replicator_copied_total", &PIPELINE)
            .await
            .is_some()
    );
}

/// The source consumer deleted under a running copy (an operator cleaning up, a server losing
/// it): the session ends, a new one resumes from the checkpoint, and the copy is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_consumer_deleted_mid_copy_is_replaced_and_the_copy_is_exact() {
    const N: usize = 20_000;
    let sites = sites_with_source().await;
    let _ferry = start_slow_copy(&sites, N).await;

    let stream = sites
        .east_js
        .get_stream("SRC")
        .await
        .expect("source stream");
    let names = consumer_names(&stream).await;
    assert!(!names.is_empty(), "the replicator reads through a consumer");
    for name in &names {
        stream.delete_consumer(name).await.expect("delete consumer");
    }
    let copied_at_delete = count_or_zero(&sites.west_js, "DST").await;
    assert!(
        copied_at_delete < N as u64,
        "the copy finished before the consumer was deleted"
    );

    wait_for_count(&sites.west_js, "DST", N as u64, DEADLINE).await;
    // Listed before the checks below, which read the streams through consumers of their own.
    let left = consumer_names(&stream).await;
    assert_eq!(
        left.len(),
        1,
        "one consumer reads the source again: {left:?}"
    );
    assert!(
        !names.contains(&left[0]),
        "a new consumer replaced the deleted one"
    );
    assert_target_holds_source_once(&sites).await;
}

async fn consumer_names(stream: &async_nats::jetstream::stream::Stream) -> Vec<String> {
    use futures_util::StreamExt;
    stream
        .consumer_names()
        .filter_map(|name| async move { name.ok() })
        .collect()
        .await
}
