//! The pipelines that run now, each under its own supervisor with its own stop, and the NATS
//! connections they use. `ferry run` starts them all; a reload starts, stops and restarts them
//! one by one (see `reload.rs`); the end of the run stops them all together.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::plan::{self, ConnectionIdentity, PipelineEntry};
use super::RunError;
use crate::adapter::{Adapter, AdapterContext};
use crate::config::schema::Config;
use crate::connect::{self, Connection};
use crate::metrics::Metrics;
use crate::replicator::{Replicator, ReplicatorContext};
use crate::shutdown::Shutdown;
use crate::state::StateStore;
use crate::status::{PipelineKind, PipelineState, StatusBoard};
use crate::supervisor::{supervise, Running, Spawner, Supervision};

/// How long a replaced connection may take to flush and close.
const RETIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// What every pipeline shares, whatever the config says.
#[derive(Clone)]
pub struct Shared {
    pub instance: String,
    pub store: Arc<dyn StateStore>,
    pub metrics: Arc<Metrics>,
    pub board: Arc<StatusBoard>,
}

/// One pipeline under its supervisor.
struct Supervised {
    stop: Shutdown,
    supervisor: JoinHandle<()>,
}

/// One open connection, what it was opened with, and the task keeping its server on the board.
pub struct OpenConnection {
    pub connection: Connection,
    pub identity: ConnectionIdentity,
    _server_report: AbortOnDrop,
}

impl OpenConnection {
    pub fn new(
        connection: Connection,
        identity: ConnectionIdentity,
        board: Arc<StatusBoard>,
    ) -> OpenConnection {
        let report = tokio::spawn(connect::report_server(connection.clone(), board));
        OpenConnection {
            connection,
            identity,
            _server_report: AbortOnDrop(report),
        }
    }
}

/// A background task that ends with its owner.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Whether a pipeline that fails its first start fails the caller (`ferry run` exits) or is
/// left to its supervisor to retry (a pipeline started by a reload, which must not take the
/// running instance down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstStart {
    MustSucceed,
    Retry,
}

/// The running pipelines and connections.
pub struct Pipelines {
    shared: Shared,
    /// The config the pipelines run with (after a reload: the reloaded one, with the settings
    /// that need a restart kept as they were).
    pub config: Config,
    pub connections: BTreeMap<String, OpenConnection>,
    running: BTreeMap<String, Supervised>,
}

impl Pipelines {
    /// Nothing running yet; [`Pipelines::open_connection`] and [`Pipelines::start`] fill it.
    pub fn new(shared: Shared, config: Config) -> Pipelines {
        Pipelines {
            shared,
            config,
            connections: BTreeMap::new(),
            running: BTreeMap::new(),
        }
    }

    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Opens every connection `config`'s pipelines use and starts every pipeline; the first
    /// pipeline that cannot start fails the whole start.
    pub async fn start_all(&mut self) -> Result<(), RunError> {
        let config = self.config.clone();
        for name in plan::used_connections(&config) {
            let identity = match config.connections.get(name) {
                Some(settings) => ConnectionIdentity::read(settings),
                None => {
                    return Err(RunError::Config(format!(
                        "connection {name:?} is not defined under connections (run `ferry check`)"
                    )))
                }
            };
            let connection = self.open_connection(&config, name).await?;
            let open = OpenConnection::new(connection, identity, self.shared.board.clone());
            self.connections.insert(name.to_string(), open);
        }
        for name in plan::pipelines(&config).keys() {
            self.start(&config, name, FirstStart::MustSucceed)?;
        }
        Ok(())
    }

    /// Opens the connection `name` of `config`, registered on the board with the pipelines that
    /// use it (so its failure shows on theirs). Does not keep it: the caller decides when it
    /// replaces the running one.
    pub async fn open_connection(
        &self,
        config: &Config,
        name: &str,
    ) -> Result<Connection, RunError> {
        let Some(settings) = config.connections.get(name) else {
            return Err(RunError::Config(format!(
                "connection {name:?} is not defined under connections (run `ferry check`)"
            )));
        };
        let Shared {
            instance,
            metrics,
            board,
            ..
        } = &self.shared;
        board.register_connection(name, plan::users_of(config, name));
        Ok(connect::connect(name, settings, instance, metrics.clone(), board.clone()).await?)
    }

