//! Per-sender sampling (SPEC section 7), compatible with Choria's stream replicator.
//!
//! Every message is judged by its sender key (a JSON field, a header or a subject token). A message
//! without a key is always copied. A sender's first message is copied (advisory `new`); after that a
//! sender is copied at most once per `interval`, unless its payload size moved by `size_trigger`
//! since the last copy or the `force_field` is `true`. A sender that went silent longer than
//! `timeout_after` is reported once (`timeout`), reported and copied again when it comes back before
//! it expires (`recover`), and forgotten after `expire_after` (`expire`).
//!
//! # Storage
//!
//! Sampling must scale to 1,000,000 senders without holding them all in memory, and survive
//! restarts (no second flood of copies, no repeated `new`). Two trees hold the state:
//!
//! - `sample:<replicator>`: sender → record (last seen, last copied, last copied size, advised flag,
//!   and the due time under which the record is indexed), with a leading format byte.
//! - `sample-due:<replicator>`: the due index, entries (due time, sender) kept in blocks of a few
//!   hundred, ordered by due time (layout in [`index`]). The due time is when the
//!   sender next needs a look: its timeout, or its expiry once timed out. A sweep reads only the
//!   head of this tree, the blocks already due, so its cost does not grow with the number of
//!   senders; and indexing a sender costs a share of one write, not a write of its own.
//!
//! The index is lazy: a sighting does not move the sender's index entry (that would be two extra
//! writes per message). An entry may therefore be early, never late (a recovery, which brings the
//! next timeout closer, adds an entry on the next write); when a sweep reaches an entry whose
//! sender was heard since, it indexes the sender again at its real due time. The record names the
//! due time of the entry it owns, so any other entry of the sender (superseded, or left behind by a
//! crash between writes) is recognised as stale and dropped when a sweep reaches it. Entries are
//! never removed one by one: a sweep removes the blocks it has read, after writing the entries of
//! them that are not due yet into new blocks.
//!
//! In front of the trees sits a bounded write-back cache ([`cache`]) of recently used records. Decisions update
//! the cache only; [`Sampler::flush`] (on the checkpoint interval, at shutdown, before a sweep, and
//! when the cache is full) writes records whose copy or advisory state changed. A mere sighting is
//! written once it moved the last-seen time by a twentieth of the timeout (or expiry), between 5 s
//! and 60 s, so a chatty sender costs at most one write per such step; what a crash can lose is that
//! much last-seen time, which only makes a later timeout come that much earlier.
//!
//! # Time
//!
//! `now` is whatever the caller uses as the message's time (its source timestamp or the wall clock),
//! in Unix seconds. The sweep must use the same clock: replaying old messages by their source time
//! while sweeping by the wall clock would expire every sender it learns.
//!
//! # Files
//!
//! - `mod.rs`: the [`Sampler`] the copier and the gate call: open, decide, sweep, flush, share.
//! - `key.rs`: a message's sender key and force flag.
//! - `policy.rs`: the per-sender rule (interval, size trigger, force field, timeout, expiry) and
//!   the advisories it raises.
//! - `record.rs`: what is kept per sender, and its stored bytes.
//! - `cache.rs`: the bounded write-back cache of records.
//! - `index.rs`: the persisted due index; `sweep.rs`: the timeout and expiry sweep over it.

mod cache;
pub mod index;
mod key;
mod policy;
mod record;
mod sweep;
#[cfg(test)]
mod testing;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_nats::HeaderMap;

use crate::config::replicator::{AdvisoriesConfig, SampleConfig};
use crate::logging::LogLimiter;
use crate::state::{StateError, StateStore, StateTree};
use cache::Cache;
pub use cache::CACHE_CAPACITY;
use key::KeyReader;
pub use policy::{Advisory, AdvisoryEvent, CopyReason, Decision};
use policy::{Policy, Sighting};
use record::Record;
pub use record::{SharedRecord, RECORD_LEN};

/// Per-sender sampling for one replicator. Cheap to share: all methods take `&self`.
pub struct Sampler {
    keys: KeyReader,
    policy: Policy,
    records: Arc<dyn StateTree>,
    due: Arc<dyn StateTree>,
    cache: Mutex<Cache>,
    senders: AtomicU64,
    errors: LogLimiter,
    /// Under leader election: senders whose copied or advised state changed since the shared
    /// bucket last took them (`None`: the sender expired). Mere sightings are not shared.
    shared: Option<Mutex<HashMap<String, Option<SharedRecord>>>>,
}

