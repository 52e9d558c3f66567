//! `ferry demo`: a self-contained tour of the adapters (SPEC section 2).
//!
//! The demo starts a local nats-server ("east"), writes a ferry config with two adapters
//! (`choria_lifecycle` → stream `FERRY_LIFECYCLE`, `choria_registration` → stream
//! `CHORIA_REGISTRATION`), runs `ferry run` on it as a child process exactly as an operator would,
//! and lets a simulated Choria fleet ([`crate::sim`]) publish lifecycle and registration traffic at
//! a steady rate. A progress line shows what was published, received and stored; at the end ferry
//! is stopped with SIGTERM and the demo checks the books: every published event must be stored,
//! counted as a duplicate (Choria re-sends identical `alive` events), or counted as invalid or
//! dropped. Anything else is `lost`, and makes the demo fail.
//!
//! The demo drives ferry only through its command line, config file and HTTP monitor, so it shows
//! (and checks) the same surface operators use.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _};
use futures_util::StreamExt as _;
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;

use crate::local_server::{self, LocalServer};
use crate::sim::{Fleet, LIFECYCLE_SUBJECTS, REGISTRATION_SUBJECT};

/// The stream the lifecycle adapter writes.
pub const LIFECYCLE_STREAM: &str = "FERRY_LIFECYCLE";
/// The stream the registration adapter writes.
pub const REGISTRATION_STREAM: &str = "CHORIA_REGISTRATION";

/// The fleet's seed: every demo run sends the same mix of events.
const SEED: u64 = 2026;
/// Simulated minutes (ticks) per wall-clock second at most; fewer when the fleet is large.
const TICKS_PER_SECOND: f64 = 10.0;
/// The fleet's publish rate is capped here (events per second), so a large `--nodes` slows the
/// simulated clock rather than overrunning a small machine.
const MAX_RATE: f64 = 10_000.0;
/// How long ferry may take to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the demo waits for ferry to work off what it received after publishing stops.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long ferry may take to exit after SIGTERM (its shutdown_timeout is 10s).
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

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

/// The books at the end of a demo. `copied` and `sampled_out` belong to replicators and stay 0
/// until the demo replicates to a second server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DemoSummary {
    /// Simulated nodes.
    pub nodes: usize,
    /// Events the fleet published on core NATS.
    pub published: u64,
    /// Events ferry's adapters took in (`ferry_adapter_received_total`).
    pub received: u64,
    /// Messages in the two output streams after ferry stopped.
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
    /// Messages replicated to the second data centre (replicators: not yet in the demo).
    pub copied: u64,
    /// Messages skipped by sampling (replicators: not yet in the demo).
    pub sampled_out: u64,
    /// Published events that are neither stored nor counted anywhere. Must be 0.
    pub lost: u64,
    /// What landed, for people: stored subjects with their message counts.
    #[serde(skip)]
    pub examples: Vec<String>,
}

/// Runs the demo and prints its summary (a table, or JSON with `opts.json`). Fails when ferry
/// cannot be started or when any event was lost.
pub async fn run(opts: DemoOptions) -> anyhow::Result<DemoSummary> {
    let work = WorkDir::new()?;
    match run_in(&opts, &work).await {
        Ok(summary) => {
            print_summary(&opts, &summary);
            if summary.lost > 0 {
                work.keep();
                bail!(
                    "{} of {} published events were lost (ferry's log and config are kept in {})",
                    summary.lost,
                    summary.published,
                    work.path.display()
                );
            }
            Ok(summary)
        }
        // Keep ferry's log and config for inspection once ferry was started.
        Err(error) if work.path.join("ferry.log").exists() => {
            work.keep();
            Err(error.context(format!(
                "the demo failed (ferry's log and config are kept in {})",
                work.path.display()
            )))
        }
        Err(error) => Err(error.context("the demo failed")),
    }
}

