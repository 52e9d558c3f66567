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
//!   hundred, ordered by due time (layout in [`super::sample_index`]). The due time is when the
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
//! In front of the trees sits a bounded write-back cache of recently used records. Decisions update
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

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_nats::HeaderMap;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::sample_index::{self, BlockIds, IndexKey};
use crate::config::replicator::{AdvisoriesConfig, SampleConfig, SampleKey};
use crate::logging::LogLimiter;
use crate::state::{StateError, StateStore, StateTree};

/// Leading byte of every sender record, so a later release can read (or migrate) older ones.
const RECORD_VERSION: u8 = 1;
/// Encoded record length: version, four u64 fields, flags.
pub const RECORD_LEN: usize = 1 + 8 * 4 + 1;
/// Record flag: a `timeout` advisory was issued for the current silence.
const FLAG_ADVISED: u8 = 1;

/// Records kept in memory at most; about 150 bytes each, so ~15 MB.
pub const CACHE_CAPACITY: usize = 100_000;
/// Bounds of the last-seen move after which a record with no other change is written.
const SEEN_WRITE_MIN_MS: u64 = 5_000;
const SEEN_WRITE_MAX_MS: u64 = 60_000;
/// Index keys read from the store per batch during a sweep (a block key carries hundreds of
/// entries, so few at a time keep the read small).
const SWEEP_BATCH: usize = 16;
/// Index entries one sweep handles at most, so a mass expiry is spread over several sweeps and
/// never holds up the copy path for long.
const SWEEP_LIMIT: usize = 5_000;

/// The verdict on one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Copy(CopyReason),
    /// Sampled out: the sender was copied recently enough.
    Skip,
}

/// Why a message is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyReason {
    /// The message has no sender key (or sampling could not read its state).
    NoKey,
    /// The sender is unknown (first message, or heard again after it expired).
    New,
    /// The sender was last copied at least `interval` ago.
    Interval,
    /// The payload size moved by at least `size_trigger` since the last copy.
    SizeChanged,
    /// The `force_field` is `true`.
    Forced,
    /// The sender came back after a timeout.
    Recovered,
}

/// The advisory events of Choria's age advisories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdvisoryEvent {
    New,
    Timeout,
    Recover,
    Expire,
}

impl AdvisoryEvent {
    /// The name used in the payload, the subject and the metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            AdvisoryEvent::New => "new",
            AdvisoryEvent::Timeout => "timeout",
            AdvisoryEvent::Recover => "recover",
            AdvisoryEvent::Expire => "expire",
        }
    }
}

impl fmt::Display for AdvisoryEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One advisory about a sender; `advisories.rs` turns it into Choria's wire format.
#[derive(Debug, Clone, PartialEq)]
pub struct Advisory {
    pub event: AdvisoryEvent,
    /// The sender.
    pub value: String,
    /// The sample key's name.
    pub inspect_field: String,
    /// Seconds since the sender was last seen (0 for `new`).
    pub age_seconds: u64,
    /// When the sender was last seen, Unix seconds.
    pub seen_unix: i64,
}

/// Per-sender sampling for one replicator. Cheap to share: all methods take `&self`.
pub struct Sampler {
    settings: Settings,
    records: Arc<dyn StateTree>,
    due: Arc<dyn StateTree>,
    cache: Mutex<Cache>,
    senders: AtomicU64,
    errors: LogLimiter,
    /// Under leader election: senders whose copied or advised state changed since the shared
    /// bucket last took them (`None`: the sender expired). Mere sightings are not shared.
    shared: Option<Mutex<HashMap<String, Option<SharedRecord>>>>,
}

/// A sender record as stored, for the shared bucket (SPEC section 8).
pub type SharedRecord = [u8; RECORD_LEN];

/// The configuration, resolved into what the hot path needs.
struct Settings {
    key: KeySource,
    force: Option<Vec<String>>,
    interval_ms: u64,
    size_trigger: Option<u64>,
    /// Only with advisories: without them there is nobody to tell about a timeout.
    timeout_ms: Option<u64>,
    expire_ms: u64,
    advise: bool,
    inspect_field: String,
    /// A mere sighting is written once it moved the last-seen time this much.
    seen_write_ms: u64,
}

