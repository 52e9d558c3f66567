//! The replicator's writer (SPEC section 5 "Writing"): publishes copies to the target with up to
//! `max_in_flight` acks outstanding on one inbox, checks each ack, and hands what the target
//! stored to the watermark.
//!
//! `writes: exclusive` fences every copy with `Nats-Expected-Last-Sequence`, the target sequence
//! of the copy before it, so the target stores it only right there; its ack must name the next
//! sequence, or the fence is broken and the session re-reads the target. `writes: shared` stamps
//! `Nats-Msg-Id` instead (the target's duplicate window absorbs a replay) and, under `ordering:
//! subject`, keeps count of the subjects with a publish in flight. Every ack must come from the
//! target stream (`AckInbox::expecting_stream`): one from another stream is a reject.
//!
//! The writer decides what an ack means ([`Settled`]); what the session then does (skip or pause
//! on a reject, ride out an outage, end on a broken fence) is the copier's.

use std::collections::HashMap;

use async_nats::{jetstream, HeaderMap, Subject};
use bytes::Bytes;
use time::OffsetDateTime;

use super::headers::{target_headers, Stamp};
use super::telemetry::ReplicatorTelemetry;
use super::watermark::Watermark;
use crate::config::replicator::{Ordering, ReplicatorConfig, Writes};
use crate::connect::Connection;
use crate::jetstream::ack_inbox::AckInbox;
use crate::jetstream::answer::{Outcome, RejectReason};
use crate::shutdown::StopSignal;
use crate::subject;

/// One message on its way to the target.
pub struct Pending {
    sequence: u64,
    /// The target subject; shares the source message's bytes unless rewritten.
    subject: Subject,
    /// The source's headers; the target's are built from them at each attempt (retries are
    /// rare, so building once per publish beats keeping a copy per message in flight).
    source_headers: Option<HeaderMap>,
    payload: Bytes,
    published: OffsetDateTime,
    attempts: u32,
    /// `writes: exclusive`: the target sequence this copy was fenced to follow; its ack must
    /// name the next one.
    fence: Option<u64>,
}

impl Pending {
    /// Source message `sequence`, not yet attempted.
    pub fn new(
        sequence: u64,
        subject: Subject,
        source_headers: Option<HeaderMap>,
        payload: Bytes,
        published: OffsetDateTime,
    ) -> Pending {
        Pending {
            sequence,
            subject,
            source_headers,
            payload,
            published,
            attempts: 0,
            fence: None,
        }
    }
}

/// A message the target cannot take, whatever the retry.
#[derive(Debug)]
pub struct Reject {
    /// The source sequence.
    pub sequence: u64,
    /// The `reason` of the log line and the pause.
    pub reason: RejectReason,
    pub detail: String,
}

/// What one ack means for the session.
pub enum Settled {
    /// Stored (or found stored already): counted, and handed to the watermark.
    Done,
    /// `writes: shared`: the target cannot take the message.
    Rejected(Reject),
    /// `writes: shared`: the target is not taking writes; the message waits to be published again.
    Unavailable(Pending, String),
    /// `writes: exclusive`: the copy did not land right after the one before it, so every later
    /// publish in flight meets a wrong last sequence: the session ends, and the next one starts
    /// from what the target holds.
    FenceBroken(FenceBreak),
}

/// How a fence broke. Its text is the reason the session ends with.
#[derive(Debug, thiserror::Error)]
pub enum FenceBreak {
    #[error("the target stored source sequence {source_sequence} at sequence {stored}, not right after {after}: another writer uses the target? re-reading it")]
    Misplaced {
        source_sequence: u64,
        stored: u64,
        after: u64,
    },
    /// The target cannot take the message; the text is the reason once it is skipped.
    #[error("re-reading the target after skipping source sequence {}", .0.sequence)]
    Rejected(Reject),
    #[error("the target's last sequence is not where this replicator left it ({0}); re-reading the target")]
    WrongLastSequence(String),
    #[error("target unavailable: {0}")]
    Unavailable(String),
}

