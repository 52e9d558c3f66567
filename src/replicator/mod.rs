//! Replicators (SPEC section 5): copy a JetStream stream from one NATS deployment to another.
//!
//! ```text
//! source stream ─pull consumer─▶ loop/age/filter/sampling ─▶ rate limit ─▶ publish (acks in flight) ─▶ target
//!                 from checkpoint+1          │ skipped: counted, checkpoint moves on     └─▶ watermark ─▶ checkpoint
//! ```
//! [`copier::Copier`] is the loop; the other modules are its parts.

pub mod advisories;
pub mod checkpoint;
pub mod copier;
pub mod election;
pub mod gate;
pub mod headers;
pub mod heartbeat;
pub mod limits;
pub mod reader;
pub mod resume;
pub mod sampling;
pub mod shared_state;
pub mod streams;
pub mod telemetry;
pub mod watermark;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::replicator::{AdvisoriesConfig, ReplicatorConfig, SampleConfig};
use crate::connect::Connection;
use crate::filter::Filter;
use crate::metrics::Metrics;
use crate::shutdown::{Shutdown, StopSignal};
use crate::state::{StateError, StateStore};
use crate::status::{PipelineKind, StatusBoard};
use crate::supervisor::{Pipeline, Spawner};
use advisories::AdvisoryPublisher;
use checkpoint::Checkpoints;
use copier::Copier;
use election::{Election, Role};
use limits::RateLimiter;
use sampling::Sampler;
use shared_state::SharedState;
use telemetry::ReplicatorTelemetry;

/// Everything a replicator needs from the process.
#[derive(Clone)]
pub struct ReplicatorContext {
    pub config: ReplicatorConfig,
    pub instance: String,
    pub source: Connection,
    pub target: Connection,
    pub store: Arc<dyn StateStore>,
    pub metrics: Arc<Metrics>,
    pub board: Arc<StatusBoard>,
}

/// Why a replicator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("replicator {replicator}: {source}")]
    State {
        replicator: String,
        source: StateError,
    },
    #[error("replicator {replicator}: {message}")]
    Config { replicator: String, message: String },
}

/// A running replicator.
pub struct Replicator {
    name: String,
    task: JoinHandle<()>,
    heartbeats: Vec<JoinHandle<()>>,
    election: Option<Election>,
    /// Writes the shared sampling state while this instance leads.
    sharer: Option<JoinHandle<()>>,
    shutdown: Shutdown,
}

