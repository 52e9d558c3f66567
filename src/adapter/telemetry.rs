//! What an adapter tells its operator, as typed events: each call counts the event on the
//! adapter's own counter and, for the events an operator must see, writes its log line at a
//! limited rate. No count goes without its line, no line floods the log, and every reason is an
//! enum, so a label cannot be misspelt.
//!
//! The counters are bound to the adapter's `pipeline` label once, so the hot path (received,
//! published, spooled) does no label lookups; the drop counters are bound too, one per reason.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{Histogram, IntCounter, IntCounterVec};

use super::spool::segments::DamagedSegment;
use super::spool::SpoolError;
use crate::jetstream::answer::RejectReason;
use crate::logging::LogLimiter;
use crate::metrics::Metrics;
use crate::status::AdapterEvents;
use ferry_adapter::DecodeError;

/// The `invalid` reasons of messages the client could not parse (an unparseable subject or header
/// block), counted beside the decoders' own reasons.
pub const UNPARSEABLE_SUBJECT: &str = "unparseable_subject";
pub const UNPARSEABLE_HEADERS: &str = "unparseable_headers";
pub const UNPARSEABLE_REASONS: [&str; 2] = [UNPARSEABLE_SUBJECT, UNPARSEABLE_HEADERS];

/// Why an event was dropped: the `reason` label of `ferry_adapter_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The spool reached `spool.max_bytes`.
    SpoolFull,
    /// Spooled events lost with a damaged or missing segment file or state store.
    SpoolDamaged,
    /// The disk under `state_dir` is full and the memory held for its writes is used up.
    DiskFull,
    /// The disk under `state_dir` fails writes for another reason.
    DiskError,
    /// Larger than the server's max payload or the stream's limits.
    Oversize,
    /// No stream listens on the rendered subject.
    NoResponders,
    /// Refused by the server for good (e.g. the subject belongs to another stream).
    Rejected,
    /// In flight when the publisher task failed: stored or not, it cannot be retried.
    TaskFailed,
}

impl DropReason {
    pub const ALL: [DropReason; 8] = [
        DropReason::SpoolFull,
        DropReason::SpoolDamaged,
        DropReason::DiskFull,
        DropReason::DiskError,
        DropReason::Oversize,
        DropReason::NoResponders,
        DropReason::Rejected,
        DropReason::TaskFailed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DropReason::SpoolFull => "spool_full",
            DropReason::SpoolDamaged => "spool_damaged",
            DropReason::DiskFull => "disk_full",
            DropReason::DiskError => "disk_error",
            DropReason::Oversize => "oversize",
            DropReason::NoResponders => "no_responders",
            DropReason::Rejected => "rejected",
            DropReason::TaskFailed => "task_failed",
        }
    }
}

impl From<RejectReason> for DropReason {
    fn from(reason: RejectReason) -> DropReason {
        match reason {
            RejectReason::Oversize => DropReason::Oversize,
            RejectReason::NoResponders => DropReason::NoResponders,
            RejectReason::Refused | RejectReason::UnpublishableSubject => DropReason::Rejected,
        }
    }
}

impl From<&SpoolError> for DropReason {
    /// The reason for an event this error kept out of the spool: the spool at its limit, the
    /// disk out of space, or the disk failing otherwise.
    fn from(error: &SpoolError) -> DropReason {
        match error {
            SpoolError::Full { .. } => DropReason::SpoolFull,
            SpoolError::Log(error) if crate::state::is_disk_full(error) => DropReason::DiskFull,
            SpoolError::Store(error) if error.is_disk_full() => DropReason::DiskFull,
            SpoolError::Log(_) | SpoolError::Store(_) => DropReason::DiskError,
        }
    }
}

/// What the adapter could not do with its spool (logged, at a limited rate, per operation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolOp {
    Read,
    Remove,
    Flush,
}

impl SpoolOp {
    fn verb(self) -> &'static str {
        match self {
            SpoolOp::Read => "read",
            SpoolOp::Remove => "remove events from",
            SpoolOp::Flush => "flush",
        }
    }
}

/// One adapter's counters and log limits; cheap to clone (the intake and the publisher each hold
/// one, sharing the limits).
#[derive(Clone)]
pub struct AdapterTelemetry {
    pub received: IntCounter,
    pub published: IntCounter,
    pub duplicates: IntCounter,
    pub filtered: IntCounter,
    pub spooled: IntCounter,
    pub publish_seconds: Histogram,
    dropped: [IntCounter; DropReason::ALL.len()],
    invalid: IntCounterVec,
    name: Arc<str>,
    limits: Arc<Limits>,
}

