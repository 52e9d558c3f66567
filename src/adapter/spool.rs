//! The disk spool of one adapter: a FIFO of events in the state store (tree `spool:<adapter>`),
//! keyed by arrival sequence, bounded by `spool.max_bytes`.
//!
//! Events enter when JetStream cannot take them (or the in-memory queue is full) and leave only
//! once JetStream acknowledged them, so a crash while draining replays them (the `Nats-Msg-Id`
//! makes the replay harmless) rather than losing them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus::IntGauge;

use super::message::OutMessage;
use crate::state::{StateError, StateStore, StateTree};

/// Why an event could not be spooled.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool is full ({bytes} of {max} bytes used)")]
    Full { bytes: u64, max: u64 },
    #[error(transparent)]
    Store(#[from] StateError),
}

pub struct Spool {
    tree: Arc<dyn StateTree>,
    max_bytes: u64,
    /// Everything in the tree, flushed or not: what the size limit and the drain look at.
    messages: AtomicU64,
    bytes: AtomicU64,
    /// Pushed since the last completed flush. The gauges leave these out: SPEC section 9 counts an
    /// event as spooled only once the store has flushed it, and operators read the gauges that way
    /// (e.g. before a planned kill).
    unflushed_messages: AtomicU64,
    unflushed_bytes: AtomicU64,
    messages_gauge: IntGauge,
    bytes_gauge: IntGauge,
}

/// What was pushed up to a moment: taken before a flush, credited after it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unflushed {
    messages: u64,
    bytes: u64,
}

impl Unflushed {
    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }
}

/// What the spool held when it was opened.
pub struct Recovered {
    /// The highest sequence found, so new events are numbered after it.
    pub last_seq: Option<u64>,
    /// Records this version cannot read (kept in place and reported, never deleted).
    pub unreadable: u64,
}

impl Spool {
    /// Opens the adapter's spool tree and rebuilds its counters from what is on disk.
    pub fn open(
        store: &dyn StateStore,
        adapter: &str,
        max_bytes: u64,
        messages_gauge: IntGauge,
        bytes_gauge: IntGauge,
    ) -> Result<(Spool, Recovered), StateError> {
        let tree = store.tree(&format!("spool:{adapter}"))?;
        let mut messages = 0u64;
        let mut bytes = 0u64;
        let mut unreadable = 0u64;
        let mut last_seq = None;
        tree.for_each(&mut |key, value| match OutMessage::decode(key, value) {
            Some(message) => {
                messages += 1;
                bytes += message.size() as u64;
                last_seq = Some(message.seq);
            }
            None => unreadable += 1,
        })?;
        messages_gauge.set(messages as i64);
        bytes_gauge.set(bytes as i64);
        let spool = Spool {
            tree,
            max_bytes,
            messages: AtomicU64::new(messages),
            bytes: AtomicU64::new(bytes),
            unflushed_messages: AtomicU64::new(0),
            unflushed_bytes: AtomicU64::new(0),
            messages_gauge,
            bytes_gauge,
        };
        Ok((
            spool,
            Recovered {
                last_seq,
                unreadable,
            },
        ))
    }

    /// Appends (or re-inserts, keeping its place) an event.
    pub fn push(&self, message: &OutMessage) -> Result<(), SpoolError> {
        let size = message.size() as u64;
        let used = self.bytes.load(Ordering::Relaxed);
        if used + size > self.max_bytes {
            return Err(SpoolError::Full {
                bytes: used,
                max: self.max_bytes,
            });
        }
        self.tree.insert(&message.key(), &message.encode())?;
        self.unflushed_messages.fetch_add(1, Ordering::Relaxed);
        self.unflushed_bytes.fetch_add(size, Ordering::Relaxed);
        self.add(1, size as i64);
        Ok(())
    }

    /// Removes an acknowledged (or permanently rejected) event.
    pub fn remove(&self, message: &OutMessage) -> Result<(), StateError> {
        self.remove_all(std::slice::from_ref(message))
    }

    /// Removes acknowledged (or permanently rejected) events in one write to the store.
    pub fn remove_all(&self, messages: &[OutMessage]) -> Result<(), StateError> {
        let keys: Vec<[u8; 8]> = messages.iter().map(OutMessage::key).collect();
        let refs: Vec<&[u8]> = keys.iter().map(|key| &key[..]).collect();
        self.tree.remove_many(&refs)?;
        let bytes: u64 = messages.iter().map(|m| m.size() as u64).sum();
        self.add(-(messages.len() as i64), -(bytes as i64));
        Ok(())
    }

