//! The bounded write-back cache of sender records in front of the store: decisions update it
//! only, and [`Cache::write`] stores what changed (see the module documentation of `sampling` for
//! when). When full, it writes what differs and evicts the records not used since the last round.

use std::collections::HashMap;

use super::index::{self, BlockIds};
use super::record::Record;
use crate::state::{StateError, StateTree};

/// Records kept in memory at most; about 150 bytes each, so ~15 MB.
pub const CACHE_CAPACITY: usize = 100_000;

/// A record in memory and how it differs from the stored one.
pub(super) struct Cached {
    pub(super) record: Record,
    /// The last-seen time as stored.
    pub(super) stored_seen_ms: u64,
    /// Copy or advisory state changed since the last write.
    pub(super) changed: bool,
    /// The due time of the index entry in the store; `None` while the record is not stored yet.
    /// Differs from `record.due_ms` when the entry has to move on the next write.
    pub(super) stored_due_ms: Option<u64>,
    /// Used since the last eviction round.
    pub(super) hot: bool,
}

impl Cached {
    /// Whether it must be written: new, re-indexed, changed, or seen at least `seen_step_ms`
    /// after the stored sighting. Eviction passes 1: the memory copy is about to go away.
    pub(super) fn needs_write(&self, seen_step_ms: u64) -> bool {
        let seen_moved = self.record.seen_ms.saturating_sub(self.stored_seen_ms);
        self.stored_due_ms != Some(self.record.due_ms)
            || self.changed
            || seen_moved >= seen_step_ms.max(1)
    }

    pub(super) fn mark_written(&mut self) {
        self.stored_seen_ms = self.record.seen_ms;
        self.changed = false;
        self.stored_due_ms = Some(self.record.due_ms);
    }
}

/// The bounded write-back cache.
pub(super) struct Cache {
    pub(super) entries: HashMap<String, Cached>,
    capacity: usize,
    pub(super) block_ids: BlockIds,
    /// A write error met while evicting, reported by the caller once the lock is released.
    pub(super) error: Option<StateError>,
}

impl Cache {
    pub(super) fn new(capacity: usize) -> Cache {
        Cache {
            entries: HashMap::with_capacity(capacity.min(1 << 16)),
            capacity,
            block_ids: BlockIds::from_clock(),
            error: None,
        }
    }

    /// The record of `key`, loaded into the cache on a miss; `None` for an unknown sender.
    pub(super) fn entry(
        &mut self,
        key: &str,
        records: &dyn StateTree,
        due: &dyn StateTree,
    ) -> Result<Option<&mut Cached>, StateError> {
        if !self.entries.contains_key(key) {
            let Some(record) = records
                .get(key.as_bytes())?
                .and_then(|v| Record::decode(&v))
            else {
                return Ok(None);
            };
            self.make_room(records, due);
            self.entries.insert(
                key.to_string(),
                Cached {
                    record,
                    stored_seen_ms: record.seen_ms,
                    changed: false,
                    stored_due_ms: Some(record.due_ms),
                    hot: true,
                },
            );
        }
        Ok(self.entries.get_mut(key))
    }

    /// Adds a new sender, making room first when the cache is full.
    pub(super) fn insert(
        &mut self,
        key: String,
        record: Record,
        records: &dyn StateTree,
        due: &dyn StateTree,
    ) {
        self.make_room(records, due);
        self.entries.insert(
            key,
            Cached {
                record,
                stored_seen_ms: record.seen_ms,
                changed: true,
                stored_due_ms: None,
                hot: true,
            },
        );
    }

    /// Evicts when full. A write error is kept for the caller to report after unlocking.
    fn make_room(&mut self, records: &dyn StateTree, due: &dyn StateTree) {
        if self.entries.len() < self.capacity {
            return;
        }
        if let Err(error) = self.evict(records, due) {
            self.error = Some(error);
        }
    }

    /// Writes what differs from the store, then drops records not used since the last round (and,
    /// if that frees too little, any written records) until the cache is half full. Records that
    /// could not be written stay.
    fn evict(&mut self, records: &dyn StateTree, due: &dyn StateTree) -> Result<(), StateError> {
        let result = self.write(records, due, 1);
        self.entries.retain(|_, cached| {
            let keep = cached.hot || cached.needs_write(1);
            cached.hot = false;
            keep
        });
        let target = self.capacity / 2;
        if self.entries.len() > self.capacity * 3 / 4 {
            let mut excess = self.entries.len() - target;
            self.entries.retain(|_, cached| {
                if excess > 0 && !cached.needs_write(1) {
                    excess -= 1;
                    return false;
                }
                true
            });
        }
        result
    }

