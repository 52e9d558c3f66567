//! Reading ferry's counters from its monitor, and waiting on them: until the adapters settled, the
//! replicators caught up, and the progress line meanwhile.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::*;
use crate::shutdown::StopSignal;
use crate::status::thousands as group;
use ferry_testkit::{http_get, FerryChild};

/// The adapter counters the demo reads from ferry's `/metrics`, summed over pipelines and reasons.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) received: u64,
    pub(super) published: u64,
    pub(super) duplicates: u64,
    pub(super) invalid: u64,
    pub(super) dropped: u64,
    pub(super) filtered: u64,
    pub(super) spool: u64,
    pub(super) queue: u64,
}

impl Counts {
    /// Received events whose fate is known.
    pub(super) fn accounted(&self) -> u64 {
        self.published + self.duplicates + self.invalid + self.dropped + self.filtered
    }

    /// Whether everything received has been stored or counted, and nothing waits.
    pub(super) fn idle(&self) -> bool {
        self.accounted() >= self.received && self.spool == 0 && self.queue == 0
    }
}

/// One replicator's counters and gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ReplicatorCounts {
    pub(super) copied: u64,
    pub(super) duplicates: u64,
    /// Skipped messages by reason.
    pub(super) skipped: BTreeMap<String, u64>,
    pub(super) lag: u64,
    pub(super) checkpoint: u64,
    pub(super) source_sequence: u64,
}

impl ReplicatorCounts {
    pub(super) fn skipped(&self, reason: &str) -> u64 {
        self.skipped.get(reason).copied().unwrap_or(0)
    }

    pub(super) fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
}

/// Everything the demo reads from ferry's `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Metrics {
    /// Adapter counters, summed.
    pub(super) adapters: Counts,
    /// Replicator counters by pipeline.
    pub(super) replicators: BTreeMap<String, ReplicatorCounts>,
    /// Advisories by event, summed over pipelines.
    pub(super) advisories: BTreeMap<String, u64>,
}

impl Metrics {
    pub(super) fn replicator(&self, name: &str) -> ReplicatorCounts {
        self.replicators.get(name).cloned().unwrap_or_default()
    }

    /// Messages copied by all replicators.
    pub(super) fn copied(&self) -> u64 {
        self.replicators.values().map(|counts| counts.copied).sum()
    }

    /// Messages sampled out by all replicators.
    pub(super) fn sampled_out(&self) -> u64 {
        self.replicators
            .values()
            .map(|counts| counts.skipped("sampled"))
            .sum()
    }

    /// Source messages waiting to be copied, over all replicators.
    pub(super) fn lag(&self) -> u64 {
        self.replicators.values().map(|counts| counts.lag).sum()
    }
}

/// Reads the demo's counters out of a Prometheus text exposition.
pub(super) fn parse_metrics(text: &str) -> anyhow::Result<Metrics> {
    let exposition =
        ferry_testkit::Metrics::parse(text).context("reading ferry's /metrics answer")?;
    let mut metrics = Metrics::default();
    for sample in &exposition.samples {
        let value = if sample.value.is_finite() {
            sample.value.max(0.0) as u64
        } else {
            0
        };
        let adapters = &mut metrics.adapters;
        let slot = match sample.name.as_str() {
            "ferry_adapter_received_total" => &mut adapters.received,
            "ferry_adapter_published_total" => &mut adapters.published,
            "ferry_adapter_duplicates_total" => &mut adapters.duplicates,
            "ferry_adapter_invalid_total" => &mut adapters.invalid,
            "ferry_adapter_dropped_total" => &mut adapters.dropped,
            "ferry_adapter_filtered_total" => &mut adapters.filtered,
            "ferry_adapter_spool_messages" => &mut adapters.spool,
            "ferry_adapter_queue_messages" => &mut adapters.queue,
            "ferry_advisories_total" => metrics
                .advisories
                .entry(sample.label("event").unwrap_or_default().to_string())
                .or_default(),
            name if name.starts_with("ferry_replicator_") => {
                let counts = metrics
                    .replicators
                    .entry(sample.label("pipeline").unwrap_or_default().to_string())
                    .or_default();
                match name {
                    "ferry_replicator_copied_total" => &mut counts.copied,
                    "ferry_replicator_duplicates_total" => &mut counts.duplicates,
                    "ferry_replicator_skipped_total" => counts
                        .skipped
                        .entry(sample.label("reason").unwrap_or_default().to_string())
                        .or_default(),
                    "ferry_replicator_lag_messages" => &mut counts.lag,
                    "ferry_replicator_checkpoint_sequence" => &mut counts.checkpoint,
                    "ferry_replicator_source_sequence" => &mut counts.source_sequence,
                    _ => continue,
                }
            }
            _ => continue,
        };
        *slot += value;
    }
    Ok(metrics)
}

/// Reads ferry's counters from its monitor.
pub(super) async fn scrape(monitor: SocketAddr) -> anyhow::Result<Metrics> {
    let (status, body) = http_get(&monitor.to_string(), "/metrics").await?;
    if status != 200 {
        bail!("GET /metrics answered {status}");
    }
    parse_metrics(&body)
}

