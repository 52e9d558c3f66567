//! `ferry demo`: a self-contained tour of ferry (SPEC section 2).
//!
//! The demo starts two local nats-servers, "east" and "west", and writes a ferry config with two
//! adapters in east (`choria_lifecycle` → stream `FERRY_LIFECYCLE`, `choria_registration` → stream
//! `CHORIA_REGISTRATION`) and two replicators to west: a full copy of `FERRY_LIFECYCLE` and a
//! per-sender sampled copy of `CHORIA_REGISTRATION` (with advisories). It runs `ferry run` on that
//! config as a child process exactly as an operator would, and lets a simulated Choria fleet
//! ([`crate::sim`]) publish lifecycle and registration traffic in east at a steady rate. A progress
//! line shows what was published, received, stored, copied and sampled out, and the replication lag.
//!
//! Once the fleet stops, the demo waits for the adapters to work off what they received and for the
//! replicators to catch up with their source streams, stops ferry with SIGTERM, and checks the books:
//! - adapters: every published event must be stored, counted as a duplicate (Choria re-sends
//!   identical `alive` events), or counted as invalid, filtered or dropped;
//! - full copy: west's `FERRY_LIFECYCLE` holds exactly what east's does;
//! - sampled copy: west's `CHORIA_REGISTRATION` holds exactly what the replicator copied, and every
//!   message of east's stream was copied or counted as skipped (sampled out).
//!
//! Anything else is `lost`, and makes the demo fail.
//!
//! The demo drives ferry only through its command line, config file and HTTP monitor, so it shows
//! (and checks) the same surface operators use.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::shutdown::{Shutdown, StopSignal};
use anyhow::{anyhow, bail, Context as _};
use futures_util::StreamExt as _;
use serde::Serialize;

use crate::bench::{spawn_ferry, EXIT_TIMEOUT, READY_TIMEOUT};
use crate::status::thousands as group;
use ferry_sim::{Fleet, LIFECYCLE_SUBJECTS, REGISTRATION_SUBJECT};
use ferry_testkit::{http_get, FerryChild, NatsServer, ServerOptions, WorkDir};

/// The stream the lifecycle adapter writes.
pub const LIFECYCLE_STREAM: &str = "FERRY_LIFECYCLE";
/// The stream the registration adapter writes.
pub const REGISTRATION_STREAM: &str = "CHORIA_REGISTRATION";
/// The replicator copying registrations to west, sampled per sender.
pub const REGISTRATION_REPLICATOR: &str = "registration-to-west";
/// The replicator copying every lifecycle event to west.
pub const LIFECYCLE_REPLICATOR: &str = "lifecycle-to-west";

/// The demo's replicators: name, stream (the same name in east and west), and whether it samples.
const REPLICATORS: [Replicator; 2] = [
    Replicator {
        name: REGISTRATION_REPLICATOR,
        stream: REGISTRATION_STREAM,
        sampled: true,
    },
    Replicator {
        name: LIFECYCLE_REPLICATOR,
        stream: LIFECYCLE_STREAM,
        sampled: false,
    },
];

/// The fleet's seed: every demo run sends the same mix of events.
const SEED: u64 = 2026;
/// Simulated minutes (ticks) per wall-clock second at most; fewer when the fleet is large.
const TICKS_PER_SECOND: f64 = 10.0;
/// The fleet's publish rate is capped here (events per second), so a large `--nodes` slows the
/// simulated clock rather than overrunning a small machine.
const MAX_RATE: f64 = 10_000.0;
/// The fleet waits while ferry's adapters are this many events behind what was published, so a
/// machine too small for the chosen rate slows the simulated clock instead of overflowing ferry's
/// subscription buffers (65,536 messages each by default), where core NATS would drop events.
const MAX_BACKLOG: u64 = 20_000;
/// After publishing stops, the demo waits for ferry's adapters to work off what they received and
/// then for the replicators to catch up, as long as they make progress: each wait gives up when
/// nothing moved for this long ...
const STALL_TIMEOUT: Duration = Duration::from_secs(15);
/// ... or, progress or not, after this long.
const DRAIN_LIMIT: Duration = Duration::from_secs(600);

