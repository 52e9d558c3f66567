//! The one way ferry waits between attempts: exponential backoff with jitter that never gives up.
//! A pipeline that stops retrying loses data (events pile up in the spool until it is full, a
//! replicator falls behind for good), so every retry loop waits longer and longer, up to a
//! ceiling, but always tries again; the jitter keeps a fleet of instances that lost the same
//! server from coming back in lockstep.

use std::time::Duration;

use backon::BackoffBuilder as _;

/// Delays starting near `first`, doubling up to `ceiling`, each with jitter, forever.
pub fn backoff(first: Duration, ceiling: Duration) -> Backoff {
    Backoff {
        delays: backon::ExponentialBuilder::default()
            .with_min_delay(first)
            .with_max_delay(ceiling)
            .with_jitter()
            .without_max_times()
            .build(),
        ceiling,
    }
}

/// An endless series of delays (see [`backoff`]).
pub struct Backoff {
    delays: backon::ExponentialBackoff,
    ceiling: Duration,
}

impl Backoff {
    /// The next delay to wait.
    pub fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.ceiling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_ceiling_and_never_end() {
        let ceiling = Duration::from_millis(800);
        let mut backoff = backoff(Duration::from_millis(100), ceiling);
        let delays: Vec<Duration> = (0..50).map(|_| backoff.next_delay()).collect();
        assert!(
            delays.iter().all(|delay| *delay <= ceiling * 2),
            "{delays:?}"
        );
        assert!(
            delays[40..].iter().all(|delay| *delay >= ceiling),
            "{delays:?}"
        );
    }
}
