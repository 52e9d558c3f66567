//! The `replicate` scenario: a pre-filled source stream on server A copied to server B.
//!
//! A and B are separate JetStream domains (`a`, `b`) joined by a leafnode (B connects to A), the
//! way two data centres are joined when the servers replicate by themselves. The baseline is that
//! server-side copy: a mirror on B of the stream on A, timed from its creation until it holds every
//! message. ferry connects to both servers and copies the same stream into a new stream on B, timed
//! from the start of its process until the target holds every message, so ferry's start-up counts
//! against it.
//!
//! A third run per round, `replicate-same-headers`, publishes the same messages to B from one plain
//! client with the headers every exclusive copy carries (`Nats-Expected-Last-Sequence`,
//! `Choria-SR-Source`, `Ferry-Origin`), without reading A at all: what B stores per second under
//! the copy contract, so the share of the gap to the mirror that is the contract's (B checking
//! the fence and storing the headers) and the share that is ferry's can be told apart.
//!
//! A fourth run per round is the peer `naive-copy` ([`super::peers`]): a plain client pulling from
//! A and publishing each message's subject and payload to B, no headers, timed from its first
//! connection until every publish is acknowledged; its copy is counted on B afterwards, as ferry's.
//!
//! ferry's target subjects (and the peer's) carry a prefix: A's stream listens on `bench.src.>`,
//! and because the leafnode carries subscription interest, a copy written to B on the very same
//! subjects would also be stored by A's stream.

use std::time::Instant;

use anyhow::anyhow;
use async_nats::jetstream::stream::{Config as StreamConfig, External, Source};
use bytes::Bytes;

use super::cpu::us_per_message;
use super::jetstream::{
    connect, fresh_stream, publish_pipelined, start_server, stream_messages, FerryRun, Outgoing,
    Waiter,
};
use super::peers::{self, CopyJob, PeerRuns, PeerRuntime, COPY_IN_FLIGHT};
use super::report::ScenarioResult;
use super::{median, rate, BenchOptions, Progress};
use crate::config::replicator::Writes;
use crate::replicator::checkpoint::SourceIdentity;
use crate::replicator::headers::{target_headers, Stamp};
use ferry_testkit::ServerOptions;

/// Source messages unless `--messages` says otherwise.
const DEFAULT_MESSAGES: u64 = 1_000_000;
/// Subjects the source messages spread over.
const SUBJECTS: u64 = 100;
/// ferry's `max_in_flight` for the copy.
const MAX_IN_FLIGHT: usize = 4096;
/// The target streams' duplicate window (ferry's and the same-headers run's alike).
const DUPLICATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(120);