/// One of the demo's replicators.
#[derive(Debug, Clone, Copy)]
struct Replicator {
    name: &'static str,
    /// The source stream in east and the target stream in west.
    stream: &'static str,
    /// Whether it samples per sender (rather than copying everything).
    sampled: bool,
}

/// What `ferry demo` runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Simulated Choria servers (default 2,000).
    pub nodes: usize,
    /// How long the fleet publishes (default 20s).
    pub duration: Duration,
    /// Print the summary as one JSON object on stdout instead of a table.
    pub json: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            nodes: 2_000,
            duration: Duration::from_secs(20),
            json: false,
        }
    }
}

/// The books at the end of a demo.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DemoSummary {
    /// Simulated nodes.
    pub nodes: usize,
    /// Events the fleet published on core NATS in east.
    pub published: u64,
    /// Events ferry's adapters took in (`ferry_adapter_received_total`).
    pub received: u64,
    /// Messages in east's two streams after ferry stopped.
    pub stored: u64,
    /// Events JetStream acknowledged as duplicates (`ferry_adapter_duplicates_total`): identical
    /// `alive` events re-sent within the stream's duplicate window, stored once.
    pub duplicates: u64,
    /// Events the decoders refused (`ferry_adapter_invalid_total`).
    pub invalid: u64,
    /// Events dropped and counted (`ferry_adapter_dropped_total`, any reason).
    pub dropped: u64,
    /// Events removed by filters (`ferry_adapter_filtered_total`).
    pub filtered: u64,
    /// Messages the replicators copied to west (`ferry_replicator_copied_total`, both replicators).
    pub copied: u64,
    /// Messages the sampling replicator skipped (`ferry_replicator_skipped_total{reason="sampled"}`).
    pub sampled_out: u64,
    /// Source messages not yet copied when the demo ended (`ferry_replicator_lag_messages`).
    pub lag: u64,
    /// Sampling advisories published in east, by event (`ferry_advisories_total`).
    pub advisories: BTreeMap<String, u64>,
    /// Messages per stream in east.
    pub east: BTreeMap<String, u64>,
    /// Messages per stream in west.
    pub west: BTreeMap<String, u64>,
    /// Each replicator's books.
    pub replicators: BTreeMap<String, ReplicatorBooks>,
    /// Published events that are neither stored nor counted anywhere, plus messages missing from
    /// (or unexpected in) west. Must be 0.
    pub lost: u64,
    /// What landed, for people: stored subjects with their message counts.
    #[serde(skip)]
    pub examples: Vec<String>,
}

/// One replicator's books at the end of a demo.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplicatorBooks {
    /// The stream it reads in east and writes in west.
    pub stream: String,
    /// Whether it samples per sender.
    pub sampled: bool,
    /// Messages in the source stream (east).
    pub source: u64,
    /// Messages in the target stream (west).
    pub target: u64,
    /// Messages the target stored (`ferry_replicator_copied_total`).
    pub copied: u64,
    /// Copies the target dropped as duplicates (`ferry_replicator_duplicates_total`).
    pub duplicates: u64,
    /// Messages skipped by sampling.
    pub sampled_out: u64,
    /// Messages skipped for any other reason (filtered, age, rejected, source_gone, loop).
    pub skipped_other: u64,
    /// The last checkpointed source sequence.
    pub checkpoint: u64,
    /// Source messages missing from the target or from the counters (or unexpected). Must be 0.
    pub lost: u64,
}

impl ReplicatorBooks {
    /// Balances one replicator's books. A full copy must leave the target holding exactly what
    /// the source holds; a sampled copy must leave it holding exactly what was copied. Either way
    /// every source message must be copied, counted as a duplicate, or counted as skipped.
    fn new(replicator: &Replicator, source: u64, target: u64, counts: &ReplicatorCounts) -> Self {
        let sampled_out = counts.skipped("sampled");
        let skipped_other = counts.skipped_total() - sampled_out;
        let expected_target = if replicator.sampled {
            counts.copied
        } else {
            source
        };
        let handled = counts.copied + counts.duplicates + sampled_out + skipped_other;
        let lost = target
            .abs_diff(expected_target)
            .max(source.abs_diff(handled));
        ReplicatorBooks {
            stream: replicator.stream.to_string(),
            sampled: replicator.sampled,
            source,
            target,
            copied: counts.copied,
            duplicates: counts.duplicates,
            sampled_out,
            skipped_other,
            checkpoint: counts.checkpoint,
            lost,
        }
    }
}

