//! What a replicator tells its operator: its counters and gauges, bound to its `pipeline` label
//! once, and the reasons a message is not copied as an enum, so a label cannot be misspelt and the
//! per-message skip path does no label lookup.

use prometheus::{Histogram, IntCounter, IntGauge};

use super::gate::Skip;
use crate::metrics::Metrics;

/// Why a source message was not copied: the `reason` label of `ferry_replicator_skipped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Removed by `filter`.
    Filtered,
    /// Held back by `limit.sample` (copied recently, unchanged).
    Sampled,
    /// Older than `max_age`.
    Age,
    /// The target cannot take it and `on_reject` is `skip`.
    Rejected,
    /// Removed from the source (retention, purge) before it could be copied.
    SourceGone,
    /// It came from the target in the first place (`Ferry-Origin`).
    Loop,
}

impl SkipReason {
    pub const ALL: [SkipReason; 6] = [
        SkipReason::Filtered,
        SkipReason::Sampled,
        SkipReason::Age,
        SkipReason::Rejected,
        SkipReason::SourceGone,
        SkipReason::Loop,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SkipReason::Filtered => "filtered",
            SkipReason::Sampled => "sampled",
            SkipReason::Age => "age",
            SkipReason::Rejected => "rejected",
            SkipReason::SourceGone => "source_gone",
            SkipReason::Loop => "loop",
        }
    }
}

impl From<Skip> for SkipReason {
    fn from(skip: Skip) -> SkipReason {
        match skip {
            Skip::Loop => SkipReason::Loop,
            Skip::Age => SkipReason::Age,
            Skip::Filtered => SkipReason::Filtered,
            Skip::Sampled => SkipReason::Sampled,
        }
    }
}

/// One replicator's counters and gauges; cheap to clone.
#[derive(Clone)]
pub struct ReplicatorTelemetry {
    pub copied: IntCounter,
    pub copied_bytes: IntCounter,
    pub duplicates: IntCounter,
    pub reordered: IntCounter,
    pub source_sequence: IntGauge,
    pub source_last_sequence: IntGauge,
    pub checkpoint_sequence: IntGauge,
    pub lag: IntGauge,
    pub is_leader: IntGauge,
    pub copy_delay: Histogram,
    skipped: [IntCounter; SkipReason::ALL.len()],
}

impl ReplicatorTelemetry {
    pub fn new(metrics: &Metrics, name: &str) -> ReplicatorTelemetry {
        let labels = [name];
        ReplicatorTelemetry {
            copied: metrics.replicator_copied.with_label_values(&labels),
            copied_bytes: metrics.replicator_copied_bytes.with_label_values(&labels),
            duplicates: metrics.replicator_duplicates.with_label_values(&labels),
            reordered: metrics.replicator_reordered.with_label_values(&labels),
            source_sequence: metrics
                .replicator_source_sequence
                .with_label_values(&labels),
            source_last_sequence: metrics
                .replicator_source_last_sequence
                .with_label_values(&labels),
            checkpoint_sequence: metrics
                .replicator_checkpoint_sequence
                .with_label_values(&labels),
            lag: metrics.replicator_lag.with_label_values(&labels),
            is_leader: metrics.replicator_is_leader.with_label_values(&labels),
            copy_delay: metrics.replicator_copy_delay.with_label_values(&labels),
            // Every skip counter exists from the start, at zero, so alerts can be written
            // against it.
            skipped: SkipReason::ALL.map(|reason| {
                metrics
                    .replicator_skipped
                    .with_label_values(&[name, reason.label()])
            }),
        }
    }

    /// Counts `messages` not copied for `reason`.
    pub fn skipped(&self, reason: SkipReason, messages: u64) {
        self.skipped[reason as usize].inc_by(messages);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gates_verdicts_count_under_their_metric_labels() {
        let labels: Vec<&str> = [Skip::Loop, Skip::Age, Skip::Filtered, Skip::Sampled]
            .map(|skip| SkipReason::from(skip).label())
            .to_vec();
        assert_eq!(labels, ["loop", "age", "filtered", "sampled"]);
    }

    #[test]
    fn every_skip_reason_is_counted_under_its_own_label_from_the_start() {
        let metrics = Metrics::new();
        let telemetry = ReplicatorTelemetry::new(&metrics, "r1");
        telemetry.skipped(SkipReason::from(Skip::Sampled), 2);
        let text = metrics.encode();
        for reason in SkipReason::ALL {
            let expected = if reason == SkipReason::Sampled { 2 } else { 0 };
            let line = format!(
                "ferry_replicator_skipped_total{{pipeline=\"r1\",reason=\"{}\"}} {expected}",
                reason.label()
            );
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
    }
}
