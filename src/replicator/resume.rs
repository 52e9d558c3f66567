//! Where a replicator starts reading (SPEC section 5 "Checkpoints"):
//! 1. a position forced by `ferry reset`, as is;
//! 2. a checkpoint of another source incarnation (the stream was recreated): `on_source_reset`;
//! 3. otherwise after max(checkpoint, T − max_in_flight), T being the source sequence of the last
//!    copy on the target, so a standby or a host with a lost disk continues where the fleet left off;
//! 4. with neither, the configured `start`.

use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use time::OffsetDateTime;

use super::checkpoint::{Checkpoint, Forced};
use super::streams::{SourceInfo, StreamError};
use crate::config::replicator::{parse_start_time, OnSourceReset, ReplicatorConfig, StartPosition};

/// The consumer's start and the watermark it begins with.
#[derive(Debug, Clone, PartialEq)]
pub struct Resume {
    pub deliver: DeliverPolicy,
    /// Everything up to here counts as handled.
    pub done_through: u64,
    /// Why this position, for the log.
    pub reason: String,
}

impl Resume {
    fn after(sequence: u64, reason: String) -> Resume {
        Resume {
            deliver: DeliverPolicy::ByStartSequence {
                start_sequence: sequence + 1,
            },
            done_through: sequence,
            reason,
        }
    }

    fn from_time(start_time: OffsetDateTime, reason: String) -> Resume {
        Resume {
            deliver: DeliverPolicy::ByStartTime { start_time },
            done_through: 0,
            reason,
        }
    }

    /// The sequence the consumer starts at when resuming from a known position. `None` for
    /// "all" and time-based starts, where messages removed earlier were never owed to this copy.
    pub fn first_sequence(&self) -> Option<u64> {
        match self.deliver {
            DeliverPolicy::ByStartSequence { start_sequence } => Some(start_sequence),
            _ => None,
        }
    }
}

/// Decides the start. `last_copied` is T (read from the target), when there is one.
pub fn compute(
    config: &ReplicatorConfig,
    checkpoint: Option<&Checkpoint>,
    source: &SourceInfo,
    last_copied: Option<u64>,
) -> Result<Resume, StreamError> {
    if let Some(forced) = checkpoint.and_then(|c| c.forced.as_ref()) {
        return forced_position(forced, source);
    }
    let checkpoint = checkpoint.filter(|c| c.source.is_some() || c.sequence > 0);
    if let Some(previous) = checkpoint.and_then(|c| c.source.as_ref()) {
        if *previous != source.identity {
            return match config.on_source_reset {
                OnSourceReset::Pause => Err(StreamError::Refused(format!(
                    "source stream {} was recreated (it is now {}, the checkpoint belongs to {previous}); \
                     run `ferry reset -c FILE {} --to start` (or end) to continue, or set on_source_reset: restart",
                    source.identity.stream, source.identity, config.name
                ))),
                OnSourceReset::Restart => Ok(Resume {
                    deliver: DeliverPolicy::All,
                    done_through: 0,
                    reason: format!(
                        "source stream recreated ({previous} → {}); copying the new stream from its start",
                        source.identity
                    ),
                }),
            };
        }
    }
    let from_checkpoint = checkpoint.map(|c| c.sequence);
    let from_target = last_copied.map(|t| t.saturating_sub(config.max_in_flight as u64));
    match (from_checkpoint, from_target) {
        (None, None) => first_run(config, source),
        (cp, target) => {
            let sequence = cp.unwrap_or(0).max(target.unwrap_or(0));
            Ok(Resume::after(
                sequence,
                format!(
                    "resuming after sequence {sequence} (checkpoint {}, target's last copy {})",
                    cp.map_or("none".to_string(), |c| c.to_string()),
                    last_copied.map_or("none".to_string(), |t| t.to_string())
                ),
            ))
        }
    }
}

fn forced_position(forced: &Forced, source: &SourceInfo) -> Result<Resume, StreamError> {
    let reason = format!("position forced by ferry reset ({forced:?})");
    Ok(match forced {
        Forced::Start => Resume {
            deliver: DeliverPolicy::All,
            done_through: 0,
            reason,
        },
        Forced::End => Resume::after(source.last_sequence, reason),
        Forced::Sequence(n) => Resume::after(n.saturating_sub(1), reason),
        Forced::Time(text) => Resume::from_time(parse_time(text)?, reason),
    })
}