enum KeySource {
    Field(Vec<String>),
    Header(String),
    SubjectToken(i64),
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
            settings: Settings::new(sample, advisories),
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
        self.read_message(subject, headers, payload, false)
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
        let force_in_same_pass = matches!(self.settings.key, KeySource::Field(_));
        let read = self.read_message(subject, headers, payload, force_in_same_pass);
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
        let forced = || {
            message.forced.unwrap_or_else(|| {
                scan_json(payload, None, self.settings.force.as_deref()).force == Some(true)
            })
        };
        let (decision, advisory, created) = match entry {
            Some(cached) => self.judge_known(&key, cached, &message, forced),
            None => {
                let record = self.new_record(&message);
                (
                    Decision::Copy(CopyReason::New),
                    self.advise_new(&key, &message),
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
        if !self.settings.advise {
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

    /// Finds the key; with `with_force` and a key in the payload, the force flag in the same pass.
    fn read_message<'a>(
        &self,
        subject: &'a str,
        headers: Option<&'a HeaderMap>,
        payload: &'a [u8],
        with_force: bool,
    ) -> Found<'a> {
        let key = match &self.settings.key {
            KeySource::Field(path) => {
                let force = self.settings.force.as_deref().filter(|_| with_force);
                return scan_json(payload, Some(path), force);
            }
            KeySource::Header(name) => crate::jetstream::wire_headers::lookup(headers, name),
            KeySource::SubjectToken(n) => subject_token(subject, *n),
        };
        Found {
            key: key.filter(|key| !key.is_empty()).map(Cow::Borrowed),
            force: None,
        }
    }

    /// A known sender: recovered, expired-and-back, or sampled.
    fn judge_known(
        &self,
        key: &str,
        cached: &mut Cached,
        message: &Sighting,
        forced: impl FnOnce() -> bool,
    ) -> (Decision, Option<Advisory>, Option<Record>) {
        cached.hot = true;
        let record = &mut cached.record;
        let silence = message.now_ms.saturating_sub(record.seen_ms);
        if silence >= self.settings.expire_ms {
            // Heard again after its expiry, before a sweep removed it: it is new again.
            let due_ms = record.due_ms;
            *record = Record {
                due_ms,
                ..self.new_record(message)
            };
            cached.changed = true;
            self.note_shared(key, Some(&cached.record));
            return (
                Decision::Copy(CopyReason::New),
                self.advise_new(key, message),
                None,
            );
        }
        let recovered = self
            .settings
            .timeout_ms
            .is_some_and(|timeout| record.advised || silence >= timeout);
        let previous_seen = record.seen_ms;
        record.seen_ms = record.seen_ms.max(message.now_ms);
        let reason = if recovered {
            Some(CopyReason::Recovered)
        } else {
            self.sample(record, message, forced)
        };
        let Some(reason) = reason else {
            return (Decision::Skip, None, None);
        };
        record.advised = false;
        // Back in good standing, its next timeout may come before the entry it is indexed under.
        record.due_ms = record.due_ms.min(self.settings.next_due(record));
        record.copied_ms = record.copied_ms.max(message.now_ms);
        record.size = message.size;
        cached.changed = true;
        self.note_shared(key, Some(&cached.record));
        let advisory = (recovered && self.settings.advise).then(|| Advisory {
            event: AdvisoryEvent::Recover,
            value: key.to_string(),
            inspect_field: self.settings.inspect_field.clone(),
            age_seconds: rounded_seconds(silence),
            seen_unix: (previous_seen / 1000) as i64,
        });
        (Decision::Copy(reason), advisory, None)
    }

    /// The sampling rules for a sender in good standing; `None` means skip.
    fn sample(
        &self,
        record: &Record,
        message: &Sighting,
        forced: impl FnOnce() -> bool,
    ) -> Option<CopyReason> {
        if message.now_ms.saturating_sub(record.copied_ms) >= self.settings.interval_ms {
            return Some(CopyReason::Interval);
        }
        if self
            .settings
            .size_trigger
            .is_some_and(|trigger| message.size.abs_diff(record.size) >= trigger)
        {
            return Some(CopyReason::SizeChanged);
        }
        if self.settings.force.is_some() && forced() {
            return Some(CopyReason::Forced);
        }
        None
    }

    fn new_record(&self, message: &Sighting) -> Record {
        let mut record = Record {
            seen_ms: message.now_ms,
            copied_ms: message.now_ms,
            size: message.size,
            advised: false,
            due_ms: 0,
        };
        record.due_ms = self.settings.next_due(&record);
        record
    }

    fn advise_new(&self, key: &str, message: &Sighting) -> Option<Advisory> {
        self.settings.advise.then(|| Advisory {
            event: AdvisoryEvent::New,
            value: key.to_string(),
            inspect_field: self.settings.inspect_field.clone(),
            age_seconds: 0,
            seen_unix: (message.now_ms / 1000) as i64,
        })
    }

    /// Writes every cached record that needs it (see [`Cached::needs_write`]).
    fn write_pending(&self, cache: &mut Cache) -> Result<(), StateError> {
        cache.write(&*self.records, &*self.due, self.settings.seen_write_ms)
    }

    /// Handles the index entries due by `now_ms`, up to [`SWEEP_LIMIT`] (whole blocks, so a
    /// sweep may handle a block's worth more).
    fn sweep_due(
        &self,
        cache: &mut Cache,
        now_ms: u64,
        advisories: &mut Vec<Advisory>,
    ) -> Result<(), StateError> {
        let mut sweep = Sweep::default();
        let mut after: Option<Vec<u8>> = None;
        'scan: while sweep.handled < SWEEP_LIMIT {
            let batch = self.due.scan_after(after.as_deref(), SWEEP_BATCH)?;
            let full = batch.len() == SWEEP_BATCH;
            for (key, value) in batch {
                match sample_index::parse_key(&key) {
                    None => {}
                    Some(parsed) if parsed.due_ms() > now_ms || sweep.handled >= SWEEP_LIMIT => {
                        break 'scan
                    }
                    Some(IndexKey::Single { due_ms, sender }) => {
                        self.visit(cache, now_ms, due_ms, sender, &mut sweep, advisories)?;
                    }
                    Some(IndexKey::Block { .. }) => {
                        let Some(entries) = sample_index::decode_block(&value) else {
                            // Only a newer release writes what this one cannot read: keep it for
                            // that release, and go on past it.
                            if let Some(suppressed) = self.errors.allow() {
                                tracing::warn!(
                                    suppressed,
                                    "sampling state: an index block of a newer format is kept \
                                     unread; its senders expire once the newer release runs again"
                                );
                            }
                            after = Some(key);
                            continue;
                        };
                        for (due_ms, sender) in entries {
                            if due_ms > now_ms {
                                sweep.not_due.push((due_ms, sender.to_vec()));
                            } else {
                                self.visit(cache, now_ms, due_ms, sender, &mut sweep, advisories)?;
                            }
                        }
                    }
                }
                after = Some(key.clone());
                sweep.consumed.push(key);
            }
            if !full {
                break;
            }
        }
        self.finish_sweep(cache, sweep)
    }

    /// One due index entry: expire the sender (at once), advise its timeout, or note that it must
    /// be indexed again under its next due time (written by [`Sampler::finish_sweep`]).
    fn visit(
        &self,
        cache: &mut Cache,
        now_ms: u64,
        due_ms: u64,
        sender: &[u8],
        sweep: &mut Sweep,
        advisories: &mut Vec<Advisory>,
    ) -> Result<(), StateError> {
        sweep.handled += 1;
        let Some(key) = bytes_as_str(sender) else {
            return Ok(());
        };
        if sweep.reindexed.contains_key(key) {
            // A second live entry (a crash between writes): the first one was handled.
            return Ok(());
        }
        let record = match cache.entries.get(key) {
            Some(cached) => Some(cached.record),
            None => self.records.get(sender)?.and_then(|v| Record::decode(&v)),
        };
        let Some(mut record) = record.filter(|r| r.due_ms == due_ms) else {
            // Superseded, left behind by a crash, or its record is gone.
            return Ok(());
        };
        let silence = now_ms.saturating_sub(record.seen_ms);
        if silence >= self.settings.expire_ms {
            self.records.remove(sender)?;
            self.note_shared(key, None);
            cache.entries.remove(key);
            let _ = self
                .senders
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            // Like Choria, senders long gone (e.g. while ferry was down) are dropped quietly.
            let stale = silence >= self.settings.expire_ms.saturating_mul(2);
            if !stale {
                advisories.push(self.advisory(
                    AdvisoryEvent::Expire,
                    key.to_string(),
                    &record,
                    silence,
                ));
            }
            return Ok(());
        }
        let timed_out = self
            .settings
            .timeout_ms
            .is_some_and(|timeout| silence >= timeout && !record.advised);
        if timed_out {
            record.advised = true;
            self.note_shared(key, Some(&record));
            advisories.push(self.advisory(
                AdvisoryEvent::Timeout,
                key.to_string(),
                &record,
                silence,
            ));
        }
        record.due_ms = self.settings.next_due(&record);
        sweep.reindexed.insert(key.to_string(), record);
        Ok(())
    }

    /// Writes what a sweep decided, in the order that keeps every stored record indexed through
    /// a crash at any point: the new index blocks first (senders indexed again, and the entries
    /// of read blocks not due yet), then the records naming them, then the keys read go.
    fn finish_sweep(&self, cache: &mut Cache, sweep: Sweep) -> Result<(), StateError> {
        let mut entries: Vec<(u64, &[u8])> = sweep
            .not_due
            .iter()
            .map(|(due_ms, sender)| (*due_ms, sender.as_slice()))
            .chain(
                sweep
                    .reindexed
                    .iter()
                    .map(|(key, record)| (record.due_ms, key.as_bytes())),
            )
            .collect();
        sample_index::write_blocks(&*self.due, &mut entries, &mut cache.block_ids)?;
        for (key, record) in &sweep.reindexed {
            self.records.insert(key.as_bytes(), &record.encode())?;
            if let Some(cached) = cache.entries.get_mut(key.as_str()) {
                cached.record = *record;
                cached.mark_written();
            }
        }
        let consumed: Vec<&[u8]> = sweep.consumed.iter().map(Vec::as_slice).collect();
        self.due.remove_many(&consumed)
    }

    fn advisory(
        &self,
        event: AdvisoryEvent,
        value: String,
        record: &Record,
        silence: u64,
    ) -> Advisory {
        Advisory {
            event,
            value,
            inspect_field: self.settings.inspect_field.clone(),
            age_seconds: rounded_seconds(silence),
            seen_unix: (record.seen_ms / 1000) as i64,
        }
    }
}

impl Settings {
    fn new(sample: &SampleConfig, advisories: Option<&AdvisoriesConfig>) -> Settings {
        let split = |path: &str| path.split('.').map(str::to_string).collect::<Vec<_>>();
        let key = match &sample.key {
            SampleKey::Field(path) => KeySource::Field(split(path)),
            SampleKey::Header(name) => KeySource::Header(name.clone()),
            SampleKey::SubjectToken(n) => KeySource::SubjectToken(*n),
        };
        let interval_ms = duration_ms(sample.interval.0);
        let expire_ms = advisories
            .and_then(|a| a.expire_after)
            .map_or(interval_ms, |d| duration_ms(d.0))
            .max(1);
        let timeout_ms = advisories
            .and_then(|a| a.timeout_after)
            .map(|d| duration_ms(d.0))
            .filter(|&t| t < expire_ms);
        let seen_write_ms =
            (timeout_ms.unwrap_or(expire_ms) / 20).clamp(SEEN_WRITE_MIN_MS, SEEN_WRITE_MAX_MS);
        Settings {
            key,
            force: sample.force_field.as_deref().map(split),
            interval_ms,
            size_trigger: sample.size_trigger.map(|s| s.0.max(1)),
            timeout_ms,
            expire_ms,
            advise: advisories.is_some(),
            inspect_field: sample.key.name(),
            seen_write_ms,
        }
    }

