//! The Prometheus metrics of SPEC section 9, in one registry per process.
//!
//! Every family is created and registered up front by [`Metrics::new`], so the set of names is fixed
//! and checked by a unit test rather than scattered over the code that increments them. Pipeline
//! metrics carry the label `pipeline`, connection metrics the label `connection`; label values are
//! config names, which SPEC section 3 restricts to `A-Z a-z 0-9 _ -`, so they need no escaping.
//!
//! A private [`Registry`] (not the crate-global default one) keeps parallel tests and embedded uses
//! (the demo, the benchmarks) from seeing each other's counters.
//!
//! Families marked "extension" go beyond the list in SPEC section 9; they explain numbers the
//! contract's families leave open (where a received event went, how deep the in-memory queue is).

#[cfg(target_os = "linux")]
use prometheus::process_collector::ProcessCollector;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets for the adapter's publish → ack latency: 0.1 ms (a local server) to 10 s (a stalled
/// cluster), roughly 1-2.5-5 per decade so percentiles stay readable across the whole range.
const PUBLISH_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Buckets for the replicator's source timestamp → target ack delay. It includes time spent queued
/// in the source stream, so besides the millisecond range of a healthy link it must show backlogs
/// of minutes to an hour after an outage.
const COPY_DELAY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0,
];

/// The label of pipeline metrics.
const PIPELINE: &[&str] = &["pipeline"];
/// The labels of pipeline metrics broken down by a reason.
const PIPELINE_REASON: &[&str] = &["pipeline", "reason"];
/// The label of connection metrics.
const CONNECTION: &[&str] = &["connection"];

/// Every metric family ferry exports, registered in [`Metrics::registry`].
///
/// Shared as `Arc<Metrics>`: the families are cheap to clone handles, and label lookups
/// (`with_label_values`) are best done once per pipeline and kept.
pub struct Metrics {
    /// The registry holding every family below; other components may register more collectors.
    pub registry: Registry,

    /// `ferry_adapter_received_total{pipeline}`: messages taken from the core NATS subscription.
    pub adapter_received: IntCounterVec,
    /// `ferry_adapter_published_total{pipeline}`: events stored by JetStream (acked, not duplicate).
    pub adapter_published: IntCounterVec,
    /// `ferry_adapter_duplicates_total{pipeline}`: acks marked duplicate by the stream.
    pub adapter_duplicates: IntCounterVec,
    /// `ferry_adapter_invalid_total{pipeline,reason}`: events the decoder refused.
    pub adapter_invalid: IntCounterVec,
    /// `ferry_adapter_dropped_total{pipeline,reason}`: events lost on purpose (e.g. `spool_full`).
    pub adapter_dropped: IntCounterVec,
    /// `ferry_adapter_filtered_total{pipeline}` (extension): events removed by `filter`.
    pub adapter_filtered: IntCounterVec,
    /// `ferry_adapter_spooled_total{pipeline}` (extension): events written to the disk spool.
    pub adapter_spooled: IntCounterVec,
    /// `ferry_adapter_spool_messages{pipeline}`: events waiting in the disk spool.
    pub adapter_spool_messages: IntGaugeVec,
    /// `ferry_adapter_spool_bytes{pipeline}`: bytes waiting in the disk spool.
    pub adapter_spool_bytes: IntGaugeVec,
    /// `ferry_adapter_spool_max_bytes{pipeline}` (extension): the configured `spool.max_bytes`, so
    /// an alert can divide by it instead of repeating every adapter's limit.
    pub adapter_spool_max_bytes: IntGaugeVec,
    /// `ferry_adapter_publish_seconds{pipeline}`: JetStream publish → ack latency.
    pub adapter_publish_seconds: HistogramVec,
    /// `ferry_adapter_queue_messages{pipeline}` (extension): events in the bounded in-memory queue.
    pub adapter_queue_depth: IntGaugeVec,