/// Waits until ferry received everything published (or stops receiving more) and has stored or
/// counted all of it, then returns the final adapter counters. Gives up (returning what it has, so
/// the books show what is missing) when the counters stall for [`STALL_TIMEOUT`] or after
/// [`DRAIN_LIMIT`].
pub(super) async fn settle(
    monitor: SocketAddr,
    published: u64,
    ferry: &mut FerryChild,
) -> anyhow::Result<Counts> {
    let limit = Instant::now() + DRAIN_LIMIT;
    let mut last = Counts::default();
    let mut unchanged_since = Instant::now();
    loop {
        ferry.check_running()?;
        let counts = scrape(monitor).await?.adapters;
        if counts != last {
            last = counts;
            unchanged_since = Instant::now();
        }
        let stalled = unchanged_since.elapsed();
        let all_in = counts.received >= published || stalled >= Duration::from_secs(3);
        if all_in && counts.idle() {
            return Ok(counts);
        }
        if stalled >= STALL_TIMEOUT || Instant::now() >= limit {
            eprintln!(
                "warning: ferry's adapters did not finish: received {} of {published}, {} \
                 stored or counted, spool {}, queue {}",
                counts.received,
                counts.accounted(),
                counts.spool,
                counts.queue
            );
            return Ok(counts);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every replicator has caught up with its source stream in east (no lag, and the
/// checkpoint at the stream's last sequence), then returns the final counters. Gives up (returning
/// what it has, so the books show what is missing) when no checkpoint moved for
/// [`STALL_TIMEOUT`] or after [`DRAIN_LIMIT`].
pub(super) async fn catch_up(
    monitor: SocketAddr,
    east: &async_nats::jetstream::Context,
    ferry: &mut FerryChild,
) -> anyhow::Result<Metrics> {
    let limit = Instant::now() + DRAIN_LIMIT;
    let mut last = Vec::new();
    let mut unchanged_since = Instant::now();
    loop {
        ferry.check_running()?;
        let metrics = scrape(monitor).await?;
        let mut behind = Vec::new();
        let mut positions = Vec::new();
        for replicator in &REPLICATORS {
            let last_sequence = last_sequence(east, replicator.stream).await.unwrap_or(0);
            let counts = metrics.replicator(replicator.name);
            positions.push((counts.checkpoint, counts.lag, last_sequence));
            if counts.lag > 0 || counts.checkpoint < last_sequence {
                behind.push(format!(
                    "{} at checkpoint {} of {}'s last sequence {} (lag {})",
                    replicator.name,
                    counts.checkpoint,
                    replicator.stream,
                    last_sequence,
                    counts.lag
                ));
            }
        }
        if behind.is_empty() {
            return Ok(metrics);
        }
        if positions != last {
            last = positions;
            unchanged_since = Instant::now();
        }
        if unchanged_since.elapsed() >= STALL_TIMEOUT || Instant::now() >= limit {
            eprintln!(
                "warning: the replicators did not catch up: {}",
                behind.join("; ")
            );
            return Ok(metrics);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Keeps `received` at ferry's `ferry_adapter_received_total` (summed), polling every 100 ms
/// until told to stop.
pub(super) async fn follow_received(
    monitor: SocketAddr,
    received: Arc<AtomicU64>,
    stop: StopSignal,
) {
    loop {
        if let Ok(metrics) = scrape(monitor).await {
            received.store(metrics.adapters.received, Ordering::Relaxed);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.stopping() => return,
        }
    }
}

/// Prints the progress line until told to stop: every 250 ms in place on a terminal, every 5 s as
/// a new line otherwise.
pub(super) async fn progress_loop(
    monitor: SocketAddr,
    east: async_nats::jetstream::Context,
    published: Arc<AtomicU64>,
    stop: StopSignal,
) {
    let terminal = std::io::stderr().is_terminal();
    let period = if terminal {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(5)
    };
    let started = Instant::now();
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut metrics = Metrics::default();
    let mut last_received = (0u64, Instant::now());
    let mut rate = 0.0;
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = stop.stopping() => true,
        };
        if let Ok(fresh) = scrape(monitor).await {
            metrics = fresh;
        }
        let counts = metrics.adapters;
        let stored = stream_messages(&east, LIFECYCLE_STREAM).await.unwrap_or(0)
            + stream_messages(&east, REGISTRATION_STREAM)
                .await
                .unwrap_or(0);
        let elapsed = last_received.1.elapsed().as_secs_f64();
        if elapsed >= 0.2 {
            rate = counts.received.saturating_sub(last_received.0) as f64 / elapsed;
            last_received = (counts.received, Instant::now());
        }
        let mut line = format!(
            "[{:>5.1}s] published {}  received {}  stored {}  copied {}  sampled out {}  lag {}  rate {}/s",
            started.elapsed().as_secs_f64(),
            group(published.load(Ordering::Relaxed)),
            group(counts.received),
            group(stored),
            group(metrics.copied()),
            group(metrics.sampled_out()),
            group(metrics.lag()),
            group(rate as u64),
        );
        if counts.spool > 0 {
            let _ = write!(line, "  spool {}", group(counts.spool));
        }
        if terminal {
            eprint!("\r{line}\x1b[K");
            if stopping {
                eprintln!();
            }
        } else {
            eprintln!("{line}");
        }
        if stopping {
            return;
        }
    }
}