/// Runs the demo and prints its summary (a table, or JSON with `opts.json`). Fails when ferry
/// cannot be started or when anything was lost.
pub async fn run(opts: DemoOptions) -> anyhow::Result<DemoSummary> {
    let work = WorkDir::new("demo")?;
    match run_in(&opts, &work).await {
        Ok(summary) => {
            print_summary(&opts, &summary);
            if summary.lost > 0 {
                work.keep();
                bail!(
                    "{} messages were lost: published {}, stored in east {}, copied to west {} \
                     (ferry's log and config are kept in {})",
                    summary.lost,
                    summary.published,
                    summary.stored,
                    summary.copied,
                    work.path().display()
                );
            }
            Ok(summary)
        }
        // Keep ferry's log and config for inspection once ferry was started.
        Err(error) if work.path().join("ferry.log").exists() => {
            work.keep();
            Err(error.context(format!(
                "the demo failed (ferry's log and config are kept in {})",
                work.path().display()
            )))
        }
        Err(error) => Err(error.context("the demo failed")),
    }
}

/// Starts a local JetStream server named `name` without blocking the runtime.
async fn start_server(name: &'static str) -> anyhow::Result<NatsServer> {
    tokio::task::spawn_blocking(move || NatsServer::try_start(ServerOptions::default().name(name)))
        .await
        .with_context(|| format!("starting nats-server {name:?}"))?
        .with_context(|| format!("starting nats-server {name:?}"))
}

