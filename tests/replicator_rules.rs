//! The replicator's operator-facing rules (SPEC section 5) against real servers: `on_reject`,
//! `on_source_reset`, `ordering: subject` through a target outage, messages the source removed
//! before they were copied (`source_gone`), a WorkQueue source refused, and first-run `start`
//! positions.

mod common;

use std::time::Duration;

use async_nats::jetstream::stream::{Config as StreamConfig, RetentionPolicy};
use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use common::{
    assert_no_duplicate_stored, assert_same_per_subject, count_or_zero, find_pipeline, js_client,
    metric, publish_pipelined, read_stream, replicator_yaml, two_sites, wait_for_count,
    wait_for_metric, wait_until, Ferry, Sites, SourceStamp,
};

const DEADLINE: Duration = Duration::from_secs(90);
const PIPELINE: [(&str, &str); 1] = [("pipeline", "copy")];

async fn create_stream(js: &Context, config: StreamConfig) {
    let name = config.name.clone();
    js.create_stream(config)
        .await
        .unwrap_or_else(|e| panic!("create stream {name}: {e}"));
}

async fn source_stream(js: &Context) {
    create_stream(
        js,
        StreamConfig {
            name: "SRC".into(),
            subjects: vec!["SRC.>".into()],
            ..Default::default()
        },
    )
    .await;
}

/// Publishes `payloads` to SRC on ten subjects, in order.
async fn fill(js: &Context, payloads: impl IntoIterator<Item = (usize, String)>) {
    publish_pipelined(
        js,
        payloads
            .into_iter()
            .map(|(i, payload)| (format!("SRC.s{}", i % 10), HeaderMap::new(), payload.into())),
    )
    .await;
}

async fn fill_range(js: &Context, range: std::ops::Range<usize>) {
    fill(js, range.map(|i| (i, format!("message {i:06}")))).await;
}

/// The `copy` pipeline in `/status`: (state, reason).
async fn pipeline_state(ferry: &Ferry, name: &str) -> Option<(String, String)> {
    let Ok((200, body)) = ferry.get("/status").await else {
        return None;
    };
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    let entry = find_pipeline(&json, name)?;
    Some((
        entry.get("state")?.as_str()?.to_string(),
        entry
            .get("reason")
            .and_then(|r| r.as_str())
            .unwrap_or_default()
            .to_string(),
    ))
}

async fn wait_for_state(ferry: &Ferry, name: &str, state: &str) -> String {
    wait_until(&format!("{name} in state {state}"), DEADLINE, || async {
        matches!(pipeline_state(ferry, name).await, Some((now, _)) if now == state)
    })
    .await;
    pipeline_state(ferry, name)
        .await
        .map(|(_, reason)| reason)
        .unwrap_or_default()
}

async fn stop(ferry: &mut Ferry) {
    ferry.sigterm();
    let status = ferry.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "graceful stop exits 0");
}