impl Sampler {
    /// Opens (creating if needed) the sampling state of `replicator`. Counts the known senders
    /// once, which reads the whole records tree.
    pub fn open(
        store: &dyn StateStore,
        replicator: &str,
        sample: &SampleConfig,
        advisories: Option<&AdvisoriesConfig>,
    ) -> Result<Sampler, StateError> {
        Sampler::open_with_capacity(store, replicator, sample, advisories, CACHE_CAPACITY)
    }

    /// [`Sampler::open`] with a chosen cache size.
    pub fn open_with_capacity(
        store: &dyn StateStore,
        replicator: &str,
        sample: &SampleConfig,
        advisories: Option<&AdvisoriesConfig>,
        capacity: usize,
    ) -> Result<Sampler, StateError> {
        let records = store.tree(&format!("sample:{replicator}"))?;
        let due = store.tree(&format!("sample-due:{replicator}"))?;
        let mut senders = 0u64;
        records.for_each(&mut |_, _| senders += 1)?;
        Ok(Sampler {
            keys: KeyReader::new(sample),
            policy: Policy::new(sample, advisories),
            records,
            due,
            cache: Mutex::new(Cache::new(capacity.max(16))),
            senders: AtomicU64::new(senders),
            errors: LogLimiter::new(Duration::from_secs(30)),
            shared: None,
        })
    }

    /// Keeps track of the changes the other instances of an elected replicator need (see
    /// [`Sampler::take_shared`]).
    pub fn share_changes(mut self) -> Sampler {
        self.shared = Some(Mutex::new(HashMap::new()));
        self
    }

    /// The changes since the last call, to write to the shared bucket.
    pub fn take_shared(&self) -> Vec<(String, Option<SharedRecord>)> {
        match &self.shared {
            Some(shared) => lock(shared).drain().collect(),
            None => Vec::new(),
        }
    }

    /// Puts back changes the shared bucket did not take, unless newer ones came meanwhile.
    pub fn return_shared(&self, changes: Vec<(String, Option<SharedRecord>)>) {
        if let Some(shared) = &self.shared {
            let mut shared = lock(shared);
            for (key, record) in changes {
                shared.entry(key).or_insert(record);
            }
        }
    }

    /// Takes a record another instance shared, when it is newer than what this one knows (by
    /// last copy, then last sighting). Returns whether it was taken.
    pub fn merge_shared(&self, key: &str, bytes: &[u8]) -> Result<bool, StateError> {
        let Some(remote) = Record::decode(bytes) else {
            return Ok(false);
        };
        if key.is_empty() {
            return Ok(false);
        }
        let mut cache = self.lock();
        let result = match cache.entry(key, &*self.records, &*self.due)? {
            Some(cached) => {
                let local = cached.record;
                if (remote.copied_ms, remote.seen_ms, remote.advised)
                    <= (local.copied_ms, local.seen_ms, local.advised)
                {
                    false
                } else {
                    cached.record = remote;
                    cached.changed = true;
                    true
                }
            }
            None => {
                self.senders.fetch_add(1, Ordering::Relaxed);
                cache.insert(key.to_string(), remote, &*self.records, &*self.due);
                true
            }
        };
        let error = cache.error.take();
        drop(cache);
        if let Some(error) = error {
            self.report("cannot write sender records; they stay in memory", &error);
        }
        Ok(result)
    }

    /// Takes a sender's state from another tool (Choria's stream replicator's state file), unless
    /// this sampler already knows the sender: its own record is newer. Returns whether it was
    /// taken. [`Sampler::flush`] writes what was taken.
    pub fn import(&self, key: &str, imported: Imported) -> Result<bool, StateError> {
        if key.is_empty() {
            return Ok(false);
        }
        let mut cache = self.lock();
        if cache.entry(key, &*self.records, &*self.due)?.is_some() {
            return Ok(false);
        }
        let mut record = Record {
            seen_ms: imported.seen_ms,
            copied_ms: imported.copied_ms,
            size: imported.size,
            advised: imported.advised,
            due_ms: 0,
        };
        record.due_ms = self.policy.next_due(&record);
        self.senders.fetch_add(1, Ordering::Relaxed);
        cache.insert(key.to_string(), record, &*self.records, &*self.due);
        match cache.error.take() {
            Some(error) => Err(error),
            None => Ok(true),
        }
    }

