//! `ferry demo`: a self-contained tour of ferry (SPEC section 2).
//!
//! The demo starts two local nats-servers, "east" and "west", and writes a ferry config with two
//! adapters in east (`choria_lifecycle` → stream `FERRY_LIFECYCLE`, `choria_registration` → stream
//! `CHORIA_REGISTRATION`) and two replicators to west: a full copy of `FERRY_LIFECYCLE` and a
//! per-sender sampled copy of `CHORIA_REGISTRATION` (with advisories). It runs `ferry run` on that
//! config as a child process exactly as an operator would, and lets a simulated Choria fleet
//! ([`ferry_sim`]) publish lifecycle and registration traffic in east at a steady rate. A progress
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
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::units::format_duration;
use crate::shutdown::Shutdown;
use anyhow::{bail, Context as _};
use serde::Serialize;

use super::{spawn_ferry, EXIT_TIMEOUT, READY_TIMEOUT};
use crate::status::thousands as group;
use ferry_sim::{Fleet, LIFECYCLE_SUBJECTS, REGISTRATION_SUBJECT};
use ferry_testkit::{NatsServer, ServerOptions, WorkDir};

mod report;
#[cfg(test)]
mod tests;
mod watch;

use report::*;
use watch::*;

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
         in east for {} ({:.1} simulated minutes per second); ferry adapts them in east and \
         replicates to west ({LIFECYCLE_REPLICATOR}: everything, {REGISTRATION_REPLICATOR}: \
         sampled per sender)",
        group(nodes as u64),
        format_duration(opts.duration),
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
