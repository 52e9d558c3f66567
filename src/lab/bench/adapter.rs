//! The `adapter` and `adapter-latency` scenarios.
//!
//! Throughput: N distinct Choria lifecycle events (the simulated fleet's `startup` events, in all
//! three wire formats) are published on core NATS as fast as the server takes them, kept at most
//! [`WINDOW`] ahead of what ferry has received so the subscription buffer never overflows (core NATS
//! would drop, and the run would measure loss instead of speed). ferry's rate is N over the time
//! from the first publish to the last JetStream ack its metrics report. The baseline publishes the
//! same events straight to JetStream from one client with as many acks in flight as ferry's
//! `max_in_flight`. A third run per round, `adapter-same-headers`, publishes the same events the
//! same way but as ferry stores them: on ferry's output subject, with the headers every stored
//! event carries (`Nats-Msg-Id` and the `Ferry-*` headers), so the share of the gap to
//! the bare publisher that is the contract's (the server deduplicating by `Nats-Msg-Id`) and the
//! share that is ferry's can be told apart. A fourth run per round is the peer `naive-relay`
//! ([`super::peers`]): a plain client subscribing to the adapter's subjects and publishing each
//! payload to JetStream without headers, fed by the same windowed publisher and timed the same way
//! (first publish to last ack); what it lost is the events it did not store.
//!
//! ferry's CPU per message is its process's CPU time from the first publish to the last ack, over
//! the events. The bench polls ferry's `/metrics` every [`super::jetstream::POLL`] meanwhile,
//! a cost ferry's figure includes (about a hundred scrapes a second).
//!
//! Latency: the same path at a fixed 10,000 events/s for a few seconds; every stored event is read
//! back through an ordered consumer and matched by its `Nats-Msg-Id` to the moment it was
//! published on core NATS.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::stream::Config as StreamConfig;
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::sync::oneshot;

use super::cpu::us_per_message;
use super::jetstream::{
    connect, fresh_stream, publish_pipelined, start_server, stream_messages, FerryRun, Outgoing,
    Waiter,
};
use super::peers::{self, PeerRuns, PeerRuntime, RelayJob, READY_TIMEOUT, RELAY_IN_FLIGHT};
use super::report::ScenarioResult;
use super::{median, quantile, rate, BenchOptions, Progress};
use crate::adapter::message::{EventHeaders, OutMessage};
use crate::subject::content_digest;
use ferry_sim::{Fleet, LifecycleType};
use ferry_testkit::{Metrics, ServerOptions};

/// Events per throughput run unless `--messages` says otherwise.
const DEFAULT_MESSAGES: u64 = 200_000;
/// ferry's `max_in_flight`, and the baseline's acks in flight.
const MAX_IN_FLIGHT: usize = 1024;
/// Events published ahead of what ferry received at most (its subscription buffer holds 65,536).
const WINDOW: u64 = 20_000;
/// The fixed rate of the latency run.
const LATENCY_RATE: u64 = 10_000;
/// How long the latency run lasts.
const LATENCY_SECONDS: u64 = 5;
/// Nodes of the simulated fleet the events come from.
const NODES: usize = 10_000;
/// The subjects the adapter (and the peer) subscribe to.
const SUBJECTS: &str = "choria.lifecycle.event.>";