impl Replicator {
    /// Starts the replicator's tasks through `spawner`, which reports their ends to the supervisor.
    pub fn start(context: ReplicatorContext, spawner: Spawner) -> Result<Replicator, StartError> {
        crate::fault::stall_start(&context.config.name);
        let ReplicatorContext {
            config,
            instance,
            source,
            target,
            store,
            metrics,
            board,
        } = context;
        let name = config.name.clone();
        let config_error = |message: String| StartError::Config {
            replicator: name.clone(),
            message,
        };
        let state_error = |source: StateError| StartError::State {
            replicator: name.clone(),
            source,
        };
        let filter = match &config.filter {
            Some(filter) => {
                Filter::compile(filter).map_err(|error| config_error(error.to_string()))?
            }
            None => Filter::accept_all(),
        };
        let sample = config
            .limit
            .as_ref()
            .and_then(|limit| limit.sample.as_ref());
        let election_config = config.leader_election.clone();
        let sampler = sample
            .map(|sample| Sampler::open(store.as_ref(), &name, sample, config.advisories.as_ref()))
            .transpose()
            .map_err(state_error)?
            .map(|sampler| match election_config {
                Some(_) => sampler.share_changes(),
                None => sampler,
            })
            .map(Arc::new);
        let limiter = config
            .limit
            .as_ref()
            .and_then(|limit| RateLimiter::new(limit.rate, limit.bytes));
        let shutdown = Shutdown::new();
        let advisories = match &config.advisories {
            Some(advisories) => Some(
                AdvisoryPublisher::spawn(
                    &spawner,
                    source.client.clone(),
                    advisories,
                    instance.clone(),
                    name.clone(),
                    metrics.clone(),
                    shutdown.signal(),
                )
                .map_err(|error| config_error(error.to_string()))?,
            ),
            None => None,
        };
        let election = election_config.as_ref().map(|election| {
            Election::spawn(
                &spawner,
                target.jetstream(16),
                election.bucket.clone(),
                name.clone(),
                election::holder(&instance),
                election.ttl.0,
            )
        });
        let heartbeats: Vec<JoinHandle<()>> = config
            .heartbeat
            .iter()
            .flat_map(|heartbeat| {
                heartbeat.targets().into_iter().map(|target| {
                    heartbeat::spawn(
                        &spawner,
                        source.jetstream(16),
                        target,
                        heartbeat.format,
                        instance.clone(),
                        name.clone(),
                        shutdown.signal(),
                        election.as_ref().map(Election::role),
                    )
                })
            })
            .collect();
        let shared = match (&election_config, &sampler, sample) {
            (Some(election), Some(sampler), Some(sample)) => Some(Arc::new(SharedState::new(
                target.jetstream(shared_state::IN_FLIGHT),
                &election.bucket,
                &name,
                sampler.clone(),
                shared_max_age(sample, config.advisories.as_ref()),
            ))),
            _ => None,
        };
        let sharer = match (&shared, &election) {
            (Some(shared), Some(election)) => Some(spawner.spawn(
                "sharer",
                share_while_leading(
                    shared.clone(),
                    election.role(),
                    shutdown.signal(),
                    name.clone(),
                ),
            )),
            _ => None,
        };
        let telemetry = ReplicatorTelemetry::new(&metrics, &name);
        telemetry.is_leader.set(i64::from(election.is_none()));
        board.register(&name, PipelineKind::Replicator);
        let copier = Copier {
            checkpoints: Checkpoints::open(store.as_ref()).map_err(state_error)?,
            source_js: source.jetstream(16),
            target_js: target.jetstream(config.max_in_flight),
            instance,
            source,
            target,
            filter,
            sampler,
            limiter,
            advisories,
            telemetry,
            board,
            stop: shutdown.signal(),
            lease: election.as_ref().map(Election::role),
            shared,
            recopy_pending: config.recopy_at_start,
            config,
        };
        Ok(Replicator {
            name,
            task: spawner.spawn("copier", copier.run()),
            heartbeats,
            election,
            sharer,
            shutdown,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Graceful stop: no new reads, in-flight acks awaited until `timeout`, checkpoint saved.
    /// Also the way out after one of its tasks failed: the others are stopped the same way.
    pub async fn stop(self, timeout: Duration) {
        self.shutdown.stop();
        tracing::debug!(replicator = %self.name, finished = self.task.is_finished(), "stopping the replicator");
        let mut task = self.task;
        tokio::select! {
            _ = &mut task => {}
            _ = tokio::time::sleep(timeout) => {
                self.shutdown.pass_deadline();
                let _ = task.await;
            }
        }
        for heartbeat in self.heartbeats {
            heartbeat.abort();
        }
        // The last shared-state write happens before the key is given up, so the next leader
        // finds everything this one copied.
        if let Some(sharer) = self.sharer {
            let _ = tokio::time::timeout(Duration::from_secs(10), sharer).await;
        }
        if let Some(election) = self.election {
            election.resign().await;
        }
    }
}

/// How long the shared bucket keeps a sender record: twice the time after which a silent sender
/// is forgotten (`expire_after`, or the sampling interval), and at least a minute.
fn shared_max_age(sample: &SampleConfig, advisories: Option<&AdvisoriesConfig>) -> Duration {
    let forget = advisories
        .and_then(|a| a.expire_after)
        .map_or(sample.interval.0, |d| d.0);
    (forget * 2).max(Duration::from_secs(60))
}

/// Writes the sampling changes to the shared bucket every few seconds while this instance leads,
/// discards them while it does not (they are stale then), and writes once more when ferry stops.
async fn share_while_leading(
    shared: Arc<SharedState>,
    role: watch::Receiver<Role>,
    stop: StopSignal,
    replicator: String,
) {
    let errors = crate::logging::LogLimiter::new(Duration::from_secs(30));
    loop {
        let stopping = !stop.sleep(shared_state::PUBLISH_INTERVAL).await;
        if *role.borrow() == Role::Leader {
            if let Err(error) = shared.publish().await {
                if let Some(suppressed) = errors.allow() {
                    tracing::warn!(%replicator, %error, suppressed, "cannot share the sampling state");
                }
            }
        } else {
            shared.discard();
        }
        if stopping {
            return;
        }
    }
}

impl Pipeline for Replicator {
    async fn stop(self, timeout: Duration) {
        Replicator::stop(self, timeout).await
    }
}
