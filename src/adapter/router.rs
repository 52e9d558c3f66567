//! Where a freshly decoded event goes: the in-memory queue, or behind the spool.
//!
//! One rule keeps the order: while `spooling` is set, every new event goes to the spool, behind
//! the ones already there; the publisher clears the flag only when it has read the spool to its
//! end, under the same lock, so no event can slip past older spooled ones. The flag is set when
//! the queue is full (JetStream slower than intake) or when the publisher meets an outage.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, Notify};

use super::message::OutMessage;
use super::spool::{Spool, SpoolError};

/// Where an event went.
pub enum Routed {
    Queued,
    Spooled,
    /// The spool is full (or failing): the event is lost and must be counted.
    Dropped(SpoolError),
}

pub struct Router {
    state: Mutex<RouterState>,
    spool: Arc<Spool>,
    /// Wakes the publisher when the spool gained events.
    pub spool_grew: Notify,
}

struct RouterState {
    spooling: bool,
    next_seq: u64,
    /// The only sender of the queue; `None` once intake has finished, which closes the queue so
    /// the publisher knows no more events will come.
    queue: Option<mpsc::Sender<OutMessage>>,
}

impl Router {
    /// `first_seq` continues after the highest sequence already in the spool, so keys never repeat.
    /// Starts in spooling mode when the spool holds events from a previous run: they are older.
    pub fn new(queue: mpsc::Sender<OutMessage>, spool: Arc<Spool>, first_seq: u64) -> Router {
        let spooling = !spool.is_empty();
        Router {
            state: Mutex::new(RouterState {
                spooling,
                next_seq: first_seq,
                queue: Some(queue),
            }),
            spool,
            spool_grew: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RouterState> {
        // A panic while holding this lock cannot leave the state half-updated (two plain fields).
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Numbers the event and routes it.
    pub fn submit(&self, mut message: OutMessage) -> Routed {
        let mut state = self.lock();
        message.seq = state.next_seq;
        state.next_seq += 1;
        if let (false, Some(queue)) = (state.spooling, &state.queue) {
            match queue.try_send(message) {
                Ok(()) => return Routed::Queued,
                Err(mpsc::error::TrySendError::Full(back))
                | Err(mpsc::error::TrySendError::Closed(back)) => {
                    state.spooling = true;
                    message = back;
                }
            }
        }
        let routed = match self.spool.push(&message) {
            Ok(()) => Routed::Spooled,
            Err(error) => Routed::Dropped(error),
        };
        drop(state);
        self.spool_grew.notify_one();
        routed
    }

    /// Events waiting in the in-memory queue.
    pub fn queue_depth(&self) -> usize {
        self.lock()
            .queue
            .as_ref()
            .map_or(0, |queue| queue.max_capacity() - queue.capacity())
    }

    /// Intake has finished: close the queue (the publisher drains what it holds, then sees the end).
    /// Anything submitted later goes to the spool.
    pub fn close_queue(&self) {
        self.lock().queue = None;
    }

    pub fn is_spooling(&self) -> bool {
        self.lock().spooling
    }

    /// Sends every new event to the spool from now on.
    pub fn start_spooling(&self) {
        self.lock().spooling = true;
    }

    /// Returns to the in-memory queue if the spool holds nothing after `cursor` (the last
    /// sequence the publisher read from it). Returns whether it did.
    pub fn finish_spooling(&self, cursor: Option<u64>) -> bool {
        let mut state = self.lock();
        if !state.spooling {
            return true;
        }
        match self.spool.read_after(cursor, 1) {
            Ok(rest) if rest.is_empty() => {
                state.spooling = false;
                true
            }
            _ => false,
        }
    }
}
