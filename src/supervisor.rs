//! Each pipeline's tasks under a supervisor.
//!
//! A pipeline is a handful of tokio tasks (an adapter's intake, publisher, spool flusher and status
//! reporter; a replicator's copier, heartbeat, election campaign, sampling sharer and advisory
//! publisher). None of them is meant to end before ferry stops. If one panics or returns early
//! anyway (a bug, or a failure its code gave up on), its pipeline would be dead while `/readyz`
//! stayed green. So every task is spawned through a [`Spawner`], which tells the pipeline's
//! supervisor when it ends and why; the supervisor then at once marks the pipeline failed (state
//! and `last_error` on `/readyz` and `/status`), logs it, counts it in
//! `ferry_pipeline_restarts_total{pipeline}`, stops what is left of the pipeline gracefully (so its
//! checkpoint is saved and its in-memory events reach the spool), waits with exponential backoff,
//! and starts it again.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use prometheus::IntCounter;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::shutdown::StopSignal;
use crate::status::{PipelineState, StatusBoard};

/// First wait before a restart; it doubles (with jitter) up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A pipeline that ran this long before failing starts over from the shortest wait.
const HEALTHY_RUN: Duration = Duration::from_secs(120);

/// A task of a pipeline that ended while the pipeline was meant to run.
#[derive(Debug)]
pub struct TaskEnd {
    pub task: &'static str,
    /// `"panicked: <message>"` or `"ended"`.
    pub cause: String,
}

/// Spawns the tasks of one pipeline incarnation and reports each one's end to its supervisor.
#[derive(Clone)]
pub struct Spawner {
    pipeline: Arc<str>,
    ended: mpsc::UnboundedSender<TaskEnd>,
}

impl Spawner {
    /// A spawner for `pipeline`, and the receiver its supervisor listens on.
    pub fn new(pipeline: &str) -> (Spawner, mpsc::UnboundedReceiver<TaskEnd>) {
        let (ended, receiver) = mpsc::unbounded_channel();
        let spawner = Spawner {
            pipeline: Arc::from(pipeline),
            ended,
        };
        (spawner, receiver)
    }