    /// `ferry_replicator_copied_total{pipeline}`: messages acked by the target.
    pub replicator_copied: IntCounterVec,
    /// `ferry_replicator_copied_bytes_total{pipeline}`: payload bytes acked by the target.
    pub replicator_copied_bytes: IntCounterVec,
    /// `ferry_replicator_skipped_total{pipeline,reason}`: filtered, sampled, age, rejected,
    /// source_gone, loop.
    pub replicator_skipped: IntCounterVec,
    /// `ferry_replicator_duplicates_total{pipeline}`: target acks marked duplicate.
    pub replicator_duplicates: IntCounterVec,
    /// `ferry_replicator_reordered_total{pipeline}`: retried publishes that may land out of order.
    pub replicator_reordered: IntCounterVec,
    /// `ferry_replicator_source_sequence{pipeline}`: last source sequence read.
    pub replicator_source_sequence: IntGaugeVec,
    /// `ferry_replicator_source_last_sequence{pipeline}` (extension): the source stream's last
    /// sequence, as the lag watcher last read it.
    pub replicator_source_last_sequence: IntGaugeVec,
    /// `ferry_replicator_checkpoint_sequence{pipeline}`: last checkpointed source sequence.
    pub replicator_checkpoint_sequence: IntGaugeVec,
    /// `ferry_replicator_lag_messages{pipeline}`: source messages not yet copied.
    pub replicator_lag: IntGaugeVec,
    /// `ferry_replicator_is_leader{pipeline}`: 1 while this instance copies, 0 as a standby.
    pub replicator_is_leader: IntGaugeVec,
    /// `ferry_replicator_copy_delay_seconds{pipeline}`: source timestamp → target ack.
    pub replicator_copy_delay: HistogramVec,
    /// `ferry_advisories_total{pipeline,event}`: sampling advisories published.
    pub advisories: IntCounterVec,

    /// `ferry_pipeline_restarts_total{pipeline}`: restarts after a task of the pipeline failed.
    pub pipeline_restarts: IntCounterVec,
    /// `ferry_pipeline_ready{pipeline}` (extension): 1 while the pipeline counts as ready for
    /// `/readyz`, else 0; set from the status board at every scrape, so the two always agree.
    pub pipeline_ready: IntGaugeVec,
    /// `ferry_config_reloads_total{result}` (extension): reloads on SIGHUP, `success` or
    /// `failure` (the file had problems; the running config was kept).
    pub config_reloads: IntCounterVec,
    /// `ferry_config_last_reload_successful` (extension): 0 after a failed reload until one
    /// succeeds, else 1.
    pub config_last_reload_successful: IntGaugeVec,

    /// `ferry_connection_state{connection}`: 1 while connected, 0 otherwise.
    pub connection_state: IntGaugeVec,
    /// `ferry_reconnects_total{connection}`: reconnections after a loss.
    pub reconnects: IntCounterVec,
    /// `ferry_slow_consumer_total{connection}`: slow-consumer events reported by the client.
    pub slow_consumers: IntCounterVec,
    /// `ferry_connection_errors_total{connection}` (extension): errors reported by the client.
    pub connection_errors: IntCounterVec,

    /// `ferry_monitor_unanswered_total{reason}` (extension): monitor connections closed without an
    /// answer (`evicted`, `head_timeout`, `answer_timeout`).
    pub monitor_unanswered: IntCounterVec,

    /// `ferry_build_info{version,commit}`: always 1; the labels say which release and commit run.
    pub build_info: IntGaugeVec,
}