    /// When a sweep next needs to look at the sender: its timeout while not yet advised, else its
    /// expiry.
    fn next_due(&self, record: &Record) -> u64 {
        let wait = match self.timeout_ms {
            Some(timeout) if !record.advised => timeout,
            _ => self.expire_ms,
        };
        record.seen_ms.saturating_add(wait)
    }
}

/// What `decide` knows about the message at hand.
struct Sighting {
    now_ms: u64,
    size: u64,
    /// Whether the force field is `true`; `None` when it is read only if needed.
    forced: Option<bool>,
}

/// What one sweep has read and decided, written at its end.
#[derive(Default)]
struct Sweep {
    /// Index entries handled (against [`SWEEP_LIMIT`]).
    handled: usize,
    /// Index keys read, removed once the rest is written.
    consumed: Vec<Vec<u8>>,
    /// Entries of read blocks that are not due yet, to be indexed again as they are.
    not_due: Vec<(u64, Vec<u8>)>,
    /// Senders to index again under a new due time, with their updated records.
    reindexed: HashMap<String, Record>,
}

/// The stored state of one sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    seen_ms: u64,
    copied_ms: u64,
    /// Payload size of the last copy.
    size: u64,
    advised: bool,
    /// The due time of the index entry this record owns.
    due_ms: u64,
}

