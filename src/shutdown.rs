//! Shutdown as a value: how a pipeline, the monitor or the whole process tells its tasks to stop.
//!
//! A stop has two steps: **stopping** (finish what is in hand: intake unsubscribes and drains,
//! publishers finish their in-flight work) and, when `shutdown_timeout` runs out, **past the
//! deadline** (spill what memory holds to disk and exit now). The owner holds a [`Shutdown`] and
//! moves it forward; every task holds a [`StopSignal`] and asks or waits. Dropping the owner
//! counts as both steps, so a task never outlives the thing that started it unnoticed.

use std::time::Duration;

use tokio::sync::watch;

/// Where a stop is. Only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Running,
    Stopping,
    PastDeadline,
}

/// The owner's side of a stop.
#[derive(Debug)]
pub struct Shutdown {
    phase: watch::Sender<Phase>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown {
            phase: watch::Sender::new(Phase::Running),
        }
    }

    /// A signal for one task (or many: it clones cheaply).
    pub fn signal(&self) -> StopSignal {
        StopSignal {
            phase: self.phase.subscribe(),
        }
    }

    /// Asks every task to finish what it holds and stop.
    pub fn stop(&self) {
        self.advance(Phase::Stopping);
    }

    /// Tells every task that the time to finish is over: spill and exit now.
    pub fn pass_deadline(&self) {
        self.advance(Phase::PastDeadline);
    }

    fn advance(&self, to: Phase) {
        self.phase.send_if_modified(|phase| {
            let moved = *phase < to;
            if moved {
                *phase = to;
            }
            moved
        });
    }
}

/// A task's side of a stop.
#[derive(Debug, Clone)]
pub struct StopSignal {
    phase: watch::Receiver<Phase>,
}

impl StopSignal {
    /// Whether the stop has begun (or its owner is gone).
    pub fn is_stopping(&self) -> bool {
        self.phase.has_changed().is_err() || *self.phase.borrow() >= Phase::Stopping
    }

    /// Resolves once the stop has begun (at once if it has). Cancel-safe.
    pub async fn stopping(&self) {
        self.reached(Phase::Stopping).await
    }

    /// Resolves once the deadline has passed (at once if it has). Cancel-safe.
    pub async fn past_deadline(&self) {
        self.reached(Phase::PastDeadline).await
    }

    /// Waits for the next step of the stop; `false` once the owner is gone. For tasks that keep
    /// working while their pipeline stops and end only with it.
    pub async fn changed(&mut self) -> bool {
        self.phase.changed().await.is_ok()
    }

    /// Sleeps for `delay` unless the stop begins first; whether to go on.
    pub async fn sleep(&self, delay: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => !self.is_stopping(),
            _ = self.stopping() => false,
        }
    }

    async fn reached(&self, phase: Phase) {
        // A clone, so that waiting for both steps in one `select!` needs no `&mut self`.
        let mut watching = self.phase.clone();
        // An error means the owner is gone, which counts as every step.
        let _ = watching.wait_for(|now| *now >= phase).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn steps_are_seen_in_order_and_only_move_forward() {
        let shutdown = Shutdown::new();
        let signal = shutdown.signal();
        assert!(!signal.is_stopping());
        assert!(signal.sleep(Duration::from_secs(1)).await, "runs on");
        shutdown.stop();
        assert!(signal.is_stopping());
        signal.stopping().await;
        assert!(!signal.sleep(Duration::from_secs(1)).await);
        let waiting = tokio::spawn({
            let signal = signal.clone();
            async move { signal.past_deadline().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the deadline has not passed");
        shutdown.pass_deadline();
        waiting.await.unwrap();
        shutdown.stop();
        assert!(signal.is_stopping(), "a late stop does not move it back");
    }

    #[tokio::test]
    async fn a_dropped_owner_counts_as_every_step() {
        let shutdown = Shutdown::new();
        let mut signal = shutdown.signal();
        drop(shutdown);
        assert!(signal.is_stopping());
        signal.stopping().await;
        signal.past_deadline().await;
        assert!(!signal.changed().await);
    }

    #[tokio::test]
    async fn changed_reports_each_step_while_the_owner_lives() {
        let shutdown = Shutdown::new();
        let mut signal = shutdown.signal();
        shutdown.stop();
        assert!(signal.changed().await);
        shutdown.pass_deadline();
        assert!(signal.changed().await);
        drop(shutdown);
        assert!(!signal.changed().await);
    }
}
