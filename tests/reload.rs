//! SIGHUP reloads the config without a restart: added pipelines start, removed ones stop, changed
//! ones restart with their new entry, unchanged ones are not touched (nothing lost or copied
//! twice while traffic flows), and a file with problems changes nothing.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

const DEADLINE: Duration = Duration::from_secs(60);

/// Adapters on east's core NATS into east's JetStream, and replicators from east to west.
/// `adapters` and `replicators` are the list items.
fn config(east: &str, west: &str, adapters: &str, replicators: &str) -> String {
    format!(
        r#"name: reload-test
state_dir: "{{state_dir}}"
monitor: {{ listen: "{{monitor}}" }}
shutdown_timeout: 5s
connections:
  east: {{ servers: ["{east}"] }}
  west: {{ servers: ["{west}"] }}
adapters:
{adapters}replicators:
{replicators}"#
    )
}

fn passthrough(name: &str, subjects: &str, stream: &str, prefix: &str) -> String {
    format!(
        r#"  - name: {name}
    kind: passthrough
    connection: east
    subjects: [{subjects}]
    output: {{ stream: {stream}, subject: "{prefix}.{{subject}}" }}
"#
    )
}

fn replicator(name: &str, from: &str, to: &str, extra: &str) -> String {
    format!(
        r#"  - name: {name}
    from: {{ connection: east, stream: {from} }}
    to: {{ connection: west, stream: {to}, create: true, duplicate_window: 10m }}
    start: all
{extra}"#
    )
}