/// Runs both adapter scenarios.
pub async fn run(
    options: &BenchOptions,
    progress: &Progress,
    peers: &PeerRuntime,
) -> anyhow::Result<Vec<ScenarioResult>> {
    let messages = options.messages_or(DEFAULT_MESSAGES);
    progress.phase(&format!(
        "adapter: starting nats-server, generating {messages} events"
    ));
    let server = start_server(
        "bench-adapter",
        ServerOptions {
            jetstream: true,
            ..ServerOptions::default()
        },
    )
    .await?;
    let (client, js) = connect(&server.url()).await?;
    let events = events(0, messages);

    let mut baseline_rates = Vec::new();
    let mut headed_rates = Vec::new();
    let mut relay = PeerRuns::default();
    let mut ferry_rates = Vec::new();
    let mut ferry_cpu = Vec::new();
    let mut peak_rss = None;
    let mut lost = 0;
    for round in 1..=options.rounds {
        let label = format!("adapter round {round}/{}", options.rounds);
        progress.phase(&format!("{label}: baseline (straight to JetStream)"));
        let stream = format!("BENCH_BASE_{round}");
        let prefix = format!("base{round}");
        fresh_stream(&js, stream_config(&stream, &prefix)).await?;
        let started = Instant::now();
        publish_pipelined(
            &js,
            events.iter().map(|event| {
                Outgoing::bare(format!("{prefix}.{}", event.subject), event.payload.clone())
            }),
            MAX_IN_FLIGHT,
            progress,
            &format!("{label}: baseline"),
            messages,
        )
        .await?;
        baseline_rates.push(rate(messages, started.elapsed()));
        let _ = js.delete_stream(&stream).await;

        progress.phase(&format!(
            "{label}: same headers (straight to JetStream, as ferry stores them)"
        ));
        let stream = format!("BENCH_HEADED_{round}");
        let prefix = format!("headed{round}");
        fresh_stream(&js, stream_config(&stream, &prefix)).await?;
        let received = now_rfc3339();
        let started = Instant::now();
        publish_pipelined(
            &js,
            events
                .iter()
                .map(|event| as_ferry_stores_it(event, &prefix, &received)),
            MAX_IN_FLIGHT,
            progress,
            &format!("{label}: same headers"),
            messages,
        )
        .await?;
        headed_rates.push(rate(messages, started.elapsed()));
        let _ = js.delete_stream(&stream).await;

        progress.phase(&format!(
            "{label}: naive-relay (a plain client: core subscribe → JetStream, no headers)"
        ));
        let run = relay_throughput(
            peers,
            &client,
            &js,
            &server.url(),
            round,
            &events,
            progress,
            &label,
        )
        .await?;
        relay.rates.push(run.rate);
        relay.cpu.extend(run.cpu_us_per_msg);
        relay.lost = relay.lost.max(run.lost);

        progress.phase(&format!("{label}: ferry (core NATS → adapter → JetStream)"));
        let stream = format!("BENCH_FERRY_{round}");
        let run = ferry_throughput(
            &client,
            &js,
            &server.url(),
            &stream,
            &events,
            progress,
            &label,
        )
        .await?;
        ferry_rates.push(run.rate);
        ferry_cpu.extend(run.cpu_us_per_msg);
        peak_rss = peak_rss.max(run.peak_rss);
        lost = lost.max(run.lost);
        let _ = js.delete_stream(&stream).await;
    }
    let baseline = median(&baseline_rates);
    let headed = median(&headed_rates);
    let ferry = median(&ferry_rates);
    let throughput = ScenarioResult {
        name: "adapter".into(),
        messages,
        baseline_msgs_per_s: baseline,
        ferry_msgs_per_s: ferry,
        ratio: ScenarioResult::ratio_of(ferry, baseline),
        peers: vec![relay.result(
            "naive-relay",
            ferry,
            format!(
                "a plain async-nats client: core subscription to {SUBJECTS}, publishing each \
                 payload to JetStream, {RELAY_IN_FLIGHT} acks in flight, no headers, no spool, \
                 no decoding"
            ),
        )],
        ferry_cpu_us_per_msg: median(&ferry_cpu),
        p50_ms: None,
        p99_ms: None,
        peak_rss_bytes: peak_rss,
        lost: Some(lost),
        copied: None,
        baseline: format!(
            "one async-nats client publishing the same events to JetStream, {MAX_IN_FLIGHT} acks in flight"
        ),
    };
    let same_headers = ScenarioResult {
        name: "adapter-same-headers".into(),
        baseline_msgs_per_s: headed,
        ratio: ScenarioResult::ratio_of(ferry, headed),
        peers: Vec::new(),
        baseline: format!(
            "the same client publishing the events as ferry stores them (its subject, Nats-Msg-Id \
             and Ferry-* headers), {MAX_IN_FLIGHT} acks in flight"
        ),
        ..throughput.clone()
    };

    let latency_messages = messages.min(LATENCY_RATE * LATENCY_SECONDS);
    progress.phase(&format!(
        "adapter-latency: {latency_messages} events at {LATENCY_RATE}/s"
    ));
    let latency = ferry_latency(&client, &js, &server.url(), latency_messages, progress).await?;
    Ok(vec![throughput, same_headers, latency])
}

