//! `ferry run`: opens the state store, the monitor and the connections, starts every pipeline,
//! reloads the config on SIGHUP (`reload.rs`), and on SIGINT/SIGTERM shuts them down gracefully
//! (SPEC section 2).

mod pipelines;
mod plan;
mod reload;

use std::path::PathBuf;
use std::sync::Arc;

use pipelines::{Pipelines, Shared};

use crate::adapter::spool::SpoolError;
use crate::config::schema::Config;
use crate::config::units::format_duration;
use crate::connect::ConnectError;
use crate::metrics::Metrics;
use crate::monitor::Monitor;
use crate::replicator::checkpoint::{Checkpoint, Checkpoints, Forced};
use crate::shutdown::Shutdown;
use crate::state::{SledStore, StateDirLock, StateError, StateStore, StoreHistory};
use crate::status::{PipelineKind, PipelineState, StatusBoard};

/// Why `ferry run` stopped with an error; decides the exit code (SPEC section 2). Each variant
/// keeps the error beneath it, so a caller (and a log) can follow the chain to its cause.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The config cannot work (exit 1), e.g. a pipeline naming an undefined connection.
    #[error("{0}")]
    Config(String),
    /// A connection's settings cannot work (exit 1: a credentials file that does not exist) or
    /// its servers cannot be reached (exit 2).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The state store or its lock (exit 2): locked by another process, damaged, unwritable.
    #[error(transparent)]
    State(#[from] StateError),
    /// An adapter's spool could not be opened (exit 2).
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The monitor cannot listen (exit 2), e.g. the port is taken (the error names the address).
    #[error(transparent)]
    Monitor(std::io::Error),
    /// A pipeline could not start (exit 2).
    #[error(transparent)]
    AdapterStart(#[from] crate::adapter::StartError),
    #[error(transparent)]
    ReplicatorStart(#[from] crate::replicator::StartError),
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Config(_) => 1,
            RunError::Connect(error) if error.is_config() => 1,
            _ => 2,
        }
    }
}

/// How `ferry run` treats the state store and its config file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--recover-state`: move a damaged state store aside and start with a fresh one.
    pub recover_state: bool,
    /// The file the config came from, read again on SIGHUP; without one, SIGHUP is logged and
    /// ignored.
    pub config_path: Option<PathBuf>,
}

/// Runs every pipeline of `config` until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), RunError> {
    run_with(config, RunOptions::default()).await
}

/// [`run`] with options; SIGHUP reloads the config file.
pub async fn run_with(config: Config, options: RunOptions) -> Result<(), RunError> {
    // Listen before anything else, so a SIGHUP during start-up cannot kill the process (the
    // default action); it is acted on once everything runs.
    let hangups = hangup_signal();
    run_until_with(config, options, shutdown_signal(), hangups).await
}

/// Runs until `stop` completes, then shuts down gracefully.
pub async fn run_until(
    config: Config,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    run_until_with(config, RunOptions::default(), stop, Hangups::none()).await
}