/// `writes: exclusive`: the target sequence a copy was stored at, when it is the one right after
/// the copy it was fenced to follow.
fn fence_check(pending: &Pending, outcome: Outcome) -> Result<u64, FenceBreak> {
    match outcome {
        Outcome::Stored {
            duplicate: false,
            sequence,
        } if pending.fence.map(|last| last + 1) == Some(sequence) => Ok(sequence),
        Outcome::Stored { sequence, .. } => Err(FenceBreak::Misplaced {
            source_sequence: pending.sequence,
            stored: sequence,
            after: pending.fence.unwrap_or_default(),
        }),
        Outcome::Rejected { reason, detail } => Err(FenceBreak::Rejected(Reject {
            sequence: pending.sequence,
            reason,
            detail: format!("subject {}: {detail}", pending.subject),
        })),
        Outcome::WrongLastSequence(detail) => Err(FenceBreak::WrongLastSequence(detail)),
        Outcome::Outage(reason) | Outcome::StreamUnavailable(reason) => {
            Err(FenceBreak::Unavailable(reason))
        }
        Outcome::NoResponders => Err(FenceBreak::Unavailable("no responders".into())),
    }
}

/// `ordering: subject` (with `writes: shared`): the subjects with a publish in flight. A fenced
/// (exclusive) copy needs no holding: it keeps the source order exactly anyway.
#[derive(Default)]
struct BusySubjects {
    holds: bool,
    counts: HashMap<String, usize>,
}

impl BusySubjects {
    fn is_busy(&self, subject: &str) -> bool {
        self.holds && self.counts.contains_key(subject)
    }

    fn take(&mut self, subject: &Subject) {
        if self.holds {
            *self.counts.entry(subject.to_string()).or_insert(0) += 1;
        }
    }

    fn release(&mut self, subject: &str) {
        if !self.holds {
            return;
        }
        if let Some(count) = self.counts.get_mut(subject) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(subject);
            }
        }
    }
}

/// Counts retries that landed after later messages. A fresh store of a retry is late when a
/// later message was already acknowledged, or when a later message of its subject turns out,
/// on its own retry, to have been stored already (the client resends what it had buffered
/// when a link broke, and that resend's ack went to a publish ferry had given up on).
#[derive(Default)]
struct Reordering {
    highest_acked: u64,
    /// Retries stored fresh during an outage's recovery, until every retry is answered.
    fresh_retries: Vec<(u64, Subject)>,
}

impl Reordering {
    /// One stored message (`attempts` publishes so far); returns how many copies it shows to
    /// have landed out of order.
    fn stored(&mut self, sequence: u64, subject: &Subject, attempts: u32, duplicate: bool) -> u64 {
        let reordered = self.count(sequence, subject, attempts, duplicate);
        self.highest_acked = self.highest_acked.max(sequence);
        reordered
    }

    fn count(&mut self, sequence: u64, subject: &Subject, attempts: u32, duplicate: bool) -> u64 {
        if attempts <= 1 {
            return 0;
        }
        if !duplicate {
            if sequence < self.highest_acked {
                return 1;
            }
            self.fresh_retries.push((sequence, subject.clone()));
            return 0;
        }
        let before = self.fresh_retries.len();
        self.fresh_retries
            .retain(|(earlier, other)| !(*earlier < sequence && other == subject));
        (before - self.fresh_retries.len()) as u64
    }
}

/// The publishing half of one session.
pub struct Writer {
    /// Publishes waiting for the target's ack.
    in_flight: AckInbox<Pending>,
    /// The constant parts of every copy's headers.
    stamp: Stamp,
    /// `writes: exclusive`: the target sequence the next copy must follow.
    fence: Option<u64>,
    subjects: BusySubjects,
    reordering: Reordering,
    target: Connection,
    target_js: jetstream::Context,
    telemetry: ReplicatorTelemetry,
    /// The target stream's name.
    stream: String,
}

