//! The disk spool of one adapter: a FIFO of events, bounded by `spool.max_bytes`.
//!
//! Events enter when JetStream cannot take them (or the in-memory queue is full) and leave only
//! once JetStream acknowledged them, so a crash while draining replays them (the `Nats-Msg-Id`
//! makes the replay harmless) rather than losing them.
//!
//! Two places hold them, read back merged in arrival (sequence) order:
//! - the [`segments::SegmentLog`] under `state_dir/spool/<adapter>/`, for everything appended in
//!   arrival order: under overload that is every event, so it must be cheap;
//! - the state store's tree `spool:<adapter>` (SPEC section 9), for the few events put back out of
//!   order (publishes that were in flight when JetStream went away, which are older than what was
//!   spooled meanwhile) and for records written by releases before the log existed.
//!
//! How far the log has been consumed is saved in the tree `spool_log:<adapter>`, so a restart
//! does not publish again what had already left.

pub mod damage;
pub mod record;
pub mod segments;
pub mod summary;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::IntGauge;

use super::message::{OutMessage, SpoolPlace};
use crate::state::{StateError, StateStore, StateTree};
use damage::SegmentMeta;
use segments::{DamagedSegment, PendingSync, SegmentLog};

/// The key under which the log's consumed position is saved.
const REMOVED_THROUGH_KEY: &[u8] = b"removed_through";
/// Keys under which what is known of each segment file is saved: this prefix and its name.
const SEGMENT_KEY_PREFIX: &[u8] = b"segment:";

fn segment_key(id: u64) -> Vec<u8> {
    [SEGMENT_KEY_PREFIX, &id.to_be_bytes()].concat()
}
/// Leading byte of the saved position, so a later release can change its format.
const POSITION_VERSION: u8 = 1;

