//! The per-sender rule (SPEC section 7): a sender's first message is copied; after that it is
//! copied at most once per `interval`, unless its payload size moved by `size_trigger` since the
//! last copy or the `force_field` is `true`; a sender that went silent past `timeout_after` is
//! copied again when it comes back (`recover`), and one heard after `expire_after` is new again.
//! Also when a sender next needs a sweep's look, and the advisories the rule raises.

use std::fmt;
use std::time::Duration;

use super::record::Record;
use crate::config::replicator::{AdvisoriesConfig, SampleConfig};

/// Bounds of the last-seen move after which a record with no other change is written.
const SEEN_WRITE_MIN_MS: u64 = 5_000;
const SEEN_WRITE_MAX_MS: u64 = 60_000;

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
    pub const ALL: [AdvisoryEvent; 4] = [
        AdvisoryEvent::New,
        AdvisoryEvent::Timeout,
        AdvisoryEvent::Recover,
        AdvisoryEvent::Expire,
    ];

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

/// The configuration, resolved into what the hot path needs.
pub(super) struct Policy {
    /// Whether a `force_field` is configured.
    force: bool,
    interval_ms: u64,
    size_trigger: Option<u64>,
    /// Only with advisories: without them there is nobody to tell about a timeout.
    pub(super) timeout_ms: Option<u64>,
    pub(super) expire_ms: u64,
    pub(super) advise: bool,
    inspect_field: String,
    /// A mere sighting is written once it moved the last-seen time this much.
    pub(super) seen_write_ms: u64,
}

/// What `decide` knows about the message at hand.
pub(super) struct Sighting {
    pub(super) now_ms: u64,
    pub(super) size: u64,
    /// Whether the force field is `true`; `None` when it is read only if needed.
    pub(super) forced: Option<bool>,
}

impl Policy {
    pub(super) fn new(sample: &SampleConfig, advisories: Option<&AdvisoriesConfig>) -> Policy {
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
        Policy {
            force: sample.force_field.is_some(),
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
    pub(super) fn next_due(&self, record: &Record) -> u64 {
        let wait = match self.timeout_ms {
            Some(timeout) if !record.advised => timeout,
            _ => self.expire_ms,
        };
        record.seen_ms.saturating_add(wait)
    }

    /// A known sender: recovered, expired-and-back, or sampled. Updates its record; the flag says
    /// whether its copy or advisory state changed (a mere sighting does not count).
    pub(super) fn judge_known(
        &self,
        key: &str,
        record: &mut Record,
        message: &Sighting,
        forced: impl FnOnce() -> bool,
    ) -> (Decision, Option<Advisory>, bool) {
        let silence = message.now_ms.saturating_sub(record.seen_ms);
        if silence >= self.expire_ms {
            // Heard again after its expiry, before a sweep removed it: it is new again.
            let due_ms = record.due_ms;
            *record = Record {
                due_ms,
                ..self.new_record(message)
            };
            return (
                Decision::Copy(CopyReason::New),
                self.advise_new(key, message),
                true,
            );
        }
        let recovered = self
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
            return (Decision::Skip, None, false);
        };
        record.advised = false;
        // Back in good standing, its next timeout may come before the entry it is indexed under.
        record.due_ms = record.due_ms.min(self.next_due(record));
        record.copied_ms = record.copied_ms.max(message.now_ms);
        record.size = message.size;
        let advisory = (recovered && self.advise).then(|| Advisory {
            event: AdvisoryEvent::Recover,
            value: key.to_string(),
            inspect_field: self.inspect_field.clone(),
            age_seconds: rounded_seconds(silence),
            seen_unix: (previous_seen / 1000) as i64,
        });
        (Decision::Copy(reason), advisory, true)
    }

    /// The sampling rules for a sender in good standing; `None` means skip.
    fn sample(
        &self,
        record: &Record,
        message: &Sighting,
        forced: impl FnOnce() -> bool,
    ) -> Option<CopyReason> {
        if message.now_ms.saturating_sub(record.copied_ms) >= self.interval_ms {
            return Some(CopyReason::Interval);
        }
        if self
            .size_trigger
            .is_some_and(|trigger| message.size.abs_diff(record.size) >= trigger)
        {
            return Some(CopyReason::SizeChanged);
        }
        if self.force && forced() {
            return Some(CopyReason::Forced);
        }
        None
    }

    pub(super) fn new_record(&self, message: &Sighting) -> Record {
        let mut record = Record {
            seen_ms: message.now_ms,
            copied_ms: message.now_ms,
            size: message.size,
            advised: false,
            due_ms: 0,
        };
        record.due_ms = self.next_due(&record);
        record
    }

    pub(super) fn advise_new(&self, key: &str, message: &Sighting) -> Option<Advisory> {
        self.advise.then(|| Advisory {
            event: AdvisoryEvent::New,
            value: key.to_string(),
            inspect_field: self.inspect_field.clone(),
            age_seconds: 0,
            seen_unix: (message.now_ms / 1000) as i64,
        })
    }

    /// A `timeout` or `expire` advisory about a sender silent for `silence` ms.
    pub(super) fn advisory(
        &self,
        event: AdvisoryEvent,
        value: String,
        record: &Record,
        silence: u64,
    ) -> Advisory {
        Advisory {
            event,
            value,
            inspect_field: self.inspect_field.clone(),
            age_seconds: rounded_seconds(silence),
            seen_unix: (record.seen_ms / 1000) as i64,
        }
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn rounded_seconds(ms: u64) -> u64 {
    (ms + 500) / 1000
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::Sampler;
    use super::*;
    use crate::config::replicator::SampleKey;
    use crate::config::units::ByteSize;

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
}
