//! Adapters (SPEC section 4): core NATS subjects → decoder → filter → JetStream, with a disk spool.
//!
//! ```text
//! subscription ─▶ intake (decode, filter, render) ─▶ router ─▶ bounded queue ─▶ publisher ─▶ JetStream
//!                                                      └──────▶ disk spool ─────┘
//! ```
//! Each adapter is two tasks: the [`intake::Intake`] and the [`publisher::Publisher`], joined by the
//! [`router::Router`]. A third, small task reports the adapter's state to the status board.

pub mod intake;
pub mod message;
pub mod publisher;
pub mod router;
pub mod spool;
pub mod stream;
pub mod telemetry;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::schema::AdapterConfig;
use crate::connect::Connection;
use crate::filter::Filter;
use crate::metrics::Metrics;
use crate::shutdown::{Shutdown, StopSignal};
use crate::state::StateStore;
use crate::status::{PipelineKind, PipelineState, StatusBoard};
use crate::subject::Template;
use crate::supervisor::{Pipeline, Spawner};
use intake::Intake;
use message::OutMessage;
use publisher::Publisher;
use router::Router;
use spool::{Spool, SpoolError};
use telemetry::{AdapterTelemetry, DropReason, SpoolOp};

/// The in-memory queue between intake and publisher holds this many events per allowed publish in
/// flight (at least [`MIN_QUEUE`]). It absorbs bursts; beyond it, events go to the disk spool.
const QUEUE_PER_IN_FLIGHT: usize = 16;
const MIN_QUEUE: usize = 16_384;

/// The capacity of an adapter's in-memory queue (documented: SIGKILL can lose what it holds).
pub fn queue_capacity(config: &AdapterConfig) -> usize {
    (config.max_in_flight * QUEUE_PER_IN_FLIGHT).max(MIN_QUEUE)
}

/// What the intake and publisher know about the adapter's health, read by the status task.
pub struct Health {
    subscribed: AtomicBool,
    /// Why JetStream is not taking events, while it is not.
    output_problem: Mutex<Option<String>>,
    /// A problem only the operator can fix (e.g. overlapping stream subjects).
    failure: Mutex<Option<String>>,
    /// Publishes of events taken from the in-memory queue that await their ack: what a publisher
    /// that fails would leave unaccounted for.
    queue_in_flight: AtomicU64,
}

impl Health {
    fn new() -> Health {
        Health {
            queue_in_flight: AtomicU64::new(0),
            subscribed: AtomicBool::new(false),
            output_problem: Mutex::new(None),
            failure: Mutex::new(None),
        }
    }