    /// Writes records that need it. Their new index entries are written first, in blocks, so a
    /// stored record is always indexed; the entries they replace stay until a sweep drops them as
    /// stale. Stops at the first error (the rest stay pending; a second entry written for a sender
    /// on the retry is harmless).
    pub(super) fn write(
        &mut self,
        records: &dyn StateTree,
        due: &dyn StateTree,
        seen_step_ms: u64,
    ) -> Result<(), StateError> {
        let mut index: Vec<(u64, &[u8])> = self
            .entries
            .iter()
            .filter(|(_, cached)| {
                cached.needs_write(seen_step_ms)
                    && cached.stored_due_ms != Some(cached.record.due_ms)
            })
            .map(|(key, cached)| (cached.record.due_ms, key.as_bytes()))
            .collect();
        index::write_blocks(due, &mut index, &mut self.block_ids)?;
        for (key, cached) in self.entries.iter_mut() {
            if !cached.needs_write(seen_step_ms) {
                continue;
            }
            records.insert(key.as_bytes(), &cached.record.encode())?;
            cached.mark_written();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{AdvisoryEvent, CopyReason, Decision, Sampler};
    use super::*;
    use crate::config::replicator::SampleKey;
    use crate::state::{SledStore, StateStore};

    #[test]
    fn state_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let config = advisories(Some(60), Some(600));
        let sample = sample(field_key(), HOUR);
        {
            let store = SledStore::open(dir.path()).unwrap();
            let sampler = Sampler::open(&store, "r", &sample, Some(&config)).unwrap();
            for sender in 0..100 {
                decide(&sampler, &payload(&format!("n{sender}"), 1), 1000);
            }
            assert_eq!(sampler.sweep(1061.0).len(), 100);
            sampler.flush().unwrap();
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        let sampler = Sampler::open(&store, "r", &sample, Some(&config)).unwrap();
        assert_eq!(sampler.senders(), 100);
        for sender in 0..100 {
            let (decision, advisory) = decide(&sampler, &payload(&format!("n{sender}"), 1), 1062);
            // Timed out before the restart, so it recovers: no `new`.
            assert_eq!(decision, Decision::Copy(CopyReason::Recovered));
            assert_eq!(advisory.unwrap().event, AdvisoryEvent::Recover);
            let (decision, advisory) = decide(&sampler, &payload(&format!("n{sender}"), 1), 1063);
            assert_eq!(decision, Decision::Skip);
            assert!(advisory.is_none());
        }
        // Another sampler name has its own state.
        let other = Sampler::open(&store, "other", &sample, Some(&config)).unwrap();
        assert_eq!(other.senders(), 0);
    }

    #[test]
    fn mere_sightings_are_written_in_steps() {
        let (_dir, store) = store();
        // Expiry 300 s, no timeout: a sighting is written once it moved 15 s.
        let config = advisories(None, Some(300));
        let sampler =
            Sampler::open(&store, "r", &sample(field_key(), HOUR), Some(&config)).unwrap();
        let records = store.tree("sample:r").unwrap();
        let stored_seen = || {
            Record::decode(&records.get(b"a").unwrap().unwrap())
                .unwrap()
                .seen_ms
        };
        decide(&sampler, &payload("a", 1), 1000);
        sampler.flush().unwrap();
        assert_eq!(stored_seen(), 1_000_000);
        assert_eq!(decide(&sampler, &payload("a", 1), 1010).0, Decision::Skip);
        sampler.flush().unwrap();
        assert_eq!(stored_seen(), 1_000_000);
        assert_eq!(decide(&sampler, &payload("a", 1), 1015).0, Decision::Skip);
        sampler.flush().unwrap();
        assert_eq!(stored_seen(), 1_015_000);
    }

    /// Feeds `senders` distinct senders through a cache of `capacity` records, checking the bound
    /// all along, and that every sender is still known afterwards (from the store).
    fn many_senders(senders: u32, capacity: usize) {
        let (_dir, store) = store();
        let sampler = Sampler::open_with_capacity(
            &store,
            "r",
            &sample(SampleKey::SubjectToken(2), HOUR),
            None,
            capacity,
        )
        .unwrap();
        let mut subject = String::new();
        for sender in 0..senders {
            subject.clear();
            subject.push_str("reg.");
            subject.push_str(&sender.to_string());
            let (decision, _) = sampler.decide(&subject, None, b"{}", 1000.0);
            assert_eq!(decision, Decision::Copy(CopyReason::New));
            assert!(sampler.cached() <= capacity, "{}", sampler.cached());
        }
        assert_eq!(sampler.senders(), u64::from(senders));
        for sender in (0..senders).step_by(97) {
            let (decision, _) = sampler.decide(&format!("reg.{sender}"), None, b"{}", 1001.0);
            assert_eq!(decision, Decision::Skip, "sender {sender}");
        }
        assert!(sampler.cached() <= capacity);
    }

    #[test]
    fn many_senders_stay_within_the_cache_bound() {
        many_senders(20_000, 500);
    }

    /// The full-size case; the store is slow in debug builds, so run it with
    /// `cargo test --release --lib a_million_senders -- --ignored`.
    #[test]
    #[ignore = "slow in debug builds"]
    fn a_million_senders_stay_within_the_cache_bound() {
        many_senders(1_000_000, CACHE_CAPACITY);
    }
}