impl Record {
    fn encode(&self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        out[0] = RECORD_VERSION;
        out[1..9].copy_from_slice(&self.seen_ms.to_be_bytes());
        out[9..17].copy_from_slice(&self.copied_ms.to_be_bytes());
        out[17..25].copy_from_slice(&self.size.to_be_bytes());
        out[25..33].copy_from_slice(&self.due_ms.to_be_bytes());
        out[33] = if self.advised { FLAG_ADVISED } else { 0 };
        out
    }

    /// `None` for anything this release cannot read (it is then treated as absent and rewritten).
    fn decode(bytes: &[u8]) -> Option<Record> {
        if bytes.len() < RECORD_LEN || bytes[0] != RECORD_VERSION {
            return None;
        }
        let field = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        Some(Record {
            seen_ms: field(1),
            copied_ms: field(9),
            size: field(17),
            due_ms: field(25),
            advised: bytes[33] & FLAG_ADVISED != 0,
        })
    }
}

/// A record in memory and how it differs from the stored one.
struct Cached {
    record: Record,
    /// The last-seen time as stored.
    stored_seen_ms: u64,
    /// Copy or advisory state changed since the last write.
    changed: bool,
    /// The due time of the index entry in the store; `None` while the record is not stored yet.
    /// Differs from `record.due_ms` when the entry has to move on the next write.
    stored_due_ms: Option<u64>,
    /// Used since the last eviction round.
    hot: bool,
}

impl Cached {
    /// Whether it must be written: new, re-indexed, changed, or seen at least `seen_step_ms`
    /// after the stored sighting. Eviction passes 1: the memory copy is about to go away.
    fn needs_write(&self, seen_step_ms: u64) -> bool {
        let seen_moved = self.record.seen_ms.saturating_sub(self.stored_seen_ms);
        self.stored_due_ms != Some(self.record.due_ms)
            || self.changed
            || seen_moved >= seen_step_ms.max(1)
    }

    fn mark_written(&mut self) {
        self.stored_seen_ms = self.record.seen_ms;
        self.changed = false;
        self.stored_due_ms = Some(self.record.due_ms);
    }
}

/// The bounded write-back cache.
struct Cache {
    entries: HashMap<String, Cached>,
    capacity: usize,
    block_ids: BlockIds,
    /// A write error met while evicting, reported by the caller once the lock is released.
    error: Option<StateError>,
}

impl Cache {
    fn new(capacity: usize) -> Cache {
        Cache {
            entries: HashMap::with_capacity(capacity.min(1 << 16)),
            capacity,
            block_ids: BlockIds::from_clock(),
            error: None,
        }
    }

    /// The record of `key`, loaded into the cache on a miss; `None` for an unknown sender.
    fn entry(
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
    fn insert(
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
    fn write(
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
        sample_index::write_blocks(due, &mut index, &mut self.block_ids)?;
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

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn rounded_seconds(ms: u64) -> u64 {
    (ms + 500) / 1000
}

/// The Nth subject token (1-based), or the whole subject for -1.
fn subject_token(subject: &str, n: i64) -> Option<&str> {
    match n {
        -1 => Some(subject),
        n if n >= 1 => subject.split('.').nth(usize::try_from(n - 1).ok()?),
        _ => None,
    }
}

/// What one pass over a JSON payload found.
#[derive(Debug, Default)]
struct Found<'de> {
    key: Option<Cow<'de, str>>,
    /// The force field's boolean, if it is one.
    force: Option<bool>,
}

/// Walks `document` once, reading the value at `key_path` (a string, or a number or boolean as its
/// JSON text) and the boolean at `force_path`, skipping everything else without building a tree.
/// Stops as soon as both are found; a document that is not JSON yields what was found before the
/// error (usually nothing).
fn scan_json<'de>(
    document: &'de [u8],
    key_path: Option<&[String]>,
    force_path: Option<&[String]>,
) -> Found<'de> {
    let mut state = ScanState {
        found: Found::default(),
        key_path,
        force_path,
    };
    if key_path.is_none() && force_path.is_none() {
        return state.found;
    }
    let mut deserializer = serde_json::Deserializer::from_slice(document);
    let _ = Walk {
        state: &mut state,
        depth: 0,
        key_on_path: key_path.is_some(),
        force_on_path: force_path.is_some(),
    }
    .deserialize(&mut deserializer);
    if let Some(key) = &state.found.key {
        if key.is_empty() {
            state.found.key = None;
        }
    }
    state.found
}

struct ScanState<'de, 'p> {
    found: Found<'de>,
    key_path: Option<&'p [String]>,
    force_path: Option<&'p [String]>,
}

impl ScanState<'_, '_> {
    fn done(&self) -> bool {
        (self.key_path.is_none() || self.found.key.is_some())
            && (self.force_path.is_none() || self.found.force.is_some())
    }
}

/// The error that ends a scan early once everything is found.
const SCAN_DONE: &str = "scan complete";

/// Visits one JSON value at `depth`; the flags say which paths lead through it.
struct Walk<'s, 'de, 'p> {
    state: &'s mut ScanState<'de, 'p>,
    depth: usize,
    key_on_path: bool,
    force_on_path: bool,
}

