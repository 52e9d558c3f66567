//! The `sample` and `sample-1m` scenarios: per-sender sampling over registration traffic.
//!
//! A source stream on server A holds registrations (in the Choria streams adapter's output format)
//! from many senders, in rounds: every sender once, then every sender again, and so on. ferry
//! replicates it to server B sampling on the `sender` field with an interval of an hour, so only
//! each sender's first message is copied. What is measured is how fast ferry *examines* messages:
//! the source's size over the time from ferry's start until its checkpoint covers the whole source.
//! The baseline is the speed limit of examining: reading the same stream with a plain ordered
//! consumer. `sample-1m` does the same with a million senders, to show that the sampler's memory
//! stays bounded however many senders there are.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::stream::Config as StreamConfig;
use bytes::Bytes;
use futures_util::StreamExt as _;

use super::cpu::us_per_message;
use super::jetstream::{
    connect, fresh_stream, publish_pipelined, start_server, stream_messages, FerryRun, Outgoing,
    Waiter,
};
use super::report::ScenarioResult;
use super::{median, rate, BenchOptions, Progress};
use ferry_testkit::ServerOptions;

/// Senders of the `sample` scenario (at most: fewer when `--messages` is smaller).
const SENDERS: u64 = 50_000;
/// Messages of the `sample` scenario unless `--messages` says otherwise: ten per sender.
const DEFAULT_MESSAGES: u64 = 500_000;
/// Senders (one message each) of the `sample-1m` scenario.
const MILLION: u64 = 1_000_000;

/// One sampling scenario's shape.
struct Shape {
    name: &'static str,
    senders: u64,
    messages: u64,
    rounds: usize,
}

pub async fn run(
    options: &BenchOptions,
    progress: &Progress,
) -> anyhow::Result<Vec<ScenarioResult>> {
    let messages = options.messages_or(DEFAULT_MESSAGES);
    let million = options.messages.map_or(MILLION, |n| n.max(1));
    let shapes = [
        Shape {
            name: "sample",
            senders: SENDERS.min(messages),
            messages,
            rounds: options.rounds,
        },
        // One run: it is about memory, and a million copies take a while.
        Shape {
            name: "sample-1m",
            senders: million,
            messages: million,
            rounds: 1,
        },
    ];
    progress.phase("sample: starting nats-servers a and b");
    let a = start_server(
        "bench-sample-a",
        ServerOptions {
            jetstream: true,
            ..ServerOptions::default()
        },
    )
    .await?;
    let b = start_server(
        "bench-sample-b",
        ServerOptions {
            jetstream: true,
            ..ServerOptions::default()
        },
    )
    .await?;
    let (_a_client, a_js) = connect(&a.url()).await?;
    let (_b_client, b_js) = connect(&b.url()).await?;
    let mut results = Vec::new();
    for shape in &shapes {
        results.push(scenario(shape, &a, &b, &a_js, &b_js, progress).await?);
    }
    Ok(results)
}

async fn scenario(
    shape: &Shape,
    a: &ferry_testkit::NatsServer,
    b: &ferry_testkit::NatsServer,
    a_js: &async_nats::jetstream::Context,
    b_js: &async_nats::jetstream::Context,
    progress: &Progress,
) -> anyhow::Result<ScenarioResult> {
    let name = shape.name;
    progress.phase(&format!(
        "{name}: filling REG on a with {} registrations from {} senders",
        shape.messages, shape.senders
    ));
    fresh_stream(
        a_js,
        StreamConfig {
            name: "REG".into(),
            subjects: vec!["bench.registration.>".into()],
            ..Default::default()
        },
    )
    .await?;
    let senders = shape.senders;
    publish_pipelined(
        a_js,
        (0..shape.messages).map(|i| {
            let sender = i % senders;
            Outgoing::bare(
                format!("bench.registration.node{sender:07}"),
                registration(sender, i / senders),
            )
        }),
        4096,
        progress,
        &format!("{name}: filling REG"),
        shape.messages,
    )
    .await?;

    let mut baseline_rates = Vec::new();
    let mut ferry_rates = Vec::new();
    let mut ferry_cpu = Vec::new();
    let mut peak_rss = None;
    let mut lost = 0;
    let mut copied = 0;
    for round in 1..=shape.rounds {
        let label = format!("{name} round {round}/{}", shape.rounds);
        progress.phase(&format!("{label}: baseline (plain ordered consumer)"));
        let started = Instant::now();
        read_all(a_js, "REG", shape.messages, progress, &label).await?;
        baseline_rates.push(rate(shape.messages, started.elapsed()));

        progress.phase(&format!("{label}: ferry (sampling replicator a → b)"));
        let target = format!("SAMPLED_{round}");
        let _ = b_js.delete_stream(&target).await;
        let started = Instant::now();
        let mut ferry =
            FerryRun::spawn("bench-sample", &ferry_config(&a.url(), &b.url(), &target))?;
        // Its metrics are served once it is ready; the clock started before.
        ferry.wait_ready().await?;
        let mut waiter = Waiter::new(&format!("{label}: ferry examined"), shape.messages);
        let done = loop {
            let examined = ferry
                .metric(
                    "ferry_replicator_checkpoint_sequence",
                    &[("pipeline", "sample")],
                )
                .await?;
            if let Some(done) = waiter.check(examined, progress)? {
                break done;
            }
            waiter.pause().await;
        };
        ferry_rates.push(rate(shape.messages, done - started));
        // Its whole life, as its rate; per message examined.
        ferry_cpu.extend(
            ferry
                .cpu()
                .and_then(|cpu| us_per_message(cpu, shape.messages)),
        );
        copied = ferry
            .metric("ferry_replicator_copied_total", &[("pipeline", "sample")])
            .await?;
        peak_rss = peak_rss.max(ferry.finish().await?);
        // Every sender's first message, and nothing else, belongs in the target.
        let stored = stream_messages(b_js, &target).await;
        lost = lost.max(senders.abs_diff(stored));
        let _ = b_js.delete_stream(&target).await;
    }
    let _ = a_js.delete_stream("REG").await;
    let baseline = median(&baseline_rates);
    let ferry = median(&ferry_rates);
    Ok(ScenarioResult {
        name: name.into(),
        messages: shape.messages,
        baseline_msgs_per_s: baseline,
        ferry_msgs_per_s: ferry,
        ratio: ScenarioResult::ratio_of(ferry, baseline),
        peers: Vec::new(),
        ferry_cpu_us_per_msg: median(&ferry_cpu),
        p50_ms: None,
        p99_ms: None,
        peak_rss_bytes: peak_rss,
        lost: Some(lost),
        copied: Some(copied),
        baseline: format!(
            "reading the same {} registrations ({} senders) with a plain ordered consumer",
            shape.messages, shape.senders
        ),
    })
}

