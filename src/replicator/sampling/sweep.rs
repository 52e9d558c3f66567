//! The sweep: senders silent longer than `timeout_after` are reported once (`timeout`), and
//! senders silent longer than `expire_after` are forgotten (`expire`). A sweep reads only the head
//! of the due index, the entries already due (see [`super::index`]), so its cost does not grow
//! with the number of senders.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::cache::Cache;
use super::index::{self, IndexKey};
use super::policy::{Advisory, AdvisoryEvent};
use super::record::Record;
use super::{bytes_as_str, Sampler};
use crate::state::StateError;

/// Index keys read from the store per batch during a sweep (a block key carries hundreds of
/// entries, so few at a time keep the read small).
const SWEEP_BATCH: usize = 16;
/// Index entries one sweep handles at most, so a mass expiry is spread over several sweeps and
/// never holds up the copy path for long.
const SWEEP_LIMIT: usize = 5_000;

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

impl Sampler {
    /// Handles the index entries due by `now_ms`, up to [`SWEEP_LIMIT`] (whole blocks, so a
    /// sweep may handle a block's worth more).
    pub(super) fn sweep_due(
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
                match index::parse_key(&key) {
                    None => {}
                    Some(parsed) if parsed.due_ms() > now_ms || sweep.handled >= SWEEP_LIMIT => {
                        break 'scan
                    }
                    Some(IndexKey::Single { due_ms, sender }) => {
                        self.visit(cache, now_ms, due_ms, sender, &mut sweep, advisories)?;
                    }
                    Some(IndexKey::Block { .. }) => {
                        let Some(entries) = index::decode_block(&value) else {
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
        if silence >= self.policy.expire_ms {
            self.records.remove(sender)?;
            self.note_shared(key, None);
            cache.entries.remove(key);
            let _ = self
                .senders
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            // Like Choria, senders long gone (e.g. while ferry was down) are dropped quietly.
            let stale = silence >= self.policy.expire_ms.saturating_mul(2);
            if !stale {
                advisories.push(self.policy.advisory(
                    AdvisoryEvent::Expire,
                    key.to_string(),
                    &record,
                    silence,
                ));
            }
            return Ok(());
        }
        let timed_out = self
            .policy
            .timeout_ms
            .is_some_and(|timeout| silence >= timeout && !record.advised);
        if timed_out {
            record.advised = true;
            self.note_shared(key, Some(&record));
            advisories.push(self.policy.advisory(
                AdvisoryEvent::Timeout,
                key.to_string(),
                &record,
                silence,
            ));
        }
        record.due_ms = self.policy.next_due(&record);
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
        index::write_blocks(&*self.due, &mut entries, &mut cache.block_ids)?;
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
}

#[cfg(test)]
mod tests {
    use super::super::index::{single_key, BlockIds};
    use super::super::testing::*;
    use super::super::{CopyReason, Decision, Sampler};
    use super::*;
    use crate::state::StateStore;

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
        index::write_blocks(&*due, &mut again, &mut BlockIds::from_clock()).unwrap();
        let swept = sampler.sweep(1061.0);
        assert_eq!(swept.len(), 1, "one timeout, however often it is indexed");
        assert_eq!(swept[0].event, AdvisoryEvent::Timeout);
        let left = index::all_entries(&*due).unwrap();
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
            index::all_entries(&*due).unwrap(),
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
        let senders = 3 * index::BLOCK_ENTRIES + 7;
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
        assert_eq!(index::all_entries(&*due).unwrap().len(), senders);
        // Timeouts come due over ten seconds: a sweep in the middle handles the due half and
        // keeps the rest indexed as it was.
        let swept = sampler.sweep(1064.0);
        assert_eq!(swept.len(), (0..senders).filter(|s| s % 10 <= 4).count());
        assert!(swept.iter().all(|a| a.event == AdvisoryEvent::Timeout));
        assert_eq!(index::all_entries(&*due).unwrap().len(), senders);
        let swept = sampler.sweep(1070.0);
        assert_eq!(swept.len(), (0..senders).filter(|s| s % 10 > 4).count());
        assert_eq!(sampler.sweep(1599.0).len(), 0);
        let expired = sampler.sweep(1610.0);
        assert_eq!(expired.len(), senders);
        assert!(expired.iter().all(|a| a.event == AdvisoryEvent::Expire));
        assert!(due.scan_after(None, 1).unwrap().is_empty());
        assert_eq!(sampler.senders(), 0);
    }
}