    /// Up to `limit` events after sequence `after` (from the head when `None`), in order.
    pub fn read_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<OutMessage>, StateError> {
        let key = after.map(u64::to_be_bytes);
        let entries = self.tree.scan_after(key.as_ref().map(|k| &k[..]), limit)?;
        Ok(entries
            .iter()
            .filter_map(|(key, value)| OutMessage::decode(key, value))
            .collect())
    }

    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.messages() == 0
    }

    /// What has been pushed so far and not yet credited as flushed. Take it *before* flushing
    /// the store: everything it counts is then covered by the flush.
    pub fn unflushed(&self) -> Unflushed {
        Unflushed {
            messages: self.unflushed_messages.load(Ordering::Relaxed),
            bytes: self.unflushed_bytes.load(Ordering::Relaxed),
        }
    }

    /// Credits a completed flush of what [`Spool::unflushed`] returned before it.
    pub fn mark_flushed(&self, flushed: Unflushed) {
        add_signed(&self.unflushed_messages, -(flushed.messages as i64));
        add_signed(&self.unflushed_bytes, -(flushed.bytes as i64));
        self.add(0, 0);
    }

    fn add(&self, messages: i64, bytes: i64) {
        let m = add_signed(&self.messages, messages);
        let b = add_signed(&self.bytes, bytes);
        let unflushed_m = self.unflushed_messages.load(Ordering::Relaxed);
        let unflushed_b = self.unflushed_bytes.load(Ordering::Relaxed);
        self.messages_gauge
            .set(m.saturating_sub(unflushed_m) as i64);
        self.bytes_gauge.set(b.saturating_sub(unflushed_b) as i64);
    }
}

fn add_signed(counter: &AtomicU64, delta: i64) -> u64 {
    if delta >= 0 {
        counter.fetch_add(delta as u64, Ordering::Relaxed) + delta as u64
    } else {
        let sub = delta.unsigned_abs();
        let previous = counter
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(sub))
            })
            .unwrap_or(0);
        previous.saturating_sub(sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::SledStore;
    use bytes::Bytes;

    fn message(seq: u64, size: usize) -> OutMessage {
        OutMessage {
            seq,
            subject: "s".into(),
            msg_id: "id".into(),
            source_subject: "src".into(),
            sender: None,
            received: "t".into(),
            payload: Bytes::from(vec![b'x'; size]),
        }
    }

    fn gauges() -> (IntGauge, IntGauge) {
        (
            IntGauge::new("m", "m").unwrap(),
            IntGauge::new("b", "b").unwrap(),
        )
    }

    #[test]
    fn fifo_bounded_and_recovered_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let (m, b) = gauges();
        let (spool, recovered) = Spool::open(&store, "a", 1000, m.clone(), b).unwrap();
        assert_eq!(recovered.last_seq, None);
        for seq in [5, 1, 3] {
            spool.push(&message(seq, 100)).unwrap();
        }
        assert_eq!(m.get(), 0, "not counted before the store flushed");
        let pending = spool.unflushed();
        store.flush().unwrap();
        spool.mark_flushed(pending);
        assert_eq!(m.get(), 3);
        assert!(spool.unflushed().is_empty());
        let order: Vec<u64> = spool
            .read_after(None, 10)
            .unwrap()
            .iter()
            .map(|m| m.seq)
            .collect();
        assert_eq!(order, [1, 3, 5]);
        assert!(matches!(
            spool.push(&message(9, 800)),
            Err(SpoolError::Full { .. })
        ));
        spool.remove(&message(1, 100)).unwrap();
        assert_eq!(spool.messages(), 2);
        store.flush().unwrap();
        drop(spool);
        let (m, b) = gauges();
        let (spool, recovered) = Spool::open(&store, "a", 1000, m, b).unwrap();
        assert_eq!(recovered.last_seq, Some(5));
        assert_eq!(spool.messages(), 2);
        assert_eq!(spool.read_after(Some(3), 10).unwrap()[0].seq, 5);
    }
}