impl Writer {
    /// A writer publishing through `in_flight`; under `writes: exclusive` the first copy is fenced
    /// to follow target sequence `target_last`.
    pub fn new(
        config: &ReplicatorConfig,
        in_flight: AckInbox<Pending>,
        stamp: Stamp,
        target_last: u64,
        target: &Connection,
        target_js: &jetstream::Context,
        telemetry: &ReplicatorTelemetry,
    ) -> Writer {
        let exclusive = config.to.writes == Writes::Exclusive;
        Writer {
            in_flight,
            stamp,
            fence: exclusive.then_some(target_last),
            subjects: BusySubjects {
                holds: config.ordering == Ordering::Subject && config.to.writes == Writes::Shared,
                counts: HashMap::new(),
            },
            reordering: Reordering::default(),
            target: target.clone(),
            target_js: target_js.clone(),
            telemetry: telemetry.clone(),
            stream: config.to.stream.clone(),
        }
    }

    /// Publishes awaiting their ack.
    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Whether every copy is fenced (`writes: exclusive`).
    pub fn is_fenced(&self) -> bool {
        self.fence.is_some()
    }

    /// `ordering: subject`: whether a message of `subject` must wait for the one in flight.
    pub fn is_busy(&self, subject: &str) -> bool {
        self.subjects.is_busy(subject)
    }

    /// Publishes a new copy; its ack comes back through [`Writer::next`].
    pub async fn send(&mut self, pending: Pending) {
        self.subjects.take(&pending.subject);
        self.publish(pending).await;
    }

    /// Publishes one message (again); its ack comes back through [`Writer::next`].
    async fn publish(&mut self, mut pending: Pending) {
        pending.attempts += 1;
        let timestamp_ms = pending.published.unix_timestamp_nanos() / 1_000_000;
        if let Some(last) = self.fence {
            pending.fence = Some(last);
            self.fence = Some(last + 1);
        }
        let headers = target_headers(
            pending.source_headers.as_ref(),
            pending.sequence,
            timestamp_ms,
            &self.stamp,
            pending.fence,
        );
        if !self.target.is_connected() {
            let reason = format!("connection {} is down", self.target.name);
            self.in_flight.fail(pending, Outcome::Outage(reason));
            return;
        }
        let subject = pending.subject.clone();
        let payload = pending.payload.clone();
        self.in_flight
            .publish(subject, headers, payload, pending)
            .await;
    }

    /// The next publish answered (or given up on), or `None` when none is in flight.
    /// Cancel-safe (see `AckInbox::next`).
    pub async fn next(&mut self) -> Option<(Pending, Outcome)> {
        self.in_flight.next().await
    }

    /// Accounts for one ack: a copy stored where it belongs is counted and handed to the
    /// watermark; anything else is for the session to act on.
    pub async fn settle(
        &mut self,
        pending: Pending,
        outcome: Outcome,
        watermark: &mut Watermark,
    ) -> Settled {
        let outcome = match outcome {
            Outcome::NoResponders => self.resolve_no_responders(pending.subject.as_str()).await,
            other => other,
        };
        if self.fence.is_some() {
            return match fence_check(&pending, outcome) {
                Ok(sequence) => {
                    self.count_copied(&pending);
                    watermark.complete_at(pending.sequence, sequence);
                    Settled::Done
                }
                Err(broken) => Settled::FenceBroken(broken),
            };
        }
        match outcome {
            Outcome::Stored {
                duplicate,
                sequence,
            } => {
                self.subjects.release(pending.subject.as_str());
                if duplicate {
                    self.telemetry.duplicates.inc();
                } else {
                    self.count_copied(&pending);
                }
                let reordered = self.reordering.stored(
                    pending.sequence,
                    &pending.subject,
                    pending.attempts,
                    duplicate,
                );
                if reordered > 0 {
                    self.telemetry.reordered.inc_by(reordered);
                }
                watermark.complete_at(pending.sequence, sequence);
                Settled::Done
            }
            Outcome::Rejected { reason, detail } => {
                self.subjects.release(pending.subject.as_str());
                Settled::Rejected(Reject {
                    sequence: pending.sequence,
                    reason,
                    detail: format!("subject {}: {detail}", pending.subject),
                })
            }
            // Unfenced publishes cannot meet a wrong last sequence; ride it out like an outage.
            Outcome::Outage(reason)
            | Outcome::StreamUnavailable(reason)
            | Outcome::WrongLastSequence(reason) => Settled::Unavailable(pending, reason),
            Outcome::NoResponders => Settled::Unavailable(pending, "no responders".into()),
        }
    }