async fn run_in(opts: &DemoOptions, work: &WorkDir) -> anyhow::Result<DemoSummary> {
    let nodes = opts.nodes.max(1);
    eprintln!("starting nats-server \"east\" ...");
    let server = tokio::task::spawn_blocking(|| LocalServer::start("east", true))
        .await
        .context("starting nats-server")??;

    let monitor = SocketAddr::from(([127, 0, 0, 1], local_server::free_port()?));
    let config_path = work.path.join("ferry.yaml");
    std::fs::write(
        &config_path,
        demo_config(&server.url(), &work.path.join("state"), monitor),
    )
    .context("writing the demo config")?;

    eprintln!("starting ferry run -c {} ...", config_path.display());
    let mut ferry = FerryProcess::spawn(&config_path, &work.path.join("ferry.log"))?;
    ferry.wait_ready(monitor).await?;

    let client = async_nats::connect(server.url())
        .await
        .context("connecting to nats-server")?;
    let jetstream = async_nats::jetstream::new(client.clone());

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
    let fleet = fleet.with_epoch(now - ticks as i64 * crate::sim::TICK_SECONDS);

    eprintln!(
        "{} simulated Choria nodes publish on {LIFECYCLE_SUBJECTS} and {REGISTRATION_SUBJECT} \
         for {:?} ({:.1} simulated minutes per second)",
        group(nodes as u64),
        opts.duration,
        ticks_per_second
    );
    let published = Arc::new(AtomicU64::new(0));
    let (stop_progress, stopped) = watch::channel(false);
    let progress = tokio::spawn(progress_loop(
        monitor,
        jetstream.clone(),
        published.clone(),
        stopped,
    ));

    let started = Instant::now();
    let mut tick = 0;
    while started.elapsed() < opts.duration {
        for event in fleet.events_for_tick(tick) {
            client
                .publish(event.subject(), event.payload().into())
                .await
                .context("publishing")?;
            published.fetch_add(1, Ordering::Relaxed);
        }
        client.flush().await.context("flushing")?;
        tick += 1;
        tokio::time::sleep_until((started + tick_period * tick as u32).into()).await;
    }
    let published = published.load(Ordering::Relaxed);

    // Let ferry work off its subscription buffer, queue and spool before stopping it.
    let counts = settle(monitor, published, &mut ferry).await?;
    let _ = stop_progress.send(true);
    let _ = progress.await;

    eprintln!("stopping ferry (SIGTERM) ...");
    let status = ferry.terminate().await?;
    if !status.success() {
        bail!(
            "ferry exited with {status} after SIGTERM\n--- ferry log (tail) ---\n{}",
            ferry.log_tail()
        );
    }

    let lifecycle = stream_messages(&jetstream, LIFECYCLE_STREAM).await?;
    let registration = stream_messages(&jetstream, REGISTRATION_STREAM).await?;
    let stored = lifecycle + registration;
    let accounted = stored + counts.duplicates + counts.invalid + counts.dropped + counts.filtered;
    Ok(DemoSummary {
        nodes,
        published,
        received: counts.received,
        stored,
        duplicates: counts.duplicates,
        invalid: counts.invalid,
        dropped: counts.dropped,
        filtered: counts.filtered,
        copied: 0,
        sampled_out: 0,
        lost: published.saturating_sub(accounted),
        examples: examples(&jetstream).await,
    })
}

/// The config the demo runs ferry with: SPEC section 3's two Choria adapters.
fn demo_config(server: &str, state_dir: &Path, monitor: SocketAddr) -> String {
    let quote = |text: &str| serde_json::to_string(text).unwrap_or_default();
    format!(
        r#"# Written by `ferry demo`.
name: ferry-demo
state_dir: {state_dir}
monitor: {{ listen: "{monitor}" }}
shutdown_timeout: 10s

connections:
  east:
    servers: [{server}]
    name: ferry-demo

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
"#,
        state_dir = quote(&state_dir.to_string_lossy()),
        server = quote(server),
    )
}

/// The counters the demo reads from ferry's `/metrics`, summed over pipelines and reasons.
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

/// Sums the demo's counters out of a Prometheus text exposition.
fn parse_metrics(text: &str) -> Counts {
    let mut counts = Counts::default();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let Some(value) = line
            .rsplit(' ')
            .next()
            .and_then(|value| value.parse::<f64>().ok())
        else {
            continue;
        };
        let value = value.max(0.0) as u64;
        let slot = match &line[..name_end] {
            "ferry_adapter_received_total" => &mut counts.received,
            "ferry_adapter_published_total" => &mut counts.published,
            "ferry_adapter_duplicates_total" => &mut counts.duplicates,
            "ferry_adapter_invalid_total" => &mut counts.invalid,
            "ferry_adapter_dropped_total" => &mut counts.dropped,
            "ferry_adapter_filtered_total" => &mut counts.filtered,
            "ferry_adapter_spool_messages" => &mut counts.spool,
            "ferry_adapter_queue_messages" => &mut counts.queue,
            _ => continue,
        };
        *slot += value;
    }
    counts
}

