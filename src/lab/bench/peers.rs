//! The peers (SPEC section 9): what a user writes by hand with a plain async-nats client instead
//! of running ferry, measured in the same rounds on the same servers.
//!
//! They are naive on purpose: no headers, no checkpoints, no spool, no decoding, an error ends the
//! run. They answer "how does ferry compare with a small program doing the same move", not "how
//! does it compare with a tuned rival".
//!
//! - `naive-copy` (`replicate`): an ephemeral pull consumer on the source stream (no acks, pulls
//!   of [`COPY_IN_FLIGHT`] messages), publishing each message's subject (behind a prefix) and
//!   payload to the target server with [`COPY_IN_FLIGHT`] publish acks in flight.
//! - `naive-relay` (`adapter`): a core subscription to the adapter's subjects, publishing each
//!   payload to JetStream (its subject behind a prefix) with [`RELAY_IN_FLIGHT`] acks in flight.
//!
//! The prefix keeps a copy out of the streams that listen on the original subjects, as ferry's
//! `subject_prefix` and output subject do.
//!
//! Peers run inside the bench process on a runtime of their own ([`PeerRuntime`]) whose threads
//! all carry one name, and they open their own connections there, so the client's connection
//! tasks run on those threads too. Their CPU time is therefore theirs alone: the load generator
//! and the bench's bookkeeping run on the bench's main runtime.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::context::PublishAckFuture;
use futures_util::StreamExt as _;
use tokio::sync::oneshot;

use super::cpu::ThreadTimes;
use super::jetstream::{connect, STALL_TIMEOUT};
use super::median;
use super::report::{PeerResult, ScenarioResult};

/// Publish acks in flight of `naive-copy`, and its pull batch (ferry's `max_in_flight` and pull
/// batch in the `replicate` scenario).
pub const COPY_IN_FLIGHT: usize = 4096;
/// Publish acks in flight of `naive-relay` (ferry's `max_in_flight` in the `adapter` scenario).
pub const RELAY_IN_FLIGHT: usize = 1024;
/// How long `naive-relay` waits for more once every event was published: core NATS may have
/// dropped some on the way (it is at-most-once), and those are counted as lost, not waited for.
const RELAY_QUIET: Duration = Duration::from_secs(1);
/// How long a peer may take to subscribe before the bench gives up.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The name of the peers' threads (the kernel keeps 15 bytes of it).
const THREAD_NAME: &str = "bench-peer";

/// The runtime the peers run on: as many worker threads as CPUs, like `#[tokio::main]`.
pub struct PeerRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl PeerRuntime {
    pub fn new() -> anyhow::Result<PeerRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name(THREAD_NAME)
            .enable_all()
            .build()
            .context("starting the peers' runtime")?;
        Ok(PeerRuntime {
            runtime: Some(runtime),
        })
    }

    /// Runs `work` on the peers' threads.
    pub fn spawn<F>(&self, work: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime
            .as_ref()
            .expect("the runtime lives until drop")
            .spawn(work)
    }

    /// CPU times of the peers' threads now; [`ThreadTimes::since`] gives what they spent in
    /// between.
    pub fn cpu(&self) -> Option<ThreadTimes> {
        ThreadTimes::of_threads_named(THREAD_NAME)
    }
}

impl Drop for PeerRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed inside the bench's own runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Waits for the peer started on `runtime`, naming it in any error.
pub async fn join<T>(
    name: &str,
    task: tokio::task::JoinHandle<anyhow::Result<T>>,
) -> anyhow::Result<T> {
    task.await
        .map_err(|error| anyhow!("{name}: {error}"))?
        .with_context(|| name.to_string())
}

/// A peer's runs in one scenario, round by round.
#[derive(Debug, Default)]
pub struct PeerRuns {
    pub rates: Vec<f64>,
    /// CPU per message of each run whose CPU could be read.
    pub cpu: Vec<f64>,
    /// The most a run lost.
    pub lost: u64,
}

impl PeerRuns {
    /// The medians, and ferry's ratio to the peer.
    pub fn result(&self, name: &str, ferry: Option<f64>, description: String) -> PeerResult {
        let rate = median(&self.rates);
        PeerResult {
            name: name.to_string(),
            msgs_per_s: rate,
            ratio: ScenarioResult::ratio_of(ferry, rate),
            cpu_us_per_msg: median(&self.cpu),
            lost: Some(self.lost),
            description,
        }
    }
}

/// What `naive-copy` copies.
pub struct CopyJob {
    pub source_url: String,
    pub stream: String,
    pub target_url: String,
    pub subject_prefix: String,
    pub messages: u64,
}