/// Why an event could not be spooled, or the spool not be read.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool is full ({bytes} of {max} bytes used)")]
    Full { bytes: u64, max: u64 },
    #[error(transparent)]
    Store(#[from] StateError),
    #[error("spool segment {0}")]
    Log(#[from] std::io::Error),
}

/// Tree writes since the last completed flush: what a reopened store lost and is told again.
type Journal = BTreeMap<[u8; 8], Option<Vec<u8>>>;

/// The directory of an adapter's segment log.
pub fn log_dir(state_dir: &Path, adapter: &str) -> PathBuf {
    state_dir.join("spool").join(adapter)
}

pub struct Spool {
    /// The adapter it belongs to (records in the older layout do not name it).
    adapter: String,
    log: Mutex<SegmentLog>,
    tree: Arc<dyn StateTree>,
    positions: Arc<dyn StateTree>,
    /// The consumed position last saved, so it is written only when it moves.
    saved_position: Mutex<Option<u64>>,
    /// Entries in the tree (readable or not): while zero, reads skip the tree entirely.
    tree_entries: AtomicU64,
    max_bytes: u64,
    /// Everything in the spool, flushed or not: what the size limit and the drain look at.
    messages: AtomicU64,
    bytes: AtomicU64,
    /// Pushed since the last completed flush. The gauges leave these out: SPEC section 9 counts an
    /// event as spooled only once the store has flushed it, and operators read the gauges that way
    /// (e.g. before a planned kill).
    unflushed_messages: AtomicU64,
    unflushed_bytes: AtomicU64,
    messages_gauge: IntGauge,
    bytes_gauge: IntGauge,
    /// Segments found damaged while running, not yet reported.
    damage: Mutex<Vec<DamagedSegment>>,
    /// The segment directory, where the [`summary`] is kept.
    dir: PathBuf,
    /// The state store's identity, for the summary.
    store_identity: u64,
    /// What the summary file says now.
    summary_written: Mutex<Option<summary::Summary>>,
    /// Tree writes not yet covered by a completed flush of the store.
    journal: Mutex<Journal>,
    /// The store's generation this spool last wrote to (see [`StateStore::generation`]).
    generation: AtomicU64,
    /// Why the spool cannot write to disk, while it cannot.
    write_problem: Mutex<Option<String>>,
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
    /// Records this version cannot read: kept untouched in the tree for the release that wrote
    /// them, reported, never deleted.
    pub unreadable: u64,
    /// Segment files with bytes after their last whole record (a write cut short by a crash,
    /// after the last flush), and how many bytes.
    pub torn: Vec<(PathBuf, u64)>,
    /// Segment files that lost spooled events: damaged, cut short or gone.
    pub damaged: Vec<DamagedSegment>,
    /// Segment files the state store had no record of.
    pub unrecorded: Vec<PathBuf>,
    /// The state store that held this spool's position and tree is not the one found now (it was
    /// deleted, emptied or replaced): how many events its tree held, which are lost.
    pub store_lost: Option<u64>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is completed or not started; a panic elsewhere cannot leave
    // them half-done, so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn decode_position(value: &[u8]) -> Option<u64> {
    match value.split_first() {
        Some((&POSITION_VERSION, rest)) => Some(u64::from_be_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

impl Spool {
    /// Opens the adapter's spool and rebuilds its counters from what is on disk.
    pub fn open(
        store: &dyn StateStore,
        state_dir: &Path,
        adapter: &str,
        max_bytes: u64,
        messages_gauge: IntGauge,
        bytes_gauge: IntGauge,
    ) -> Result<(Spool, Recovered), SpoolError> {
        let tree = store.tree(&format!("spool:{adapter}"))?;
        let positions = store.tree(&format!("spool_log:{adapter}"))?;
        let dir = log_dir(state_dir, adapter);
        let previous = summary::read(&dir);
        let store_lost = previous
            .filter(|previous| previous.store != store.identity())
            .map(|previous| previous.tree_entries);
        let removed_through = positions
            .get(REMOVED_THROUGH_KEY)?
            .and_then(|value| decode_position(&value));
        let mut known = BTreeMap::new();
        positions.for_each(&mut |key, value| {
            let id = key
                .strip_prefix(SEGMENT_KEY_PREFIX)
                .and_then(|id| id.try_into().ok())
                .map(u64::from_be_bytes);
            if let (Some(id), Some(meta)) = (id, SegmentMeta::decode(value)) {
                known.insert(id, meta);
            }
        })?;
        // A record this version cannot decode comes from a newer release. It moves to the tree,
        // where unreadable records are kept untouched for that release: left in its segment it
        // would hold back the deletion of that file, every file after it and the saved position.
        let (mut log, recovery) =
            SegmentLog::open(&dir, adapter, removed_through, &known, &mut |seq, body| {
                tree.insert(&seq.to_be_bytes(), body)
                    .map_err(|error| std::io::Error::other(error.to_string()))
            })?;
        if !recovery.unreadable.is_empty() {
            store.flush()?;
            for place in &recovery.unreadable {
                log.remove(place.segment, place.ordinal, place.seq, 0);
            }
        }
        let position = log.removed_through();
        let mut messages = recovery.messages;
        let mut bytes = recovery.bytes;
        let mut unreadable = 0u64;
        let mut tree_entries = 0u64;
        let mut last_seq = log.last_seq();
        tree.for_each(&mut |key, value| {
            tree_entries += 1;
            match OutMessage::decode(key, value, adapter) {
                Some(message) => {
                    messages += 1;
                    bytes += message.size() as u64;
                    last_seq = last_seq.max(Some(message.seq));
                }
                None => unreadable += 1,
            }
        })?;
        messages_gauge.set(messages as i64);
        bytes_gauge.set(bytes as i64);
        let spool = Spool {
            adapter: adapter.to_string(),
            log: Mutex::new(log),
            tree,
            positions,
            saved_position: Mutex::new(removed_through),
            tree_entries: AtomicU64::new(tree_entries),
            max_bytes,
            messages: AtomicU64::new(messages),
            bytes: AtomicU64::new(bytes),
            unflushed_messages: AtomicU64::new(0),
            unflushed_bytes: AtomicU64::new(0),
            messages_gauge,
            bytes_gauge,
            damage: Mutex::new(Vec::new()),
            dir,
            store_identity: store.identity(),
            summary_written: Mutex::new(previous),
            journal: Mutex::new(Journal::new()),
            generation: AtomicU64::new(store.generation()),
            write_problem: Mutex::new(None),
        };
        spool.save_position(position)?;
        Ok((
            spool,
            Recovered {
                last_seq,
                unreadable,
                torn: recovery.torn,
                damaged: recovery.damaged,
                unrecorded: recovery.unrecorded,
                store_lost,
            },
        ))
    }

    /// Appends an event (one read from the spool is already there and is left in its place).
    pub fn push(&self, message: &OutMessage) -> Result<(), SpoolError> {
        if message.spooled_at != SpoolPlace::Nowhere {
            return Ok(());
        }
        let size = message.size() as u64;
        let used = self.bytes.load(Ordering::Relaxed);
        if used + size > self.max_bytes {
            return Err(SpoolError::Full {
                bytes: used,
                max: self.max_bytes,
            });
        }
        let body = message.encode();
        let appended = {
            let mut log = lock(&self.log);
            if log.accepts(message.seq) {
                if let Err(error) = log.append(message.seq, &body, size) {
                    self.note_write_problem(&error);
                    return Err(error.into());
                }
                true
            } else {
                false
            }
        };
        if !appended {
            self.tree.insert(&message.key(), &body)?;
            lock(&self.journal).insert(message.key(), Some(body));
            self.tree_entries.fetch_add(1, Ordering::Relaxed);
        }
        self.unflushed_messages.fetch_add(1, Ordering::Relaxed);
        self.unflushed_bytes.fetch_add(size, Ordering::Relaxed);
        self.add(1, size as i64);
        Ok(())
    }

    /// Removes an acknowledged (or permanently rejected) event.
    pub fn remove(&self, message: &OutMessage) -> Result<(), SpoolError> {
        self.remove_all(std::slice::from_ref(message))
    }

    /// Removes acknowledged (or permanently rejected) events read from the spool. Removing one
    /// twice, or one that was never read from the spool, changes nothing.
    pub fn remove_all(&self, messages: &[OutMessage]) -> Result<(), SpoolError> {
        let mut removed = 0i64;
        let mut removed_bytes = 0i64;
        let mut tree_keys: Vec<[u8; 8]> = Vec::new();
        let mut tree_bytes = 0i64;
        let position = {
            let mut log = lock(&self.log);
            for message in messages {
                match message.spooled_at {
                    SpoolPlace::Log { segment, ordinal } => {
                        if log.remove(segment, ordinal, message.seq, message.size() as u64) {
                            removed += 1;
                            removed_bytes += message.size() as i64;
                        }
                    }
                    SpoolPlace::Tree => {
                        tree_keys.push(message.key());
                        tree_bytes += message.size() as i64;
                    }
                    SpoolPlace::Nowhere => {}
                }
            }
            log.removed_through()
        };
        // The events have left the spool whether or not the store takes the removal now: the
        // journal tells it again after a failure.
        let mut tree_removed = Ok(());
        if !tree_keys.is_empty() {
            removed += tree_keys.len() as i64;
            removed_bytes += tree_bytes;
            add_signed(&self.tree_entries, -(tree_keys.len() as i64));
            let mut journal = lock(&self.journal);
            for key in &tree_keys {
                journal.insert(*key, None);
            }
            drop(journal);
            let refs: Vec<&[u8]> = tree_keys.iter().map(|key| &key[..]).collect();
            tree_removed = self.tree.remove_many(&refs);
        }
        self.add(-removed, -removed_bytes);
        let saved = self.save_position(position);
        tree_removed?;
        saved
    }

    /// Saves how far the log has been consumed, when that moved.
    fn save_position(&self, position: Option<u64>) -> Result<(), SpoolError> {
        let Some(seq) = position else {
            return Ok(());
        };
        let mut saved = lock(&self.saved_position);
        if *saved == Some(seq) {
            return Ok(());
        }
        let mut value = [0u8; 9];
        value[0] = POSITION_VERSION;
        value[1..].copy_from_slice(&seq.to_be_bytes());
        self.positions.insert(REMOVED_THROUGH_KEY, &value)?;
        *saved = Some(seq);
        Ok(())
    }

    /// Up to `limit` events after sequence `after` (from the head when `None`), in order.
    pub fn read_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<OutMessage>, SpoolError> {
        let from_log = {
            let mut log = lock(&self.log);
            let read = log.read_after(after, limit);
            self.note_damage(log.take_damage());
            read?
        };
        if self.tree_entries.load(Ordering::Relaxed) == 0 {
            return Ok(from_log);
        }
        Ok(merge_by_seq(
            from_log,
            self.read_tree_after(after, limit)?,
            limit,
        ))
    }

    /// Up to `limit` readable events from the tree after `after`. Unreadable records are passed
    /// over, however many of them come first.
    fn read_tree_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<OutMessage>, SpoolError> {
        let mut out = Vec::new();
        let mut cursor: Option<Vec<u8>> = after.map(|seq| seq.to_be_bytes().to_vec());
        while out.len() < limit {
            let entries = self.tree.scan_after(cursor.as_deref(), limit - out.len())?;
            let exhausted = entries.len() < limit - out.len();
            out.extend(
                entries
                    .iter()
                    .filter_map(|(key, value)| OutMessage::decode(key, value, &self.adapter))
                    .map(|mut message| {
                        message.spooled_at = SpoolPlace::Tree;
                        message
                    }),
            );
            match entries.into_iter().next_back() {
                Some((key, _)) if !exhausted => cursor = Some(key),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Takes events lost to damage found while reading out of the counts, for
    /// [`Spool::take_damage`] to report.
    fn note_damage(&self, damaged: Vec<DamagedSegment>) {
        if damaged.is_empty() {
            return;
        }
        let (lost, lost_bytes) = damaged.iter().fold((0, 0), |(m, b), d| {
            (m + d.lost as i64, b + d.lost_bytes as i64)
        });
        self.add(-lost, -lost_bytes);
        lock(&self.damage).extend(damaged);
    }

    /// Segments found damaged while running since the last call: the events they lost are no
    /// longer counted in the spool, and are the caller's to report.
    pub fn take_damage(&self) -> Vec<DamagedSegment> {
        std::mem::take(&mut *lock(&self.damage))
    }

    /// Whether [`Spool::flush`] has anything to do: new events, or files and records to settle.
    pub fn needs_flush(&self) -> bool {
        !self.unflushed().is_empty()
            || !lock(&self.journal).is_empty()
            || lock(&self.log).needs_flush()
            || *lock(&self.summary_written) != Some(self.summary())
    }

    /// What the summary beside the segment files should say now.
    fn summary(&self) -> summary::Summary {
        summary::Summary {
            store: self.store_identity,
            tree_entries: self.tree_entries.load(Ordering::Relaxed),
        }
    }

    /// Brings the summary up to date with what the store holds after a flush. Best effort: it
    /// only serves to count what a lost store took, and is retried at the next flush.
    fn write_summary(&self, flushed: summary::Summary) {
        let mut written = lock(&self.summary_written);
        if *written != Some(flushed) && summary::write(&self.dir, flushed).is_ok() {
            *written = Some(flushed);
        }
    }

    /// Makes everything pushed so far durable: the log's files, what the store knows of them,
    /// then the state store; only then are consumed files deleted. Appends the disk refused are
    /// reported as an error after the rest of the flush was done.
    ///
    /// A store reopened after a failed write lost what was written to it since its last
    /// completed flush: the spool tells it again (tree writes from its journal, its position and
    /// what it knows of the segment files) before flushing.
    pub fn flush(&self, store: &dyn StateStore) -> Result<(), SpoolError> {
        if store.problem().is_some() {
            // The store's flush is what reopens it; until it has, the spool's writes would fail.
            store.flush()?;
        }
        let generation = store.generation();
        if self.generation.swap(generation, Ordering::Relaxed) != generation {
            self.tell_reopened_store();
        }
        let mut sync = lock(&self.log).prepare_sync();
        let write_error = sync.write_error.take();
        // Taken before the store's flush, so the flush covers them.
        let summary = self.summary();
        let journal = std::mem::take(&mut *lock(&self.journal));
        let mut result = self.make_durable(store, &sync);
        if result.is_ok() && store.generation() != generation {
            // Reopened during this flush: what went to the engine before is gone.
            result = Err(SpoolError::Store(StateError::Unavailable {
                path: self.dir.clone(),
                reason: "the state store was reopened during the flush".into(),
                disk_full: false,
            }));
        }
        if let Err(error) = result {
            lock(&self.log).unflushed(sync);
            let mut current = lock(&self.journal);
            for (key, value) in journal {
                current.entry(key).or_insert(value);
            }
            drop(current);
            self.note_write_problem(&error);
            return Err(error);
        }
        sync.delete_consumed();
        lock(&self.log).flushed(&sync);
        self.write_summary(summary);
        match write_error {
            Some(error) => {
                let error = SpoolError::Log(error);
                self.note_write_problem(&error);
                Err(error)
            }
            None => {
                *lock(&self.write_problem) = None;
                Ok(())
            }
        }
    }

    /// Writes again what a reopened store lost: the journal's tree writes, the position and what
    /// is known of the segment files. Best effort: what fails stays for the next flush.
    fn tell_reopened_store(&self) {
        let journal = lock(&self.journal).clone();
        for (key, value) in &journal {
            let _ = match value {
                Some(body) => self.tree.insert(key, body),
                None => self.tree.remove(key),
            };
        }
        *lock(&self.saved_position) = None;
        let position = {
            let mut log = lock(&self.log);
            log.metadata_unsaved();
            log.removed_through()
        };
        let _ = self.save_position(position);
    }

    /// Remembers why the spool could not write, for `/readyz` and `/status`.
    fn note_write_problem(&self, error: &dyn std::fmt::Display) {
        *lock(&self.write_problem) = Some(error.to_string());
    }

    /// Why the spool cannot write to disk, while it cannot, with what waits in memory meanwhile.
    pub fn write_problem(&self) -> Option<String> {
        let problem = lock(&self.write_problem).clone()?;
        let waiting = self.unflushed().messages;
        Some(format!(
            "the spool cannot write to disk ({problem}); {waiting} events wait in memory until it can"
        ))
    }

    /// Events accepted that are in memory only (the disk has not taken them), which a stop now
    /// would lose.
    pub fn unwritten(&self) -> u64 {
        let in_log = lock(&self.log).unwritten();
        let in_tree = lock(&self.journal).values().filter(|v| v.is_some()).count() as u64;
        in_log + in_tree
    }

    /// Events and bytes counted as spooled: flushed to disk, as the gauges show them.
    pub fn counted(&self) -> (u64, u64) {
        (
            self.messages()
                .saturating_sub(self.unflushed_messages.load(Ordering::Relaxed)),
            self.bytes()
                .saturating_sub(self.unflushed_bytes.load(Ordering::Relaxed)),
        )
    }

    fn make_durable(&self, store: &dyn StateStore, sync: &PendingSync) -> Result<(), SpoolError> {
        sync.sync()?;
        for (id, meta) in &sync.metadata {
            self.positions.insert(&segment_key(*id), &meta.encode())?;
        }
        for id in sync.forget.iter().copied().chain(sync.deleted_ids()) {
            self.positions.remove(&segment_key(id))?;
        }
        store.flush()?;
        Ok(())
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

/// Merges two lists sorted by sequence into one of at most `limit`.
fn merge_by_seq(a: Vec<OutMessage>, b: Vec<OutMessage>, limit: usize) -> Vec<OutMessage> {
    if b.is_empty() {
        return a;
    }
    let mut out = Vec::with_capacity((a.len() + b.len()).min(limit));
    let mut a = a.into_iter().peekable();
    let mut b = b.into_iter().peekable();
    while out.len() < limit {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.seq < y.seq,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        out.extend(if take_a { a.next() } else { b.next() });
    }
    out
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
mod tests;
