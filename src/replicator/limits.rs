//! Global rate limits of a replicator (SPEC section 7: `limit.rate` and `limit.bytes`).
//!
//! Each limit is a token bucket that holds one period's worth of tokens (`2000/s` holds 2000
//! messages, `10MiB/s` 10 MiB) and refills continuously. A bucket starts (nearly) empty, not full:
//! every start of a replicator (a restart, a reload, a crash loop) would otherwise grant another
//! whole period's burst on top of the rate. The first message passes at once; the burst builds
//! up over one period. A message takes one token from the message
//! bucket and its size from the byte bucket, and waits until both can pay. A message larger than
//! the byte bucket could never be paid for in full, so it passes as soon as the bucket is full and
//! leaves the bucket in debt: the average rate still holds and nothing waits forever.
//!
//! Time comes from `tokio::time`, so tests can pause and advance the clock.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::replicator::{ByteRate, Rate};

/// Longest single sleep while waiting; waiting is re-evaluated after it, which keeps a waiter
/// responsive to a bucket that other waiters drained meanwhile.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// The message and byte buckets of one replicator.
pub struct RateLimiter {
    messages: Option<Mutex<Bucket>>,
    bytes: Option<Mutex<Bucket>>,
}

impl RateLimiter {
    /// `None` when neither limit is set, so callers skip limiting entirely.
    pub fn new(rate: Option<Rate>, bytes: Option<ByteRate>) -> Option<RateLimiter> {
        if rate.is_none() && bytes.is_none() {
            return None;
        }
        let start = Instant::now();
        Some(RateLimiter {
            // One message may pass at once; the byte bucket starts empty (a small message waits
            // a moment, a large one what its size costs at the rate).
            messages: rate.map(|r| Mutex::new(Bucket::new(r.amount, r.per_second(), 1.0, start))),
            bytes: bytes
                .map(|b| Mutex::new(Bucket::new(b.bytes as f64, b.per_second(), 0.0, start))),
        })
    }

    /// Waits until one message of `size` bytes may pass, then takes its tokens from both buckets.
    pub async fn acquire(&self, size: usize) {
        loop {
            let wait = self.try_take(size as f64);
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait.min(MAX_SLEEP)).await;
        }
    }

    /// Takes the tokens when both buckets can pay now; otherwise takes nothing and says how long
    /// to wait. Both locks are held together so a message never pays one bucket and waits on the
    /// other.
    fn try_take(&self, size: f64) -> Duration {
        let now = Instant::now();
        let mut messages = self.messages.as_ref().map(lock);
        let mut bytes = self.bytes.as_ref().map(lock);
        let wait_messages = messages
            .as_mut()
            .map_or(Duration::ZERO, |b| b.wait(1.0, now));
        let wait_bytes = bytes.as_mut().map_or(Duration::ZERO, |b| b.wait(size, now));
        let wait = wait_messages.max(wait_bytes);
        if wait.is_zero() {
            if let Some(bucket) = messages.as_mut() {
                bucket.tokens -= 1.0;
            }
            if let Some(bucket) = bytes.as_mut() {
                bucket.tokens -= size;
            }
        }
        wait
    }
}