    /// While the target is away: the next answer to settle, with the publishes that failed for
    /// want of the target put into `failed` meanwhile; `None` once nothing is in flight.
    pub async fn next_answered(&mut self, failed: &mut Vec<Pending>) -> Option<(Pending, Outcome)> {
        while let Some((pending, outcome)) = self.in_flight.next().await {
            let outcome = match outcome {
                Outcome::NoResponders => self.resolve_no_responders(pending.subject.as_str()).await,
                other => other,
            };
            match outcome {
                Outcome::Outage(_) | Outcome::StreamUnavailable(_) | Outcome::NoResponders => {
                    failed.push(pending)
                }
                other => return Some((pending, other)),
            }
        }
        None
    }

    /// The target takes writes again and every retry is answered: no later duplicate can reveal
    /// a reordering now.
    pub fn outage_over(&mut self) {
        self.reordering.fresh_retries.clear();
    }

    /// Publishes the failed messages again, in source order.
    pub async fn republish(&mut self, failed: &mut Vec<Pending>) {
        failed.sort_by_key(|pending| pending.sequence);
        for pending in failed.drain(..) {
            self.publish(pending).await;
        }
    }

    /// Waits for the publishes in flight (until the shutdown deadline), counting what was stored
    /// and handing it to the watermark.
    pub async fn drain(&mut self, stop: &StopSignal, watermark: &mut Watermark) {
        while !self.in_flight.is_empty() {
            let next = tokio::select! {
                next = self.in_flight.next() => next,
                _ = stop.past_deadline() => None,
            };
            let Some((pending, outcome)) = next else {
                break;
            };
            if let Outcome::Stored {
                duplicate,
                sequence,
            } = outcome
            {
                if duplicate {
                    self.telemetry.duplicates.inc();
                } else {
                    self.count_copied(&pending);
                }
                watermark.complete_at(pending.sequence, sequence);
            }
        }
    }

    fn count_copied(&self, pending: &Pending) {
        self.telemetry.copied.inc();
        self.telemetry
            .copied_bytes
            .inc_by(pending.payload.len() as u64);
        let delay = (OffsetDateTime::now_utc() - pending.published).as_seconds_f64();
        self.telemetry.copy_delay.observe(delay.max(0.0));
    }