fn first_run(config: &ReplicatorConfig, source: &SourceInfo) -> Result<Resume, StreamError> {
    let reason = format!("first run: start {:?}", config.start);
    Ok(match &config.start {
        StartPosition::All => Resume {
            deliver: DeliverPolicy::All,
            done_through: 0,
            reason,
        },
        StartPosition::New => Resume::after(source.last_sequence, reason),
        StartPosition::Sequence(n) => Resume::after(n.saturating_sub(1), reason),
        StartPosition::Time(text) => Resume::from_time(parse_time(text)?, reason),
        StartPosition::Since(since) => Resume::from_time(since_now(*since), reason),
    })
}

fn parse_time(text: &str) -> Result<OffsetDateTime, StreamError> {
    parse_start_time(text).map_err(StreamError::Refused)
}

fn since_now(since: Duration) -> OffsetDateTime {
    let since = time::Duration::try_from(since).unwrap_or(time::Duration::ZERO);
    OffsetDateTime::now_utc() - since
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicator::checkpoint::SourceIdentity;

    fn config(yaml_extra: &str) -> ReplicatorConfig {
        serde_norway::from_str(&format!(
            "name: r\nfrom: {{ connection: a, stream: SRC }}\nto: {{ connection: b, stream: DST }}\nmax_in_flight: 10\n{yaml_extra}"
        ))
        .unwrap()
    }

    fn source(created_ns: i128) -> SourceInfo {
        SourceInfo {
            identity: SourceIdentity {
                stream: "SRC".into(),
                created_ns,
            },
            first_sequence: 1,
            last_sequence: 500,
            subjects: vec!["src.>".into()],
            config: Default::default(),
        }
    }

    fn checkpoint(sequence: u64, created_ns: i128, forced: Option<Forced>) -> Checkpoint {
        Checkpoint {
            source: Some(source(created_ns).identity),
            sequence,
            forced,
        }
    }

    #[test]
    fn first_run_uses_start() {
        let r = compute(&config(""), None, &source(1), None).unwrap();
        assert_eq!(r.deliver, DeliverPolicy::All);
        let r = compute(&config("start: new"), None, &source(1), None).unwrap();
        assert_eq!(r.done_through, 500);
        assert_eq!(r.first_sequence(), Some(501));
        let r = compute(&config("start: { sequence: 7 }"), None, &source(1), None).unwrap();
        assert_eq!(r.first_sequence(), Some(7));
    }

    #[test]
    fn resumes_after_the_larger_of_checkpoint_and_target() {
        let cfg = config("");
        let r = compute(&cfg, Some(&checkpoint(100, 1, None)), &source(1), Some(50)).unwrap();
        assert_eq!(r.done_through, 100);
        let r = compute(&cfg, Some(&checkpoint(100, 1, None)), &source(1), Some(300)).unwrap();
        assert_eq!(r.done_through, 290, "T - max_in_flight");
        let r = compute(&cfg, None, &source(1), Some(300)).unwrap();
        assert_eq!(r.done_through, 290, "lost state dir: from the target");
    }

    #[test]
    fn recreated_source_pauses_or_restarts() {
        let old = checkpoint(100, 1, None);
        assert!(matches!(
            compute(&config(""), Some(&old), &source(2), None),
            Err(StreamError::Refused(_))
        ));
        let r = compute(
            &config("on_source_reset: restart"),
            Some(&old),
            &source(2),
            None,
        )
        .unwrap();
        assert_eq!(r.deliver, DeliverPolicy::All);
    }

    #[test]
    fn forced_positions_win() {
        let cfg = config("");
        let forced = checkpoint(100, 1, Some(Forced::Sequence(40)));
        let r = compute(&cfg, Some(&forced), &source(2), Some(400)).unwrap();
        assert_eq!(r.first_sequence(), Some(40));
        let forced = checkpoint(100, 1, Some(Forced::End));
        assert_eq!(
            compute(&cfg, Some(&forced), &source(1), None)
                .unwrap()
                .done_through,
            500
        );
    }
}