/// [`run_until`] with options, reloading the config at each of `hangups`.
pub async fn run_until_with(
    config: Config,
    options: RunOptions,
    stop: impl std::future::Future<Output = ()>,
    mut hangups: Hangups,
) -> Result<(), RunError> {
    let _lock = StateDirLock::acquire(&config.state_dir)?;
    let store: Arc<dyn StateStore> =
        Arc::new(open_store(&config.state_dir, options.recover_state)?);
    let store_watch = tokio::spawn(reopen_when_failed(store.clone()));
    let instance = config.instance_name();
    let metrics = Arc::new(Metrics::new());
    let board = Arc::new(StatusBoard::new(instance.clone()));
    let monitor_stop = Shutdown::new();
    let monitor = match &config.monitor {
        Some(monitor) => {
            let bound = Monitor::bind(&monitor.listen)
                .await
                .map_err(RunError::Monitor)?;
            tracing::info!(listen = %bound.local_addr(), "monitor listening");
            Some(bound)
        }
        None => None,
    };

    let shared = Shared {
        instance: instance.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        board: board.clone(),
    };
    let mut pipelines = Pipelines::new(shared, config.clone());
    pipelines.start_all().await?;
    // Serve only now: before every pipeline is registered, /readyz would report ready too early
    // and /metrics would lack the missing pipelines' label sets.
    let monitor =
        monitor.map(|bound| bound.spawn(metrics.clone(), board.clone(), monitor_stop.signal()));
    tracing::info!(
        instance = %instance,
        adapters = config.adapters.len(),
        replicators = config.replicators.len(),
        state_dir = %config.state_dir.display(),
        "ferry running"
    );

    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = hangups.next() => match &options.config_path {
                Some(path) => {
                    reload::reload(&mut pipelines, path).await;
                }
                None => tracing::warn!("SIGHUP: no config file to reload; ignored"),
            },
        }
    }
    let timeout = pipelines.config.shutdown_timeout.0;
    tracing::info!(
        timeout = %format_duration(timeout),
        "shutting down: stopping intake, finishing in-flight events"
    );
    pipelines.stop_all().await;
    store_watch.abort();
    if let Err(error) = store.flush() {
        tracing::error!(%error, "cannot flush the state store");
    }
    monitor_stop.stop();
    if let Some(monitor) = monitor {
        let _ = monitor.await;
    }
    tracing::info!("ferry stopped");
    Ok(())
}

/// The SIGHUPs that ask for a reload.
pub struct Hangups {
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    /// Never fires (no reload).
    pub fn none() -> Hangups {
        Hangups { signal: None }
    }

    /// Resolves at the next SIGHUP (several sent during a reload count as one more).
    async fn next(&mut self) {
        match &mut self.signal {
            Some(signal) => {
                if signal.recv().await.is_none() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }
}

/// Starts listening for SIGHUP (which would otherwise end the process).
pub fn hangup_signal() -> Hangups {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(signal) => Hangups {
            signal: Some(signal),
        },
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGHUP; reloading the config needs a restart");
            Hangups::none()
        }
    }
}

/// Opens the state store for `ferry run`. A damaged one stops the start with an error naming the
/// way out, unless `recover_state` asks to move it aside and start with a fresh one. A store that
/// is not the one the state directory had (lost, emptied, replaced) is reported; what it took with
/// it is counted by each pipeline as it starts.
fn open_store(state_dir: &std::path::Path, recover_state: bool) -> Result<SledStore, RunError> {
    let store = match SledStore::open(state_dir) {
        Ok(store) => {
            if recover_state {
                tracing::info!(state_dir = %state_dir.display(), "--recover-state: the state store is not damaged; nothing to recover");
            }
            store
        }
        Err(error) if error.is_damage() && recover_state => {
            let moved = SledStore::move_aside(state_dir)?;
            tracing::error!(%error, moved_to = %moved.display(), "--recover-state: moved the damaged state store aside and started with a fresh one; what it held is reported below");
            SledStore::open(state_dir)?
        }
        Err(error) => return Err(error.into()),
    };
    if let StoreHistory::Replaced { previous } = store.history() {
        tracing::error!(
            store = %store.path().display(),
            previous = %format!("{previous:016x}"),
            "the state store is not the one this state directory had (it was deleted, emptied, replaced or moved aside). Lost with it: replicator checkpoints (each replicator resumes from its target's last copied message, SPEC section 5), sampling state (senders are sampled afresh), and each adapter spool's position and out-of-order events (counted per adapter; events in the segment files are recovered from them)"
        );
    }
    if let Err(error) = store.record_identity() {
        tracing::warn!(%error, "cannot record the state store's identity; a later loss of the store may go unnoticed");
    }
    Ok(store)
}