    pub fn queue_publish_started(&self) {
        self.queue_in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn queue_publish_finished(&self) {
        self.queue_in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    fn take_queue_in_flight(&self) -> u64 {
        self.queue_in_flight.swap(0, Ordering::Relaxed)
    }

    pub fn set_subscribed(&self) {
        self.subscribed.store(true, Ordering::Relaxed);
    }

    pub fn set_output(&self, problem: Option<String>) {
        *self
            .output_problem
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = problem;
    }

    pub fn set_failed(&self, failure: Option<String>) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = failure;
    }

    fn output_problem(&self) -> Option<String> {
        self.output_problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Everything an adapter needs from the process.
#[derive(Clone)]
pub struct AdapterContext {
    pub config: AdapterConfig,
    pub input: Connection,
    pub output: Connection,
    pub store: Arc<dyn StateStore>,
    /// Where the spool's segment files live (`state_dir/spool/<adapter>/`).
    pub state_dir: PathBuf,
    pub metrics: Arc<Metrics>,
    pub board: Arc<StatusBoard>,
}

/// Why an adapter could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("adapter {adapter}: {source}")]
    State { adapter: String, source: SpoolError },
    #[error("adapter {adapter}: {message}")]
    Config { adapter: String, message: String },
}

/// A running adapter.
pub struct Adapter {
    name: String,
    intake: JoinHandle<()>,
    publisher: JoinHandle<()>,
    status: JoinHandle<()>,
    flusher: JoinHandle<()>,
    spool: Arc<Spool>,
    /// The in-memory queue's receiving end, held by the publisher while it runs; kept here so
    /// that what it holds reaches the spool even when the publisher task failed.
    queue: Arc<tokio::sync::Mutex<mpsc::Receiver<OutMessage>>>,
    router: Arc<Router>,
    health: Arc<Health>,
    telemetry: AdapterTelemetry,
    store: Arc<dyn StateStore>,
    shutdown: Shutdown,
}

impl Adapter {
    /// Opens the spool and starts the adapter's tasks through `spawner`, which reports their ends
    /// to the supervisor.
    pub fn start(context: AdapterContext, spawner: Spawner) -> Result<Adapter, StartError> {
        let AdapterContext {
            config,
            input,
            output,
            store,
            state_dir,
            metrics,
            board,
        } = context;
        let name = config.name.clone();
        let config_error = |message: String| StartError::Config {
            adapter: name.clone(),
            message,
        };
        let template = Template::parse(&config.output.subject)
            .map_err(|error| config_error(error.to_string()))?;
        let filter = match &config.filter {
            Some(filter) => {
                Filter::compile(filter).map_err(|error| config_error(error.to_string()))?
            }
            None => Filter::accept_all(),
        };
        let labels = [name.as_str()];
        // The limit is exported beside the spool's size, so "the spool is filling" is one ratio an
        // alert can use without knowing each adapter's config.
        metrics
            .adapter_spool_max_bytes
            .with_label_values(&labels)
            .set(i64::try_from(config.spool.max_bytes.0).unwrap_or(i64::MAX));
        let (spool, recovered) = Spool::open(
            store.as_ref(),
            &state_dir,
            &name,
            config.spool.max_bytes.0,
            metrics.adapter_spool_messages.with_label_values(&labels),
            metrics.adapter_spool_bytes.with_label_values(&labels),
        )
        .map_err(|source| StartError::State {
            adapter: name.clone(),
            source,
        })?;
        if recovered.unreadable > 0 {
            tracing::warn!(adapter = %name, records = recovered.unreadable, "the spool holds records this version cannot read; they are kept untouched");
        }
        for (file, bytes) in &recovered.torn {
            tracing::warn!(adapter = %name, file = %file.display(), bytes, "a spool segment ends in an incomplete record written after the last flush (a write cut short by a crash or power loss, of events never counted as spooled); the records before it are kept");
        }
        let telemetry = AdapterTelemetry::new(&metrics, &name);
        telemetry.segments_damaged(&recovered.damaged);
        if let Some(events) = recovered.store_lost {
            telemetry.dropped(DropReason::SpoolDamaged, events);
            tracing::error!(adapter = %name, events_lost = events, segment_files = recovered.unrecorded.len(), "the state store that held this spool's position and its out-of-order part is gone (deleted, emptied or replaced): the {events} spooled events it held are lost and counted in ferry_adapter_dropped_total{{reason=\"spool_damaged\"}}. The segment files are drained from their start, so events published before may be published again (JetStream drops the repeats within the stream's duplicate window)");
        } else if !recovered.unrecorded.is_empty() {
            tracing::info!(adapter = %name, files = recovered.unrecorded.len(), "spool segment files the state store had no record of yet (written by an earlier release): they are drained, and damage in them is counted from sequence gaps");
        }
        if !spool.is_empty() {
            tracing::info!(adapter = %name, events = spool.messages(), bytes = spool.bytes(), "spool holds events from a previous run; they are published first");
        }
        let spool = Arc::new(spool);
        let (queue_tx, queue_rx) = mpsc::channel(queue_capacity(&config));
        let queue = Arc::new(tokio::sync::Mutex::new(queue_rx));
        let queue_for_publisher = queue
            .clone()
            .try_lock_owned()
            .map_err(|_| config_error("the event queue is already taken".into()))?;
        let first_seq = recovered.last_seq.map_or(1, |seq| seq + 1);
        let router = Arc::new(Router::new(queue_tx, spool.clone(), first_seq));
        let health = Arc::new(Health::new());
        let shutdown = Shutdown::new();
        board.register(&name, PipelineKind::Adapter);

        let publisher = Publisher {
            stream_subjects: config.stream_subjects(),
            js: output.jetstream(config.max_in_flight),
            output: output.clone(),
            queue: queue_for_publisher,
            router: router.clone(),
            spool: spool.clone(),
            telemetry: telemetry.clone(),
            health: health.clone(),
            stop: shutdown.signal(),
            verified_connects: 0,
            config: config.clone(),
        };
        let intake = Intake {
            decoder: config.kind.decoder(&config),
            client: input.client.clone(),
            filter,
            template,
            router: router.clone(),
            telemetry: telemetry.clone(),
            health: health.clone(),
            stop: shutdown.signal(),
            config,
        };
        let flusher = spawner.spawn(
            "flusher",
            flush_spool(
                store.clone(),
                spool.clone(),
                telemetry.clone(),
                shutdown.signal(),
            ),
        );
        let status = spawner.spawn(
            "status",
            report_status(
                name.clone(),
                board,
                health.clone(),
                store.clone(),
                spool.clone(),
                router.clone(),
                input,
                metrics,
                telemetry.clone(),
                shutdown.signal(),
            ),
        );
        Ok(Adapter {
            name,
            intake: spawner.spawn("intake", intake.run()),
            publisher: spawner.spawn("publisher", publisher.run()),
            status,
            flusher,
            spool,
            queue,
            router,
            health,
            telemetry,
            store,
            shutdown,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Graceful stop: intake unsubscribes and hands over what the client had buffered; the
    /// publisher finishes the in-memory events. At `timeout` the rest is written to the spool.
    pub async fn stop(mut self, timeout: Duration) {
        self.shutdown.stop();
        let deadline = tokio::time::Instant::now() + timeout;
        tokio::select! {
            _ = &mut self.intake => {}
            _ = tokio::time::sleep_until(deadline) => {
                tracing::warn!(adapter = %self.name, "intake did not finish within shutdown_timeout");
            }
        }
        tokio::select! {
            _ = &mut self.publisher => {}
            _ = tokio::time::sleep_until(deadline) => {
                self.shutdown.pass_deadline();
                let _ = (&mut self.publisher).await;
            }
        }
        if !self.intake.is_finished() {
            self.intake.abort();
        }
        self.status.abort();
        self.flusher.abort();
        self.keep_what_a_failed_publisher_left();
        // What the publisher spilled at the end must be on disk before the process exits.
        if !flush_and_count(&self.store, &self.spool, &self.telemetry).await {
            // What only memory holds now is lost with the process: counted, not silent.
            let lost = self.spool.unwritten();
            if lost > 0 {
                self.telemetry.dropped(DropReason::DiskFull, lost);
                tracing::error!(adapter = %self.name, events_dropped = lost, "{lost} spooled events held in memory could not be written to disk before the stop (the disk under state_dir is full) and are dropped, counted in ferry_adapter_dropped_total{{reason=\"disk_full\"}}");
            }
        }
        self.telemetry.segments_damaged(&self.spool.take_damage());
    }

    /// A publisher that ended normally left nothing behind. One that failed left the events in
    /// the queue (moved to the spool here, nothing lost) and its publishes in flight: JetStream
    /// may or may not have stored them, and they cannot be retried, so they are counted as
    /// `dropped{reason="task_failed"}` (an upper bound) with one log line.
    fn keep_what_a_failed_publisher_left(&self) {
        let Ok(mut queue) = self.queue.try_lock() else {
            return;
        };
        let mut moved = 0u64;
        if let Ok(message) = queue.try_recv() {
            self.router.start_spooling();
            let mut next = Some(message);
            while let Some(message) = next {
                match self.spool.push(&message) {
                    Ok(()) => {
                        self.telemetry.spooled.inc();
                        moved += 1;
                    }
                    Err(error) => self.telemetry.spool_refused(&error),
                }
                next = queue.try_recv().ok();
            }
        }
        let lost = self.health.take_queue_in_flight();
        if lost > 0 {
            self.telemetry.dropped(DropReason::TaskFailed, lost);
        }
        if moved > 0 || lost > 0 {
            tracing::error!(
                adapter = %self.name,
                moved_to_spool = moved,
                in_flight = lost,
                "the publisher task failed: its queued events were moved to the spool; its publishes in flight may or may not be stored and are counted in ferry_adapter_dropped_total{{reason=\"task_failed\"}}"
            );
        }
    }
}

impl Pipeline for Adapter {
    async fn stop(self, timeout: Duration) {
        Adapter::stop(self, timeout).await
    }
}

/// Flushes the state store shortly after events were spooled, and only then counts them in the
/// spool gauges (SPEC section 9: an event counts as spooled once the store has flushed it). While
/// the store cannot write, it keeps flushing, which is what reopens the store once it can.
async fn flush_spool(
    store: Arc<dyn StateStore>,
    spool: Arc<Spool>,
    telemetry: AdapterTelemetry,
    mut stop: StopSignal,
) {
    // It keeps flushing while the adapter stops, and ends with the adapter.
    loop {
        tokio::select! {
            _ = tokio::time::sleep(crate::state::FLUSH_INTERVAL) => {}
            alive = stop.changed() => if !alive { return },
        }
        if spool.needs_flush() || store.problem().is_some() {
            flush_and_count(&store, &spool, &telemetry).await;
        }
    }
}

/// Makes what was spooled so far durable, then counts it in the spool gauges. Whether it did.
async fn flush_and_count(
    store: &Arc<dyn StateStore>,
    spool: &Arc<Spool>,
    telemetry: &AdapterTelemetry,
) -> bool {
    // Taken before the flush: everything it counts is covered by it.
    let pending = spool.unflushed();
    let (store, flushing) = (store.clone(), spool.clone());
    match tokio::task::spawn_blocking(move || flushing.flush(store.as_ref())).await {
        Ok(Ok(())) => {
            spool.mark_flushed(pending);
            true
        }
        Ok(Err(error)) => {
            telemetry.spool_failed(SpoolOp::Flush, &error);
            false
        }
        Err(error) => {
            telemetry.spool_failed(SpoolOp::Flush, &error);
            false
        }
    }
}

/// Keeps the status board current: state, reason, spool depth and event counters; reports spool
/// damage found while draining.
#[allow(clippy::too_many_arguments)]
async fn report_status(
    name: String,
    board: Arc<StatusBoard>,
    health: Arc<Health>,
    store: Arc<dyn StateStore>,
    spool: Arc<Spool>,
    router: Arc<Router>,
    input: Connection,
    metrics: Arc<Metrics>,
    telemetry: AdapterTelemetry,
    mut stop: StopSignal,
) {
    let queue_gauge = metrics.adapter_queue_depth.with_label_values(&[&name]);
    loop {
        telemetry.segments_damaged(&spool.take_damage());
        let (state, reason) = if let Some(failure) = health.failure() {
            (PipelineState::Failed, Some(failure))
        } else if !input.is_connected() {
            (
                PipelineState::Disconnected,
                Some(format!("connection {} is down", input.name)),
            )
        } else if !health.subscribed.load(Ordering::Relaxed) {
            (PipelineState::Starting, Some("subscribing".to_string()))
        } else if let Some(problem) = spool.write_problem().or_else(|| store.problem()) {
            (PipelineState::Disconnected, Some(problem))
        } else if let Some(problem) = health.output_problem() {
            (
                PipelineState::Disconnected,
                Some(format!(
                    "JetStream not accepting events, spooling: {problem}"
                )),
            )
        } else {
            (PipelineState::Running, None)
        };
        if stop.is_stopping() {
            board.set_state(&name, PipelineState::Stopping, None);
        } else {
            board.set_state(&name, state, reason);
        }
        // As the gauges count them: flushed to disk.
        let (messages, bytes) = spool.counted();
        let events = telemetry.events();
        board.update(&name, |status| {
            status.spool_messages = messages;
            status.spool_bytes = bytes;
            status.events = Some(events);
        });
        queue_gauge.set(router.queue_depth() as i64);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            alive = stop.changed() => if !alive { return },
        }
    }
}