async fn run_in(opts: &DemoOptions, work: &WorkDir) -> anyhow::Result<DemoSummary> {
    let nodes = opts.nodes.max(1);
    eprintln!("starting nats-servers \"east\" and \"west\" ...");
    let (east, west) = tokio::join!(start_server("east"), start_server("west"));
    let (east, west) = (east?, west?);

    let monitor = SocketAddr::from(([127, 0, 0, 1], ferry_testkit::free_port()?));
    let config_path = work.path().join("ferry.yaml");
    std::fs::write(
        &config_path,
        demo_config(
            &east.url(),
            &west.url(),
            &work.path().join("state"),
            monitor,
        ),
    )
    .context("writing the demo config")?;

    eprintln!("starting ferry run -c {} ...", config_path.display());
    let mut ferry = spawn_ferry(&config_path, &work.path().join("ferry.log"))?;
    ferry
        .wait_ready(&monitor.to_string(), READY_TIMEOUT)
        .await?;

    let client = async_nats::connect(east.url())
        .await
        .context("connecting to nats-server east")?;
    let east_js = async_nats::jetstream::new(client.clone());
    let west_client = async_nats::connect(west.url())
        .await
        .context("connecting to nats-server west")?;
    let west_js = async_nats::jetstream::new(west_client);

    // Pace the simulated clock so the fleet publishes steadily, at most MAX_RATE events/s.
    let fleet = Fleet::new(nodes, SEED);
    let ticks_per_second =
        TICKS_PER_SECOND.min(MAX_RATE / fleet.events_per_tick_estimate().max(1.0));
    let tick_period = Duration::from_secs_f64(1.0 / ticks_per_second);
    let ticks = (opts.duration.as_secs_f64() * ticks_per_second).ceil() as u64;
    // Let the simulated history end about now, so stored timestamps look current.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let fleet = fleet.with_epoch(now - ticks as i64 * ferry_sim::TICK_SECONDS);

    eprintln!(
        "{} simulated Choria nodes publish on {LIFECYCLE_SUBJECTS} and {REGISTRATION_SUBJECT} \
         in east for {:?} ({:.1} simulated minutes per second); ferry adapts them in east and \
         replicates to west ({LIFECYCLE_REPLICATOR}: everything, {REGISTRATION_REPLICATOR}: \
         sampled per sender)",
        group(nodes as u64),
        opts.duration,
        ticks_per_second
    );
    let published = Arc::new(AtomicU64::new(0));
    let stop_progress = Shutdown::new();
    let progress = tokio::spawn(progress_loop(
        monitor,
        east_js.clone(),
        published.clone(),
        stop_progress.signal(),
    ));

    let received = Arc::new(AtomicU64::new(0));
    let follower = tokio::spawn(follow_received(
        monitor,
        received.clone(),
        stop_progress.signal(),
    ));
    let started = Instant::now();
    let mut next_tick = started;
    let mut held_back = Duration::ZERO;
    let mut tick = 0;
    while started.elapsed() < opts.duration {
        let waiting = Instant::now();
        while published.load(Ordering::Relaxed) > received.load(Ordering::Relaxed) + MAX_BACKLOG
            && started.elapsed() < opts.duration
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if waiting.elapsed() >= Duration::from_millis(50) {
            held_back += waiting.elapsed();
            next_tick = Instant::now();
            if started.elapsed() >= opts.duration {
                break;
            }
        }
        for event in fleet.events_for_tick(tick) {
            client
                .publish(event.subject(), event.payload().into())
                .await
                .context("publishing")?;
            published.fetch_add(1, Ordering::Relaxed);
        }
        client.flush().await.context("flushing")?;
        tick += 1;
        next_tick += tick_period;
        tokio::time::sleep_until(next_tick.into()).await;
    }
    follower.abort();
    if !held_back.is_zero() {
        eprintln!(
            "the fleet waited {:.1}s in all for ferry to catch up (more than {} events behind)",
            held_back.as_secs_f64(),
            group(MAX_BACKLOG)
        );
    }
    let published = published.load(Ordering::Relaxed);

    // Let the adapters work off their subscription buffers, queues and spools, then let the
    // replicators catch up with what the adapters stored, before stopping ferry.
    let settled = settle(monitor, published, &mut ferry).await;
    let caught_up = match settled {
        Ok(_) => catch_up(monitor, &east_js, &mut ferry).await,
        Err(error) => Err(error),
    };
    stop_progress.stop();
    let _ = progress.await;
    let metrics = caught_up?;

    eprintln!("stopping ferry (SIGTERM) ...");
    let status = ferry.terminate(EXIT_TIMEOUT).await?;
    if !status.success() {
        bail!(
            "ferry exited with {status} after SIGTERM\n--- ferry log (tail) ---\n{}",
            ferry.log_tail()
        );
    }

    let mut east_counts = BTreeMap::new();
    let mut west_counts = BTreeMap::new();
    for stream in [LIFECYCLE_STREAM, REGISTRATION_STREAM] {
        east_counts.insert(
            stream.to_string(),
            stream_messages(&east_js, stream)
                .await
                .context("reading east")?,
        );
        // A target stream the replicator never created holds nothing.
        west_counts.insert(
            stream.to_string(),
            stream_messages(&west_js, stream).await.unwrap_or(0),
        );
    }
    let stored: u64 = east_counts.values().sum();

    let counts = metrics.adapters;
    let accounted = stored + counts.duplicates + counts.invalid + counts.dropped + counts.filtered;
    let mut lost = published.saturating_sub(accounted);
    let mut replicators = BTreeMap::new();
    for replicator in &REPLICATORS {
        let books = ReplicatorBooks::new(
            replicator,
            east_counts[replicator.stream],
            west_counts[replicator.stream],
            &metrics.replicator(replicator.name),
        );
        lost += books.lost;
        replicators.insert(replicator.name.to_string(), books);
    }
    Ok(DemoSummary {
        nodes,
        published,
        received: counts.received,
        stored,
        duplicates: counts.duplicates,
        invalid: counts.invalid,
        dropped: counts.dropped,
        filtered: counts.filtered,
        copied: metrics.copied(),
        sampled_out: metrics.sampled_out(),
        lag: metrics.lag(),
        advisories: metrics.advisories.clone(),
        east: east_counts,
        west: west_counts,
        replicators,
        lost,
        examples: examples(&east_js, &west_js).await,
    })
}

