//! Where a replicator starts reading (SPEC section 5 "Checkpoints"):
//! 1. a position forced by `ferry reset`, as is;
//! 2. a checkpoint of another source incarnation (the stream was recreated): `on_source_reset`;
//! 3. a target that holds less than the checkpoint says ferry wrote (purged, wiped, restored,
//!    recreated): `on_target_reset`;
//! 4. `writes: exclusive`: after the checkpoint when the target's last sequence is the
//!    checkpoint's, otherwise after the copy the target's newest message is (a crash after the
//!    ack, a lost state directory, another instance that advanced). Fenced copies land in order
//!    and without gaps, so the newest one covers every earlier one. A message since the
//!    checkpoint that is no copy of this source means another writer (which may also have taken
//!    a copy's slot): refused;
//! 5. `writes: shared`: with the target's messages since the checkpoint known, after the
//!    checkpoint, the copies found there not written again; otherwise after max(checkpoint,
//!    T − max_in_flight), T being the source sequence of the last copy on the target (the
//!    duplicate window absorbs the overlap);
//! 6. with nothing to go on, the configured `start`.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use time::OffsetDateTime;

use super::checkpoint::{Checkpoint, Forced};
use super::streams::{AfterCheckpoint, LastMessage, SourceInfo, TargetInfo};
use crate::config::replicator::{
    parse_start_time, OnSourceReset, OnTargetReset, ReplicatorConfig, StartPosition, Writes,
};
use crate::jetstream::StreamError;