impl Walk<'_, '_, '_> {
    fn key_ends_here(&self) -> bool {
        self.key_on_path && self.state.key_path.is_some_and(|p| p.len() == self.depth)
    }

    fn force_ends_here(&self) -> bool {
        self.force_on_path && self.state.force_path.is_some_and(|p| p.len() == self.depth)
    }

    /// Which paths continue into the child `name`.
    fn child_flags(&self, name: &str) -> (bool, bool) {
        let continues = |on: bool, path: Option<&[String]>| {
            on && path.is_some_and(|p| p.len() > self.depth && p[self.depth] == name)
        };
        (
            continues(self.key_on_path, self.state.key_path),
            continues(self.force_on_path, self.state.force_path),
        )
    }

    /// Takes a non-string value (or a string the parser had to unescape) as the key.
    fn key_text<E: serde::de::Error>(self, owned: impl FnOnce() -> String) -> Result<(), E> {
        if self.key_ends_here() && self.state.found.key.is_none() {
            self.state.found.key = Some(Cow::Owned(owned()));
        }
        self.finish()
    }

    fn finish<E: serde::de::Error>(self) -> Result<(), E> {
        if self.state.done() {
            return Err(E::custom(SCAN_DONE));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_, 'de, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_, 'de, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(name) = map.next_key::<Cow<'de, str>>()? {
            let (key_on_path, force_on_path) = self.child_flags(&name);
            if key_on_path || force_on_path {
                map.next_value_seed(Walk {
                    state: &mut *self.state,
                    depth: self.depth + 1,
                    key_on_path,
                    force_on_path,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, value: &'de str) -> Result<(), E> {
        if self.key_ends_here() && self.state.found.key.is_none() {
            self.state.found.key = Some(Cow::Borrowed(value));
        }
        self.finish()
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<(), E> {
        self.key_text(|| value.to_string())
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<(), E> {
        if self.force_ends_here() && self.state.found.force.is_none() {
            self.state.found.force = Some(value);
        }
        let text = if value { "true" } else { "false" };
        self.key_text(|| text.to_string())
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<(), E> {
        self.key_text(|| value.to_string())
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<(), E> {
        self.key_text(|| value.to_string())
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<(), E> {
        self.key_text(|| value.to_string())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::units::{ByteSize, HumanDuration};
    use crate::state::SledStore;
    use sample_index::single_key;

    const HOUR: u64 = 3600;

    fn sample(key: SampleKey, interval_secs: u64) -> SampleConfig {
        SampleConfig {
            key,
            interval: HumanDuration(Duration::from_secs(interval_secs)),
            size_trigger: None,
            force_field: None,
        }
    }

    fn advisories(timeout: Option<u64>, expire: Option<u64>) -> AdvisoriesConfig {
        AdvisoriesConfig {
            subject: "adv.{event}.{value}".into(),
            timeout_after: timeout.map(|s| HumanDuration(Duration::from_secs(s))),
            expire_after: expire.map(|s| HumanDuration(Duration::from_secs(s))),
            reliable: false,
        }
    }

    fn field_key() -> SampleKey {
        SampleKey::Field("sender".into())
    }

    fn payload(sender: &str, pad: usize) -> Vec<u8> {
        format!(r#"{{"sender":"{sender}","data":"{}"}}"#, "x".repeat(pad)).into_bytes()
    }

    fn store() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        (dir, store)
    }

    fn decide(sampler: &Sampler, body: &[u8], now: u64) -> (Decision, Option<Advisory>) {
        sampler.decide("reg.x", None, body, now as f64)
    }

    #[test]
    fn keys_from_fields_headers_and_subjects() {
        let (_dir, store) = store();
        let open = |key| Sampler::open(&store, "k", &sample(key, HOUR), None).unwrap();
        let nested = open(SampleKey::Field("envelope.sender".into()));
        let body =
            br#"{"a":[1,{"sender":"no"}],"envelope":{"x":{"sender":"no"},"sender":"n\u00e9.1"}}"#;
        assert_eq!(nested.key("s", None, body).as_deref(), Some("n\u{e9}.1"));
        assert_eq!(nested.key("s", None, br#"{"envelope":"flat"}"#), None);
        assert_eq!(nested.key("s", None, b"not json"), None);
        assert_eq!(
            nested.key("s", None, br#"{"envelope":{"sender":""}}"#),
            None
        );
        let number = open(field_key());
        assert_eq!(
            number.key("s", None, br#"{"sender":42}"#).as_deref(),
            Some("42")
        );
        assert_eq!(number.key("s", None, br#"{"sender":null}"#), None);
        // The first of duplicate keys counts; trailing garbage after the key does not matter.
        assert_eq!(
            number
                .key("s", None, br#"{"sender":"a","sender":"b"} x"#)
                .as_deref(),
            Some("a")
        );

        let header = open(SampleKey::Header("Ferry-Sender".into()));
        let mut headers = HeaderMap::new();
        headers.insert("Ferry-Sender", "node1");
        assert_eq!(
            header.key("s", Some(&headers), b"").as_deref(),
            Some("node1")
        );
        assert_eq!(header.key("s", None, b""), None);

        let token = open(SampleKey::SubjectToken(2));
        assert_eq!(token.key("a.b.c", None, b"").as_deref(), Some("b"));
        assert_eq!(token.key("a", None, b""), None);
        let whole = open(SampleKey::SubjectToken(-1));
        assert_eq!(whole.key("a.b.c", None, b"").as_deref(), Some("a.b.c"));
    }

    #[test]
    fn messages_without_a_key_are_always_copied() {
        let (_dir, store) = store();
        let sampler = Sampler::open(&store, "r", &sample(field_key(), HOUR), None).unwrap();
        for now in 0..5 {
            assert_eq!(
                decide(&sampler, br#"{"other":1}"#, 1000 + now).0,
                Decision::Copy(CopyReason::NoKey)
            );
            assert_eq!(
                decide(&sampler, b"\xff garbage", 1000 + now).0,
                Decision::Copy(CopyReason::NoKey)
            );
        }
        assert_eq!(sampler.senders(), 0);
    }

    #[test]
    fn each_sender_is_copied_once_per_interval() {
        let (_dir, store) = store();
        let config = advisories(None, None);
        let sampler =
            Sampler::open(&store, "r", &sample(field_key(), HOUR), Some(&config)).unwrap();
        let (mut copies, mut news) = (0, 0);
        for second in 0..20 {
            for sender in 0..500 {
                let body = payload(&format!("node{sender}"), 10);
                let (decision, advisory) = decide(&sampler, &body, 1_000_000 + second);
                if let Decision::Copy(reason) = decision {
                    assert_eq!(reason, CopyReason::New);
                    copies += 1;
                }
                if let Some(advisory) = advisory {
                    assert_eq!(advisory.event, AdvisoryEvent::New);
                    assert_eq!(advisory.inspect_field, "sender");
                    assert_eq!(advisory.age_seconds, 0);
                    assert_eq!(advisory.seen_unix, 1_000_000);
                    news += 1;
                }
            }
        }
        assert_eq!((copies, news), (500, 500));
        assert_eq!(sampler.senders(), 500);
        // An hour after the first copy, each is copied again.
        let body = payload("node7", 10);
        assert_eq!(
            decide(&sampler, &body, 1_000_000 + HOUR - 1).0,
            Decision::Skip
        );
        assert_eq!(
            decide(&sampler, &body, 1_000_000 + HOUR).0,
            Decision::Copy(CopyReason::Interval)
        );
    }

    #[test]
    fn size_trigger_compares_with_the_last_copy() {
        let (_dir, store) = store();
        let mut config = sample(field_key(), HOUR);
        config.size_trigger = Some(ByteSize(100));
        let sampler = Sampler::open(&store, "r", &config, None).unwrap();
        let base = payload("n", 0).len();
        let at = |extra: usize| payload("n", 200 + extra);
        assert_eq!(
            decide(&sampler, &at(0), 10).0,
            Decision::Copy(CopyReason::New)
        );
        assert_eq!(decide(&sampler, &at(50), 11).0, Decision::Skip);
        assert_eq!(
            decide(&sampler, &at(100), 12).0,
            Decision::Copy(CopyReason::SizeChanged)
        );
        assert_eq!(decide(&sampler, &at(120), 13).0, Decision::Skip);
        // Shrinking counts too.
        assert_eq!(
            decide(&sampler, &payload("n", 0), 14).0,
            Decision::Copy(CopyReason::SizeChanged)
        );
        assert!(base < 100);
    }

    #[test]
    fn force_field_copies_when_true() {
        let (_dir, store) = store();
        let mut config = sample(field_key(), HOUR);
        config.force_field = Some("meta.force_copy".into());
        let sampler = Sampler::open(&store, "r", &config, None).unwrap();
        let body = |force: &str| {
            format!(r#"{{"meta":{{"force_copy":{force}}},"sender":"n"}}"#).into_bytes()
        };
        assert_eq!(
            decide(&sampler, &body("false"), 10).0,
            Decision::Copy(CopyReason::New)
        );
        assert_eq!(decide(&sampler, &body("false"), 11).0, Decision::Skip);
        assert_eq!(decide(&sampler, &body("\"true\""), 12).0, Decision::Skip);
        assert_eq!(decide(&sampler, &body("1"), 13).0, Decision::Skip);
        assert_eq!(
            decide(&sampler, &body("true"), 14).0,
            Decision::Copy(CopyReason::Forced)
        );
        assert_eq!(decide(&sampler, br#"{"sender":"n"}"#, 15).0, Decision::Skip);

        // With a key outside the payload, the payload is read for the force field only.
        let mut config = sample(SampleKey::SubjectToken(1), HOUR);
        config.force_field = Some("force".into());
        let sampler = Sampler::open(&store, "s", &config, None).unwrap();
        let run = |body: &[u8], now: f64| sampler.decide("node1.x", None, body, now).0;
        assert_eq!(run(b"{}", 10.0), Decision::Copy(CopyReason::New));
        assert_eq!(run(br#"{"force":false}"#, 11.0), Decision::Skip);
        assert_eq!(
            run(br#"{"force":true}"#, 12.0),
            Decision::Copy(CopyReason::Forced)
        );
    }

    #[test]
    fn timeout_recover_and_expire() {
        let (_dir, store) = store();
        let config = advisories(Some(60), Some(300));
        let sampler =
            Sampler::open(&store, "r", &sample(field_key(), HOUR), Some(&config)).unwrap();
        let body = payload("web1", 5);
        let events = |advisories: Vec<Advisory>| {
            advisories
                .into_iter()
                .map(|a| (a.event, a.value, a.age_seconds, a.seen_unix))
                .collect::<Vec<_>>()
        };
        let (decision, advisory) = decide(&sampler, &body, 1000);
        assert_eq!(decision, Decision::Copy(CopyReason::New));
        assert_eq!(advisory.unwrap().event, AdvisoryEvent::New);
        assert!(sampler.sweep(1059.0).is_empty());
        assert_eq!(
            events(sampler.sweep(1061.0)),
            [(AdvisoryEvent::Timeout, "web1".into(), 61, 1000)]
        );
        // Once per silence.
        assert!(sampler.sweep(1070.0).is_empty());
        assert!(sampler.sweep(1200.0).is_empty());

        let (decision, advisory) = decide(&sampler, &body, 1100);
        assert_eq!(decision, Decision::Copy(CopyReason::Recovered));
        let advisory = advisory.unwrap();
        assert_eq!(
            (advisory.event, advisory.age_seconds, advisory.seen_unix),
            (AdvisoryEvent::Recover, 100, 1000)
        );
        // Back in good standing: sampled again.
        assert_eq!(decide(&sampler, &body, 1101).0, Decision::Skip);
        assert!(sampler.sweep(1150.0).is_empty());
        assert_eq!(
            events(sampler.sweep(1162.0)),
            [(AdvisoryEvent::Timeout, "web1".into(), 61, 1101)]
        );
        assert!(sampler.sweep(1300.0).is_empty());
        assert_eq!(
            events(sampler.sweep(1402.0)),
            [(AdvisoryEvent::Expire, "web1".into(), 301, 1101)]
        );
        assert_eq!(sampler.senders(), 0);
        assert!(sampler.sweep(5000.0).is_empty());
        // Forgotten: new again.
        let (decision, advisory) = decide(&sampler, &body, 5000);
        assert_eq!(decision, Decision::Copy(CopyReason::New));
        assert_eq!(advisory.unwrap().event, AdvisoryEvent::New);
    }

    #[test]
    fn recover_without_a_sweep_in_between() {
        let (_dir, store) = store();
        let config = advisories(Some(60), Some(300));
        let sampler =
            Sampler::open(&store, "r", &sample(field_key(), HOUR), Some(&config)).unwrap();
        let body = payload("web1", 5);
        decide(&sampler, &body, 1000);
        let (decision, advisory) = decide(&sampler, &body, 1090);
        assert_eq!(decision, Decision::Copy(CopyReason::Recovered));
        assert_eq!(advisory.unwrap().age_seconds, 90);
        // Heard after its expiry but before a sweep removed it: new again.
        let (decision, advisory) = decide(&sampler, &body, 1500);
        assert_eq!(decision, Decision::Copy(CopyReason::New));
        assert_eq!(advisory.unwrap().event, AdvisoryEvent::New);
        assert!(sampler.sweep(1510.0).is_empty());
        assert_eq!(sampler.senders(), 1);
    }

    #[test]
    fn expiry_without_advisories_keeps_state_bounded() {
        let (_dir, store) = store();
        let sampler = Sampler::open(&store, "r", &sample(field_key(), 600), None).unwrap();
        for sender in 0..100 {
            let (_, advisory) = decide(&sampler, &payload(&format!("n{sender}"), 1), 1000);
            assert!(advisory.is_none());
        }
        assert!(sampler.sweep(1599.0).is_empty());
        assert_eq!(sampler.senders(), 100);
        assert!(sampler.sweep(1600.0).is_empty());
        assert_eq!(sampler.senders(), 0);
        let records = store.tree("sample:r").unwrap();
        let due = store.tree("sample-due:r").unwrap();
        assert!(records.scan_after(None, 1).unwrap().is_empty());
        assert!(due.scan_after(None, 1).unwrap().is_empty());
    }

    #[test]
    fn long_gone_senders_expire_quietly() {
        let (_dir, store) = store();
        let config = advisories(None, Some(300));
        let sampler =
            Sampler::open(&store, "r", &sample(field_key(), HOUR), Some(&config)).unwrap();
        decide(&sampler, &payload("a", 1), 1000);
        decide(&sampler, &payload("b", 1), 1400);
        let swept = sampler.sweep(1750.0);
        assert_eq!(swept.len(), 1);
        assert_eq!(
            (swept[0].event, swept[0].value.as_str()),
            (AdvisoryEvent::Expire, "b")
        );
        assert_eq!(sampler.senders(), 0);
    }

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

    #[test]
    fn crash_leftovers_in_the_index_are_cleaned() {
        let (_dir, store) = store();
        let config = advisories(Some(60), Some(600));
        let sampler =
            Sampler::open(&store, "r", &sample(field_key(), HOUR), Some(&config)).unwrap();
        decide(&sampler, &payload("a", 1), 1000);
        sampler.flush().unwrap();
        let due = store.tree("sample-due:r").unwrap();
        // An entry whose record is gone, one not owned by its record (both in the form earlier
        // releases wrote), a malformed key, and the live entry written again (a crash between
        // writing an index block and the record naming it).
        due.insert(&single_key(1_010_000, b"ghost"), &[]).unwrap();
        due.insert(&single_key(1_020_000, b"a"), &[]).unwrap();
        due.insert(b"x", &[]).unwrap();
        let record =
            Record::decode(&store.tree("sample:r").unwrap().get(b"a").unwrap().unwrap()).unwrap();
        let mut again = [(record.due_ms, &b"a"[..])];
        sample_index::write_blocks(&*due, &mut again, &mut BlockIds::from_clock()).unwrap();
        let swept = sampler.sweep(1061.0);
        assert_eq!(swept.len(), 1, "one timeout, however often it is indexed");
        assert_eq!(swept[0].event, AdvisoryEvent::Timeout);
        let left = sample_index::all_entries(&*due).unwrap();
        assert_eq!(
            left,
            vec![(1_600_000, b"a".to_vec())],
            "indexed once, at its expiry"
        );
        assert_eq!(due.scan_after(None, 10).unwrap().len(), 1, "in one block");
    }

    #[test]
    fn index_entries_of_earlier_releases_are_swept() {
        let (_dir, store) = store();
        let config = advisories(Some(60), Some(600));
        let records = store.tree("sample:r").unwrap();
        let due = store.tree("sample-due:r").unwrap();
        // As an earlier release left it: a record and its single-key index entry.
        let record = Record {
            seen_ms: 1_000_000,
            copied_ms: 1_000_000,
            size: 1,
            advised: false,
            due_ms: 1_060_000,
        };
        records.insert(b"old", &record.encode()).unwrap();
        due.insert(&single_key(1_060_000, b"old"), &[]).unwrap();
        let sampler =
            Sampler::open(&store, "r", &sample(field_key(), HOUR), Some(&config)).unwrap();
        let swept = sampler.sweep(1061.0);
        assert_eq!(
            swept
                .iter()
                .map(|a| (a.event, a.value.as_str()))
                .collect::<Vec<_>>(),
            [(AdvisoryEvent::Timeout, "old")]
        );
        assert_eq!(
            sample_index::all_entries(&*due).unwrap(),
            vec![(1_600_000, b"old".to_vec())]
        );
        assert_eq!(sampler.sweep(1600.0)[0].event, AdvisoryEvent::Expire);
        assert!(due.scan_after(None, 1).unwrap().is_empty());
        assert_eq!(sampler.senders(), 0);
    }

    #[test]
    fn many_new_senders_share_index_blocks() {
        let (_dir, store) = store();
        let config = advisories(Some(60), Some(600));
        let sampler =
            Sampler::open(&store, "r", &sample(field_key(), HOUR), Some(&config)).unwrap();
        let senders = 3 * sample_index::BLOCK_ENTRIES + 7;
        for sender in 0..senders {
            let now = 1000 + (sender % 10) as u64;
            decide(&sampler, &payload(&format!("n{sender}"), 1), now);
        }
        sampler.flush().unwrap();
        let due = store.tree("sample-due:r").unwrap();
        assert_eq!(
            due.scan_after(None, 100).unwrap().len(),
            4,
            "blocks, not keys"
        );
        assert_eq!(sample_index::all_entries(&*due).unwrap().len(), senders);
        // Timeouts come due over ten seconds: a sweep in the middle handles the due half and
        // keeps the rest indexed as it was.
        let swept = sampler.sweep(1064.0);
        assert_eq!(swept.len(), (0..senders).filter(|s| s % 10 <= 4).count());
        assert!(swept.iter().all(|a| a.event == AdvisoryEvent::Timeout));
        assert_eq!(sample_index::all_entries(&*due).unwrap().len(), senders);
        let swept = sampler.sweep(1070.0);
        assert_eq!(swept.len(), (0..senders).filter(|s| s % 10 > 4).count());
        assert_eq!(sampler.sweep(1599.0).len(), 0);
        let expired = sampler.sweep(1610.0);
        assert_eq!(expired.len(), senders);
        assert!(expired.iter().all(|a| a.event == AdvisoryEvent::Expire));
        assert!(due.scan_after(None, 1).unwrap().is_empty());
        assert_eq!(sampler.senders(), 0);
    }

    #[test]
    fn corrupt_records_are_treated_as_absent() {
        let (_dir, store) = store();
        store
            .tree("sample:r")
            .unwrap()
            .insert(b"a", &[9, 9, 9])
            .unwrap();
        let sampler = Sampler::open(&store, "r", &sample(field_key(), HOUR), None).unwrap();
        assert_eq!(
            decide(&sampler, &payload("a", 1), 10).0,
            Decision::Copy(CopyReason::New)
        );
        assert_eq!(decide(&sampler, &payload("a", 1), 11).0, Decision::Skip);
    }

    #[test]
    fn records_round_trip() {
        let record = Record {
            seen_ms: 1,
            copied_ms: 2,
            size: 3,
            advised: true,
            due_ms: 4,
        };
        assert_eq!(Record::decode(&record.encode()), Some(record));
        assert_eq!(Record::decode(&[]), None);
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

    /// `cargo test --release --lib sampler::tests::decide_throughput -- --ignored --nocapture`
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
