//! Does ferry's own pull reader (`replicator::reader`) still pay against async-nats's ordered
//! consumer? Fills one stream on a throwaway nats-server, then reads it whole with each, in
//! alternating rounds, and prints throughput and this process's CPU per message (the server's
//! work is the same for both and not counted). Figures and the decision: docs/performance.md.
//!
//! `cargo run --release --example read_probe -- [MESSAGES] [ROUNDS]` (defaults 500000 and 4);
//! the pinned nats-server is found through $NATS_SERVER_BIN or PATH.

use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use async_nats::jetstream::stream::Config as StreamConfig;
use futures_util::stream::{FuturesUnordered, StreamExt};

/// This process's user and system CPU time so far, in µs.
fn cpu_us() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) as f64;
    seconds * 1e6 + (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) as f64
}

fn report(round: usize, what: &str, messages: u64, started: Instant, cpu_before: f64) {
    let seconds = started.elapsed().as_secs_f64();
    let cpu = (cpu_us() - cpu_before) / messages as f64;
    println!(
        "round {round} {what:<22} {:>9.0} msg/s  {cpu:.2} µs/msg CPU",
        messages as f64 / seconds
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let messages: u64 = args.next().map_or(Ok(500_000), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(4), |a| a.parse())?;
    let server = ferry_testkit::NatsServer::try_start(ferry_testkit::ServerOptions::default())?;
    let client = async_nats::connect(server.url()).await?;
    let js = async_nats::jetstream::new(client);
    js.create_stream(StreamConfig {
        name: "SRC".into(),
        subjects: vec!["src.>".into()],
        ..Default::default()
    })
    .await?;
    let payload = bytes::Bytes::from(vec![b'x'; 512]);
    let mut acks = FuturesUnordered::new();
    for i in 0..messages {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("id-{i}").as_str());
        let subject = format!("src.node{}", i % 1000);
        let ack = js
            .publish_with_headers(subject, headers, payload.clone())
            .await?;
        acks.push(std::future::IntoFuture::into_future(ack));
        if acks.len() >= 4096 {
            if let Some(ack) = acks.next().await {
                ack?;
            }
        }
    }
    while let Some(ack) = acks.next().await {
        ack?;
    }
    eprintln!("filled SRC with {messages} messages of 512 B");

    let config: ferry::config::schema::ConnectionConfig =
        serde_norway::from_str(&format!("servers: [\"{}\"]", server.url()))?;
    let connection = ferry::connect::connect(
        "source",
        &config,
        "read-probe",
        Arc::new(ferry::metrics::Metrics::new()),
        Arc::new(ferry::status::StatusBoard::new("read-probe")),
    )
    .await?;
    while !connection.is_connected() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    for round in 1..=rounds {
        let stream = js.get_stream("SRC").await?;
        let (started, cpu) = (Instant::now(), cpu_us());
        let mut reader = ferry::replicator::reader::SourceReader::open(
            &connection,
            stream,
            Vec::new(),
            DeliverPolicy::All,
            1024,
        )
        .await?;
        for _ in 0..messages {
            let message = reader
                .next()
                .await
                .ok_or_else(|| anyhow::anyhow!("the reader ended"))??;
            std::hint::black_box((message.sequence, message.pending, message.published));
        }
        report(round, "ferry reader", messages, started, cpu);
        drop(reader);

        let stream = js.get_stream("SRC").await?;
        let (started, cpu) = (Instant::now(), cpu_us());
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await?;
        let mut read = consumer.messages().await?;
        for _ in 0..messages {
            let message = read
                .next()
                .await
                .ok_or_else(|| anyhow::anyhow!("the consumer ended"))??;
            // What the copier needs of each message: its sequence, the lag and the time.
            let info = message.info().map_err(|error| anyhow::anyhow!("{error}"))?;
            std::hint::black_box((info.stream_sequence, info.pending, info.published));
        }
        report(round, "async-nats ordered", messages, started, cpu);
    }
    Ok(())
}