/// `naive-copy`: reads `messages` messages of the source stream and publishes each to the target
/// server; returns once every publish is acknowledged.
pub async fn naive_copy(job: CopyJob) -> anyhow::Result<()> {
    let (_source_client, source) = connect(&job.source_url).await?;
    let (_target_client, target) = connect(&job.target_url).await?;
    let stream = source
        .get_stream(&job.stream)
        .await
        .map_err(|e| anyhow!("stream {}: {e}", job.stream))?;
    let consumer = stream
        .create_consumer(pull::Config {
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow!("consumer on {}: {e}", job.stream))?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(COPY_IN_FLIGHT)
        .messages()
        .await
        .map_err(|e| anyhow!("reading {}: {e}", job.stream))?;
    let mut acks = AckWindow::new(COPY_IN_FLIGHT);
    for read in 0..job.messages {
        let message = match tokio::time::timeout(STALL_TIMEOUT, messages.next()).await {
            Ok(Some(Ok(message))) => message.message,
            Ok(Some(Err(error))) => bail!("reading {}: {error}", job.stream),
            Ok(None) => bail!("the consumer on {} ended after {read}", job.stream),
            Err(_) => bail!("reading {} stalled after {read}", job.stream),
        };
        let subject = format!("{}.{}", job.subject_prefix, message.subject);
        acks.push(target.publish(subject, message.payload).await)
            .await?;
    }
    acks.drain().await?;
    let _ = stream.delete_consumer(&consumer.cached_info().name).await;
    Ok(())
}

/// What `naive-relay` relays.
pub struct RelayJob {
    pub url: String,
    pub subjects: String,
    pub subject_prefix: String,
    pub messages: u64,
    /// Messages taken from the subscription so far, for the load generator's window.
    pub received: Arc<AtomicU64>,
    /// Set by the load generator once it published every event.
    pub all_sent: Arc<AtomicBool>,
}

/// `naive-relay`: subscribes to `subjects`, says so on `ready` once the server knows, then
/// publishes each of the next `messages` messages to JetStream. Returns when its run ended: once
/// every publish is acknowledged, or, when core NATS dropped some events on the way (nothing was
/// received for [`RELAY_QUIET`] after the last one was published), at the last event it received.
pub async fn naive_relay(job: RelayJob, ready: oneshot::Sender<()>) -> anyhow::Result<Instant> {
    let (client, js) = connect(&job.url).await?;
    let mut subscription = client
        .subscribe(job.subjects.clone())
        .await
        .map_err(|e| anyhow!("subscribing to {}: {e}", job.subjects))?;
    // After the round trip the server has the subscription: nothing published later is missed.
    client
        .flush()
        .await
        .map_err(|e| anyhow!("flushing the subscription: {e}"))?;
    let _ = ready.send(());
    let mut acks = AckWindow::new(RELAY_IN_FLIGHT);
    let mut received = 0u64;
    let mut last_event = Instant::now();
    while received < job.messages {
        let message = match tokio::time::timeout(RELAY_QUIET / 4, subscription.next()).await {
            Ok(Some(message)) => message,
            Ok(None) => bail!("the subscription to {} ended", job.subjects),
            Err(_)
                if job.all_sent.load(Ordering::Relaxed) && last_event.elapsed() > RELAY_QUIET =>
            {
                // The rest never arrived: lost on the way, counted from the stream afterwards.
                acks.drain().await?;
                return Ok(last_event);
            }
            Err(_) if last_event.elapsed() > STALL_TIMEOUT => bail!(
                "received {received} of {} on {}, then nothing for {STALL_TIMEOUT:?}",
                job.messages,
                job.subjects
            ),
            Err(_) => continue,
        };
        received += 1;
        last_event = Instant::now();
        job.received.store(received, Ordering::Relaxed);
        let subject = format!("{}.{}", job.subject_prefix, message.subject);
        acks.push(js.publish(subject, message.payload).await)
            .await?;
    }
    acks.drain().await?;
    Ok(Instant::now())
}

/// Publish acks in flight, oldest first: a full window waits for its oldest ack.
struct AckWindow {
    pending: VecDeque<PublishAckFuture>,
    size: usize,
}

type PublishResult = Result<PublishAckFuture, async_nats::jetstream::context::PublishError>;

impl AckWindow {
    fn new(size: usize) -> AckWindow {
        AckWindow {
            pending: VecDeque::with_capacity(size),
            size,
        }
    }

    /// Adds a publish just sent; with the window full, waits for the oldest ack.
    async fn push(&mut self, publish: PublishResult) -> anyhow::Result<()> {
        self.pending
            .push_back(publish.map_err(|e| anyhow!("publish: {e}"))?);
        if self.pending.len() >= self.size {
            if let Some(oldest) = self.pending.pop_front() {
                oldest.await.map_err(|e| anyhow!("publish ack: {e}"))?;
            }
        }
        Ok(())
    }

    async fn drain(self) -> anyhow::Result<()> {
        for ack in self.pending {
            ack.await.map_err(|e| anyhow!("publish ack: {e}"))?;
        }
        Ok(())
    }
}