/// At most one line per interval for each kind of event, with the count of those held back.
struct Limits {
    spool_full: LogLimiter,
    disk: LogLimiter,
    invalid: LogLimiter,
    spool: [LogLimiter; 3],
}

const LOG_INTERVAL: Duration = Duration::from_secs(10);

impl AdapterTelemetry {
    pub fn new(metrics: &Metrics, name: &str) -> AdapterTelemetry {
        let labels = [name];
        // Every drop counter exists from the start, at zero, so alerts can be written against it.
        let dropped = DropReason::ALL.map(|reason| {
            metrics
                .adapter_dropped
                .with_label_values(&[name, reason.label()])
        });
        for reason in DecodeError::REASONS
            .iter()
            .chain(UNPARSEABLE_REASONS.iter())
        {
            metrics.adapter_invalid.with_label_values(&[name, reason]);
        }
        AdapterTelemetry {
            received: metrics.adapter_received.with_label_values(&labels),
            published: metrics.adapter_published.with_label_values(&labels),
            duplicates: metrics.adapter_duplicates.with_label_values(&labels),
            filtered: metrics.adapter_filtered.with_label_values(&labels),
            spooled: metrics.adapter_spooled.with_label_values(&labels),
            publish_seconds: metrics.adapter_publish_seconds.with_label_values(&labels),
            dropped,
            invalid: metrics.adapter_invalid.clone(),
            name: name.into(),
            limits: Arc::new(Limits {
                spool_full: LogLimiter::new(LOG_INTERVAL),
                disk: LogLimiter::new(LOG_INTERVAL),
                invalid: LogLimiter::new(LOG_INTERVAL),
                spool: [
                    LogLimiter::new(LOG_INTERVAL),
                    LogLimiter::new(LOG_INTERVAL),
                    LogLimiter::new(LOG_INTERVAL),
                ],
            }),
        }
    }

    /// The adapter's event counters as `/status` shows them: each is its metric's value (summed
    /// over the reasons for `invalid` and `dropped`), so the two never disagree.
    pub fn events(&self) -> AdapterEvents {
        AdapterEvents {
            received: self.received.get(),
            published: self.published.get(),
            duplicates: self.duplicates.get(),
            filtered: self.filtered.get(),
            invalid: self.invalid_total(),
            dropped: self.dropped.iter().map(IntCounter::get).sum(),
            spooled: self.spooled.get(),
        }
    }

    /// `ferry_adapter_invalid_total` of this adapter over every reason, including reasons not
    /// known in advance.
    fn invalid_total(&self) -> u64 {
        use prometheus::core::Collector;
        self.invalid
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .filter(|metric| {
                metric
                    .get_label()
                    .iter()
                    .any(|label| label.name() == "pipeline" && label.value() == &*self.name)
            })
            .map(|metric| metric.get_counter().get_value() as u64)
            .sum()
    }

    /// Counts `events` dropped for `reason`. For losses the caller describes in its own line
    /// (they happen once, with context only it has: a damaged file, a failed task).
    pub fn dropped(&self, reason: DropReason, events: u64) {
        self.dropped[reason as usize].inc_by(events);
    }

    /// An event the spool could not take: counted under the error's reason and logged.
    pub fn spool_refused(&self, error: &SpoolError) {
        let reason = DropReason::from(error);
        self.dropped(reason, 1);
        let adapter = &*self.name;
        if reason == DropReason::SpoolFull {
            if let Some(suppressed) = self.limits.spool_full.allow() {
                tracing::error!(
                    adapter,
                    %error,
                    reason = reason.label(),
                    suppressed,
                    "event dropped: the spool is full (see ferry_adapter_dropped_total); raise spool.max_bytes or restore JetStream"
                );
            }
        } else if let Some(suppressed) = self.limits.disk.allow() {
            tracing::error!(
                adapter,
                %error,
                reason = reason.label(),
                suppressed,
                "event dropped: the disk under state_dir does not take the spool's writes and the memory held for them is used up (see ferry_adapter_dropped_total); free space on that file system (the spool leaves 2 MiB free for the state store) or restore JetStream"
            );
        }
    }

    /// An event JetStream refused for good: counted and logged (each one: a reject names the
    /// event, so the operator can find it).
    pub fn rejected(&self, reject: Rejected<'_>) {
        let reason = DropReason::from(reject.reason);
        self.dropped(reason, 1);
        tracing::warn!(
            adapter = &*self.name,
            subject = %reject.subject,
            source_subject = reject.source_subject,
            bytes = reject.bytes,
            reason = reason.label(),
            detail = %reject.detail,
            "JetStream rejected an event; it is dropped and counted"
        );
    }