/// Core NATS messages `<subject_prefix>.<i>` with payload `<label> <i>`, a few at a time, until
/// `stop` is set, then 100 more; so they flow before, during and after a reload whatever its
/// duration. Returns how many it sent.
async fn trickle(
    client: async_nats::Client,
    subject_prefix: &'static str,
    label: &'static str,
    stop: Arc<AtomicBool>,
) -> usize {
    let mut sent = 0;
    let mut after_stop = 0;
    while after_stop < 100 {
        for _ in 0..20 {
            client
                .publish(
                    format!("{subject_prefix}.{sent}"),
                    format!("{label} {sent:05}").into(),
                )
                .await
                .expect("publish");
            sent += 1;
            if stop.load(Ordering::SeqCst) {
                after_stop += 1;
            }
        }
        client.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sent
}

/// Messages to SRC (see `fill_source`) 50 at a time until `stop` is set, then 100 more.
async fn fill_source_until(js: async_nats::jetstream::Context, stop: Arc<AtomicBool>) -> usize {
    let mut sent = 0;
    let mut after_stop = 0;
    while after_stop < 100 {
        fill_source(&js, sent..sent + 50).await;
        sent += 50;
        if stop.load(Ordering::SeqCst) {
            after_stop += 50;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sent
}

/// Waits until `stream` holds at least `want` messages.
async fn wait_for_at_least(js: &async_nats::jetstream::Context, stream: &str, want: u64) {
    wait_until(
        &format!("{want} messages in {stream}"),
        DEADLINE,
        || async { count_or_zero(js, stream).await >= want },
    )
    .await;
}

/// The reload counter for `result` and the last-reload gauge.
async fn assert_reloads(ferry: &Ferry, result: &str, count: f64, last_successful: f64) {
    let metrics = ferry.metrics().await;
    assert_eq!(
        metrics.get("ferry_config_reloads_total", &[("result", result)]),
        Some(count)
    );
    assert_eq!(
        metrics.get("ferry_config_last_reload_successful", &[]),
        Some(last_successful)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_traffic_touches_only_what_changed() {
    let sites = sites_with_source().await;
    let (east, west) = (sites.east.url(), sites.west.url());
    let unchanged_adapter = passthrough("keep", r#""keep.>""#, "KEEP", "k");
    let first = config(
        &east,
        &west,
        &format!(
            "{unchanged_adapter}{}{}",
            passthrough("gone", r#""gone.>""#, "GONE", "g"),
            passthrough("widen", r#""widen.a.>""#, "WIDEN", "w"),
        ),
        &format!(
            "{}{}",
            replicator("copy-keep", "KEEP", "KEEP_COPY", ""),
            replicator("copy-src", "SRC", "DST", ""),
        ),
    );
    let second = config(
        &east,
        &west,
        &format!(
            "{unchanged_adapter}{}{}",
            passthrough("widen", r#""widen.a.>", "widen.b.>""#, "WIDEN", "w"),
            passthrough("fresh", r#""fresh.>""#, "FRESH", "f"),
        ),
        &format!(
            "{}{}",
            replicator("copy-keep", "KEEP", "KEEP_COPY", ""),
            replicator("copy-src", "SRC", "DST", "    max_in_flight: 64\n"),
        ),
    );
    let mut ferry = Ferry::start(&first);
    ferry.wait_ready().await;

    // Traffic through the unchanged adapter (and on into the unchanged replicator) and into the
    // changed replicator's source, before, during and after the reload.
    let stop = Arc::new(AtomicBool::new(false));
    let keep_traffic = tokio::spawn(trickle(
        sites.east_client.clone(),
        "keep",
        "keep",
        stop.clone(),
    ));
    let source_traffic = tokio::spawn(fill_source_until(sites.east_js.clone(), stop.clone()));
    wait_for_at_least(&sites.east_js, "KEEP", 300).await;
    wait_for_at_least(&sites.west_js, "DST", 300).await;
    ferry.rewrite_config(&second);
    let log = ferry.reload().await;
    assert!(
        log.contains("config reloaded: 1 added (fresh), 1 removed (gone), 2 changed (copy-src, widen), 2 unchanged"),
        "the reload's summary line:\n{log}"
    );
    stop.store(true, Ordering::SeqCst);
    let keep = keep_traffic.await.expect("keep traffic");
    let source = source_traffic.await.expect("source traffic");

    // The unchanged adapter and replicator: every message exactly once.
    wait_for_count(&sites.east_js, "KEEP", keep as u64, DEADLINE).await;
    wait_for_count(&sites.west_js, "KEEP_COPY", keep as u64, DEADLINE).await;
    for stream in ["KEEP", "KEEP_COPY"] {
        let js = if stream == "KEEP" {
            &sites.east_js
        } else {
            &sites.west_js
        };
        let counts = payload_counts(js, stream).await;
        assert_eq!(counts.len(), keep, "{stream}: every message once");
        assert!(counts.values().all(|&n| n == 1), "{stream}: no duplicate");
    }
    // The changed replicator restarted from its checkpoint: every message exactly once.
    wait_for_count(&sites.west_js, "DST", source as u64, DEADLINE).await;
    let counts = payload_counts(&sites.west_js, "DST").await;
    assert_eq!(counts.len(), source, "DST: every message once");
    assert!(counts.values().all(|&n| n == 1), "DST: no duplicate");

    // The changed adapter now takes its new subjects, the added one runs, the removed one is gone.
    sites
        .east_client
        .publish("widen.b.1", "widen b".into())
        .await
        .expect("publish");
    sites
        .east_client
        .publish("fresh.1", "fresh".into())
        .await
        .expect("publish");
    sites
        .east_client
        .publish("gone.after", "gone".into())
        .await
        .expect("publish");
    sites.east_client.flush().await.expect("flush");
    wait_for_count(&sites.east_js, "WIDEN", 1, DEADLINE).await;
    wait_for_count(&sites.east_js, "FRESH", 1, DEADLINE).await;
    assert_eq!(
        count_or_zero(&sites.east_js, "GONE").await,
        0,
        "the removed adapter stopped"
    );
    let (code, status) = ferry.get("/status").await.expect("GET /status");
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status).expect("JSON");
    let names: Vec<&str> = status["pipelines"]
        .as_array()
        .expect("pipelines")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["copy-keep", "copy-src", "fresh", "keep", "widen"]);
    ferry.wait_ready().await;
    let metrics = ferry.metrics().await;
    assert_eq!(
        metrics.get("ferry_config_reloads_total", &[("result", "success")]),
        Some(1.0)
    );
    assert_eq!(
        metrics.get("ferry_config_last_reload_successful", &[]),
        Some(1.0)
    );
    assert_eq!(
        metrics.get("ferry_pipeline_ready", &[("pipeline", "gone")]),
        None,
        "a removed pipeline has no readiness series"
    );
    assert_eq!(
        metrics.sum("ferry_pipeline_restarts_total", &[]),
        0.0,
        "a reload is not a failure restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_with_problems_changes_nothing_and_says_why() {
    let nats = NatsServer::start();
    let url = nats.url();
    let good = lifecycle_yaml(None, "local", &url, "");
    let mut ferry = Ferry::start(&good);
    ferry.wait_ready().await;

    // Two problems at once, and a setting that only a restart can change.
    let broken = good
        .replace("duplicate_window: 2m", "duplicate_window: soon")
        .replace(
            "kind: choria_lifecycle",
            "kind: choria_lifecycle\n    max_in_flight: lots",
        )
        .replace("monitor: {", "shutdown_timeout: 5s\nmonitor: {");
    ferry.rewrite_config(&broken);
    let log = ferry.reload().await;
    assert!(log.contains("config reload failed"), "{log}");
    assert!(
        log.contains("adapters[0].output.duplicate_window"),
        "each problem is logged:\n{log}"
    );
    assert!(
        log.contains("adapters[0].max_in_flight"),
        "each problem is logged:\n{log}"
    );
    assert_reloads(&ferry, "failure", 1.0, 0.0).await;

    // Still running the old config: events are stored.
    let (client, js) = js_client(&url).await;
    publish_alive(&client, 0..5).await;
    wait_for_count(&js, "FERRY_LIFECYCLE", 5, DEADLINE).await;
    ferry.wait_ready().await;

    // Fixed, with the state directory moved: the pipelines keep running, the move waits for a
    // restart and says so.
    let moved = good.replace(
        "state_dir: \"{state_dir}\"",
        "state_dir: \"{state_dir}/elsewhere\"",
    );
    ferry.rewrite_config(&moved);
    let log = ferry.reload().await;
    assert!(log.contains("config reloaded"), "{log}");
    assert!(
        log.contains("`state_dir` changed; it takes effect at the next restart"),
        "{log}"
    );
    assert_reloads(&ferry, "success", 1.0, 1.0).await;
    publish_alive(&client, 5..10).await;
    wait_for_count(&js, "FERRY_LIFECYCLE", 10, DEADLINE).await;
}
