//! `ferry run`: opens the state store, the monitor and the connections, starts every pipeline, and
//! on SIGINT/SIGTERM shuts them down gracefully (SPEC section 2).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::adapter::spool::SpoolError;
use crate::adapter::{Adapter, AdapterContext};
use crate::config::schema::Config;
use crate::connect::{self, ConnectError, Connection};
use crate::metrics::Metrics;
use crate::monitor::Monitor;
use crate::replicator::checkpoint::{Checkpoint, Checkpoints, Forced};
use crate::replicator::{Replicator, ReplicatorContext};
use crate::shutdown::Shutdown;
use crate::state::{SledStore, StateDirLock, StateError, StateStore, StoreHistory};
use crate::status::{PipelineKind, PipelineState, StatusBoard};
use crate::supervisor::{supervise, Running, Spawner, Supervision};

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

/// How `ferry run` treats the state store.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// `--recover-state`: move a damaged state store aside and start with a fresh one.
    pub recover_state: bool,
}

/// Runs every pipeline of `config` until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), RunError> {
    run_with(config, RunOptions::default()).await
}

/// [`run`] with options.
pub async fn run_with(config: Config, options: RunOptions) -> Result<(), RunError> {
    run_until_with(config, options, shutdown_signal()).await
}

/// Runs until `stop` completes, then shuts down gracefully.
pub async fn run_until(
    config: Config,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    run_until_with(config, RunOptions::default(), stop).await
}

/// [`run_until`] with options.
pub async fn run_until_with(
    config: Config,
    options: RunOptions,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    let _lock = StateDirLock::acquire(&config.state_dir)?;
    let store: Arc<dyn StateStore> = Arc::new(open_store(&config.state_dir, options)?);
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

    let connections = open_connections(&config, &instance, &metrics, &board).await?;
    let stop_pipelines = Shutdown::new();
    let supervision = |name: &str| Supervision {
        name: name.to_string(),
        board: board.clone(),
        restarts: metrics.pipeline_restarts.with_label_values(&[name]),
        stop: stop_pipelines.signal(),
        shutdown_timeout: config.shutdown_timeout.0,
    };
    let mut supervisors = Vec::new();
    let mut names = Vec::new();
    for adapter in &config.adapters {
        let (Some(input), Some(output)) = (
            connections.get(&adapter.connection),
            connections.get(adapter.output_connection()),
        ) else {
            return Err(RunError::Config(format!(
                "adapter {}: unknown connection (run `ferry check`)",
                adapter.name
            )));
        };
        let context = AdapterContext {
            config: adapter.clone(),
            input: input.clone(),
            output: output.clone(),
            store: store.clone(),
            state_dir: config.state_dir.clone(),
            metrics: metrics.clone(),
            board: board.clone(),
        };
        // The first start runs here, so a pipeline that cannot start at all fails `ferry run`.
        let (spawner, ended) = Spawner::new(&adapter.name);
        let first = Adapter::start(context.clone(), spawner)?;
        let restart = move |spawner| Adapter::start(context.clone(), spawner);
        supervisors.push(tokio::spawn(supervise(
            supervision(&adapter.name),
            Running {
                pipeline: first,
                ended,
            },
            restart,
        )));
        names.push(adapter.name.clone());
    }
    for replicator in &config.replicators {
        let (Some(source), Some(target)) = (
            connections.get(&replicator.from.connection),
            connections.get(&replicator.to.connection),
        ) else {
            return Err(RunError::Config(format!(
                "replicator {}: unknown connection (run `ferry check`)",
                replicator.name
            )));
        };
        let context = ReplicatorContext {
            config: replicator.clone(),
            instance: instance.clone(),
            source: source.clone(),
            target: target.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            board: board.clone(),
        };
        let (spawner, ended) = Spawner::new(&replicator.name);
        let first = Replicator::start(context.clone(), spawner)?;
        let restart = move |spawner| Replicator::start(context.clone(), spawner);
        supervisors.push(tokio::spawn(supervise(
            supervision(&replicator.name),
            Running {
                pipeline: first,
                ended,
            },
            restart,
        )));
        names.push(replicator.name.clone());
    }
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

    stop.await;
    tracing::info!(timeout = ?config.shutdown_timeout.0, "shutting down: stopping intake, finishing in-flight events");
    for name in &names {
        board.set_state(name, PipelineState::Stopping, None);
    }
    stop_pipelines.stop();
    for supervisor in futures_util::future::join_all(supervisors).await {
        if let Err(error) = supervisor {
            tracing::error!(%error, "a pipeline supervisor failed while stopping");
        }
    }
    store_watch.abort();
    if let Err(error) = store.flush() {
        tracing::error!(%error, "cannot flush the state store");
    }
    for connection in connections.values() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), connection.client.flush())
            .await;
    }
    monitor_stop.stop();
    if let Some(monitor) = monitor {
        let _ = monitor.await;
    }
    tracing::info!("ferry stopped");
    Ok(())
}

/// Opens the state store for `ferry run`. A damaged one stops the start with an error naming the
/// way out, unless `recover_state` asks to move it aside and start with a fresh one. A store that
/// is not the one the state directory had (lost, emptied, replaced) is reported; what it took with
/// it is counted by each pipeline as it starts.
fn open_store(state_dir: &std::path::Path, options: RunOptions) -> Result<SledStore, RunError> {
    let store = match SledStore::open(state_dir) {
        Ok(store) => {
            if options.recover_state {
                tracing::info!(state_dir = %state_dir.display(), "--recover-state: the state store is not damaged; nothing to recover");
            }
            store
        }
        Err(error) if error.is_damage() && options.recover_state => {
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

/// One client per connection name that a pipeline uses, each registered on `board` with the
/// pipelines using it (so a connection's failure shows on theirs).
async fn open_connections(
    config: &Config,
    instance: &str,
    metrics: &Arc<Metrics>,
    board: &Arc<StatusBoard>,
) -> Result<BTreeMap<String, Connection>, RunError> {
    let mut used: Vec<&str> = Vec::new();
    for adapter in &config.adapters {
        used.push(&adapter.connection);
        used.push(adapter.output_connection());
    }
    for replicator in &config.replicators {
        used.push(&replicator.from.connection);
        used.push(&replicator.to.connection);
    }
    used.sort_unstable();
    used.dedup();
    let mut connections = BTreeMap::new();
    for name in used {
        let Some(settings) = config.connections.get(name) else {
            return Err(RunError::Config(format!(
                "connection {name:?} is not defined under connections (run `ferry check`)"
            )));
        };
        let users = config
            .adapters
            .iter()
            .filter(|a| a.connection == name || a.output_connection() == name)
            .map(|a| a.name.clone())
            .chain(
                config
                    .replicators
                    .iter()
                    .filter(|r| r.from.connection == name || r.to.connection == name)
                    .map(|r| r.name.clone()),
            )
            .collect();
        board.register_connection(name, users);
        let connection =
            connect::connect(name, settings, instance, metrics.clone(), board.clone()).await?;
        connections.insert(name.to_string(), connection);
    }
    Ok(connections)
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
                    status.reason = Some(format!("next start forced to {forced:?} by ferry reset"));
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
        return Err(RunError::Config(format!(
            "no replicator named {replicator:?} in the config (replicators: {known:?})"
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
        "replicator {replicator}: next start forced to {forced:?} (was: {})",
        previous.map_or("no checkpoint".to_string(), |c| format!(
            "after sequence {}",
            c.sequence
        ))
    ))
}