/// The config the demo runs ferry with: SPEC section 3's two Choria adapters in east and its two
/// replicators to west.
fn demo_config(east: &str, west: &str, state_dir: &Path, monitor: SocketAddr) -> String {
    let quote = |text: &str| serde_json::to_string(text).unwrap_or_default();
    format!(
        r#"# Written by `ferry demo`.
name: ferry-demo
state_dir: {state_dir}
monitor: {{ listen: "{monitor}" }}
shutdown_timeout: 10s

connections:
  east:
    servers: [{east}]
    name: ferry-demo-east
  west:
    servers: [{west}]
    name: ferry-demo-west

adapters:
  - name: lifecycle
    kind: choria_lifecycle
    connection: east
    subjects: ["{LIFECYCLE_SUBJECTS}"]
    output:
      stream: {LIFECYCLE_STREAM}
      subject: "ferry.lifecycle.{{type}}.{{component}}"
      duplicate_window: 2m
  - name: registration
    kind: choria_registration
    connection: east
    subjects: ["{REGISTRATION_SUBJECT}"]
    output:
      stream: {REGISTRATION_STREAM}
      subject: "choria.stream.input.registration.{{sender}}"

replicators:
  # Registrations: each node at most once an hour (or when its data grows or shrinks by 1KiB).
  - name: {REGISTRATION_REPLICATOR}
    from: {{ connection: east, stream: {REGISTRATION_STREAM} }}
    to: {{ connection: west, stream: {REGISTRATION_STREAM}, create: true, duplicate_window: 10m }}
    start: all
    limit:
      sample: {{ key: {{ field: sender }}, interval: 1h, size_trigger: 1KiB }}
    advisories:
      subject: "ferry.advisories.{{event}}.{{value}}"
      timeout_after: 12m
      expire_after: 1h
  # Lifecycle events: everything.
  - name: {LIFECYCLE_REPLICATOR}
    from: {{ connection: east, stream: {LIFECYCLE_STREAM} }}
    to: {{ connection: west, stream: {LIFECYCLE_STREAM}, create: true, duplicate_window: 2m }}
    start: all
"#,
        state_dir = quote(&state_dir.to_string_lossy()),
        east = quote(east),
        west = quote(west),
    )
}

/// The adapter counters the demo reads from ferry's `/metrics`, summed over pipelines and reasons.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    received: u64,
    published: u64,
    duplicates: u64,
    invalid: u64,
    dropped: u64,
    filtered: u64,
    spool: u64,
    queue: u64,
}

impl Counts {
    /// Received events whose fate is known.
    fn accounted(&self) -> u64 {
        self.published + self.duplicates + self.invalid + self.dropped + self.filtered
    }

    /// Whether everything received has been stored or counted, and nothing waits.
    fn idle(&self) -> bool {
        self.accounted() >= self.received && self.spool == 0 && self.queue == 0
    }
}

/// One replicator's counters and gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ReplicatorCounts {
    copied: u64,
    duplicates: u64,
    /// Skipped messages by reason.
    skipped: BTreeMap<String, u64>,
    lag: u64,
    checkpoint: u64,
    source_sequence: u64,
}

impl ReplicatorCounts {
    fn skipped(&self, reason: &str) -> u64 {
        self.skipped.get(reason).copied().unwrap_or(0)
    }

    fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
}

/// Everything the demo reads from ferry's `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Metrics {
    /// Adapter counters, summed.
    adapters: Counts,
    /// Replicator counters by pipeline.
    replicators: BTreeMap<String, ReplicatorCounts>,
    /// Advisories by event, summed over pipelines.
    advisories: BTreeMap<String, u64>,
}

impl Metrics {
    fn replicator(&self, name: &str) -> ReplicatorCounts {
        self.replicators.get(name).cloned().unwrap_or_default()
    }

    /// Messages copied by all replicators.
    fn copied(&self) -> u64 {
        self.replicators.values().map(|counts| counts.copied).sum()
    }

    /// Messages sampled out by all replicators.
    fn sampled_out(&self) -> u64 {
        self.replicators
            .values()
            .map(|counts| counts.skipped("sampled"))
            .sum()
    }

    /// Source messages waiting to be copied, over all replicators.
    fn lag(&self) -> u64 {
        self.replicators.values().map(|counts| counts.lag).sum()
    }
}