fn lock(bucket: &Mutex<Bucket>) -> std::sync::MutexGuard<'_, Bucket> {
    bucket
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One token bucket. `tokens` may go below zero after an oversize message (debt).
struct Bucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    /// A bucket holding `tokens` (at most `capacity`).
    fn new(capacity: f64, per_second: f64, tokens: f64, now: Instant) -> Bucket {
        Bucket {
            capacity,
            per_second,
            tokens: tokens.min(capacity),
            updated: now,
        }
    }

    /// Refills up to `now`, then returns how long until `cost` can be paid (zero: now). A cost
    /// above the capacity only needs a full bucket.
    fn wait(&mut self, cost: f64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.updated = now;
        let needed = cost.min(self.capacity);
        if self.tokens >= needed {
            return Duration::ZERO;
        }
        let seconds = (needed - self.tokens) / self.per_second;
        // A degenerate rate (zero, not finite) waits the longest single sleep and looks again.
        let wait = Duration::try_from_secs_f64(seconds).unwrap_or(MAX_SLEEP);
        // The extra microsecond keeps a waiter from waking just short of enough.
        wait + Duration::from_micros(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(amount: f64, per_secs: u64) -> Rate {
        Rate {
            amount,
            per: Duration::from_secs(per_secs),
        }
    }

    fn byte_rate(bytes: u64) -> ByteRate {
        ByteRate {
            bytes,
            per: Duration::from_secs(1),
        }
    }

    /// Acquires `count` messages of `size` bytes and returns the virtual time it took.
    async fn time_for(limiter: &RateLimiter, count: usize, size: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..count {
            limiter.acquire(size).await;
        }
        start.elapsed()
    }

    /// `limiter` after one period of its own (the longest in these tests: a minute) idle, when
    /// its buckets are full.
    async fn full(limiter: RateLimiter) -> RateLimiter {
        tokio::time::sleep(Duration::from_secs(60)).await;
        limiter
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_limiter_grants_no_burst() {
        let limiter = RateLimiter::new(Some(rate(100.0, 1)), None).unwrap();
        // One message at once, then the rate: the next 100 take a second.
        assert!(time_for(&limiter, 1, 10).await < Duration::from_millis(1));
        let took = time_for(&limiter, 100, 10).await;
        assert!(
            took >= Duration::from_millis(990) && took < Duration::from_millis(1100),
            "{took:?}"
        );
        let limiter = RateLimiter::new(None, Some(byte_rate(1000))).unwrap();
        let took = time_for(&limiter, 1, 500).await;
        assert!(
            took >= Duration::from_millis(499) && took < Duration::from_millis(600),
            "{took:?}"
        );
    }

    #[test]
    fn no_limits_means_no_limiter() {
        assert!(RateLimiter::new(None, None).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn message_rate_allows_one_burst_then_the_rate() {
        let limiter = full(RateLimiter::new(Some(rate(100.0, 1)), None).unwrap()).await;
        // The first period's worth passes at once.
        assert!(time_for(&limiter, 100, 10).await < Duration::from_millis(1));
        // The next 200 need two seconds.
        let took = time_for(&limiter, 200, 10).await;
        assert!(
            took >= Duration::from_millis(1990) && took < Duration::from_millis(2100),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn slow_rates_with_long_periods() {
        // 10 per minute: burst of 10, then one every 6 s.
        let limiter = full(RateLimiter::new(Some(rate(10.0, 60)), None).unwrap()).await;
        assert!(time_for(&limiter, 10, 1).await < Duration::from_millis(1));
        let took = time_for(&limiter, 2, 1).await;
        assert!(
            took >= Duration::from_secs(12) && took < Duration::from_millis(12100),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn byte_rate_limits_by_size() {
        let limiter = full(RateLimiter::new(None, Some(byte_rate(1000))).unwrap()).await;
        assert!(time_for(&limiter, 10, 100).await < Duration::from_millis(1));
        // 5000 more bytes at 1000 B/s.
        let took = time_for(&limiter, 50, 100).await;
        assert!(
            took >= Duration::from_millis(4990) && took < Duration::from_millis(5100),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn oversize_message_passes_when_full_and_leaves_debt() {
        let limiter = full(RateLimiter::new(None, Some(byte_rate(1000))).unwrap()).await;
        // Larger than the burst: passes at once from a full bucket.
        assert!(time_for(&limiter, 1, 3000).await < Duration::from_millis(1));
        // The bucket is 2000 in debt: a small message waits for the debt to be repaid.
        let took = time_for(&limiter, 1, 1).await;
        assert!(
            took >= Duration::from_millis(2000) && took < Duration::from_millis(2100),
            "{took:?}"
        );
        // Another oversize one waits until the bucket is full again, never forever.
        let took = time_for(&limiter, 1, 5000).await;
        assert!(
            took >= Duration::from_millis(990) && took < Duration::from_millis(1100),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn both_limits_apply_and_the_stricter_wins() {
        // Byte-bound: 1000 B messages at 10,000 B/s are 10 per second after a burst of 10.
        let limiter =
            full(RateLimiter::new(Some(rate(1000.0, 1)), Some(byte_rate(10_000))).unwrap()).await;
        let took = time_for(&limiter, 10 + 20, 1000).await;
        assert!(
            took >= Duration::from_millis(1990) && took < Duration::from_millis(2100),
            "{took:?}"
        );
        // Message-bound: 10 per second, however small.
        let limiter =
            full(RateLimiter::new(Some(rate(10.0, 1)), Some(byte_rate(1 << 20))).unwrap()).await;
        let took = time_for(&limiter, 10 + 20, 100).await;
        assert!(
            took >= Duration::from_millis(1990) && took < Duration::from_millis(2100),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_refills_only_up_to_the_burst() {
        let limiter = full(RateLimiter::new(Some(rate(10.0, 1)), None).unwrap()).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(time_for(&limiter, 10, 1).await < Duration::from_millis(1));
        let took = time_for(&limiter, 1, 1).await;
        assert!(took >= Duration::from_millis(99), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_waiters_share_the_rate() {
        let limiter =
            std::sync::Arc::new(full(RateLimiter::new(Some(rate(50.0, 1)), None).unwrap()).await);
        let start = Instant::now();
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    for _ in 0..30 {
                        limiter.acquire(1).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        // 150 messages: 50 burst, then 100 at 50/s.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(1990) && took < Duration::from_millis(2200),
            "{took:?}"
        );
    }
}
