//! The bound on monitor connections, and who gives way when it is reached.
//!
//! At most `limit` connections are served at once. A connection that arrives when all are taken
//! does not get closed: the oldest connection that has still not sent a complete request head
//! (and is at least [`EVICTION_MIN_AGE`] old) is closed to make room for it. A probe sends its head
//! the moment it connects, so it is never that connection; a slow or silent client holding a slot
//! is. With no such connection (every slot is answering a request, which takes a bounded time), the
//! newcomer waits until a slot frees. So an attacker can at worst make a probe wait, never make the
//! monitor refuse it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{AbortHandle, Id, JoinSet};
use tokio::time::Instant;

/// How long a new connection is safe from eviction, so it has time to send its request head even
/// when connections churn. Short, so a full table frees a slot quickly for the next arrival.
pub const EVICTION_MIN_AGE: Duration = Duration::from_millis(500);

/// The connections being served.
pub(super) struct Connections {
    tasks: JoinSet<()>,
    live: HashMap<Id, Tracked>,
    limit: usize,
}

struct Tracked {
    started: Instant,
    head_received: Arc<AtomicBool>,
    abort: AbortHandle,
}

/// Whether one more connection can be served now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Room {
    /// A slot is free.
    Free,
    /// A slot was freed by closing the oldest connection still waiting for its request head.
    Evicted,
    /// Every slot is taken and none can be freed yet; `retry_at` is when the oldest connection
    /// still waiting for its head becomes old enough to evict (`None`: every connection is
    /// answering; wait for one to finish).
    Full { retry_at: Option<Instant> },
}

impl Connections {
    pub(super) fn new(limit: usize) -> Connections {
        Connections {
            tasks: JoinSet::new(),
            live: HashMap::new(),
            limit: limit.max(1),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Makes room for one more connection if the table is full, by evicting as described above.
    pub(super) fn make_room(&mut self, now: Instant) -> Room {
        if self.live.len() < self.limit {
            return Room::Free;
        }
        let oldest_waiting = self
            .live
            .iter()
            .filter(|(_, tracked)| !tracked.head_received.load(Ordering::Acquire))
            .min_by_key(|(_, tracked)| tracked.started)
            .map(|(id, tracked)| (*id, tracked.started));
        match oldest_waiting {
            Some((id, started)) if now.duration_since(started) >= EVICTION_MIN_AGE => {
                if let Some(evicted) = self.live.remove(&id) {
                    evicted.abort.abort();
                }
                Room::Evicted
            }
            Some((_, started)) => Room::Full {
                retry_at: Some(started + EVICTION_MIN_AGE),
            },
            None => Room::Full { retry_at: None },
        }
    }

    /// Serves one connection from `started` on; `serve` sets `head_received` once the request head
    /// is complete, which makes the connection safe from eviction.
    pub(super) fn spawn<F>(&mut self, started: Instant, head_received: Arc<AtomicBool>, serve: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let abort = self.tasks.spawn(serve);
        self.live.insert(
            abort.id(),
            Tracked {
                started,
                head_received,
                abort,
            },
        );
    }

    /// Waits for a connection to end (pending forever while there is none).
    pub(super) async fn join_next(&mut self) {
        match self.tasks.join_next_with_id().await {
            Some(Ok((id, ()))) => {
                self.live.remove(&id);
            }
            Some(Err(error)) => {
                self.live.remove(&error.id());
                if error.is_panic() {
                    tracing::warn!(%error, "monitor connection task panicked");
                }
            }
            None => std::future::pending().await,
        }
    }

    /// Lets the connections finish for up to `grace`, then closes the rest.
    pub(super) async fn drain(mut self, grace: Duration) {
        let all_ended = async { while self.tasks.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(grace, all_ended).await;
        self.tasks.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle_connection(table: &mut Connections, started: Instant) -> Arc<AtomicBool> {
        let head = Arc::new(AtomicBool::new(false));
        table.spawn(started, head.clone(), std::future::pending());
        head
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_table_evicts_the_oldest_connection_without_a_request_head() {
        let mut table = Connections::new(3);
        let start = Instant::now();
        let oldest = idle_connection(&mut table, start);
        let _middle = idle_connection(&mut table, start + Duration::from_millis(1));
        let _newest = idle_connection(&mut table, start + Duration::from_millis(2));
        assert_eq!(table.live.len(), 3);

        // Too young to evict: wait until the oldest is old enough.
        assert_eq!(
            table.make_room(start + Duration::from_millis(10)),
            Room::Full {
                retry_at: Some(start + EVICTION_MIN_AGE)
            }
        );
        // The oldest sent its head: it is answering and safe; the middle one goes instead.
        oldest.store(true, Ordering::Release);
        assert_eq!(
            table.make_room(start + EVICTION_MIN_AGE + Duration::from_millis(1)),
            Room::Evicted
        );
        assert_eq!(table.live.len(), 2);
        assert_eq!(table.make_room(start + EVICTION_MIN_AGE), Room::Free);
        // The evicted task really ends.
        tokio::time::timeout(Duration::from_secs(1), table.join_next())
            .await
            .expect("the evicted connection's task ends");
        assert_eq!(table.tasks.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_table_of_answering_connections_waits_for_one_to_end() {
        let mut table = Connections::new(2);
        let now = Instant::now();
        for _ in 0..2 {
            idle_connection(&mut table, now).store(true, Ordering::Release);
        }
        assert_eq!(
            table.make_room(now + Duration::from_secs(60)),
            Room::Full { retry_at: None }
        );
        table.spawn(now, Arc::new(AtomicBool::new(true)), std::future::ready(()));
        assert_eq!(
            table.live.len(),
            3,
            "spawn never refuses; make_room is the gate"
        );
        table.join_next().await;
        assert_eq!(table.live.len(), 2);
    }
}