    /// "No responders": a reject when the target stream is there but does not listen on the
    /// subject, an outage otherwise.
    async fn resolve_no_responders(&self, target_subject: &str) -> Outcome {
        match self.target_js.get_stream(&self.stream).await {
            Ok(stream) => {
                let subjects = &stream.cached_info().config.subjects;
                if subjects.iter().any(|s| subject::matches(s, target_subject)) {
                    Outcome::Outage(format!("no responders for {target_subject}"))
                } else {
                    Outcome::Rejected {
                        reason: RejectReason::NoResponders,
                        detail: format!(
                            "target stream {} does not listen on {target_subject} (its subjects: {subjects:?})",
                            self.stream
                        ),
                    }
                }
            }
            Err(error) => {
                Outcome::StreamUnavailable(format!("target stream {}: {error}", self.stream))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(sequence: u64, subject: &str, fence: Option<u64>) -> Pending {
        let mut pending = Pending::new(
            sequence,
            Subject::from(subject),
            None,
            Bytes::from_static(b"{}"),
            OffsetDateTime::UNIX_EPOCH,
        );
        pending.fence = fence;
        pending
    }

    fn stored(sequence: u64, duplicate: bool) -> Outcome {
        Outcome::Stored {
            duplicate,
            sequence,
        }
    }

    #[test]
    fn a_fenced_copy_belongs_right_after_the_one_before() {
        let copy = pending(7, "a", Some(41));
        assert_eq!(fence_check(&copy, stored(42, false)).unwrap(), 42);
        let error = fence_check(&copy, stored(43, false)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the target stored source sequence 7 at sequence 43, not right after 41: another writer uses the target? re-reading it"
        );
        // A duplicate is not a fresh store at the fenced place either.
        assert!(matches!(
            fence_check(&copy, stored(42, true)),
            Err(FenceBreak::Misplaced { stored: 42, .. })
        ));
    }

    #[test]
    fn fence_breaks_name_the_reason_the_session_ends_with() {
        let copy = pending(9, "orders.eu", Some(3));
        let rejected = fence_check(
            &copy,
            Outcome::Rejected {
                reason: RejectReason::Oversize,
                detail: "too big".into(),
            },
        )
        .unwrap_err();
        assert_eq!(
            rejected.to_string(),
            "re-reading the target after skipping source sequence 9"
        );
        let FenceBreak::Rejected(reject) = rejected else {
            panic!("a reject")
        };
        assert_eq!(
            (reject.sequence, reject.reason, reject.detail.as_str()),
            (9, RejectReason::Oversize, "subject orders.eu: too big")
        );
        let wrong = fence_check(&copy, Outcome::WrongLastSequence("last is 5".into()));
        assert_eq!(
            wrong.unwrap_err().to_string(),
            "the target's last sequence is not where this replicator left it (last is 5); re-reading the target"
        );
        for outcome in [
            Outcome::Outage("down".into()),
            Outcome::StreamUnavailable("down".into()),
        ] {
            assert_eq!(
                fence_check(&copy, outcome).unwrap_err().to_string(),
                "target unavailable: down"
            );
        }
        assert_eq!(
            fence_check(&copy, Outcome::NoResponders)
                .unwrap_err()
                .to_string(),
            "target unavailable: no responders"
        );
    }

    #[test]
    fn busy_subjects_count_publishes_in_flight_only_when_holding() {
        let mut busy = BusySubjects {
            holds: true,
            ..BusySubjects::default()
        };
        let subject = Subject::from("a.b");
        busy.take(&subject);
        busy.take(&subject);
        assert!(busy.is_busy("a.b"));
        assert!(!busy.is_busy("a.c"));
        busy.release("a.b");
        assert!(busy.is_busy("a.b"));
        busy.release("a.b");
        assert!(!busy.is_busy("a.b"));
        busy.release("a.b");
        assert!(busy.counts.is_empty());

        let mut free = BusySubjects::default();
        free.take(&subject);
        assert!(!free.is_busy("a.b"));
        assert!(free.counts.is_empty());
    }

    #[test]
    fn first_attempts_are_never_reordered() {
        let mut order = Reordering::default();
        let subject = Subject::from("s");
        assert_eq!(order.stored(5, &subject, 1, false), 0);
        assert_eq!(order.stored(3, &subject, 1, false), 0);
        assert_eq!(order.highest_acked, 5);
        assert!(order.fresh_retries.is_empty());
    }

    #[test]
    fn a_retry_stored_after_a_later_ack_is_reordered() {
        let mut order = Reordering::default();
        let subject = Subject::from("s");
        order.stored(10, &subject, 1, false);
        assert_eq!(order.stored(8, &subject, 2, false), 1);
        // A retry ahead of everything acknowledged waits for what a later duplicate reveals.
        assert_eq!(order.stored(11, &subject, 2, false), 0);
        assert_eq!(order.fresh_retries.len(), 1);
    }

    #[test]
    fn a_later_duplicate_of_the_subject_reveals_the_earlier_fresh_retries() {
        let mut order = Reordering::default();
        let (a, b) = (Subject::from("a"), Subject::from("b"));
        order.stored(4, &a, 2, false);
        order.stored(5, &b, 2, false);
        order.stored(6, &a, 2, false);
        // Sequence 7 of subject a was already stored: 4 and 6 (subject a, earlier) landed late.
        assert_eq!(order.stored(7, &a, 2, true), 2);
        assert_eq!(order.fresh_retries, vec![(5, b.clone())]);
        // A duplicate on its first attempt reveals nothing.
        assert_eq!(order.stored(8, &b, 1, true), 0);
        assert_eq!(order.fresh_retries.len(), 1);
    }
}