/// 100 messages, the 50th too large for a target that accepts at most 256 bytes per message.
async fn source_with_one_oversize_message(sites: &Sites) {
    source_stream(&sites.east_js).await;
    create_stream(
        &sites.west_js,
        StreamConfig {
            name: "DST".into(),
            subjects: vec!["SRC.>".into()],
            max_message_size: 256,
            ..Default::default()
        },
    )
    .await;
    fill(
        &sites.east_js,
        (0..100).map(|i| {
            let payload = if i == 49 {
                "x".repeat(1000)
            } else {
                format!("message {i:06}")
            };
            (i, payload)
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_reject_pause_holds_at_the_rejected_message_and_skip_passes_it_counted() {
    let sites = two_sites().await;
    source_with_one_oversize_message(&sites).await;
    let mut ferry = Ferry::start(&replicator_yaml(
        &sites.east.url(),
        &sites.west.url(),
        "",
        "    max_in_flight: 1\n",
    ));
    let reason = wait_for_state(&ferry, "copy", "paused").await;
    assert!(
        reason.contains("source sequence 50"),
        "the pause names the rejected source sequence: {reason:?}"
    );
    assert!(
        matches!(ferry.get("/readyz").await, Ok((503, body)) if body.contains("copy")),
        "a paused replicator is not ready"
    );
    assert_eq!(count_or_zero(&sites.west_js, "DST").await, 49);
    wait_for_metric(
        &ferry,
        "ferry_replicator_checkpoint_sequence",
        &PIPELINE,
        49.0,
        DEADLINE,
    )
    .await;
    assert_eq!(
        metric(
            &ferry,
            "ferry_replicator_skipped_total",
            &[("pipeline", "copy"), ("reason", "rejected")]
        )
        .await,
        0.0,
        "pause never skips"
    );
    stop(&mut ferry).await;

    // The operator chooses to skip it: the next start passes it, counted, and copies the rest.
    let state_dir = ferry.state_dir().to_path_buf();
    let ferry = Ferry::start_in(
        state_dir,
        &replicator_yaml(
            &sites.east.url(),
            &sites.west.url(),
            "",
            "    on_reject: skip\n",
        ),
    );
    wait_for_count(&sites.west_js, "DST", 99, DEADLINE).await;
    wait_for_metric(
        &ferry,
        "ferry_replicator_checkpoint_sequence",
        &PIPELINE,
        100.0,
        DEADLINE,
    )
    .await;
    assert_eq!(
        metric(
            &ferry,
            "ferry_replicator_skipped_total",
            &[("pipeline", "copy"), ("reason", "rejected")]
        )
        .await,
        1.0
    );
    let target = read_stream(&sites.west_js, "DST").await;
    let want: Vec<u64> = (1..=100).filter(|&s| s != 50).collect();
    assert_eq!(assert_no_duplicate_stored(&target), want);
    assert!(
        ferry.log().contains("source_sequence=50"),
        "the reject is logged with its sequence"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_source_pauses_by_default_and_restart_copies_the_new_stream() {
    let sites = two_sites().await;
    source_stream(&sites.east_js).await;
    fill_range(&sites.east_js, 0..100).await;
    let mut ferry = Ferry::start(&replicator_yaml(
        &sites.east.url(),
        &sites.west.url(),
        "",
        "",
    ));
    wait_for_count(&sites.west_js, "DST", 100, DEADLINE).await;
    stop(&mut ferry).await;

    // Someone deletes and recreates the source: sequences start again at 1.
    sites
        .east_js
        .delete_stream("SRC")
        .await
        .expect("delete SRC");
    source_stream(&sites.east_js).await;
    fill(
        &sites.east_js,
        (0..30).map(|i| (i, format!("second life {i}"))),
    )
    .await;

    ferry.restart();
    let reason = wait_for_state(&ferry, "copy", "paused").await;
    assert!(
        reason.contains("recreated") && reason.contains("ferry reset"),
        "the pause says what happened and what to do: {reason:?}"
    );
    assert_eq!(count_or_zero(&sites.west_js, "DST").await, 100);
    stop(&mut ferry).await;

    let state_dir = ferry.state_dir().to_path_buf();
    let _ferry = Ferry::start_in(
        state_dir,
        &replicator_yaml(
            &sites.east.url(),
            &sites.west.url(),
            "",
            "    on_source_reset: restart\n",
        ),
    );
    wait_for_count(&sites.west_js, "DST", 130, DEADLINE).await;
    let target = read_stream(&sites.west_js, "DST").await;
    let second: Vec<String> = target[100..]
        .iter()
        .map(|m| m.payload_str().to_string())
        .collect();
    let want: Vec<String> = (0..30).map(|i| format!("second life {i}")).collect();
    let mut got_sorted = second.clone();
    got_sorted.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(
        got_sorted, want_sorted,
        "the new stream copied from its start"
    );
    let sequences: Vec<u64> = target[100..]
        .iter()
        .map(|m| SourceStamp::of(m).sequence)
        .collect();
    assert!(sequences.iter().all(|&s| (1..=30).contains(&s)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_subject_keeps_per_subject_order_through_a_target_outage() {
    const N: usize = 6_000;
    let mut sites = two_sites().await;
    source_stream(&sites.east_js).await;
    fill_range(&sites.east_js, 0..N).await;
    let mut ferry = Ferry::start(&replicator_yaml(
        &sites.east.url(),
        &sites.west.url(),
        "",
        "    ordering: subject\n    max_in_flight: 256\n    limit: { rate: 2000/s }\n",
    ));
    ferry.wait_ready().await;
    wait_until("a part copied", DEADLINE, || async {
        count_or_zero(&sites.west_js, "DST").await >= (N / 4) as u64
    })
    .await;
    sites.west.stop();
    wait_until("the replicator notices", DEADLINE, || async {
        matches!(ferry.get("/readyz").await, Ok((503, _)))
    })
    .await;
    sites.west.restart();
    let (_, west_js) = js_client(&sites.west.url()).await;
    sites.west_js = west_js;
    wait_for_count(&sites.west_js, "DST", N as u64, DEADLINE).await;
    let source = read_stream(&sites.east_js, "SRC").await;
    let target = read_stream(&sites.west_js, "DST").await;
    // Per subject, the target holds the source's messages in the source's order.
    assert_same_per_subject(&source, &target);
    assert_no_duplicate_stored(&target);
    assert_eq!(
        metric(&ferry, "ferry_replicator_reordered_total", &PIPELINE).await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_the_source_removed_before_they_were_copied_are_counted_as_source_gone() {
    let sites = two_sites().await;
    create_stream(
        &sites.east_js,
        StreamConfig {
            name: "SRC".into(),
            subjects: vec!["SRC.>".into()],
            max_messages: 50,
            ..Default::default()
        },
    )
    .await;
    // A target without the source's limit (one ferry created would keep the source's 50), so
    // it holds everything copied.
    create_stream(
        &sites.west_js,
        StreamConfig {
            name: "DST".into(),
            subjects: vec!["SRC.>".into()],
            ..Default::default()
        },
    )
    .await;
    fill_range(&sites.east_js, 0..50).await;
    let mut ferry = Ferry::start(&replicator_yaml(
        &sites.east.url(),
        &sites.west.url(),
        "",
        "",
    ));
    wait_for_count(&sites.west_js, "DST", 50, DEADLINE).await;
    wait_for_metric(
        &ferry,
        "ferry_replicator_checkpoint_sequence",
        &PIPELINE,
        50.0,
        DEADLINE,
    )
    .await;
    stop(&mut ferry).await;
    // While ferry is away, 100 more arrive; the source keeps only the newest 50 (101..=150).
    fill_range(&sites.east_js, 50..150).await;

    ferry.restart();
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "DST", 100, DEADLINE).await;
    wait_for_metric(
        &ferry,
        "ferry_replicator_skipped_total",
        &[("pipeline", "copy"), ("reason", "source_gone")],
        50.0,
        DEADLINE,
    )
    .await;
    let target = read_stream(&sites.west_js, "DST").await;
    let want: Vec<u64> = (1..=50).chain(101..=150).collect();
    assert_eq!(assert_no_duplicate_stored(&target), want);
    assert!(
        ferry.log().contains("removed before they could be copied"),
        "the gap is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_queue_source_is_refused_with_a_clear_reason() {
    let sites = two_sites().await;
    create_stream(
        &sites.east_js,
        StreamConfig {
            name: "SRC".into(),
            subjects: vec!["SRC.>".into()],
            retention: RetentionPolicy::WorkQueue,
            ..Default::default()
        },
    )
    .await;
    fill_range(&sites.east_js, 0..10).await;
    let mut ferry = Ferry::start(&replicator_yaml(
        &sites.east.url(),
        &sites.west.url(),
        "",
        "",
    ));
    let reason = wait_for_state(&ferry, "copy", "failed").await;
    assert!(reason.contains("WorkQueue"), "reason: {reason:?}");
    assert!(matches!(ferry.get("/readyz").await, Ok((503, _))));
    assert!(
        ferry.is_running(),
        "a refused replicator does not stop ferry"
    );
    // Nothing was consumed from the work queue.
    assert_eq!(count_or_zero(&sites.east_js, "SRC").await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_start_new_and_sequence() {
    let sites = two_sites().await;
    source_stream(&sites.east_js).await;
    fill_range(&sites.east_js, 0..100).await;
    let yaml = format!(
        r#"name: dc1
state_dir: "{{state_dir}}"
monitor: {{ listen: "{{monitor}}" }}
connections:
  east: {{ servers: ["{}"] }}
  west: {{ servers: ["{}"] }}
replicators:
  - name: fresh
    from: {{ connection: east, stream: SRC }}
    to: {{ connection: west, stream: FRESH, create: true, subject_prefix: fresh }}
    start: new
  - name: from90
    from: {{ connection: east, stream: SRC }}
    to: {{ connection: west, stream: FROM90, create: true, subject_prefix: from90 }}
    start: {{ sequence: 90 }}
"#,
        sites.east.url(),
        sites.west.url()
    );
    let mut ferry = Ferry::start(&yaml);
    ferry.wait_ready().await;
    // `new` starts after what the source held at the first start.
    wait_for_metric(
        &ferry,
        "ferry_replicator_checkpoint_sequence",
        &[("pipeline", "fresh")],
        100.0,
        DEADLINE,
    )
    .await;
    fill_range(&sites.east_js, 100..120).await;
    wait_for_count(&sites.west_js, "FRESH", 20, DEADLINE).await;
    wait_for_count(&sites.west_js, "FROM90", 31, DEADLINE).await;
    let fresh = read_stream(&sites.west_js, "FRESH").await;
    assert_eq!(
        assert_no_duplicate_stored(&fresh),
        (101..=120).collect::<Vec<u64>>()
    );
    assert!(fresh.iter().all(|m| m.subject.starts_with("fresh.SRC.")));
    let from90 = read_stream(&sites.west_js, "FROM90").await;
    assert_eq!(
        assert_no_duplicate_stored(&from90),
        (90..=120).collect::<Vec<u64>>()
    );
}