    /// How long a sender may stay silent before it is forgotten (`expire`).
    pub fn expire_after(&self) -> Duration {
        Duration::from_millis(self.policy.expire_ms)
    }

    /// Notes a change for the shared bucket, when sharing.
    fn note_shared(&self, key: &str, record: Option<&Record>) {
        if let Some(shared) = &self.shared {
            lock(shared).insert(key.to_string(), record.map(Record::encode));
        }
    }

    /// The sender key of a message, if it has a non-empty one.
    pub fn key(
        &self,
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: &[u8],
    ) -> Option<String> {
        self.keys
            .read(subject, headers, payload, false)
            .key
            .map(Cow::into_owned)
    }

    /// Decides one message and records what it needs. Returns the advisory to publish (`new` or
    /// `recover`) when advisories are configured.
    pub fn decide(
        &self,
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: &[u8],
        now: f64,
    ) -> (Decision, Option<Advisory>) {
        // A key in the payload is found in the same pass as the force field; otherwise the payload
        // is read only if the force field could change the verdict.
        let force_in_same_pass = self.keys.in_payload();
        let read = self
            .keys
            .read(subject, headers, payload, force_in_same_pass);
        let Some(key) = read.key else {
            return (Decision::Copy(CopyReason::NoKey), None);
        };
        let message = Sighting {
            now_ms: to_ms(now),
            size: payload.len() as u64,
            forced: force_in_same_pass.then_some(read.force == Some(true)),
        };
        let mut cache = self.lock();
        let entry = match cache.entry(&key, &*self.records, &*self.due) {
            Ok(entry) => entry,
            Err(error) => {
                drop(cache);
                self.report("cannot read a sender record; copying the message", &error);
                return (Decision::Copy(CopyReason::NoKey), None);
            }
        };
        let forced = || message.forced.unwrap_or_else(|| self.keys.forced(payload));
        let (decision, advisory, created) = match entry {
            Some(cached) => {
                cached.hot = true;
                let (decision, advisory, changed) =
                    self.policy
                        .judge_known(&key, &mut cached.record, &message, forced);
                if changed {
                    cached.changed = true;
                    self.note_shared(&key, Some(&cached.record));
                }
                (decision, advisory, None)
            }
            None => {
                let record = self.policy.new_record(&message);
                (
                    Decision::Copy(CopyReason::New),
                    self.policy.advise_new(&key, &message),
                    Some(record),
                )
            }
        };
        if let Some(record) = created {
            self.senders.fetch_add(1, Ordering::Relaxed);
            self.note_shared(&key, Some(&record));
            cache.insert(key.into_owned(), record, &*self.records, &*self.due);
        }
        let error = cache.error.take();
        drop(cache);
        if let Some(error) = error {
            self.report("cannot write sender records; they stay in memory", &error);
        }
        (decision, advisory)
    }

    /// Reports senders silent longer than `timeout_after` (`timeout`, once per silence) and longer
    /// than `expire_after` (`expire`; the record is removed). Reads only index entries already due,
    /// at most a few thousand per call, so call it every few seconds. Expiry happens without
    /// advisories too (keeping the state bounded); advisories are returned only when configured.
    pub fn sweep(&self, now: f64) -> Vec<Advisory> {
        let now_ms = to_ms(now);
        let mut cache = self.lock();
        let mut advisories = Vec::new();
        let result = self
            .write_pending(&mut cache)
            .and_then(|()| self.sweep_due(&mut cache, now_ms, &mut advisories));
        drop(cache);
        if let Err(error) = result {
            self.report("sweep failed; the next one retries", &error);
        }
        if !self.policy.advise {
            advisories.clear();
        }
        advisories
    }

    /// Writes buffered record changes to the store (which makes them durable within its flush
    /// interval).
    pub fn flush(&self) -> Result<(), StateError> {
        let mut cache = self.lock();
        self.write_pending(&mut cache)
    }

    /// Number of senders known, maintained incrementally.
    pub fn senders(&self) -> u64 {
        self.senders.load(Ordering::Relaxed)
    }