/// Reads ferry's counters from its monitor.
async fn scrape(monitor: SocketAddr) -> anyhow::Result<Counts> {
    let (status, body) = http_get(monitor, "/metrics").await?;
    if status != 200 {
        bail!("GET /metrics answered {status}");
    }
    Ok(parse_metrics(&body))
}

/// Waits until ferry received everything published (or stops receiving more) and has stored or
/// counted all of it, then returns the final counters.
async fn settle(
    monitor: SocketAddr,
    published: u64,
    ferry: &mut FerryProcess,
) -> anyhow::Result<Counts> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut last = Counts::default();
    let mut unchanged_since = Instant::now();
    loop {
        ferry.check_running()?;
        let counts = scrape(monitor).await?;
        if counts != last {
            last = counts;
            unchanged_since = Instant::now();
        }
        let all_in =
            counts.received >= published || unchanged_since.elapsed() >= Duration::from_secs(3);
        if (all_in && counts.idle()) || Instant::now() >= deadline {
            return Ok(counts);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Prints the progress line until told to stop: every 250 ms in place on a terminal, every 5 s as
/// a new line otherwise.
async fn progress_loop(
    monitor: SocketAddr,
    jetstream: async_nats::jetstream::Context,
    published: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
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
    let mut counts = Counts::default();
    let mut last_received = (0u64, Instant::now());
    let mut rate = 0.0;
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = stop.changed() => true,
        };
        if let Ok(fresh) = scrape(monitor).await {
            counts = fresh;
        }
        let stored = stream_messages(&jetstream, LIFECYCLE_STREAM)
            .await
            .unwrap_or(0)
            + stream_messages(&jetstream, REGISTRATION_STREAM)
                .await
                .unwrap_or(0);
        let elapsed = last_received.1.elapsed().as_secs_f64();
        if elapsed >= 0.2 {
            rate = counts.received.saturating_sub(last_received.0) as f64 / elapsed;
            last_received = (counts.received, Instant::now());
        }
        let line = format!(
            "[{:>5.1}s] published {}  received {}  stored {}  duplicates {}  invalid {}  spool {}  rate {}/s",
            started.elapsed().as_secs_f64(),
            group(published.load(Ordering::Relaxed)),
            group(counts.received),
            group(stored),
            group(counts.duplicates),
            group(counts.invalid),
            group(counts.spool),
            group(rate as u64),
        );
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

/// The number of messages in `stream` (0 while ferry has not created it yet).
async fn stream_messages(
    jetstream: &async_nats::jetstream::Context,
    stream: &str,
) -> anyhow::Result<u64> {
    let stream = jetstream
        .get_stream(stream)
        .await
        .map_err(|error| anyhow!("stream {stream}: {error}"))?;
    let info = stream
        .get_info()
        .await
        .map_err(|error| anyhow!("stream info: {error}"))?;
    Ok(info.state.messages)
}

/// What landed, as lines for people: the lifecycle stream's subjects with their message counts,
/// and a few of the registration stream's per-node subjects.
async fn examples(jetstream: &async_nats::jetstream::Context) -> Vec<String> {
    let mut lines = Vec::new();
    for (subject, count) in subject_counts(jetstream, LIFECYCLE_STREAM).await {
        lines.push(format!("{subject}: {}", group(count)));
    }
    let registration = subject_counts(jetstream, REGISTRATION_STREAM).await;
    for (subject, count) in registration.iter().take(3) {
        lines.push(format!("{subject}: {}", group(*count)));
    }
    if registration.len() > 3 {
        lines.push(format!(
            "... one subject per node: {} registration subjects in all",
            group(registration.len() as u64)
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
    let rows = [
        (
            "published",
            summary.published,
            "events sent by the simulated fleet on core NATS",
        ),
        ("received", summary.received, "taken in by ferry's adapters"),
        (
            "stored",
            summary.stored,
            "messages in FERRY_LIFECYCLE + CHORIA_REGISTRATION",
        ),
        (
            "duplicates",
            summary.duplicates,
            "identical alive events re-sent within the duplicate window: stored once",
        ),
        (
            "invalid",
            summary.invalid,
            "refused by a decoder (counted, never stored)",
        ),
        (
            "dropped",
            summary.dropped,
            "dropped and counted (spool full, oversize, rejected)",
        ),
        ("filtered", summary.filtered, "removed by a filter"),
        (
            "copied",
            summary.copied,
            "replicated to a second data centre (replicators: a later release)",
        ),
        (
            "sampled_out",
            summary.sampled_out,
            "skipped by sampling (replicators: a later release)",
        ),
        (
            "lost",
            summary.lost,
            "published but neither stored nor counted: must be 0",
        ),
    ];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nferry demo: {} simulated Choria nodes for {:?}\n",
        group(summary.nodes as u64),
        opts.duration
    );
    for (name, value, meaning) in rows {
        let _ = writeln!(out, "  {name:<12} {:>12}   {meaning}", group(value));
    }
    if !summary.examples.is_empty() {
        let _ = writeln!(out, "\nWhat landed (subject: messages):");
        for line in &summary.examples {
            let _ = writeln!(out, "  {line}");
        }
    }
    print!("{out}");
}

/// `1234567` → `1,234,567`.
fn group(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A minimal async HTTP/1.1 GET against ferry's monitor.
async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        local_server::parse_http_response(&response)
    };
    Ok(tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| anyhow!("GET {path}: no answer within 5s"))??)
}

/// The `ferry run` child process. Killed on drop if still running.
struct FerryProcess {
    child: Child,
    log: PathBuf,
}

impl FerryProcess {
    fn spawn(config: &Path, log: &Path) -> anyhow::Result<FerryProcess> {
        let exe = std::env::current_exe().context("locating the ferry binary")?;
        let log_file = std::fs::File::create(log).context("creating ferry's log file")?;
        let child = Command::new(&exe)
            .arg("run")
            .arg("-c")
            .arg(config)
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("running {} run", exe.display()))?;
        Ok(FerryProcess {
            child,
            log: log.to_path_buf(),
        })
    }

    fn log_tail(&self) -> String {
        local_server::tail(&self.log, 30)
    }

    /// Fails (with the log's tail) when ferry has exited.
    fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "ferry exited unexpectedly with {status}\n--- ferry log (tail) ---\n{}",
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Waits until `/readyz` answers 200.
    async fn wait_ready(&mut self, monitor: SocketAddr) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last: String;
        loop {
            self.check_running()?;
            match http_get(monitor, "/readyz").await {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => last = format!("{status} {}", body.trim()),
                Err(error) => last = error.to_string(),
            }
            if Instant::now() >= deadline {
                bail!(
                    "ferry was not ready within {READY_TIMEOUT:?} (last /readyz: {last})\n--- ferry log (tail) ---\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM and waits for the exit.
    async fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        local_server::signal(&self.child, libc::SIGTERM);
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "ferry did not exit within {EXIT_TIMEOUT:?} of SIGTERM\n--- ferry log (tail) ---\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for FerryProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The demo's temporary directory (config, ferry's state and log); removed on drop unless kept.
struct WorkDir {
    path: PathBuf,
    keep: std::cell::Cell<bool>,
}

impl WorkDir {
    fn new() -> anyhow::Result<WorkDir> {
        let path =
            local_server::unique_temp_dir("demo").context("creating a temporary directory")?;
        Ok(WorkDir {
            path,
            keep: std::cell::Cell::new(false),
        })
    }

    /// Keeps the directory for inspection.
    fn keep(&self) {
        self.keep.set(true);
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep.get() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
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
        let counts = parse_metrics(text);
        assert_eq!(counts.received, 42);
        assert_eq!(counts.published, 7);
        assert_eq!(counts.duplicates, 3);
        assert_eq!(counts.invalid, 2);
        assert_eq!(counts.dropped, 1);
        assert_eq!(counts.accounted(), 13);
        assert!(!counts.idle());
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }

    #[test]
    fn the_config_names_both_adapters() {
        let config = demo_config(
            "nats://127.0.0.1:4222",
            Path::new("/tmp/x \"y\""),
            SocketAddr::from(([127, 0, 0, 1], 9464)),
        );
        assert!(config.contains("kind: choria_lifecycle"));
        assert!(config.contains("kind: choria_registration"));
        assert!(config.contains("subject: \"ferry.lifecycle.{type}.{component}\""));
        assert!(config.contains("state_dir: \"/tmp/x \\\"y\\\"\""));
        assert!(config.contains("listen: \"127.0.0.1:9464\""));
    }
}