/// A store whose write failed (a full disk) is reopened by its next flush; this makes sure one
/// comes every second even when no adapter's spool flushes (replicators rely on the store's
/// background flush).
async fn reopen_when_failed(store: Arc<dyn StateStore>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        if store.problem().is_some() {
            let store = store.clone();
            let _ = tokio::task::spawn_blocking(move || store.flush()).await;
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

/// `ferry status` when no instance is running: the pipelines from the config, with the spool depth
/// read from the state store (which is only opened when no other process holds it).
pub fn offline_status(config: &Config) -> Result<serde_json::Value, RunError> {
    if !SledStore::exists(&config.state_dir) {
        // Nothing ran here yet: the pipelines as configured, and nothing created on disk.
        let board = StatusBoard::new(config.instance_name());
        for adapter in &config.adapters {
            board.register(&adapter.name, PipelineKind::Adapter);
            board.set_state(&adapter.name, PipelineState::Stopped, None);
        }
        for replicator in &config.replicators {
            board.register(&replicator.name, PipelineKind::Replicator);
            board.set_state(&replicator.name, PipelineState::Stopped, None);
        }
        let mut json = board.to_json();
        json["running"] = serde_json::Value::Bool(false);
        json["state"] = serde_json::Value::String("none".into());
        return Ok(json);
    }
    let _lock = StateDirLock::acquire(&config.state_dir)?;
    let store = SledStore::open(&config.state_dir)?;
    let metrics = Metrics::new();
    let board = StatusBoard::new(config.instance_name());
    for adapter in &config.adapters {
        board.register(&adapter.name, PipelineKind::Adapter);
        let labels = [adapter.name.as_str()];
        let (spool, _) = crate::adapter::spool::Spool::open(
            &store,
            &config.state_dir,
            &adapter.name,
            u64::MAX,
            metrics.adapter_spool_messages.with_label_values(&labels),
            metrics.adapter_spool_bytes.with_label_values(&labels),
        )?;
        board.set_state(&adapter.name, PipelineState::Stopped, None);
        board.update(&adapter.name, |status| {
            status.spool_messages = spool.messages();
            status.spool_bytes = spool.bytes();
        });
    }
    let checkpoints = Checkpoints::open(&store)?;
    for replicator in &config.replicators {
        board.register(&replicator.name, PipelineKind::Replicator);
        board.set_state(&replicator.name, PipelineState::Stopped, None);
        let checkpoint = checkpoints.load(&replicator.name)?;
        if let Some(checkpoint) = checkpoint {
            board.update(&replicator.name, |status| {
                status.position = Some(checkpoint.sequence);
                if let Some(forced) = &checkpoint.forced {
                    status.reason = Some(format!("next start forced to {forced} by ferry reset"));
                }
            });
        }
    }
    let mut json = board.to_json();
    json["running"] = serde_json::Value::Bool(false);
    Ok(json)
}

/// `ferry reset`: forces where a replicator starts next time (SPEC section 2). Offline only: the
/// state store's lock makes sure no `ferry run` holds it.
pub fn reset(config: &Config, replicator: &str, position: &str) -> Result<String, RunError> {
    if !config.replicators.iter().any(|r| r.name == replicator) {
        let known: Vec<&str> = config.replicators.iter().map(|r| r.name.as_str()).collect();
        let known = if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        };
        return Err(RunError::Config(format!(
            "no replicator named {replicator:?} in the config (replicators: {known})"
        )));
    }
    let forced = Forced::parse(position).map_err(|error| RunError::Config(error.to_string()))?;
    let _lock = StateDirLock::acquire(&config.state_dir)?;
    let store = SledStore::open(&config.state_dir)?;
    let checkpoints = Checkpoints::open(&store)?;
    let previous = checkpoints.load(replicator)?;
    let checkpoint = Checkpoint {
        source: None,
        sequence: previous.as_ref().map_or(0, |c| c.sequence),
        forced: Some(forced.clone()),
        target: None,
    };
    checkpoints
        .save(replicator, &checkpoint)
        .and_then(|()| store.flush())?;
    Ok(format!(
        "replicator {replicator}: next start forced to {forced} (was: {})",
        previous.map_or("no checkpoint".to_string(), |c| format!(
            "after sequence {}",
            c.sequence
        ))
    ))
}