    /// A message that is not a valid event: counted under the decoder's `reason` and logged.
    pub fn invalid(&self, reason: &'static str, subject: &str, error: &dyn std::fmt::Display) {
        self.invalid.with_label_values(&[&self.name, reason]).inc();
        let adapter = &*self.name;
        if let Some(suppressed) = self.limits.invalid.allow() {
            tracing::warn!(adapter, subject, %error, suppressed, "invalid event (counted in ferry_adapter_invalid_total)");
        } else {
            tracing::debug!(adapter, subject, %error, "invalid event");
        }
    }

    /// The spool failed an operation (the events stay where they are; the operation is retried).
    pub fn spool_failed(&self, op: SpoolOp, error: &dyn std::fmt::Display) {
        if let Some(suppressed) = self.limits.spool[op as usize].allow() {
            tracing::error!(adapter = &*self.name, %error, suppressed, "cannot {} the spool", op.verb());
        }
    }

    /// Counts and logs, one line per file, the spooled events that damaged or missing segment
    /// files lost.
    pub fn segments_damaged(&self, damaged: &[DamagedSegment]) {
        let adapter = &*self.name;
        for segment in damaged {
            self.dropped(DropReason::SpoolDamaged, segment.lost);
            let file = segment.path.display();
            let counted = if segment.exact {
                "counted against the state store's record of the file"
            } else {
                "estimated from the sequence numbers around the damage: the state store had no record of the file"
            };
            if segment.missing {
                tracing::error!(adapter, file = %file, events_lost = segment.lost, "spool segment file is missing: {} spooled events in it are lost ({counted}) and counted in ferry_adapter_dropped_total{{reason=\"spool_damaged\"}}. Something deleted it under state_dir: keep state_dir out of cleanup jobs, and restore the whole state_dir from one backup rather than single files", segment.lost);
            } else if segment.lost > 0 {
                tracing::error!(adapter, file = %file, events_lost = segment.lost, damaged_bytes = segment.damaged_bytes, "spool segment file is damaged: {} spooled events in it can no longer be read ({counted}) and are counted in ferry_adapter_dropped_total{{reason=\"spool_damaged\"}}; the intact events in it are published as usual. Check the disk and file system under state_dir (kernel log, SMART)", segment.lost);
            } else {
                tracing::warn!(adapter, file = %file, damaged_bytes = segment.damaged_bytes, "spool segment file has damaged bytes, but no unpublished event was in them (or their loss was reported before); check the disk and file system under state_dir (kernel log, SMART)");
            }
        }
    }
}

/// One event JetStream refused, as [`AdapterTelemetry::rejected`] reports it.
pub struct Rejected<'a> {
    pub reason: RejectReason,
    pub subject: &'a str,
    pub source_subject: &'a str,
    pub bytes: usize,
    pub detail: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_drop_reason_is_counted_under_its_own_label_from_the_start() {
        let metrics = Metrics::new();
        let telemetry = AdapterTelemetry::new(&metrics, "a1");
        telemetry.dropped(DropReason::TaskFailed, 3);
        telemetry.dropped(DropReason::SpoolFull, 1);
        let text = metrics.encode();
        for reason in DropReason::ALL {
            let expected = match reason {
                DropReason::TaskFailed => 3,
                DropReason::SpoolFull => 1,
                _ => 0,
            };
            let line = format!(
                "ferry_adapter_dropped_total{{pipeline=\"a1\",reason=\"{}\"}} {expected}",
                reason.label()
            );
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
        for reason in DecodeError::REASONS
            .iter()
            .chain(UNPARSEABLE_REASONS.iter())
        {
            let line =
                format!("ferry_adapter_invalid_total{{pipeline=\"a1\",reason=\"{reason}\"}} 0");
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn events_on_the_status_board_are_the_metrics_values() {
        let metrics = Metrics::new();
        let telemetry = AdapterTelemetry::new(&metrics, "a1");
        // Another adapter's counts are not this one's.
        let other = AdapterTelemetry::new(&metrics, "a2");
        other.received.inc_by(100);
        other.invalid("not_json", "x", &"bad");
        telemetry.received.inc_by(10);
        telemetry.published.inc_by(4);
        telemetry.duplicates.inc();
        telemetry.filtered.inc();
        telemetry.spooled.inc_by(2);
        telemetry.invalid("not_json", "x", &"bad");
        telemetry.invalid("a_reason_known_only_here", "x", &"bad");
        telemetry.dropped(DropReason::SpoolFull, 1);
        telemetry.dropped(DropReason::Oversize, 1);
        assert_eq!(
            telemetry.events(),
            AdapterEvents {
                received: 10,
                published: 4,
                duplicates: 1,
                filtered: 1,
                invalid: 2,
                dropped: 2,
                spooled: 2,
            }
        );
    }
}