    /// Records currently held in memory (bounded by the cache capacity).
    pub fn cached(&self) -> usize {
        self.lock().entries.len()
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Logs a state store problem (rate-limited): sampling degrades, it never stops copying.
    fn report(&self, what: &str, error: &StateError) {
        if let Some(suppressed) = self.errors.allow() {
            tracing::warn!(%error, suppressed, "sampling state: {what}");
        }
    }

    /// Writes every cached record that needs it (see [`Cached::needs_write`]).
    fn write_pending(&self, cache: &mut Cache) -> Result<(), StateError> {
        cache.write(&*self.records, &*self.due, self.policy.seen_write_ms)
    }
}

/// A sender's state as another tool kept it, in Unix milliseconds (0: never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub seen_ms: u64,
    pub copied_ms: u64,
    /// Payload size of the last copy (or sighting).
    pub size: u64,
    /// A `timeout` advisory was issued for the current silence.
    pub advised: bool,
}

/// Locks a mutex, recovering from a poisoned one (its contents are plain data).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn bytes_as_str(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

/// Unix seconds (any clock the caller uses) to milliseconds; negative and NaN become 0.
fn to_ms(seconds: f64) -> u64 {
    (seconds * 1000.0).max(0.0) as u64
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn imported_senders_are_known_and_what_ferry_knows_is_kept() {
        let (_dir, store) = store();
        let config = advisories(Some(600), None);
        let sampler =
            Sampler::open(&store, "r", &sample(field_key(), HOUR), Some(&config)).unwrap();
        let at = |seconds: u64| seconds * 1000;
        // Known to ferry already: not replaced.
        assert_eq!(
            decide(&sampler, &payload("ours", 1), 10_000).0,
            Decision::Copy(CopyReason::New)
        );
        let imported = |seen, copied| Imported {
            seen_ms: at(seen),
            copied_ms: at(copied),
            size: 20,
            advised: false,
        };
        assert!(!sampler.import("ours", imported(9_000, 9_000)).unwrap());
        assert!(sampler.import("theirs", imported(9_990, 9_900)).unwrap());
        assert!(!sampler.import("", imported(9_990, 9_900)).unwrap());
        assert_eq!(sampler.senders(), 2);
        sampler.flush().unwrap();
        drop(sampler);
        // After a restart: copied 100 s ago, so sampled out and not announced as new.
        let sampler =
            Sampler::open(&store, "r", &sample(field_key(), HOUR), Some(&config)).unwrap();
        assert_eq!(
            decide(&sampler, &payload("theirs", 1), 10_000),
            (Decision::Skip, None)
        );
        // Silent past its timeout: reported once by the sweep, as one ferry had seen itself.
        let reported = sampler.sweep(9_990.0 + 601.0);
        assert_eq!(reported.len(), 0, "heard again at 10000: {reported:?}");
        let reported = sampler.sweep(10_000.0 + 601.0);
        assert_eq!(
            reported
                .iter()
                .map(|a| (a.event, a.value.as_str()))
                .collect::<Vec<_>>(),
            [
                (AdvisoryEvent::Timeout, "ours"),
                (AdvisoryEvent::Timeout, "theirs")
            ]
        );
    }

    /// `cargo test --release --lib sampling::tests::decide_throughput -- --ignored --nocapture`
    #[test]
    #[ignore = "measurement"]
    fn decide_throughput() {
        let (_dir, store) = store();
        let config = advisories(Some(600), None);
        let mut sample = sample(field_key(), HOUR);
        sample.force_field = Some("force".into());
        let sampler = Sampler::open(&store, "r", &sample, Some(&config)).unwrap();
        let bodies: Vec<Vec<u8>> = (0..50_000)
            .map(|n| {
                format!(
                    r#"{{"protocol":"choria:adapters:choria_streams:output:1","data":"{}","sender":"node{n}.example.net","time":"2024-01-01T00:00:00Z","requestid":"abc"}}"#,
                    "y".repeat(400)
                )
                .into_bytes()
            })
            .collect();
        let round = |second: f64| {
            let start = std::time::Instant::now();
            for body in &bodies {
                sampler.decide("reg.x", None, body, second);
            }
            sampler.flush().unwrap();
            bodies.len() as f64 / start.elapsed().as_secs_f64()
        };
        let first = round(1000.0);
        let steady: Vec<f64> = (1..10).map(|n| round(1000.0 + f64::from(n))).collect();
        let steady = steady.iter().sum::<f64>() / steady.len() as f64;
        eprintln!("50000 senders: first sightings {first:.0}/s, then {steady:.0} decisions/s");
    }
}