pub async fn run(
    options: &BenchOptions,
    progress: &Progress,
    peers: &PeerRuntime,
) -> anyhow::Result<Vec<ScenarioResult>> {
    let messages = options.messages_or(DEFAULT_MESSAGES);
    progress.phase("replicate: starting nats-servers a and b (JetStream domains, leafnode b → a)");
    let a = start_server(
        "bench-a",
        ServerOptions {
            jetstream: true,
            jetstream_domain: Some("a".into()),
            leafnode_listen: true,
            ..ServerOptions::default()
        },
    )
    .await?;
    let leaf = a
        .leafnode_url()
        .ok_or_else(|| anyhow!("server a has no leafnode port"))?;
    let b = start_server(
        "bench-b",
        ServerOptions {
            jetstream: true,
            jetstream_domain: Some("b".into()),
            leaf_remotes: vec![leaf],
            ..ServerOptions::default()
        },
    )
    .await?;
    let (_a_client, a_js) = connect(&a.url()).await?;
    let (_b_client, b_js) = connect(&b.url()).await?;

    progress.phase(&format!(
        "replicate: filling SRC on a with {messages} × {} B",
        options.size
    ));
    fresh_stream(
        &a_js,
        StreamConfig {
            name: "SRC".into(),
            subjects: vec!["bench.src.>".into()],
            ..Default::default()
        },
    )
    .await?;
    let payload_size = options.size;
    publish_pipelined(
        &a_js,
        (0..messages).map(|i| {
            Outgoing::bare(
                format!("bench.src.{}", i % SUBJECTS),
                payload(i, payload_size),
            )
        }),
        4096,
        progress,
        "replicate: filling SRC",
        messages,
    )
    .await?;

    let source_created_ns = a_js
        .get_stream("SRC")
        .await
        .map_err(|e| anyhow!("stream SRC: {e}"))?
        .cached_info()
        .created
        .unix_timestamp_nanos();

    let mut baseline_rates = Vec::new();
    let mut headed_rates = Vec::new();
    let mut naive = PeerRuns::default();
    let mut ferry_rates = Vec::new();
    let mut ferry_cpu = Vec::new();
    let mut peak_rss = None;
    let mut lost = 0;
    for round in 1..=options.rounds {
        let label = format!("replicate round {round}/{}", options.rounds);
        progress.phase(&format!("{label}: baseline (mirror on b across domains)"));
        let mirror = format!("MIRROR_{round}");
        let started = Instant::now();
        fresh_stream(
            &b_js,
            StreamConfig {
                name: mirror.clone(),
                mirror: Some(Source {
                    name: "SRC".into(),
                    external: Some(External {
                        api_prefix: "$JS.a.API".into(),
                        delivery_prefix: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await?;
        let mut waiter = Waiter::new(&format!("{label}: mirror"), messages);
        let done = loop {
            if let Some(done) = waiter.check(stream_messages(&b_js, &mirror).await, progress)? {
                break done;
            }
            waiter.pause().await;
        };
        baseline_rates.push(rate(messages, done - started));
        let _ = b_js.delete_stream(&mirror).await;

        progress.phase(&format!(
            "{label}: same headers (one client publishing to b as a copy must)"
        ));
        let headed = format!("HEADED_{round}");
        let stamp = Stamp::new(
            &SourceIdentity {
                stream: "SRC".into(),
                created_ns: source_created_ns,
            },
            "bench",
            "copy",
            Writes::Exclusive,
        );
        fresh_stream(
            &b_js,
            StreamConfig {
                name: headed.clone(),
                subjects: vec![format!("headed{round}.>")],
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            },
        )
        .await?;
        let timestamp_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let started = Instant::now();
        publish_pipelined(
            &b_js,
            (0..messages).map(|i| Outgoing {
                subject: format!("headed{round}.bench.src.{}", i % SUBJECTS),
                // Fenced as an exclusive copy is: the i-th message follows target sequence i.
                headers: Some(target_headers(None, i + 1, timestamp_ms, &stamp, Some(i))),
                payload: payload(i, payload_size),
            }),
            MAX_IN_FLIGHT,
            progress,
            &format!("{label}: same headers"),
            messages,
        )
        .await?;
        headed_rates.push(rate(messages, started.elapsed()));
        let _ = b_js.delete_stream(&headed).await;

        progress.phase(&format!(
            "{label}: naive-copy (a plain client: pull from a, publish to b, no headers)"
        ));
        let target = format!("NAIVE_{round}");
        let prefix = format!("naive{round}");
        fresh_stream(
            &b_js,
            StreamConfig {
                name: target.clone(),
                subjects: vec![format!("{prefix}.>")],
                ..Default::default()
            },
        )
        .await?;
        let cpu_before = peers.cpu();
        let started = Instant::now();
        let copy = peers.spawn(peers::naive_copy(CopyJob {
            source_url: a.url(),
            stream: "SRC".into(),
            target_url: b.url(),
            subject_prefix: prefix,
            messages,
        }));
        peers::join("naive-copy", copy).await?;
        naive.rates.push(rate(messages, started.elapsed()));
        if let (Some(before), Some(after)) = (cpu_before, peers.cpu()) {
            naive
                .cpu
                .extend(us_per_message(after.since(&before), messages));
        }
        naive.lost = naive
            .lost
            .max(messages.saturating_sub(stream_messages(&b_js, &target).await));
        let _ = b_js.delete_stream(&target).await;

        progress.phase(&format!("{label}: ferry (replicator a → b)"));
        let target = format!("COPY_{round}");
        let started = Instant::now();
        let mut ferry = FerryRun::spawn(
            "bench-replicate",
            &ferry_config(&a.url(), &b.url(), &target, round),
        )?;
        let mut waiter = Waiter::new(&format!("{label}: ferry"), messages);
        let done = loop {
            ferry.process.check_running()?;
            if let Some(done) = waiter.check(stream_messages(&b_js, &target).await, progress)? {
                break done;
            }
            waiter.pause().await;
        };
        ferry_rates.push(rate(messages, done - started));
        // Its whole life, as its rate: start-up counts against it.
        ferry_cpu.extend(ferry.cpu().and_then(|cpu| us_per_message(cpu, messages)));
        peak_rss = peak_rss.max(ferry.finish().await?);
        lost = lost.max(messages.saturating_sub(stream_messages(&b_js, &target).await));
        let _ = b_js.delete_stream(&target).await;
    }
    let baseline = median(&baseline_rates);
    let headed = median(&headed_rates);
    let ferry = median(&ferry_rates);
    let replicate = ScenarioResult {
        name: "replicate".into(),
        messages,
        baseline_msgs_per_s: baseline,
        ferry_msgs_per_s: ferry,
        ratio: ScenarioResult::ratio_of(ferry, baseline),
        peers: vec![naive.result(
            "naive-copy",
            ferry,
            format!(
                "a plain async-nats client: pull consumer on a (no acks, batches of \
                 {COPY_IN_FLIGHT}), publishing each subject and payload to b, {COPY_IN_FLIGHT} \
                 acks in flight, no headers"
            ),
        )],
        ferry_cpu_us_per_msg: median(&ferry_cpu),
        p50_ms: None,
        p99_ms: None,
        peak_rss_bytes: peak_rss,
        lost: Some(lost),
        copied: None,
        baseline: format!(
            "a JetStream mirror on b of the stream on a ({} B messages), domains a/b over a leafnode",
            options.size
        ),
    };
    let same_headers = ScenarioResult {
        name: "replicate-same-headers".into(),
        baseline_msgs_per_s: headed,
        ratio: ScenarioResult::ratio_of(ferry, headed),
        peers: Vec::new(),
        baseline: format!(
            "one client publishing the same messages to b with the headers of an exclusive copy \
             (Nats-Expected-Last-Sequence, Choria-SR-Source, Ferry-Origin), {MAX_IN_FLIGHT} acks \
             in flight, without reading a"
        ),
        ..replicate.clone()
    };
    Ok(vec![replicate, same_headers])
}

/// Message `i`: its number, then filler up to `size` bytes.
fn payload(i: u64, size: usize) -> Bytes {
    let mut text = format!("{i:012} ").into_bytes();
    text.resize(size.max(text.len()), b'x');
    Bytes::from(text)
}

fn ferry_config(a: &str, b: &str, target: &str, round: usize) -> String {
    format!(
        r#"name: bench
state_dir: "{{state_dir}}"
monitor: {{ listen: "{{monitor}}" }}
connections:
  a: {{ servers: ["{a}"] }}
  b: {{ servers: ["{b}"] }}
replicators:
  - name: copy
    from: {{ connection: a, stream: SRC }}
    to: {{ connection: b, stream: {target}, create: true, subject_prefix: copy{round}, duplicate_window: 2m }}
    start: all
    max_in_flight: {MAX_IN_FLIGHT}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_asked_size_and_differ() {
        assert_eq!(payload(7, 512).len(), 512);
        assert_eq!(payload(7, 4).len(), 13, "never shorter than the number");
        assert_ne!(payload(1, 64), payload(2, 64));
    }

    #[test]
    fn the_config_is_valid() {
        let yaml = ferry_config("nats://127.0.0.1:1", "nats://127.0.0.1:2", "COPY_1", 1)
            .replace("{state_dir}", "/tmp/x")
            .replace("{monitor}", "127.0.0.1:9");
        crate::config::parse_str(&yaml, std::path::Path::new("bench.yaml"))
            .expect("valid bench config");
    }
}
