//! The metrics an alert or a dashboard reads on their own (docs/metrics.md): each adapter's spool
//! limit beside its spool size, each replicator's source stream end beside its position, and the
//! standard process metrics. Scraped from a real `ferry run`, from its first answer on.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use common::{publish_pipelined, sites_with_source, wait_for_metric, Ferry, Metrics, Outgoing};

const DEADLINE: Duration = Duration::from_secs(30);
/// The adapter's `spool.max_bytes` in the first test: 3 MiB.
const SPOOL_MAX_BYTES: f64 = 3.0 * 1024.0 * 1024.0;
const ADAPTER: [(&str, &str); 1] = [("pipeline", "lifecycle")];
const REPLICATOR: [(&str, &str); 1] = [("pipeline", "copy")];

/// A config for instance `dc1`: an adapter `lifecycle` on east with more keys `adapter_extra`,
/// and a replicator `copy` from east's SRC to west's DST with more keys `extra` (each line
/// indented four spaces).
fn adapter_and_replicator_yaml(east: &str, west: &str, adapter_extra: &str, extra: &str) -> String {
    format!(
        r#"name: dc1
state_dir: "{{state_dir}}"
monitor: {{ listen: "{{monitor}}" }}
connections:
  east: {{ servers: ["{east}"] }}
  west: {{ servers: ["{west}"] }}
adapters:
  - name: lifecycle
    kind: choria_lifecycle
    connection: east
    subjects: ["choria.lifecycle.event.>"]
    output: {{ stream: FERRY_LIFECYCLE, subject: "ferry.lifecycle.{{type}}.{{component}}", duplicate_window: 2m }}
{adapter_extra}replicators:
  - name: copy
    from: {{ connection: east, stream: SRC }}
    to: {{ connection: west, stream: DST, create: true, duplicate_window: 10m }}
{extra}"#
    )
}

/// `count` messages on `subject`.
fn messages(subject: &str, count: usize) -> Vec<Outgoing> {
    (0..count)
        .map(|i| (subject.to_string(), HeaderMap::new(), format!("{i}").into()))
        .collect()
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

/// The one sample `name{labels}`; panics naming it when absent.
fn value(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .get(name, labels)
        .unwrap_or_else(|| panic!("{name}{labels:?} is not exported"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_limit_source_end_and_process_metrics_are_exported_from_the_start() {
    let sites = sites_with_source().await;
    // The replicator reads only SRC.copied.> (a server-side filter), so the stream's last
    // sequence runs ahead of the last sequence it read: the two gauges must differ.
    publish_pipelined(
        &sites.east_js,
        messages("SRC.copied.a", 5)
            .into_iter()
            .chain(messages("SRC.other", 2)),
    )
    .await;
    let yaml = adapter_and_replicator_yaml(
        &sites.east.url(),
        &sites.west.url(),
        "    spool: { max_bytes: 3MiB }\n",
        "    start: all\n    filter: { subjects: [\"SRC.copied.>\"] }\n",
    );
    let before_start = now_secs().floor();
    let mut ferry = Ferry::start(&yaml);
    ferry.wait_ready().await;

    let first = ferry.metrics().await;
    assert_eq!(
        value(&first, "ferry_adapter_spool_max_bytes", &ADAPTER),
        SPOOL_MAX_BYTES
    );
    // Exported before the first reading of the source (0 until then).
    value(&first, "ferry_replicator_source_last_sequence", &REPLICATOR);
    let started = value(&first, "process_start_time_seconds", &[]);
    // Computed from the kernel's boot time and the process's start in whole seconds each, and the
    // boot time drifts from the wall clock by a second or so (clock adjustments since boot): a
    // few seconds' tolerance, far below anything a restart alert or panel tells apart.
    assert!(
        started >= before_start - 5.0 && started <= now_secs() + 1.0,
        "process_start_time_seconds {started}: ferry was started at {before_start}"
    );
    assert!(value(&first, "process_resident_memory_bytes", &[]) > 1_000_000.0);
    let open_fds = value(&first, "process_open_fds", &[]);
    assert!(open_fds > 0.0, "process_open_fds {open_fds}");
    assert!(value(&first, "process_max_fds", &[]) >= open_fds);
    assert!(value(&first, "process_cpu_seconds_total", &[]) >= 0.0);
    assert_eq!(
        first.metric_type("process_cpu_seconds_total"),
        Some("counter")
    );

    // The source's end, read once a second: 7, while the replicator read through 5.
    wait_for_metric(
        &ferry,
        "ferry_replicator_source_last_sequence",
        &REPLICATOR,
        7.0,
        DEADLINE,
    )
    .await;
    wait_for_metric(
        &ferry,
        "ferry_replicator_source_sequence",
        &REPLICATOR,
        5.0,
        DEADLINE,
    )
    .await;

    // It follows the stream while nothing is copied.
    publish_pipelined(&sites.east_js, messages("SRC.other", 3)).await;
    wait_for_metric(
        &ferry,
        "ferry_replicator_source_last_sequence",
        &REPLICATOR,
        10.0,
        DEADLINE,
    )
    .await;
    let later = ferry.metrics().await;
    assert_eq!(
        value(&later, "ferry_replicator_source_sequence", &REPLICATOR),
        5.0
    );
    assert_eq!(
        value(&later, "ferry_replicator_lag_messages", &REPLICATOR),
        0.0
    );
    // The limit stays what the config says while the spool is empty.
    assert_eq!(
        value(&later, "ferry_adapter_spool_max_bytes", &ADAPTER),
        SPOOL_MAX_BYTES
    );
    assert_eq!(value(&later, "ferry_adapter_spool_bytes", &ADAPTER), 0.0);
    // A counter: it never goes down between scrapes.
    assert!(
        value(&later, "process_cpu_seconds_total", &[])
            >= value(&first, "process_cpu_seconds_total", &[])
    );
}

/// Needs the test-only fault hooks (src/fault.rs) to hold a start up.
#[cfg(feature = "fault-injection")]
mod while_starting {
    use super::common::{find_pipeline, sites_with_source, Ferry, FerryOptions};
    use super::{adapter_and_replicator_yaml, value, REPLICATOR};

    /// The monitor answers only once every pipeline is registered, so the first 200 from
    /// `/readyz` speaks for all of them and the first scrape has every pipeline's label sets. A
    /// replicator whose start is held up (`FERRY_FAULT`, test builds only) leaves the time to ask
    /// while the adapter before it already runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_first_ready_answer_and_scrape_cover_every_pipeline() {
        let sites = sites_with_source().await;
        let yaml = adapter_and_replicator_yaml(&sites.east.url(), &sites.west.url(), "", "");
        let mut ferry = Ferry::start_with(
            &yaml,
            FerryOptions::default().env("FERRY_FAULT", "copy/start:stall:3s"),
        );
        ferry.wait_ready().await;
        let (_, status) = ferry.get("/status").await.expect("GET /status");
        let status: serde_json::Value = serde_json::from_str(&status).expect("/status is JSON");
        assert!(
            find_pipeline(&status, "copy").is_some(),
            "the first ready answer came before the replicator was registered: {status}"
        );
        let first = ferry.metrics().await;
        for name in [
            "ferry_pipeline_ready",
            "ferry_replicator_is_leader",
            "ferry_replicator_source_last_sequence",
        ] {
            value(&first, name, &REPLICATOR);
        }
        assert!(
            ferry.log().contains("stalling the pipeline's start"),
            "the start was not held up, so this proves nothing:\n{}",
            ferry.log()
        );
    }
}
