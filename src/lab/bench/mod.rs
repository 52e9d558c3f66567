//! `ferry bench` (SPEC section 9): ferry's throughput, latency and memory, each measured against a
//! baseline in the same run, on the same servers.
//!
//! These machines are shared and noisy, so an absolute figure means little; a ratio against a
//! baseline taken moments earlier on the same hardware means a lot. Every scenario therefore
//! interleaves its runs (baseline, ferry, baseline, ferry, ...) and reports the median of each, so
//! a burst of load elsewhere hits both sides alike.
//!
//! ferry runs as a child process (`ferry run -c FILE`, see [`ferry_testkit::FerryChild`]) with a config
//! the bench writes, exactly as an operator would run it; its peak memory is the child's `VmHWM`
//! and its CPU per message the child's user + system time over the measured interval
//! ([`cpu`]). The baselines run in this process with a plain async-nats client, or are the
//! server's own work (a JetStream mirror). The peers ([`peers`]) are what a user would write by
//! hand instead of running ferry; they run in this process on threads of their own, so their CPU
//! is measured too.
//!
//! | scenario | ferry | baseline | peer |
//! | --- | --- | --- | --- |
//! | `adapter` | Choria lifecycle events on core NATS → adapter (spool on) → JetStream | the same events published straight to JetStream with pipelined acks | `naive-relay`: core subscribe, JetStream publish, no headers |
//! | `adapter-same-headers` | the same ferry runs as `adapter` | the same client publishing the events as ferry stores them, with the headers the contract requires (`Nats-Msg-Id` makes the server deduplicate) | — |
//! | `adapter-latency` | the same path at a fixed 10,000 events/s: p50/p99 from core publish to stored | — | — |
//! | `replicate` | a pre-filled stream on server A → replicator → server B | a JetStream mirror on B of the stream on A, across JetStream domains over a leafnode | `naive-copy`: pull from A, publish to B, no headers |
//! | `replicate-same-headers` | the same ferry runs as `replicate` | one client publishing the same messages to B with the headers of a copy, without reading A | — |
//! | `sample` | registrations of 50,000 senders through a replicator sampling each sender once an hour: messages examined per second | reading the same stream with a plain ordered consumer | — |
//! | `sample-1m` | the same with 1,000,000 senders: memory must stay bounded | as `sample` | — |

mod adapter;
mod cpu;
mod jetstream;
mod peers;
mod replicate;
mod report;
mod sample;

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;

pub use report::{render_table, PeerResult, Report, ScenarioResult};

/// Which scenarios to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Suite {
    Adapter,
    Replicate,
    Sample,
    All,
}

/// `ferry bench` options.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub suite: Suite,
    /// Messages per run, instead of each scenario's default.
    pub messages: Option<u64>,
    /// Payload size of the `replicate` scenario.
    pub size: usize,
    /// Baseline/ferry pairs per scenario; the median of each side is reported.
    pub rounds: usize,
    /// Print JSON instead of the table.
    pub json: bool,
}

impl BenchOptions {
    fn messages_or(&self, default: u64) -> u64 {
        self.messages.unwrap_or(default).max(1)
    }
}

/// Runs the chosen scenarios and returns their results (printing is the caller's).
pub async fn run(options: &BenchOptions) -> anyhow::Result<Report> {
    let progress = Progress::new();
    // One runtime for every peer run: its threads live as long as the bench, so none of them
    // exits in the middle of a measured interval.
    let peers = peers::PeerRuntime::new()?;
    let mut scenarios = Vec::new();
    let started = Instant::now();
    if matches!(options.suite, Suite::Adapter | Suite::All) {
        scenarios.extend(
            adapter::run(options, &progress, &peers)
                .await
                .context("scenario adapter")?,
        );
    }
    if matches!(options.suite, Suite::Replicate | Suite::All) {
        scenarios.extend(
            replicate::run(options, &progress, &peers)
                .await
                .context("scenario replicate")?,
        );
    }
    if matches!(options.suite, Suite::Sample | Suite::All) {
        scenarios.extend(
            sample::run(options, &progress)
                .await
                .context("scenario sample")?,
        );
    }
    progress.done(&format!(
        "bench finished in {:.0}s",
        started.elapsed().as_secs_f64()
    ));
    Ok(Report {
        scenarios,
        rounds: options.rounds,
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
    })
}

/// The median of some measurements (the mean of the middle two for an even count).
fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

/// The value at quantile `q` (0..=1) of sorted `values`, nearest rank.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Messages per second, for a count and how long it took.
fn rate(messages: u64, elapsed: Duration) -> f64 {
    messages as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// The progress line on stderr: rewritten in place on a terminal, a line per phase otherwise, so
/// a long bench shows what it is doing without flooding a log.
struct Progress {
    terminal: bool,
    last: std::sync::Mutex<Instant>,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            terminal: std::io::stderr().is_terminal(),
            last: std::sync::Mutex::new(Instant::now()),
        }
    }

    /// A new phase: always shown.
    fn phase(&self, text: &str) {
        if self.terminal {
            eprint!("\r\x1b[2K{text}");
        } else {
            eprintln!("{text}");
        }
    }

    /// Progress within a phase: shown on a terminal, at most four times a second.
    fn update(&self, text: &str, done: u64, total: u64) {
        if !self.terminal {
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() < Duration::from_millis(250) {
            return;
        }
        *last = Instant::now();
        let percent = if total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / total as f64
        };
        eprint!("\r\x1b[2K{text}: {done}/{total} ({percent:.0}%)");
    }

    fn done(&self, text: &str) {
        if self.terminal {
            eprintln!("\r\x1b[2K{text}");
        } else {
            eprintln!("{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_quantiles() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 2.0]), Some(2.0));
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&sorted, 0.5), Some(50.0));
        assert_eq!(quantile(&sorted, 0.99), Some(99.0));
        assert_eq!(quantile(&sorted, 1.0), Some(100.0));
        assert_eq!(quantile(&sorted, 0.0), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn rates() {
        assert_eq!(rate(1000, Duration::from_millis(500)), 2000.0);
        assert!(rate(1, Duration::ZERO).is_finite());
    }
}