    /// Starts the pipeline `name` of `config` under a supervisor of its own.
    pub fn start(
        &mut self,
        config: &Config,
        name: &str,
        first: FirstStart,
    ) -> Result<(), RunError> {
        let entry = plan::pipelines(config)
            .get(name)
            .copied()
            .ok_or_else(|| RunError::Config(format!("no pipeline named {name:?} in the config")))?;
        let [input, output] = entry.connections().map(|connection| {
            self.connections
                .get(connection)
                .map(|open| open.connection.clone())
        });
        let (Some(input), Some(output)) = (input, output) else {
            return Err(RunError::Config(format!(
                "{name}: unknown connection (run `ferry check`)"
            )));
        };
        let Shared {
            instance,
            store,
            metrics,
            board,
        } = self.shared.clone();
        let stop = Shutdown::new();
        let supervision = Supervision {
            name: name.to_string(),
            board: board.clone(),
            restarts: metrics.pipeline_restarts.with_label_values(&[name]),
            stop: stop.signal(),
            shutdown_timeout: config.shutdown_timeout.0,
        };
        let supervisor = match entry {
            PipelineEntry::Adapter(adapter) => {
                let context = AdapterContext {
                    config: adapter.clone(),
                    input,
                    output,
                    store,
                    state_dir: config.state_dir.clone(),
                    metrics,
                    board: board.clone(),
                };
                let first = first_start(
                    name,
                    PipelineKind::Adapter,
                    first,
                    &board,
                    context.clone(),
                    Adapter::start,
                )?;
                let restart = move |spawner| Adapter::start(context.clone(), spawner);
                tokio::spawn(supervise(supervision, first, restart))
            }
            PipelineEntry::Replicator(replicator) => {
                let context = ReplicatorContext {
                    config: replicator.clone(),
                    instance,
                    source: input,
                    target: output,
                    store,
                    metrics,
                    board: board.clone(),
                };
                let first = first_start(
                    name,
                    PipelineKind::Replicator,
                    first,
                    &board,
                    context.clone(),
                    Replicator::start,
                )?;
                let restart = move |spawner| Replicator::start(context.clone(), spawner);
                tokio::spawn(supervise(supervision, first, restart))
            }
        };
        self.running
            .insert(name.to_string(), Supervised { stop, supervisor });
        Ok(())
    }

    /// Stops the pipelines `names` gracefully, all at once (each saves its checkpoint or spools
    /// what it holds within the shutdown timeout), and waits for them.
    pub async fn stop(&mut self, names: &[String]) {
        let mut stopping = Vec::new();
        for name in names {
            if let Some(supervised) = self.running.remove(name) {
                self.shared
                    .board
                    .set_state(name, PipelineState::Stopping, None);
                supervised.stop.stop();
                stopping.push(supervised);
            }
        }
        let supervisors = stopping.iter_mut().map(|s| &mut s.supervisor);
        for result in futures_util::future::join_all(supervisors).await {
            if let Err(error) = result {
                tracing::error!(%error, "a pipeline supervisor failed while stopping");
            }
        }
    }

    /// Stops every pipeline, then flushes and closes every connection.
    pub async fn stop_all(mut self) {
        let names: Vec<String> = self.running.keys().cloned().collect();
        self.stop(&names).await;
        for open in self.connections.values() {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), open.connection.client.flush()).await;
        }
    }

    /// Closes the connection `name` (after the pipelines using it have stopped).
    pub async fn retire_connection(&mut self, name: &str) {
        if let Some(open) = self.connections.remove(name) {
            open.connection.retire(RETIRE_TIMEOUT).await;
        }
    }
}

/// The first start of a pipeline: an error either fails the caller or, for [`FirstStart::Retry`],
/// is shown on the board and left to the supervisor, which keeps trying.
fn first_start<C, P, E>(
    name: &str,
    kind: PipelineKind,
    first: FirstStart,
    board: &StatusBoard,
    context: C,
    start: impl FnOnce(C, Spawner) -> Result<P, E>,
) -> Result<Option<Running<P>>, RunError>
where
    E: std::error::Error + Into<RunError>,
{
    let (spawner, ended) = Spawner::new(name);
    match start(context, spawner) {
        Ok(pipeline) => Ok(Some(Running { pipeline, ended })),
        Err(error) if first == FirstStart::Retry => {
            tracing::error!(pipeline = %name, %error, "cannot start the pipeline; retrying");
            let reason = format!("cannot start: {error}");
            board.register(name, kind);
            board.set_state(name, PipelineState::Failed, Some(reason.clone()));
            board.record_error(name, reason);
            Ok(None)
        }
        Err(error) => Err(error.into()),
    }
}