    /// Spawns `future` as the pipeline's task `task`. The handle resolves when the task ends
    /// (a panic is caught and reported, not propagated), so callers can await or abort it as any
    /// other task.
    pub fn spawn<F>(&self, task: &'static str, future: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let pipeline = self.pipeline.clone();
        let ended = self.ended.clone();
        tokio::spawn(async move {
            let run = crate::fault::inject(&pipeline, task, future);
            let cause = match AssertUnwindSafe(run).catch_unwind().await {
                Ok(()) => "ended".to_string(),
                Err(panic) => format!("panicked: {}", panic_message(panic.as_ref())),
            };
            // Nobody listens once the pipeline is being stopped on purpose.
            let _ = ended.send(TaskEnd { task, cause });
        })
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// What the supervisor needs of a running pipeline.
pub trait Pipeline: Send + 'static {
    /// Stops the pipeline gracefully within `timeout`, whatever state its tasks are in.
    fn stop(self, timeout: Duration) -> impl Future<Output = ()> + Send;
}

/// A pipeline incarnation with the receiver of its tasks' ends.
pub struct Running<P> {
    pub pipeline: P,
    pub ended: mpsc::UnboundedReceiver<TaskEnd>,
}

/// Everything a supervisor needs besides the pipeline itself.
pub struct Supervision {
    pub name: String,
    pub board: Arc<StatusBoard>,
    pub restarts: IntCounter,
    /// Says when ferry stops.
    pub stop: StopSignal,
    pub shutdown_timeout: Duration,
}

/// Runs `first` until ferry stops (or the pipeline is stopped on its own), restarting the
/// pipeline with `start` whenever one of its tasks ends before that. `first` is `None` when the
/// first start already failed (a pipeline added by a reload): the supervisor then keeps trying to
/// start it, with the same backoff as a restart.
pub async fn supervise<P, E, S>(supervision: Supervision, first: Option<Running<P>>, mut start: S)
where
    P: Pipeline,
    E: std::error::Error,
    S: FnMut(Spawner) -> Result<P, E> + Send,
{
    let Supervision {
        name,
        board,
        restarts,
        stop,
        shutdown_timeout,
    } = supervision;
    let mut backoff = new_backoff();
    let mut current = first;
    loop {
        if let Some(mut running) = current.take() {
            let started = Instant::now();
            let end = tokio::select! {
                _ = stop.stopping() => None,
                end = next_end(&mut running.ended) => Some(end),
            };
            let Some(end) = end else {
                running.pipeline.stop(shutdown_timeout).await;
                return;
            };
            let reason = format!("task {} {}; restarting the pipeline", end.task, end.cause);
            tracing::error!(pipeline = %name, task = end.task, cause = %end.cause, "a pipeline task ended while ferry runs; restarting the pipeline");
            board.set_state(&name, PipelineState::Failed, Some(reason.clone()));
            board.record_error(&name, &reason);
            restarts.inc();
            running.pipeline.stop(shutdown_timeout).await;
            board.set_state(&name, PipelineState::Failed, Some(reason));
            if started.elapsed() >= HEALTHY_RUN {
                backoff = new_backoff();
            }
        }
        current = loop {
            if !stop.sleep(backoff.next_delay()).await {
                return;
            }
            let (spawner, ended) = Spawner::new(&name);
            match start(spawner) {
                Ok(pipeline) => {
                    tracing::info!(pipeline = %name, "pipeline restarted");
                    break Some(Running { pipeline, ended });
                }
                Err(error) => {
                    let reason = format!("cannot restart: {error}");
                    tracing::error!(pipeline = %name, %error, "cannot restart the pipeline; trying again");
                    board.set_state(&name, PipelineState::Failed, Some(reason.clone()));
                    board.record_error(&name, &reason);
                }
            }
        };
    }
}

/// The next task end; never resolves if every task handle is gone without reporting (cannot
/// happen: each task reports before it drops its sender).
async fn next_end(ended: &mut mpsc::UnboundedReceiver<TaskEnd>) -> TaskEnd {
    match ended.recv().await {
        Some(end) => end,
        None => std::future::pending().await,
    }
}

fn new_backoff() -> crate::retry::Backoff {
    crate::retry::backoff(MIN_BACKOFF, MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_reported_with_its_message() {
        let (spawner, mut ended) = Spawner::new("p");
        let handle = spawner.spawn("worker", async { panic!("boom") });
        handle.await.expect("the panic is caught inside the task");
        let end = ended.recv().await.expect("reported");
        assert_eq!(end.task, "worker");
        assert_eq!(end.cause, "panicked: boom");
        spawner.spawn("other", async {}).await.expect("ends");
        assert_eq!(ended.recv().await.expect("reported").cause, "ended");
    }

    struct Counting(Arc<std::sync::atomic::AtomicUsize>);

    impl Pipeline for Counting {
        async fn stop(self, _timeout: Duration) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_pipeline_is_marked_counted_stopped_and_started_again() {
        let board = Arc::new(StatusBoard::new("i"));
        board.register("p", crate::status::PipelineKind::Adapter);
        let metrics = crate::metrics::Metrics::new();
        let restarts = metrics.pipeline_restarts.with_label_values(&["p"]);
        let stopped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let shutdown = crate::shutdown::Shutdown::new();
        let (spawner, ended) = Spawner::new("p");
        drop(spawner.spawn("intake", async {}));
        let starts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let supervisor = tokio::spawn(supervise(
            Supervision {
                name: "p".into(),
                board: board.clone(),
                restarts: restarts.clone(),
                stop: shutdown.signal(),
                shutdown_timeout: Duration::from_secs(1),
            },
            Some(Running {
                pipeline: Counting(stopped.clone()),
                ended,
            }),
            {
                let (stopped, starts) = (stopped.clone(), starts.clone());
                move |spawner: Spawner| {
                    starts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    // The new incarnation's task stays up.
                    drop(spawner.spawn("intake", std::future::pending()));
                    Ok::<_, std::io::Error>(Counting(stopped.clone()))
                }
            },
        ));
        while starts.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(restarts.get(), 1);
        assert_eq!(stopped.load(std::sync::atomic::Ordering::SeqCst), 1);
        let status = &board.snapshot()[0];
        assert!(
            status
                .last_error
                .as_deref()
                .is_some_and(|error| error.contains("task intake ended")),
            "{status:?}"
        );
        shutdown.stop();
        supervisor.await.expect("supervisor ends");
        assert_eq!(stopped.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(restarts.get(), 1);
    }
}