/// A lifecycle event as a node publishes it.
#[derive(Clone)]
struct Event {
    subject: String,
    sender: String,
    payload: Bytes,
}

/// `event` as ferry's adapter stores it with this bench's config: on `<prefix>.<type>.<component>`
/// with the adapter's headers.
fn as_ferry_stores_it(event: &Event, prefix: &str, received: &str) -> Outgoing {
    let type_and_component = event
        .subject
        .strip_prefix("choria.lifecycle.event.")
        .unwrap_or(&event.subject);
    let msg_id = content_digest(&event.subject, &event.payload);
    let headers = EventHeaders {
        msg_id: &msg_id,
        adapter: "lifecycle",
        sender: Some(&event.sender),
        received,
        source_subject: &event.subject,
    };
    let stored = OutMessage::new(
        format!("{prefix}.{type_and_component}"),
        &headers,
        event.payload.clone(),
    );
    Outgoing {
        headers: Some(stored.header_map()),
        subject: stored.subject.into_string(),
        payload: stored.payload,
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

/// `count` distinct lifecycle events, starting at event number `first`.
fn events(first: u64, count: u64) -> Vec<Event> {
    let fleet = Fleet::new(NODES, 7);
    let mut out = Vec::with_capacity(count as usize);
    for n in first..first + count {
        let node = (n % NODES as u64) as usize;
        // A later tick per lap over the fleet, so every event has its own id and time.
        let tick = n / NODES as u64 + 1;
        let event = fleet.lifecycle(node, LifecycleType::Startup, tick);
        out.push(Event {
            subject: event.subject(),
            sender: event.sender().to_string(),
            payload: Bytes::from(event.payload()),
        });
    }
    out
}

fn stream_config(name: &str, prefix: &str) -> StreamConfig {
    StreamConfig {
        name: name.to_string(),
        subjects: vec![format!("{prefix}.>")],
        ..Default::default()
    }
}

/// The adapter config for one run: lifecycle events into `stream` under `prefix`.
fn ferry_config(url: &str, stream: &str, prefix: &str) -> String {
    format!(
        r#"name: bench
state_dir: "{{state_dir}}"
monitor: {{ listen: "{{monitor}}" }}
connections:
  local: {{ servers: ["{url}"] }}
adapters:
  - name: lifecycle
    kind: choria_lifecycle
    connection: local
    subjects: ["{SUBJECTS}"]
    # The baselines store the bytes as sent, legacy events included; so does ferry here, so the
    # rounds compare like with like whatever the default format does.
    format: as_received
    max_in_flight: {MAX_IN_FLIGHT}
    output:
      stream: {stream}
      subject: "{prefix}.{{type}}.{{component}}"
      duplicate_window: 2m
    spool: {{ max_bytes: 1GiB }}
"#
    )
}

struct ThroughputRun {
    rate: f64,
    /// CPU time per event over the run, when it could be read.
    cpu_us_per_msg: Option<f64>,
    peak_rss: Option<u64>,
    lost: u64,
}

/// Where the load generator learns how many events its reader has taken so far.
enum Intake<'a> {
    /// ferry's `ferry_adapter_received_total`.
    Ferry(&'a mut FerryRun),
    /// The peer's own count, while its task runs.
    Relay {
        received: &'a AtomicU64,
        task: &'a tokio::task::JoinHandle<anyhow::Result<Instant>>,
    },
}

impl Intake<'_> {
    async fn received(&mut self) -> anyhow::Result<u64> {
        match self {
            Intake::Ferry(ferry) => ferry.metric("ferry_adapter_received_total", &[]).await,
            Intake::Relay { received, task } => {
                let count = received.load(Ordering::Relaxed);
                if task.is_finished() {
                    bail!("naive-relay stopped after receiving {count} events");
                }
                Ok(count)
            }
        }
    }
}

/// Publishes `events` on core NATS as fast as the server takes them, but never more than
/// [`WINDOW`] ahead of what the reader has received, so its subscription buffer never overflows.
async fn publish_ahead(
    client: &async_nats::Client,
    events: &[Event],
    mut intake: Intake<'_>,
    progress: &Progress,
    label: &str,
) -> anyhow::Result<()> {
    let total = events.len() as u64;
    let mut waiter = Waiter::new(&format!("{label}: received"), total);
    let mut sent = 0u64;
    while sent < total {
        let received = intake.received().await?;
        waiter.check(received, progress)?;
        let allowed = total.min(received + WINDOW);
        if sent >= allowed {
            waiter.pause().await;
            continue;
        }
        for event in &events[sent as usize..allowed as usize] {
            client
                .publish(event.subject.clone(), event.payload.clone())
                .await
                .map_err(|e| anyhow!("core publish: {e}"))?;
        }
        sent = allowed;
        client
            .flush()
            .await
            .map_err(|e| anyhow!("core flush: {e}"))?;
    }
    Ok(())
}

async fn ferry_throughput(
    client: &async_nats::Client,
    js: &async_nats::jetstream::Context,
    url: &str,
    stream: &str,
    events: &[Event],
    progress: &Progress,
    label: &str,
) -> anyhow::Result<ThroughputRun> {
    let total = events.len() as u64;
    let prefix = stream.to_ascii_lowercase();
    let mut ferry = FerryRun::spawn("bench-adapter", &ferry_config(url, stream, &prefix))?;
    ferry.wait_ready().await?;
    let cpu_before = ferry.cpu();
    let started = Instant::now();
    publish_ahead(
        client,
        events,
        Intake::Ferry(&mut ferry),
        progress,
        &format!("{label}: ferry"),
    )
    .await?;
    let mut waiter = Waiter::new(&format!("{label}: ferry stored"), total);
    let done = loop {
        let text = ferry.scrape().await?;
        let exposition = Metrics::parse(&text).context("reading ferry's /metrics answer")?;
        let accounted: f64 = [
            "ferry_adapter_published_total",
            "ferry_adapter_duplicates_total",
            "ferry_adapter_dropped_total",
            "ferry_adapter_invalid_total",
        ]
        .iter()
        .map(|name| exposition.sum(name, &[]))
        .sum();
        if let Some(done) = waiter.check(accounted as u64, progress)? {
            break done;
        }
        waiter.pause().await;
    };
    let elapsed = done - started;
    let cpu_us_per_msg = match (cpu_before, ferry.cpu()) {
        (Some(before), Some(after)) => us_per_message(after.saturating_sub(before), total),
        _ => None,
    };
    let peak_rss = ferry.finish().await?;
    let stored = stream_messages(js, stream).await;
    Ok(ThroughputRun {
        rate: rate(total, elapsed),
        cpu_us_per_msg,
        peak_rss,
        lost: total.saturating_sub(stored),
    })
}

/// One `naive-relay` run into its own stream: the same events, the same windowed publisher, timed
/// from the first publish until the relay has every ack.
#[allow(clippy::too_many_arguments)]
async fn relay_throughput(
    peers: &PeerRuntime,
    client: &async_nats::Client,
    js: &async_nats::jetstream::Context,
    url: &str,
    round: usize,
    events: &[Event],
    progress: &Progress,
    label: &str,
) -> anyhow::Result<ThroughputRun> {
    let total = events.len() as u64;
    let stream = format!("BENCH_RELAY_{round}");
    let prefix = format!("relay{round}");
    fresh_stream(js, stream_config(&stream, &prefix)).await?;
    let received = Arc::new(AtomicU64::new(0));
    let all_sent = Arc::new(AtomicBool::new(false));
    let (ready, subscribed) = oneshot::channel();
    let task = peers.spawn(peers::naive_relay(
        RelayJob {
            url: url.to_string(),
            subjects: SUBJECTS.to_string(),
            subject_prefix: prefix,
            messages: total,
            received: received.clone(),
            all_sent: all_sent.clone(),
        },
        ready,
    ));
    match tokio::time::timeout(READY_TIMEOUT, subscribed).await {
        Ok(Ok(())) => {}
        // The relay ended before it subscribed: its error says why.
        Ok(Err(_)) => {
            peers::join("naive-relay", task).await?;
            bail!("naive-relay ended before it subscribed");
        }
        Err(_) => {
            task.abort();
            bail!("naive-relay did not subscribe within {READY_TIMEOUT:?}");
        }
    }
    let cpu_before = peers.cpu();
    let started = Instant::now();
    let intake = Intake::Relay {
        received: &received,
        task: &task,
    };
    let generated = publish_ahead(
        client,
        events,
        intake,
        progress,
        &format!("{label}: naive-relay"),
    )
    .await;
    if let Err(error) = generated {
        // When the relay stopped first, its own error says more than the generator's.
        return Err(if task.is_finished() {
            peers::join("naive-relay", task)
                .await
                .err()
                .unwrap_or(error)
        } else {
            task.abort();
            error
        });
    }
    all_sent.store(true, Ordering::Relaxed);
    let finished = peers::join("naive-relay", task).await?;
    let elapsed = finished - started;
    let cpu_us_per_msg = match (cpu_before, peers.cpu()) {
        (Some(before), Some(after)) => us_per_message(after.since(&before), total),
        _ => None,
    };
    let stored = stream_messages(js, &stream).await;
    let _ = js.delete_stream(&stream).await;
    Ok(ThroughputRun {
        rate: rate(total, elapsed),
        cpu_us_per_msg,
        peak_rss: None,
        lost: total.saturating_sub(stored),
    })
}

async fn ferry_latency(
    client: &async_nats::Client,
    js: &async_nats::jetstream::Context,
    url: &str,
    count: u64,
    progress: &Progress,
) -> anyhow::Result<ScenarioResult> {
    let stream = "BENCH_LATENCY";
    // Events the throughput runs did not use, so nothing is a duplicate of an earlier run.
    let events = events(1_000_000_000, count);
    let index: HashMap<String, usize> = events
        .iter()
        .enumerate()
        .map(|(i, event)| (content_digest(&event.subject, &event.payload), i))
        .collect();
    let mut ferry = FerryRun::spawn("bench-latency", &ferry_config(url, stream, "latency"))?;
    ferry.wait_ready().await?;
    let mut handle = js
        .get_stream(stream)
        .await
        .map_err(|e| anyhow!("stream {stream}: {e}"))?;
    let consumer = handle
        .create_consumer(OrderedConfig::default())
        .await
        .map_err(|e| anyhow!("ordered consumer on {stream}: {e}"))?;
    let mut stored = consumer
        .messages()
        .await
        .map_err(|e| anyhow!("reading {stream}: {e}"))?;
    let _ = handle.info().await;

    // Send times in nanoseconds after `base`, by event index; 0 = not sent yet.
    let cpu_before = ferry.cpu();
    let base = Instant::now();
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
    let publisher = {
        let client = client.clone();
        let sent_at = sent_at.clone();
        let events = events.clone();
        tokio::spawn(async move {
            let interval = Duration::from_secs_f64(1.0 / LATENCY_RATE as f64);
            let start = Instant::now();
            for (i, event) in events.into_iter().enumerate() {
                let due = start + interval * i as u32;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    tokio::time::sleep(wait).await;
                }
                sent_at[i].store(base.elapsed().as_nanos() as u64 + 1, Ordering::Relaxed);
                client.publish(event.subject, event.payload).await?;
                client.flush().await?;
            }
            Ok::<(), async_nats::Error>(())
        })
    };

    let mut latencies = Vec::with_capacity(count as usize);
    let deadline = Duration::from_secs(LATENCY_SECONDS * 4 + 30);
    while (latencies.len() as u64) < count {
        let next = tokio::time::timeout(deadline, stored.next()).await;
        let message = match next {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(error))) => bail!("reading {stream}: {error}"),
            Ok(None) => bail!("the consumer on {stream} ended"),
            Err(_) => bail!(
                "adapter-latency: only {} of {count} events stored within {deadline:?}",
                latencies.len()
            ),
        };
        let now = base.elapsed().as_nanos() as u64;
        let id = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get("Nats-Msg-Id"))
            .map(|id| id.as_str().to_string());
        let Some(i) = id.and_then(|id| index.get(&id).copied()) else {
            continue;
        };
        let sent = sent_at[i].load(Ordering::Relaxed);
        if sent > 0 {
            latencies.push(now.saturating_sub(sent - 1) as f64 / 1e6);
        }
        progress.update("adapter-latency: stored", latencies.len() as u64, count);
    }
    publisher
        .await
        .map_err(|e| anyhow!("latency publisher: {e}"))?
        .map_err(|e| anyhow!("latency publisher: {e}"))?;
    let cpu_us_per_msg = match (cpu_before, ferry.cpu()) {
        (Some(before), Some(after)) => us_per_message(after.saturating_sub(before), count),
        _ => None,
    };
    let peak_rss = ferry.finish().await?;
    let _ = js.delete_stream(stream).await;
    latencies.sort_by(f64::total_cmp);
    Ok(ScenarioResult {
        name: "adapter-latency".into(),
        messages: count,
        baseline_msgs_per_s: None,
        ferry_msgs_per_s: Some(LATENCY_RATE as f64),
        ratio: None,
        peers: Vec::new(),
        ferry_cpu_us_per_msg: cpu_us_per_msg,
        p50_ms: quantile(&latencies, 0.50),
        p99_ms: quantile(&latencies, 0.99),
        peak_rss_bytes: peak_rss,
        lost: Some(count - latencies.len() as u64),
        copied: None,
        baseline: format!(
            "none: a fixed {LATENCY_RATE} events/s, latency from core publish to stored (read back by an ordered consumer)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_distinct_lifecycle_events() {
        let events = events(0, 25_000);
        let digests: std::collections::HashSet<String> = events
            .iter()
            .map(|event| content_digest(&event.subject, &event.payload))
            .collect();
        assert_eq!(digests.len(), events.len(), "no two events alike");
        assert!(events
            .iter()
            .all(|event| event.subject == "choria.lifecycle.event.startup.server"));
    }

    #[test]
    fn the_same_headers_run_stores_events_as_ferry_does() {
        let event = events(0, 1).remove(0);
        let stored = as_ferry_stores_it(&event, "headed1", "2026-12-02T00:00:00Z");
        assert_eq!(stored.subject, "headed1.startup.server");
        let headers = stored.headers.expect("headers");
        let get = |name: &str| {
            crate::jetstream::wire_headers::lookup(Some(&headers), name)
                .map(|value| value.to_string())
        };
        assert_eq!(
            get("Nats-Msg-Id"),
            Some(content_digest(&event.subject, &event.payload))
        );
        assert_eq!(
            get("Nats-Expected-Stream"),
            None,
            "no stored control header"
        );
        assert_eq!(get("Ferry-Sender"), Some(event.sender.clone()));
        assert_eq!(get("Ferry-Source-Subject"), Some(event.subject.clone()));
        assert_eq!(stored.payload, event.payload);
    }

    #[test]
    fn the_config_is_valid() {
        let yaml = ferry_config("nats://127.0.0.1:1", "BENCH_FERRY_1", "bench_ferry_1")
            .replace("{state_dir}", "/tmp/x")
            .replace("{monitor}", "127.0.0.1:9");
        crate::config::parse_str(&yaml, std::path::Path::new("bench.yaml"))
            .expect("valid bench config");
    }
}