impl Metrics {
    /// Creates and registers every family of SPEC section 9 plus ferry's extensions.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let r = &registry;
        let metrics = Metrics {
            adapter_received: counter(
                r,
                "ferry_adapter_received_total",
                "Messages an adapter took from its core NATS subscription.",
                PIPELINE,
            ),
            adapter_published: counter(
                r,
                "ferry_adapter_published_total",
                "Events an adapter stored in JetStream (acked, not duplicates).",
                PIPELINE,
            ),
            adapter_duplicates: counter(
                r,
                "ferry_adapter_duplicates_total",
                "Adapter publishes the stream acked as duplicates of an event already stored.",
                PIPELINE,
            ),
            adapter_invalid: counter(
                r,
                "ferry_adapter_invalid_total",
                "Events an adapter could not decode, by reason.",
                PIPELINE_REASON,
            ),
            adapter_dropped: counter(
                r,
                "ferry_adapter_dropped_total",
                "Events an adapter dropped without storing them, by reason.",
                PIPELINE_REASON,
            ),
            adapter_filtered: counter(
                r,
                "ferry_adapter_filtered_total",
                "Events an adapter's filter removed.",
                PIPELINE,
            ),
            adapter_spooled: counter(
                r,
                "ferry_adapter_spooled_total",
                "Events an adapter wrote to its disk spool while JetStream could not take them.",
                PIPELINE,
            ),
            adapter_spool_messages: gauge(
                r,
                "ferry_adapter_spool_messages",
                "Events waiting in an adapter's disk spool.",
                PIPELINE,
            ),
            adapter_spool_bytes: gauge(
                r,
                "ferry_adapter_spool_bytes",
                "Bytes waiting in an adapter's disk spool.",
                PIPELINE,
            ),
            adapter_spool_max_bytes: gauge(
                r,
                "ferry_adapter_spool_max_bytes",
                "An adapter's configured spool limit (spool.max_bytes) in bytes.",
                PIPELINE,
            ),
            adapter_publish_seconds: histogram(
                r,
                "ferry_adapter_publish_seconds",
                "Time from an adapter's JetStream publish to its ack.",
                PUBLISH_BUCKETS,
            ),
            adapter_queue_depth: gauge(
                r,
                "ferry_adapter_queue_messages",
                "Events in an adapter's bounded in-memory queue.",
                PIPELINE,
            ),
            replicator_copied: counter(
                r,
                "ferry_replicator_copied_total",
                "Messages a replicator copied (acked by the target).",
                PIPELINE,
            ),
            replicator_copied_bytes: counter(
                r,
                "ferry_replicator_copied_bytes_total",
                "Payload bytes a replicator copied (acked by the target).",
                PIPELINE,
            ),
            replicator_skipped: counter(
                r,
                "ferry_replicator_skipped_total",
                "Source messages a replicator did not copy, by reason \
                 (filtered, sampled, age, rejected, source_gone, loop).",
                PIPELINE_REASON,
            ),
            replicator_duplicates: counter(
                r,
                "ferry_replicator_duplicates_total",
                "Replicator publishes the target acked as duplicates (replays after a restart).",
                PIPELINE,
            ),
            replicator_reordered: counter(
                r,
                "ferry_replicator_reordered_total",
                "Replicator publishes retried after later messages, so possibly out of order.",
                PIPELINE,
            ),
            replicator_source_sequence: gauge(
                r,
                "ferry_replicator_source_sequence",
                "Last source stream sequence a replicator read.",
                PIPELINE,
            ),
            replicator_source_last_sequence: gauge(
                r,
                "ferry_replicator_source_last_sequence",
                "Last sequence of a replicator's source stream, read once a second while it copies.",
                PIPELINE,
            ),
            replicator_checkpoint_sequence: gauge(
                r,
                "ferry_replicator_checkpoint_sequence",
                "Source stream sequence up to which a replicator's copies are acked and recorded.",
                PIPELINE,
            ),
            replicator_lag: gauge(
                r,
                "ferry_replicator_lag_messages",
                "Source messages a replicator has not copied yet.",
                PIPELINE,
            ),
            replicator_is_leader: gauge(
                r,
                "ferry_replicator_is_leader",
                "1 while this instance is the replicator's leader (or runs without election), \
                 0 as a standby.",
                PIPELINE,
            ),
            replicator_copy_delay: histogram(
                r,
                "ferry_replicator_copy_delay_seconds",
                "Time from a message's source stream timestamp to the target's ack of its copy.",
                COPY_DELAY_BUCKETS,
            ),
            advisories: counter(
                r,
                "ferry_advisories_total",
                "Sampling advisories a replicator published, by event (new, timeout, recover, expire).",
                &["pipeline", "event"],
            ),
            pipeline_restarts: counter(
                r,
                "ferry_pipeline_restarts_total",
                "Restarts of a pipeline by its supervisor after one of its tasks panicked or ended early.",
                PIPELINE,
            ),
            pipeline_ready: gauge(
                r,
                "ferry_pipeline_ready",
                "1 while the pipeline counts as ready for /readyz (running, or a healthy standby), else 0.",
                PIPELINE,
            ),
            config_reloads: counter(
                r,
                "ferry_config_reloads_total",
                "Config reloads on SIGHUP by result: success, or failure (the running config was kept).",
                &["result"],
            ),
            config_last_reload_successful: gauge(
                r,
                "ferry_config_last_reload_successful",
                "0 after a reload whose file had problems (the running config was kept), else 1.",
                &[],
            ),
            connection_state: gauge(
                r,
                "ferry_connection_state",
                "1 while the named NATS connection is up, 0 while it is down.",
                CONNECTION,
            ),
            reconnects: counter(
                r,
                "ferry_reconnects_total",
                "Reconnections of the named NATS connection after losing the server.",
                CONNECTION,
            ),
            slow_consumers: counter(
                r,
                "ferry_slow_consumer_total",
                "Slow-consumer events on the named NATS connection (messages the client dropped).",
                CONNECTION,
            ),
            connection_errors: counter(
                r,
                "ferry_connection_errors_total",
                "Errors the NATS client reported on the named connection.",
                CONNECTION,
            ),
            monitor_unanswered: counter(
                r,
                "ferry_monitor_unanswered_total",
                "Connections the HTTP monitor closed without an answer, by reason \
                 (evicted, head_timeout, answer_timeout).",
                &["reason"],
            ),
            build_info: gauge(
                r,
                "ferry_build_info",
                "Always 1; the version and commit labels name the running ferry build.",
                &["version", "commit"],
            ),
            registry,
        };
        metrics
            .build_info
            .with_label_values(&[crate::build_info::VERSION, crate::build_info::COMMIT])
            .set(1);
        for result in ["success", "failure"] {
            metrics.config_reloads.with_label_values(&[result]);
        }
        metrics
            .config_last_reload_successful
            .with_label_values::<&str>(&[])
            .set(1);
        register_process_metrics(&metrics.registry);
        metrics
    }

    /// Every registered family in the Prometheus text exposition format (version 0.0.4).
    ///
    /// Encoding only fails on label values that are not UTF-8, which `&str` labels cannot produce;
    /// should it happen anyway, the scrape gets an empty page and a log line instead of a panic.
    pub fn encode(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot encode metrics");
                String::new()
            })
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Registers the standard process metrics (`process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, `process_start_time_seconds`, `process_open_fds`,
/// `process_max_fds`, ...), read from `/proc/self` at each scrape by the prometheus crate's
/// collector. They exist on Linux only, where `/proc` does; docs/design.md says why the crate's
/// collector rather than a reader of ferry's own.
fn register_process_metrics(registry: &Registry) {
    #[cfg(target_os = "linux")]
    registry
        .register(Box::new(ProcessCollector::for_self()))
        .expect("the process metrics' names are unique in the registry");
    #[cfg(not(target_os = "linux"))]
    let _ = registry;
}

/// Registers `collector`. The names, help texts and labels are constants of this file, so a failure
/// is a programming error that the unit tests catch, never a runtime condition.
fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("metric families in metrics.rs have unique, valid names");
    collector
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels)
        .expect("counter names and labels in metrics.rs are valid");
    register(registry, vec)
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let vec = IntGaugeVec::new(Opts::new(name, help), labels)
        .expect("gauge names and labels in metrics.rs are valid");
    register(registry, vec)
}

/// A histogram labelled by `pipeline`.
fn histogram(registry: &Registry, name: &str, help: &str, buckets: &[f64]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let vec = HistogramVec::new(opts, PIPELINE)
        .expect("histogram names, labels and buckets in metrics.rs are valid");
    register(registry, vec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Touches one label set of every family so that all of them appear in the output.
    fn touch_all(m: &Metrics) {
        let p = &["p1"];
        let pr = &["p1", "spool_full"];
        let c = &["east"];
        for vec in [
            &m.adapter_received,
            &m.adapter_published,
            &m.adapter_duplicates,
            &m.adapter_filtered,
            &m.adapter_spooled,
            &m.replicator_copied,
            &m.replicator_copied_bytes,
            &m.replicator_duplicates,
            &m.replicator_reordered,
        ] {
            vec.with_label_values(p).inc();
        }
        for vec in [
            &m.adapter_invalid,
            &m.adapter_dropped,
            &m.replicator_skipped,
        ] {
            vec.with_label_values(pr).inc();
        }
        m.advisories.with_label_values(&["p1", "new"]).inc();
        for vec in [
            &m.adapter_spool_messages,
            &m.adapter_spool_bytes,
            &m.adapter_spool_max_bytes,
            &m.adapter_queue_depth,
            &m.replicator_source_sequence,
            &m.replicator_source_last_sequence,
            &m.replicator_checkpoint_sequence,
            &m.replicator_lag,
            &m.replicator_is_leader,
        ] {
            vec.with_label_values(p).set(3);
        }
        m.adapter_publish_seconds
            .with_label_values(p)
            .observe(0.002);
        m.replicator_copy_delay.with_label_values(p).observe(0.2);
        m.connection_state.with_label_values(c).set(1);
        for vec in [&m.reconnects, &m.slow_consumers, &m.connection_errors] {
            vec.with_label_values(c).inc();
        }
        m.monitor_unanswered.with_label_values(&["evicted"]).inc();
    }

    #[test]
    fn every_family_is_encoded_with_help() {
        let metrics = Metrics::new();
        touch_all(&metrics);
        let text = metrics.encode();
        let mut names = vec![
            "ferry_adapter_received_total",
            "ferry_adapter_published_total",
            "ferry_adapter_duplicates_total",
            "ferry_adapter_invalid_total",
            "ferry_adapter_dropped_total",
            "ferry_adapter_filtered_total",
            "ferry_adapter_spooled_total",
            "ferry_adapter_spool_messages",
            "ferry_adapter_spool_bytes",
            "ferry_adapter_spool_max_bytes",
            "ferry_adapter_publish_seconds",
            "ferry_adapter_queue_messages",
            "ferry_replicator_copied_total",
            "ferry_replicator_copied_bytes_total",
            "ferry_replicator_skipped_total",
            "ferry_replicator_duplicates_total",
            "ferry_replicator_reordered_total",
            "ferry_replicator_source_sequence",
            "ferry_replicator_source_last_sequence",
            "ferry_replicator_checkpoint_sequence",
            "ferry_replicator_lag_messages",
            "ferry_replicator_is_leader",
            "ferry_replicator_copy_delay_seconds",
            "ferry_advisories_total",
            "ferry_connection_state",
            "ferry_reconnects_total",
            "ferry_slow_consumer_total",
            "ferry_connection_errors_total",
            "ferry_monitor_unanswered_total",
            "ferry_build_info",
            "ferry_config_reloads_total",
            "ferry_config_last_reload_successful",
        ];
        if cfg!(target_os = "linux") {
            names.extend(PROCESS_FAMILIES);
        }
        for &name in &names {
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "no help for {name}"
            );
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "no type for {name}"
            );
        }
        let families = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(families, names.len(), "unexpected families in:\n{text}");
    }

    #[test]
    fn labels_and_values_are_as_specified() {
        let metrics = Metrics::new();
        touch_all(&metrics);
        let text = metrics.encode();
        let (version, commit) = (env!("CARGO_PKG_VERSION"), env!("FERRY_BUILD_COMMIT"));
        assert!(text.contains(&format!(
            "ferry_build_info{{commit=\"{commit}\",version=\"{version}\"}} 1"
        )));
        assert!(
            text.contains("ferry_adapter_dropped_total{pipeline=\"p1\",reason=\"spool_full\"} 1")
        );
        assert!(text.contains("ferry_advisories_total{event=\"new\",pipeline=\"p1\"} 1"));
        assert!(text.contains("ferry_connection_state{connection=\"east\"} 1"));
        assert!(
            text.contains("ferry_adapter_publish_seconds_bucket{pipeline=\"p1\",le=\"0.0001\"} 0")
        );
        assert!(text.contains("ferry_adapter_publish_seconds_bucket{pipeline=\"p1\",le=\"10\"} 1"));
        assert!(text.contains("ferry_replicator_copy_delay_seconds_count{pipeline=\"p1\"} 1"));
    }

    #[test]
    fn instances_are_independent() {
        let a = Metrics::default();
        let b = Metrics::default();
        a.adapter_received.with_label_values(&["x"]).inc();
        assert!(!b.encode().contains("ferry_adapter_received_total"));
        // Only build_info and the process metrics are present before any label set is touched.
        assert!(b.encode().contains("ferry_build_info"));
    }

    /// The families the process collector adds (Linux only).
    const PROCESS_FAMILIES: [&str; 7] = [
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_virtual_memory_bytes",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_threads",
    ];

    /// The value of the unlabelled sample `name` in `text`.
    #[cfg(target_os = "linux")]
    fn value(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_describe_this_process_from_the_start() {
        let text = Metrics::new().encode();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = value(&text, "process_start_time_seconds");
        // Whole seconds, and the test process started before this test: not in the future, and
        // not before the test run began (a day is far more than any run takes).
        assert!(
            started <= now + 1.0 && started > now - 86_400.0,
            "{started} vs {now}"
        );
        assert!(value(&text, "process_resident_memory_bytes") > 1_000_000.0);
        let open = value(&text, "process_open_fds");
        assert!(open >= 3.0, "{open}");
        assert!(value(&text, "process_max_fds") >= open);
        assert!(value(&text, "process_cpu_seconds_total") >= 0.0);
    }
}