/// The consumer's start and the watermark it begins with.
#[derive(Debug, Clone, PartialEq)]
pub struct Resume {
    pub deliver: DeliverPolicy,
    /// Everything up to here counts as handled.
    pub done_through: u64,
    /// Source sequences after `done_through` that the target already holds copies of (found
    /// after the checkpoint's target sequence), each with its target sequence: read again, they
    /// are not copied again.
    pub already_copied: BTreeMap<u64, u64>,
    /// The target half the watermark starts with: the target sequence after which every copy
    /// of a source message past `done_through` lies. `None`: the target's last sequence (the
    /// whole target precedes this session's copies).
    pub target_through: Option<u64>,
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
            already_copied: BTreeMap::new(),
            target_through: None,
            reason,
        }
    }

    fn from_time(start_time: OffsetDateTime, reason: String) -> Resume {
        Resume {
            deliver: DeliverPolicy::ByStartTime { start_time },
            done_through: 0,
            already_copied: BTreeMap::new(),
            target_through: None,
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

/// What a session read from the target before it starts.
#[derive(Debug, Clone)]
pub struct TargetView {
    pub target: TargetInfo,
    /// `writes: exclusive`: what the target's newest message is.
    pub last: Option<LastMessage>,
    /// `writes: shared`: T, the source sequence of this replicator's last copy on its subjects.
    pub last_copied: Option<u64>,
    /// The target's messages after the checkpoint's target sequence, when there are few enough
    /// to read (see `streams::after_checkpoint`).
    pub after_checkpoint: Option<AfterCheckpoint>,
}

/// Decides the start (SPEC section 5, "Checkpoints").
pub fn compute(
    config: &ReplicatorConfig,
    checkpoint: Option<&Checkpoint>,
    source: &SourceInfo,
    view: &TargetView,
) -> Result<Resume, StreamError> {
    if let Some(forced) = checkpoint.and_then(|c| c.forced.as_ref()) {
        return forced_position(forced, source);
    }
    let checkpoint = checkpoint.filter(|c| c.source.is_some() || c.sequence > 0);
    if let Some(previous) = checkpoint.and_then(|c| c.source.as_ref()) {
        if *previous != source.identity {
            return match config.on_source_reset {
                OnSourceReset::Pause => Err(StreamError::refused(format!(
                    "source stream {} was recreated (it is now {}, the checkpoint belongs to {previous}); \
                     run `ferry reset -c FILE {} --to start` (or end) to continue, or set on_source_reset: restart",
                    source.identity.stream, source.identity, config.name
                ))),
                OnSourceReset::Restart => Ok(Resume {
                    deliver: DeliverPolicy::All,
                    done_through: 0,
                    already_copied: BTreeMap::new(),
            target_through: None,
                    reason: format!(
                        "source stream recreated ({previous} → {}); copying the new stream from its start",
                        source.identity
                    ),
                }),
            };
        }
    }
    if let Some(position) = checkpoint.and_then(|c| c.target.as_ref()) {
        let target = &view.target;
        if position.stream != target.identity || target.last_sequence < position.sequence {
            let what = format!(
                "target stream {} holds less than ferry wrote (it is {} with last sequence {}; the checkpoint knows {} up to sequence {}): it was purged, wiped, restored from a backup or recreated",
                target.identity.stream,
                target.identity,
                target.last_sequence,
                position.stream,
                position.sequence
            );
            return match config.on_target_reset {
                OnTargetReset::Pause => Err(StreamError::refused(format!(
                    "{what}; set on_target_reset: recopy to copy again from `start`, or run `ferry reset -c FILE {} --to ...`",
                    config.name
                ))),
                OnTargetReset::Recopy => {
                    let mut resume = first_run(config, source)?;
                    resume.reason = format!("{what}; on_target_reset is recopy: {}", resume.reason);
                    Ok(resume)
                }
            };
        }
    }
    // The target moved on after the checkpoint (a crash after the acks, another instance, a
    // second writer): what it holds since is known message by message.
    if let (Some(checkpoint), Some(position), Some(after)) = (
        checkpoint,
        checkpoint.and_then(|c| c.target.as_ref()),
        view.after_checkpoint.as_ref(),
    ) {
        match config.to.writes {
            Writes::Exclusive if !after.foreign.is_empty() => {
                return Err(another_writer(config, source, &view.target, &after.foreign));
            }
            // Only its own fenced copies since the checkpoint: the newest one says it all.
            Writes::Exclusive => return exclusive(config, Some(checkpoint), source, view),
            Writes::Shared => {}
        }
        let mut resume = Resume::after(
            checkpoint.sequence,
            format!(
                "resuming after sequence {}: the target holds {} copies of later source messages since the checkpoint's target sequence, which are not copied again",
                checkpoint.sequence,
                after.copied.len()
            ),
        );
        resume.already_copied = after
            .copied
            .range(checkpoint.sequence + 1..)
            .map(|(&source, &target)| (source, target))
            .collect();
        // Copies of later source messages may lie anywhere after the checkpoint's target
        // sequence; the watermark's target half moves past them as they are read again.
        resume.target_through = Some(position.sequence);
        return Ok(resume);
    }
    match config.to.writes {
        Writes::Exclusive => exclusive(config, checkpoint, source, view),
        Writes::Shared => shared(config, checkpoint, source, view.last_copied),
    }
}

fn another_writer(
    config: &ReplicatorConfig,
    source: &SourceInfo,
    target: &TargetInfo,
    foreign: &[u64],
) -> StreamError {
    StreamError::refused(format!(
        "target stream {} holds messages that are not copies of source stream {} (target sequences {:?}): another writer uses the target of replicator {}; \
         give it a target of its own, or set to.writes: shared (exact only within the target's duplicate window)",
        target.identity.stream,
        source.identity.stream,
        &foreign[..foreign.len().min(5)],
        config.name
    ))
}

/// `writes: exclusive`: exactly after the last copy on the target, whatever the distance in time.
fn exclusive(
    config: &ReplicatorConfig,
    checkpoint: Option<&Checkpoint>,
    source: &SourceInfo,
    view: &TargetView,
) -> Result<Resume, StreamError> {
    let target = &view.target;
    let in_step = checkpoint.and_then(|c| {
        c.target
            .as_ref()
            .filter(|position| position.sequence == target.last_sequence)
            .map(|_| c.sequence)
    });
    if let Some(sequence) = in_step {
        return Ok(Resume::after(
            sequence,
            format!(
                "resuming after sequence {sequence}: the target's last sequence {} is the checkpoint's",
                target.last_sequence
            ),
        ));
    }
    let from_checkpoint = checkpoint.map_or(0, |c| c.sequence);
    match view.last.as_ref().unwrap_or(&LastMessage::Empty) {
        LastMessage::CopyOf(copied) => {
            let sequence = from_checkpoint.max(*copied);
            Ok(Resume::after(
                sequence,
                format!(
                    "resuming after sequence {sequence}: the target's newest message (sequence {}) is a copy of source sequence {copied}",
                    target.last_sequence
                ),
            ))
        }
        LastMessage::Foreign(at) => Err(another_writer(config, source, target, &[*at])),
        LastMessage::Empty if checkpoint.is_some() => Ok(Resume::after(
            from_checkpoint,
            format!(
                "resuming after sequence {from_checkpoint}: the checkpoint of an earlier release, with nothing copied to the target yet"
            ),
        )),
        LastMessage::Empty => first_run(config, source),
    }
}

/// `writes: shared`: after max(checkpoint, T − max_in_flight); the target's duplicate window
/// absorbs the overlap.
fn shared(
    config: &ReplicatorConfig,
    checkpoint: Option<&Checkpoint>,
    source: &SourceInfo,
    last_copied: Option<u64>,
) -> Result<Resume, StreamError> {
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
    let reason = format!("position forced by ferry reset ({forced})");
    Ok(match forced {
        Forced::Start => Resume {
            deliver: DeliverPolicy::All,
            done_through: 0,
            already_copied: BTreeMap::new(),
            target_through: None,
            reason,
        },
        Forced::End => Resume::after(source.last_sequence, reason),
        Forced::Sequence(n) => Resume::after(n.saturating_sub(1), reason),
        Forced::Time(text) => Resume::from_time(parse_time(text)?, reason),
    })
}

/// `recopy_at_start`: the first session of a run copies from `start` again, whatever the
/// checkpoint and the target hold.
pub fn recopy(config: &ReplicatorConfig, source: &SourceInfo) -> Result<Resume, StreamError> {
    let mut resume = first_run(config, source)?;
    resume.reason = format!("recopy_at_start: copying again from start {}", config.start);
    Ok(resume)
}

fn first_run(config: &ReplicatorConfig, source: &SourceInfo) -> Result<Resume, StreamError> {
    let reason = format!("first run: start {}", config.start);
    Ok(match &config.start {
        StartPosition::All => Resume {
            deliver: DeliverPolicy::All,
            done_through: 0,
            already_copied: BTreeMap::new(),
            target_through: None,
            reason,
        },
        StartPosition::New => Resume::after(source.last_sequence, reason),
        StartPosition::Sequence(n) => Resume::after(n.saturating_sub(1), reason),
        StartPosition::Time(text) => Resume::from_time(parse_time(text)?, reason),
        StartPosition::Since(since) => Resume::from_time(since_now(*since), reason),
    })
}

fn parse_time(text: &str) -> Result<OffsetDateTime, StreamError> {
    parse_start_time(text).map_err(|error| StreamError::refused(error.to_string()))
}

fn since_now(since: Duration) -> OffsetDateTime {
    let since = time::Duration::try_from(since).unwrap_or(time::Duration::ZERO);
    OffsetDateTime::now_utc() - since
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicator::checkpoint::{SourceIdentity, TargetPosition};

    fn config(yaml_extra: &str) -> ReplicatorConfig {
        serde_norway::from_str(&format!(
            "name: r\nfrom: {{ connection: a, stream: SRC }}\nto: {{ connection: b, stream: DST }}\nmax_in_flight: 10\n{yaml_extra}"
        ))
        .unwrap()
    }

    fn shared_config(yaml_extra: &str) -> ReplicatorConfig {
        let mut config = config(yaml_extra);
        config.to.writes = Writes::Shared;
        config
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

    fn target_identity(created_ns: i128) -> SourceIdentity {
        SourceIdentity {
            stream: "DST".into(),
            created_ns,
        }
    }

    /// A target (created at 7) with `last_sequence`, whose newest message is `last`.
    fn view(last_sequence: u64, last: LastMessage) -> TargetView {
        TargetView {
            target: TargetInfo {
                identity: target_identity(7),
                last_sequence,
            },
            last: Some(last),
            last_copied: None,
            after_checkpoint: None,
        }
    }

    fn shared_view(last_copied: Option<u64>) -> TargetView {
        TargetView {
            last: None,
            last_copied,
            ..view(0, LastMessage::Empty)
        }
    }

    fn checkpoint(sequence: u64, created_ns: i128, forced: Option<Forced>) -> Checkpoint {
        Checkpoint {
            source: Some(source(created_ns).identity),
            sequence,
            forced,
            target: None,
        }
    }

    /// A checkpoint at source `sequence` with the target (created at 7) at `target`.
    fn fenced(sequence: u64, target: u64) -> Checkpoint {
        Checkpoint {
            target: Some(TargetPosition {
                stream: target_identity(7),
                sequence: target,
            }),
            ..checkpoint(sequence, 1, None)
        }
    }

    #[test]
    fn first_run_uses_start() {
        let empty = view(0, LastMessage::Empty);
        let r = compute(&config(""), None, &source(1), &empty).unwrap();
        assert_eq!(r.deliver, DeliverPolicy::All);
        // The reason is logged when the replicator starts reading: in config words.
        assert_eq!(r.reason, "first run: start all");
        let r = compute(&config("start: new"), None, &source(1), &empty).unwrap();
        assert_eq!(r.done_through, 500);
        assert_eq!(r.first_sequence(), Some(501));
        let r = compute(&config("start: { sequence: 7 }"), None, &source(1), &empty).unwrap();
        assert_eq!(r.first_sequence(), Some(7));
        assert_eq!(r.reason, "first run: start sequence 7");
    }

    #[test]
    fn exclusive_resumes_exactly_after_the_checkpoint_or_the_targets_newest_copy() {
        let cfg = config("");
        // The target is where the checkpoint left it.
        let r = compute(
            &cfg,
            Some(&fenced(100, 60)),
            &source(1),
            &view(60, LastMessage::CopyOf(95)),
        )
        .unwrap();
        assert_eq!(
            r.done_through, 100,
            "skipped messages after the last copy stay done"
        );
        // A crash after the target acked, before the checkpoint was saved.
        let r = compute(
            &cfg,
            Some(&fenced(100, 60)),
            &source(1),
            &view(64, LastMessage::CopyOf(130)),
        )
        .unwrap();
        assert_eq!(r.done_through, 130, "no overlap at all");
        // The state directory lost: any distance in time.
        let r = compute(&cfg, None, &source(1), &view(64, LastMessage::CopyOf(130))).unwrap();
        assert_eq!(r.done_through, 130);
        // A checkpoint of an earlier release (no target half).
        let r = compute(
            &cfg,
            Some(&checkpoint(140, 1, None)),
            &source(1),
            &view(64, LastMessage::CopyOf(130)),
        )
        .unwrap();
        assert_eq!(r.done_through, 140);
        // Another writer.
        assert!(matches!(
            compute(&cfg, Some(&fenced(100, 60)), &source(1), &view(61, LastMessage::Foreign(61))),
            Err(error) if error.is_refused() && error.to_string().contains("another writer")
        ));
        assert!(matches!(
            compute(&cfg, None, &source(1), &view(3, LastMessage::Foreign(3))),
            Err(error) if error.is_refused()
        ));
    }

    #[test]
    fn what_the_target_holds_after_the_checkpoint_is_not_copied_again() {
        let mut after = view(64, LastMessage::CopyOf(130));
        after.after_checkpoint = Some(AfterCheckpoint {
            copied: [(101, 61), (102, 62), (130, 64)].into_iter().collect(),
            foreign: Vec::new(),
        });
        // Exclusive: fenced copies are gapless, so the newest one covers the rest.
        let r = compute(&config(""), Some(&fenced(100, 60)), &source(1), &after).unwrap();
        assert_eq!((r.done_through, r.target_through), (130, None));
        assert!(r.already_copied.is_empty());
        // Shared: read again from the checkpoint, what the target holds is not written twice,
        // and the target half starts at the checkpoint's so the copies found are not forgotten.
        let r = compute(
            &shared_config(""),
            Some(&fenced(100, 60)),
            &source(1),
            &after,
        )
        .unwrap();
        assert_eq!((r.done_through, r.target_through), (100, Some(60)));
        assert_eq!(
            r.already_copied,
            [(101, 61), (102, 62), (130, 64)].into_iter().collect()
        );
        // A message that is no copy: another writer, refused in exclusive mode only.
        after.after_checkpoint.as_mut().unwrap().foreign.push(63);
        assert!(matches!(
            compute(&config(""), Some(&fenced(100, 60)), &source(1), &after),
            Err(error) if error.is_refused() && error.to_string().contains("another writer")
        ));
        let r = compute(
            &shared_config(""),
            Some(&fenced(100, 60)),
            &source(1),
            &after,
        )
        .unwrap();
        assert_eq!((r.done_through, r.already_copied.len()), (100, 3));
    }

    #[test]
    fn a_target_that_lost_what_ferry_wrote_pauses_or_is_copied_again() {
        let lower = view(40, LastMessage::CopyOf(70));
        assert!(matches!(
            compute(&config(""), Some(&fenced(100, 60)), &source(1), &lower),
            Err(error) if error.is_refused() && error.to_string().contains("on_target_reset")
        ));
        let mut recreated = view(80, LastMessage::Empty);
        recreated.target.identity = target_identity(8);
        assert!(matches!(
            compute(&config(""), Some(&fenced(100, 60)), &source(1), &recreated),
            Err(error) if error.is_refused()
        ));
        let r = compute(
            &config("on_target_reset: recopy"),
            Some(&fenced(100, 60)),
            &source(1),
            &recreated,
        )
        .unwrap();
        assert_eq!(r.deliver, DeliverPolicy::All);
        // Shared targets are checked the same way.
        assert!(compute(
            &shared_config(""),
            Some(&fenced(100, 60)),
            &source(1),
            &lower
        )
        .is_err());
    }

    #[test]
    fn shared_resumes_after_the_larger_of_checkpoint_and_target() {
        let cfg = shared_config("");
        let r = compute(
            &cfg,
            Some(&checkpoint(100, 1, None)),
            &source(1),
            &shared_view(Some(50)),
        )
        .unwrap();
        assert_eq!(r.done_through, 100);
        let r = compute(
            &cfg,
            Some(&checkpoint(100, 1, None)),
            &source(1),
            &shared_view(Some(300)),
        )
        .unwrap();
        assert_eq!(r.done_through, 290, "T - max_in_flight");
        let r = compute(&cfg, None, &source(1), &shared_view(Some(300))).unwrap();
        assert_eq!(r.done_through, 290, "lost state dir: from the target");
    }

    #[test]
    fn recreated_source_pauses_or_restarts() {
        let old = checkpoint(100, 1, None);
        let empty = view(0, LastMessage::Empty);
        assert!(matches!(
            compute(&config(""), Some(&old), &source(2), &empty),
            Err(error) if error.is_refused()
        ));
        let r = compute(
            &config("on_source_reset: restart"),
            Some(&old),
            &source(2),
            &empty,
        )
        .unwrap();
        assert_eq!(r.deliver, DeliverPolicy::All);
    }

    #[test]
    fn forced_positions_win() {
        let cfg = config("");
        let forced = checkpoint(100, 1, Some(Forced::Sequence(40)));
        let r = compute(
            &cfg,
            Some(&forced),
            &source(2),
            &view(400, LastMessage::CopyOf(400)),
        )
        .unwrap();
        assert_eq!(r.first_sequence(), Some(40));
        assert_eq!(r.reason, "position forced by ferry reset (sequence 40)");
        let forced = checkpoint(100, 1, Some(Forced::End));
        assert_eq!(
            compute(
                &cfg,
                Some(&forced),
                &source(1),
                &view(0, LastMessage::Empty)
            )
            .unwrap()
            .done_through,
            500
        );
    }
}