/// A registration as Choria's streams adapter stores it, about 600 bytes, with the sender after
/// the data (so the sampler has to find its key past a long string).
fn registration(sender: u64, lap: u64) -> Bytes {
    let identity = format!("node{sender:07}.dc1.example.net");
    let inventory = format!(
        r#"{{\"identity\":\"{identity}\",\"lap\":{lap},\"facts\":{{\"os\":\"linux\",\"role\":\"web\",\"dc\":\"dc1\"}},\"agents\":[\"rpcutil\",\"choria_util\",\"filemgr\",\"nettest\",\"package\",\"service\",\"puppet\",\"scout\"],\"classes\":[\"role::web\",\"profile::base\",\"profile::nginx\",\"profile::monitoring\"],\"collectives\":[\"mcollective\"],\"version\":\"0.29.4\",\"uptime\":{uptime},\"padding\":\"{padding}\"}}"#,
        uptime = lap * 300,
        padding = "x".repeat(96)
    );
    Bytes::from(format!(
        r#"{{"protocol":"choria:adapters:choria_streams:output:1","data":"{inventory}","sender":"{identity}","time":"2026-12-01T00:00:00Z","requestid":"{sender:016x}{lap:016x}"}}"#
    ))
}

fn ferry_config(a: &str, b: &str, target: &str) -> String {
    format!(
        r#"name: bench
state_dir: "{{state_dir}}"
monitor: {{ listen: "{{monitor}}" }}
connections:
  a: {{ servers: ["{a}"] }}
  b: {{ servers: ["{b}"] }}
replicators:
  - name: sample
    from: {{ connection: a, stream: REG }}
    to: {{ connection: b, stream: {target}, create: true, duplicate_window: 2m }}
    start: all
    max_in_flight: 1024
    limit:
      sample: {{ key: {{ field: sender }}, interval: 1h }}
"#
    )
}

/// Reads `count` messages of `stream` with an ordered consumer, as fast as it delivers.
async fn read_all(
    js: &async_nats::jetstream::Context,
    stream: &str,
    count: u64,
    progress: &Progress,
    label: &str,
) -> anyhow::Result<()> {
    let handle = js
        .get_stream(stream)
        .await
        .map_err(|e| anyhow!("stream {stream}: {e}"))?;
    let consumer = handle
        .create_consumer(OrderedConfig {
            max_batch: 4096,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow!("ordered consumer on {stream}: {e}"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| anyhow!("reading {stream}: {e}"))?;
    let mut read = 0u64;
    while read < count {
        match tokio::time::timeout(Duration::from_secs(30), messages.next()).await {
            Ok(Some(Ok(_))) => read += 1,
            Ok(Some(Err(error))) => bail!("reading {stream}: {error}"),
            Ok(None) => bail!("the consumer on {stream} ended after {read} of {count}"),
            Err(_) => bail!("reading {stream} stalled after {read} of {count}"),
        }
        if read.is_multiple_of(4096) {
            progress.update(&format!("{label}: baseline read"), read, count);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_are_json_with_the_sender_after_the_data() {
        let payload = registration(42, 3);
        let value: serde_json::Value = serde_json::from_slice(&payload).expect("JSON");
        assert_eq!(value["sender"], "node0000042.dc1.example.net");
        let data: serde_json::Value =
            serde_json::from_str(value["data"].as_str().unwrap()).expect("inner JSON");
        assert_eq!(data["lap"], 3);
        let text = std::str::from_utf8(&payload).unwrap();
        assert!(text.find("\"data\"").unwrap() < text.find("\"sender\"").unwrap());
        assert!((500..800).contains(&payload.len()), "{}", payload.len());
    }

    #[test]
    fn the_config_is_valid() {
        let yaml = ferry_config("nats://127.0.0.1:1", "nats://127.0.0.1:2", "SAMPLED_1")
            .replace("{state_dir}", "/tmp/x")
            .replace("{monitor}", "127.0.0.1:9");
        crate::config::parse_str(&yaml, std::path::Path::new("bench.yaml"))
            .expect("valid bench config");
    }
}