/// Reads the demo's counters out of a Prometheus text exposition.
fn parse_metrics(text: &str) -> anyhow::Result<Metrics> {
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
async fn scrape(monitor: SocketAddr) -> anyhow::Result<Metrics> {
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
async fn settle(
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
async fn catch_up(
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
async fn follow_received(monitor: SocketAddr, received: Arc<AtomicU64>, stop: StopSignal) {
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
async fn progress_loop(
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

/// The info of `stream` (an error while nobody has created it yet).
async fn stream_info(
    jetstream: &async_nats::jetstream::Context,
    stream: &str,
) -> anyhow::Result<async_nats::jetstream::stream::Info> {
    let mut handle = jetstream
        .get_stream(stream)
        .await
        .map_err(|error| anyhow!("stream {stream}: {error}"))?;
    let info = handle
        .info()
        .await
        .map_err(|error| anyhow!("stream {stream} info: {error}"))?;
    Ok(info.clone())
}

/// The number of messages in `stream`.
async fn stream_messages(
    jetstream: &async_nats::jetstream::Context,
    stream: &str,
) -> anyhow::Result<u64> {
    Ok(stream_info(jetstream, stream).await?.state.messages)
}

/// The last sequence of `stream`.
async fn last_sequence(
    jetstream: &async_nats::jetstream::Context,
    stream: &str,
) -> anyhow::Result<u64> {
    Ok(stream_info(jetstream, stream).await?.state.last_sequence)
}

/// What landed, as lines for people: the lifecycle stream's subjects with their message counts in
/// east and west, and a few of the registration stream's per-node subjects.
async fn examples(
    east: &async_nats::jetstream::Context,
    west: &async_nats::jetstream::Context,
) -> Vec<String> {
    let mut lines = Vec::new();
    let west_lifecycle = subject_counts(west, LIFECYCLE_STREAM).await;
    for (subject, count) in subject_counts(east, LIFECYCLE_STREAM).await {
        let copied = west_lifecycle.get(&subject).copied().unwrap_or(0);
        lines.push(format!(
            "{subject}: {} (west {})",
            group(count),
            group(copied)
        ));
    }
    let registration = subject_counts(east, REGISTRATION_STREAM).await;
    let west_registration = subject_counts(west, REGISTRATION_STREAM).await;
    for (subject, count) in registration.iter().take(3) {
        let copied = west_registration.get(subject).copied().unwrap_or(0);
        lines.push(format!(
            "{subject}: {} (west {})",
            group(*count),
            group(copied)
        ));
    }
    if registration.len() > 3 {
        lines.push(format!(
            "... one subject per node: {} registration subjects in east, {} in west",
            group(registration.len() as u64),
            group(west_registration.len() as u64)
        ));
    }
    lines
}

/// Messages per subject in `stream` (empty when the stream cannot be read).
async fn subject_counts(
    jetstream: &async_nats::jetstream::Context,
    stream: &str,
) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    if let Ok(stream) = jetstream.get_stream(stream).await {
        if let Ok(mut subjects) = stream.info_with_subjects(">").await {
            while let Some(Ok((subject, count))) = subjects.next().await {
                counts.insert(subject, count as u64);
            }
        }
    }
    counts
}

fn print_summary(opts: &DemoOptions, summary: &DemoSummary) {
    if opts.json {
        match serde_json::to_string(summary) {
            Ok(json) => println!("{json}"),
            Err(error) => eprintln!("encoding the summary: {error}"),
        }
        return;
    }
    let advisories = if summary.advisories.is_empty() {
        "none".to_string()
    } else {
        summary
            .advisories
            .iter()
            .map(|(event, count)| format!("{event} {}", group(*count)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let west: u64 = summary.west.values().sum();
    let rows = [
        (
            "published",
            summary.published,
            "events sent by the simulated fleet on core NATS in east".to_string(),
        ),
        (
            "received",
            summary.received,
            "taken in by ferry's adapters".to_string(),
        ),
        (
            "stored",
            summary.stored,
            format!("messages in east's {LIFECYCLE_STREAM} + {REGISTRATION_STREAM}"),
        ),
        (
            "duplicates",
            summary.duplicates,
            "identical alive events re-sent within the duplicate window: stored once".to_string(),
        ),
        (
            "invalid",
            summary.invalid,
            "refused by a decoder (counted, never stored)".to_string(),
        ),
        (
            "dropped",
            summary.dropped,
            "dropped and counted (spool full, oversize, rejected)".to_string(),
        ),
        (
            "filtered",
            summary.filtered,
            "removed by a filter".to_string(),
        ),
        (
            "copied",
            summary.copied,
            format!("replicated to west (west now holds {})", group(west)),
        ),
        (
            "sampled_out",
            summary.sampled_out,
            "registrations skipped by per-sender sampling".to_string(),
        ),
        (
            "lag",
            summary.lag,
            "source messages not yet copied at the end".to_string(),
        ),
        (
            "lost",
            summary.lost,
            "published but neither stored nor counted, or missing in west: must be 0".to_string(),
        ),
    ];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nferry demo: {} simulated Choria nodes for {:?}, east → west\n",
        group(summary.nodes as u64),
        opts.duration
    );
    for (name, value, meaning) in rows {
        let _ = writeln!(out, "  {name:<12} {:>12}   {meaning}", group(value));
    }
    let _ = writeln!(out, "  {:<12} {:>12}   {advisories}", "advisories", "");

    let _ = writeln!(out, "\nReplicators (source in east → target in west):");
    for (name, books) in &summary.replicators {
        let how = if books.sampled {
            format!(
                "copied {}, sampled out {}",
                group(books.copied),
                group(books.sampled_out)
            )
        } else {
            format!("copied {}", group(books.copied))
        };
        let mut line = format!(
            "  {name:<22} {}: {} → {}   {how}",
            books.stream,
            group(books.source),
            group(books.target)
        );
        if books.duplicates > 0 {
            let _ = write!(line, ", duplicates {}", group(books.duplicates));
        }
        if books.skipped_other > 0 {
            let _ = write!(line, ", skipped otherwise {}", group(books.skipped_other));
        }
        if books.lost > 0 {
            let _ = write!(line, ", LOST {}", group(books.lost));
        }
        let _ = writeln!(out, "{line}");
    }
    if !summary.examples.is_empty() {
        let _ = writeln!(
            out,
            "\nWhat landed (subject: messages in east, and in west):"
        );
        for line in &summary.examples {
            let _ = writeln!(out, "  {line}");
        }
    }
    print!("{out}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_summed_over_labels() {
        let text = "\
# HELP ferry_adapter_received_total messages\n\
# TYPE ferry_adapter_received_total counter\n\
ferry_adapter_received_total{pipeline=\"lifecycle\"} 10\n\
ferry_adapter_received_total{pipeline=\"registration\"} 32\n\
ferry_adapter_published_total{pipeline=\"lifecycle\"} 7\n\
ferry_adapter_duplicates_total{pipeline=\"lifecycle\"} 3\n\
ferry_adapter_invalid_total{pipeline=\"registration\",reason=\"not_json\"} 2\n\
ferry_adapter_dropped_total{pipeline=\"registration\",reason=\"spool_full\"} 1\n\
ferry_adapter_spool_messages{pipeline=\"registration\"} 0\n\
ferry_adapter_publish_seconds_bucket{pipeline=\"lifecycle\",le=\"0.005\"} 9\n\
ferry_adapter_received_totalx 1000\n";
        let counts = parse_metrics(text).unwrap().adapters;
        assert_eq!(counts.received, 42);
        assert_eq!(counts.published, 7);
        assert_eq!(counts.duplicates, 3);
        assert_eq!(counts.invalid, 2);
        assert_eq!(counts.dropped, 1);
        assert_eq!(counts.accounted(), 13);
        assert!(!counts.idle());
    }

    #[test]
    fn replicator_metrics_are_kept_per_pipeline() {
        let text = "\
ferry_replicator_copied_total{pipeline=\"registration-to-west\"} 200\n\
ferry_replicator_copied_total{pipeline=\"lifecycle-to-west\"} 1500\n\
ferry_replicator_skipped_total{pipeline=\"registration-to-west\",reason=\"sampled\"} 800\n\
ferry_replicator_skipped_total{pipeline=\"registration-to-west\",reason=\"age\"} 2\n\
ferry_replicator_duplicates_total{pipeline=\"lifecycle-to-west\"} 1\n\
ferry_replicator_lag_messages{pipeline=\"registration-to-west\"} 4\n\
ferry_replicator_lag_messages{pipeline=\"lifecycle-to-west\"} 3\n\
ferry_replicator_checkpoint_sequence{pipeline=\"lifecycle-to-west\"} 1501\n\
ferry_replicator_source_sequence{pipeline=\"lifecycle-to-west\"} 1504\n\
ferry_replicator_copy_delay_seconds_bucket{le=\"0.1\",pipeline=\"lifecycle-to-west\"} 9\n\
ferry_advisories_total{event=\"new\",pipeline=\"registration-to-west\"} 200\n\
ferry_advisories_total{event=\"timeout\",pipeline=\"registration-to-west\"} 0\n";
        let metrics = parse_metrics(text).unwrap();
        assert_eq!(metrics.copied(), 1700);
        assert_eq!(metrics.sampled_out(), 800);
        assert_eq!(metrics.lag(), 7);
        let registration = metrics.replicator("registration-to-west");
        assert_eq!(registration.copied, 200);
        assert_eq!(registration.skipped("sampled"), 800);
        assert_eq!(registration.skipped_total(), 802);
        let lifecycle = metrics.replicator("lifecycle-to-west");
        assert_eq!(lifecycle.duplicates, 1);
        assert_eq!(lifecycle.checkpoint, 1501);
        assert_eq!(lifecycle.source_sequence, 1504);
        assert_eq!(metrics.advisories["new"], 200);
        assert_eq!(metrics.advisories["timeout"], 0);
        assert_eq!(metrics.replicator("unknown"), ReplicatorCounts::default());
    }

    #[test]
    fn the_books_balance_only_when_west_holds_what_it_should() {
        let [registration, lifecycle] = REPLICATORS;
        let mut counts = ReplicatorCounts {
            copied: 200,
            ..ReplicatorCounts::default()
        };
        counts.skipped.insert("sampled".to_string(), 800);
        let books = ReplicatorBooks::new(&registration, 1000, 200, &counts);
        assert_eq!(books.lost, 0);
        assert_eq!(books.sampled_out, 800);
        // West misses a copied message.
        assert_eq!(
            ReplicatorBooks::new(&registration, 1000, 199, &counts).lost,
            1
        );
        // A source message was neither copied nor counted.
        assert_eq!(
            ReplicatorBooks::new(&registration, 1001, 200, &counts).lost,
            1
        );

        let full = ReplicatorCounts {
            copied: 1500,
            ..ReplicatorCounts::default()
        };
        assert_eq!(ReplicatorBooks::new(&lifecycle, 1500, 1500, &full).lost, 0);
        assert_eq!(ReplicatorBooks::new(&lifecycle, 1500, 1497, &full).lost, 3);
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }

    #[test]
    fn the_config_names_both_adapters_and_both_replicators() {
        let config = demo_config(
            "nats://127.0.0.1:4222",
            "nats://127.0.0.1:4223",
            Path::new("/tmp/x \"y\""),
            SocketAddr::from(([127, 0, 0, 1], 9464)),
        );
        assert!(config.contains("kind: choria_lifecycle"));
        assert!(config.contains("kind: choria_registration"));
        assert!(config.contains("subject: \"ferry.lifecycle.{type}.{component}\""));
        assert!(config.contains("state_dir: \"/tmp/x \\\"y\\\"\""));
        assert!(config.contains("listen: \"127.0.0.1:9464\""));
        assert!(config.contains("servers: [\"nats://127.0.0.1:4223\"]"));
        assert!(config.contains("name: registration-to-west"));
        assert!(config.contains("name: lifecycle-to-west"));
        assert!(config.contains("key: { field: sender }"));
        assert!(config.contains("subject: \"ferry.advisories.{event}.{value}\""));
    }

    /// The demo's config passes ferry's own validation.
    #[test]
    fn the_config_is_valid() {
        let config = demo_config(
            "nats://127.0.0.1:4222",
            "nats://127.0.0.1:4223",
            Path::new("/tmp/ferry-demo-state"),
            SocketAddr::from(([127, 0, 0, 1], 9464)),
        );
        let loaded = crate::config::parse_str(&config, Path::new("ferry.yaml"));
        if let Err(error) = loaded {
            panic!("the demo config is invalid: {error}");
        }
    }
}
