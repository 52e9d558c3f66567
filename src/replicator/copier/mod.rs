//! The copy loop of one replicator (SPEC section 5): read the source in order (`reader`),
//! decide per message (loop, age, filter, sampling: `gate`), publish to the target with up to
//! `max_in_flight` acks outstanding (`writer`), and move the checkpoint over what is done.
//!
//! A *session* is one consumer from one resume position. It ends when ferry stops, when the
//! target needs an operator (a permanent reject under `on_reject: pause`, a recreated source under
//! `on_source_reset: pause`), or when the source or consumer fails; then the supervisor starts a
//! new session after a backoff, from the checkpoint. While the target is down the session stays:
//! reading pauses and the failed publishes are retried with backoff until they go through, so no
//! buffer grows without bound.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::Subject;
use bytes::Bytes;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::advisories::AdvisoryPublisher;
use super::checkpoint::{Checkpoint, Checkpoints, TargetPosition};
use super::election::Role;
use super::gate::{Candidate, Gate};
use super::headers::Stamp;
use super::limits::RateLimiter;
use super::reader::{PendingProbe, ReadError, SourceMessage, SourceReader};
use super::resume::{self, Resume, TargetView};
use super::sampling::Sampler;
use super::shared_state::SharedState;
use super::streams::{self, SourceInfo};
use super::telemetry::{ReplicatorTelemetry, SkipReason};
use super::watermark::Watermark;
use super::writer::{FenceBreak, Pending, Reject, Settled, Writer};
use crate::config::replicator::{OnReject, ReplicatorConfig, Writes};
use crate::connect::Connection;
use crate::filter::Filter;
use crate::jetstream::ack_inbox::AckInbox;
use crate::jetstream::answer::{Outcome, RejectReason};
use crate::jetstream::{StreamError, StreamErrorKind};
use crate::shutdown::StopSignal;
use crate::status::{PipelineState, StatusBoard};

mod back;
mod start;

/// How often idle senders are looked for (timeout and expire advisories).
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Longest pause between retries while the target or source is away.
const MAX_BACKOFF: Duration = Duration::from_secs(15);
/// How often the lag is read from the source while reading pauses.
const LAG_REFRESH: Duration = Duration::from_secs(1);

/// How a session ended.
enum SessionEnd {
    Stopped,
    /// Leadership was lost: copying stopped at once; wait to be elected again.
    Demoted,
    /// Retry later with a new session.
    Retry(String),
    /// Wait for the operator.
    Halt(PipelineState, String),
}

/// What woke the copy loop.
enum Event {
    Stop,
    Demoted,
    Ack(Pending, Outcome),
    Checkpoint,
    Sweep,
    Read(Box<SourceMessage>),
    SourceFailed(SourceError),
}

/// Why reading the source failed; the text is the reason the session ends with.
#[derive(Debug, thiserror::Error)]
enum SourceError {
    #[error("source stream {stream}: {error}")]
    Stream {
        stream: String,
        error: jetstream::context::GetStreamError,
    },
    /// The reader could not open its consumer (in its words).
    #[error(transparent)]
    Open(ReadError),
    #[error("reading the source failed: {0}")]
    Read(ReadError),
    #[error("the source consumer ended")]
    Ended,
}

pub struct Copier {
    pub config: ReplicatorConfig,
    pub instance: String,
    pub source: Connection,
    pub target: Connection,
    pub source_js: jetstream::Context,
    pub target_js: jetstream::Context,
    pub checkpoints: Checkpoints,
    pub filter: Filter,
    pub sampler: Option<Arc<Sampler>>,
    pub limiter: Option<RateLimiter>,
    pub advisories: Option<AdvisoryPublisher>,
    pub telemetry: ReplicatorTelemetry,
    pub board: Arc<StatusBoard>,
    /// Stopping: no new reads, in-flight acks awaited. Past the deadline: stop waiting for them.
    pub stop: StopSignal,
    /// With leader election: the role; copying happens only while it is `Leader`.
    pub lease: Option<watch::Receiver<Role>>,
    /// With election and sampling: the sampling state shared with the other instances.
    pub shared: Option<Arc<SharedState>>,
    /// `recopy_at_start` and no session of this run has started reading yet: the next one
    /// copies from `start` again whatever the checkpoint and the target say.
    pub recopy_pending: bool,
}

/// Per-session state.
struct Session {
    source: SourceInfo,
    /// The target's identity (the checkpoint's target half names it).
    target: TargetPosition,
    target_origin: String,
    watermark: Watermark,
    /// The (source, target) position last written to the state store.
    saved: (u64, u64),
    /// Source sequences the target already holds copies of (see `Resume::already_copied`).
    already_copied: std::collections::BTreeMap<u64, u64>,
    /// The publishes to the target and their acks.
    writer: Writer,
    /// A message waiting for its subject to be free (`ordering: subject`).
    held: Option<SourceMessage>,
    /// The last source sequence taken into the watermark.
    last_delivered: u64,
    /// What the session holds and has done, for the lag watcher.
    progress: Arc<Progress>,
    /// Keeps the lag current for as long as the session lasts.
    _lag: LagWatch,
}

/// What a session holds (in flight, to retry, held back) and how far it got, shared with the
/// task that keeps the lag current.
#[derive(Default)]
struct Progress {
    held: AtomicU64,
    done_through: AtomicU64,
}

impl Progress {
    fn note(&self, held: usize, done_through: u64) {
        self.held.store(held as u64, AtomicOrdering::Relaxed);
        self.done_through
            .store(done_through, AtomicOrdering::Relaxed);
    }
}

impl Copier {
    /// Runs sessions until ferry stops.
    pub async fn run(mut self) {
        let mut backoff = new_backoff();
        loop {
            if self.lease.is_some() && !self.await_leadership().await {
                break;
            }
            match self.session().await {
                SessionEnd::Stopped => break,
                SessionEnd::Demoted => {
                    self.telemetry.is_leader.set(0);
                    continue;
                }
                SessionEnd::Retry(reason) => {
                    tracing::warn!(replicator = %self.config.name, %reason, "replicator interrupted; retrying");
                    self.board.set_state(
                        &self.config.name,
                        PipelineState::Disconnected,
                        Some(reason.clone()),
                    );
                    self.board.record_error(&self.config.name, &reason);
                    if !self.pause_until_back(backoff.next_delay(), true).await {
                        break;
                    }
                }
                SessionEnd::Halt(state, reason) => {
                    tracing::error!(replicator = %self.config.name, %reason, "replicator stopped until an operator acts");
                    self.board
                        .set_state(&self.config.name, state, Some(reason.clone()));
                    self.board.record_error(&self.config.name, &reason);
                    self.stop.stopping().await;
                    break;
                }
            }
        }
        if let Some(sampler) = &self.sampler {
            if let Err(error) = sampler.flush() {
                tracing::error!(replicator = %self.config.name, %error, "cannot save sampling state");
            }
        }
    }

    /// Waits as a standby until this instance leads (then loads the shared sampling state), or
    /// ferry stops (returns false).
    async fn await_leadership(&mut self) -> bool {
        let Some(mut lease) = self.lease.clone() else {
            return true;
        };
        if *lease.borrow() != Role::Leader {
            self.telemetry.is_leader.set(0);
            self.board
                .update(&self.config.name, |status| status.role = "standby".into());
            self.board.set_state(
                &self.config.name,
                PipelineState::Standby,
                Some("another instance leads; this one takes over when it goes".into()),
            );
            let decided = tokio::select! {
                role = lease.wait_for(|role| matches!(role, Role::Leader | Role::Refused(_))) => {
                    role.ok().map(|role| role.clone())
                }
                _ = self.stop.stopping() => None,
            };
            match decided {
                Some(Role::Leader) if !self.stop.is_stopping() => {}
                Some(Role::Refused(reason)) => {
                    self.board.set_state(
                        &self.config.name,
                        PipelineState::Failed,
                        Some(reason.clone()),
                    );
                    self.board.record_error(&self.config.name, &reason);
                    self.stop.stopping().await;
                    return false;
                }
                _ => return false,
            }
        }
        self.telemetry.is_leader.set(1);
        self.board
            .update(&self.config.name, |status| status.role = "leader".into());
        if let Some(shared) = &self.shared {
            match shared.load().await {
                Ok(loaded) => {
                    tracing::info!(replicator = %self.config.name, loaded, "loaded the shared sampling state")
                }
                Err(error) => {
                    tracing::warn!(replicator = %self.config.name, %error, "cannot load the shared sampling state; sampling from the local state")
                }
            }
        }
        true
    }

    /// Whether copying may go on: no election, or this instance leads.
    fn leading(&self) -> bool {
        self.lease
            .as_ref()
            .is_none_or(|lease| *lease.borrow() == Role::Leader)
    }

    async fn copy(&mut self, session: &mut Session, messages: &mut SourceReader) -> SessionEnd {
        let max = self.config.max_in_flight.max(1);
        let mut checkpoint_tick = tokio::time::interval(self.config.checkpoint_interval.0);
        let mut sweep_tick = tokio::time::interval(SWEEP_INTERVAL);
        let stop = self.stop.clone();
        let mut lease = self.lease.clone();
        loop {
            // A held message goes first once its subject is free.
            if let Some(message) = session.held.take() {
                if session.writer.is_busy(message.subject.as_str()) {
                    session.held = Some(message);
                } else if let Some(end) = self.process(session, message).await {
                    return end;
                }
            }
            session.progress.note(
                session.writer.len() + usize::from(session.held.is_some()),
                session.watermark.done_through(),
            );
            let can_read = session.writer.len() < max && session.held.is_none();
            let event = tokio::select! {
                biased;
                _ = stop.stopping() => Event::Stop,
                _ = demoted(&mut lease) => Event::Demoted,
                Some((pending, outcome)) = session.writer.next(), if !session.writer.is_empty() => {
                    Event::Ack(pending, outcome)
                }
                _ = checkpoint_tick.tick() => Event::Checkpoint,
                _ = sweep_tick.tick(), if self.sampler.is_some() => Event::Sweep,
                next = messages.next(), if can_read => match next {
                    Some(Ok(message)) => Event::Read(Box::new(message)),
                    Some(Err(error)) => Event::SourceFailed(SourceError::Read(error)),
                    None => Event::SourceFailed(SourceError::Ended),
                },
            };
            match event {
                Event::Read(message) => {
                    if let Some(end) = self.process(session, *message).await {
                        return end;
                    }
                }
                Event::SourceFailed(error) => {
                    self.drain(session).await;
                    return SessionEnd::Retry(error.to_string());
                }
                Event::Demoted => {
                    // Not one more publish: another instance may already be copying. What
                    // was acknowledged is checkpointed; the rest is read again by the next leader.
                    self.save(session);
                    return SessionEnd::Demoted;
                }
                Event::Stop => {
                    tracing::debug!(
                        replicator = %self.config.name,
                        done_through = session.watermark.done_through(),
                        in_progress = session.watermark.in_progress(),
                        in_flight = session.writer.len(),
                        last_delivered = session.last_delivered,
                        "stopping"
                    );
                    self.drain(session).await;
                    return SessionEnd::Stopped;
                }
                Event::Ack(pending, outcome) => {
                    if let Some(end) = self.finish(session, pending, outcome).await {
                        return end;
                    }
                }
                Event::Checkpoint => {
                    self.save(session);
                    if let Some(sampler) = &self.sampler {
                        if let Err(error) = sampler.flush() {
                            tracing::error!(replicator = %self.config.name, %error, "cannot save sampling state");
                        }
                    }
                }
                Event::Sweep => self.sweep(),
            }
        }
    }

    /// Decides one source message: skip it (counted, checkpoint moves on) or publish it.
    async fn process(
        &mut self,
        session: &mut Session,
        message: SourceMessage,
    ) -> Option<SessionEnd> {
        let (sequence, published) = (message.sequence, message.published);
        // A recreated consumer can hand over a message again; it is already being handled.
        if sequence <= session.last_delivered {
            tracing::debug!(replicator = %self.config.name, sequence, "source message delivered twice; ignoring the repeat");
            return None;
        }
        if session.writer.is_busy(message.subject.as_str()) {
            session.held = Some(message);
            return None;
        }
        session.watermark.deliver(sequence);
        session.last_delivered = sequence;
        if let Some(stored_at) = session.already_copied.remove(&sequence) {
            // A replay that the target already holds: counted, not written twice.
            self.telemetry.duplicates.inc();
            session.watermark.complete_at(sequence, stored_at);
            return None;
        }
        self.telemetry.source_sequence.set(sequence as i64);
        if let Some(reason) = self.skip_reason(session, &message, published) {
            self.telemetry.skipped(reason, 1);
            session.watermark.complete(sequence);
            return None;
        }
        if let Some(raw) = unparsed_subject(&message) {
            // The source server stored a subject that is not UTF-8; no NATS client can publish it.
            let detail = format!(
                "its subject is not UTF-8 ({}), which a NATS client cannot publish",
                String::from_utf8_lossy(&raw).escape_debug()
            );
            let reject = Reject {
                sequence,
                reason: RejectReason::UnpublishableSubject,
                detail,
            };
            return self.reject(session, reject).await;
        }
        let size = message.payload.len();
        if let Some(limiter) = &self.limiter {
            limiter.acquire(size).await;
        }
        // The consumer needs no acks: the message's parts move on without copies.
        // An unchanged subject keeps sharing the message's bytes; a stripped one is borrowed
        // from them too but shorter, so it needs its own.
        let rewritten = match self.config.to.rewrite_subject(message.subject.as_str()) {
            Cow::Borrowed(same) if same.len() == message.subject.len() => None,
            other => Some(Subject::from(other.as_ref())),
        };
        let pending = Pending::new(
            sequence,
            rewritten.unwrap_or(message.subject),
            message.headers,
            message.payload,
            published,
        );
        session.writer.send(pending).await;
        None
    }

    /// Why a message is not copied, if it is not (see [`Gate`]); sends the advisory sampling
    /// raised.
    fn skip_reason(
        &self,
        session: &Session,
        message: &SourceMessage,
        published: OffsetDateTime,
    ) -> Option<SkipReason> {
        let gate = Gate {
            target_origin: &session.target_origin,
            max_age: self.config.max_age.map(|age| age.0),
            filter: &self.filter,
            sampler: self.sampler.as_deref(),
        };
        let candidate = Candidate {
            subject: message.subject.as_str(),
            headers: message.headers.as_ref(),
            payload: &message.payload,
            published,
        };
        let (verdict, advisory) = gate.judge(&candidate, OffsetDateTime::now_utc);
        if let (Some(advisory), Some(publisher)) = (advisory, &self.advisories) {
            publisher.send(advisory);
        }
        verdict.err().map(SkipReason::from)
    }

    /// Accounts for one ack. Returns how the session ends, if it must.
    async fn finish(
        &mut self,
        session: &mut Session,
        pending: Pending,
        outcome: Outcome,
    ) -> Option<SessionEnd> {
        match session
            .writer
            .settle(pending, outcome, &mut session.watermark)
            .await
        {
            Settled::Done => None,
            Settled::Rejected(reject) => self.reject(session, reject).await,
            Settled::Unavailable(pending, reason) => {
                self.ride_out_outage(session, pending, reason).await
            }
            Settled::FenceBroken(broken) => {
                // What is still in flight is answered (and counted where stored) before anything
                // else.
                self.drain(session).await;
                let reason = broken.to_string();
                if let FenceBreak::Rejected(reject) = broken {
                    if let Some(end) = self.reject(session, reject).await {
                        return Some(end);
                    }
                }
                self.save(session);
                Some(SessionEnd::Retry(reason))
            }
        }
    }

    /// A message the target cannot take: logged with its source sequence, then skipped and counted
    /// under `on_reject: skip`, otherwise the replicator pauses with the reason on /readyz.
    async fn reject(&mut self, session: &mut Session, reject: Reject) -> Option<SessionEnd> {
        let Reject {
            sequence,
            reason,
            detail,
        } = reject;
        tracing::error!(
            replicator = %self.config.name,
            source_sequence = sequence,
            %reason,
            %detail,
            "the target cannot take a message"
        );
        match self.config.on_reject {
            OnReject::Skip => {
                self.telemetry.skipped(SkipReason::Rejected, 1);
                session.watermark.complete(sequence);
                None
            }
            OnReject::Pause => {
                self.drain(session).await;
                Some(SessionEnd::Halt(
                    PipelineState::Paused,
                    format!(
                        "the target cannot take source sequence {sequence} ({reason}: {detail}); on_reject is pause — fix the cause or set on_reject: skip, then restart"
                    ),
                ))
            }
        }
    }

    /// The target is not taking writes: stop reading, collect every publish still in flight, and
    /// retry the failed ones (in source order) with backoff until all are stored.
    async fn ride_out_outage(
        &mut self,
        session: &mut Session,
        first: Pending,
        reason: String,
    ) -> Option<SessionEnd> {
        tracing::warn!(replicator = %self.config.name, %reason, "the target is not accepting writes; reading paused, retrying");
        let reason = format!("target unavailable: {reason}");
        self.board.set_state(
            &self.config.name,
            PipelineState::Disconnected,
            Some(reason.clone()),
        );
        self.board.record_error(&self.config.name, &reason);
        let mut failed = vec![first];
        let mut backoff = new_backoff();
        loop {
            while let Some((pending, outcome)) = session.writer.next_answered(&mut failed).await {
                if let Some(end) = Box::pin(self.finish(session, pending, outcome)).await {
                    return Some(end);
                }
            }
            if failed.is_empty() {
                session.writer.outage_over();
                self.board
                    .set_state(&self.config.name, PipelineState::Running, None);
                tracing::info!(replicator = %self.config.name, "the target accepts writes again; reading resumed");
                return None;
            }
            // What was acknowledged before the outage is checkpointed while it lasts, so a crash
            // during a long outage does not replay beyond it.
            self.save(session);
            session.progress.note(
                session.writer.len() + failed.len() + usize::from(session.held.is_some()),
                session.watermark.done_through(),
            );
            if !self.pause_until_back(backoff.next_delay(), false).await {
                // Stopping: the unacked messages stay after the checkpoint and are read again.
                self.save(session);
                return Some(SessionEnd::Stopped);
            }
            if !self.leading() {
                self.save(session);
                return Some(SessionEnd::Demoted);
            }
            if let Err(error) =
                streams::ensure_target(&self.target_js, &self.config, &session.source).await
            {
                self.board.set_state(
                    &self.config.name,
                    PipelineState::Disconnected,
                    Some(format!("target unavailable: {error}")),
                );
                continue;
            }
            session.writer.republish(&mut failed).await;
        }
    }

    /// Keeps the lag (metric and /status) current every [`LAG_REFRESH`] until the returned guard
    /// is dropped, from the server's count of what the reader has not handed over yet plus what
    /// the session holds: it must go on counting while reading pauses (the target away), when
    /// no message arrives to bring a figure, since the backlog is what an alert on it is for.
    /// The same reading brings the source stream's last sequence, for a dashboard to set beside
    /// the position, at no cost per message.
    fn watch_lag(&self, probe: PendingProbe, progress: Arc<Progress>) -> LagWatch {
        let telemetry = self.telemetry.clone();
        let board = self.board.clone();
        let name = self.config.name.clone();
        LagWatch(tokio::spawn(async move {
            loop {
                // A source that is away too leaves the last figures standing.
                if let Ok(backlog) = probe.read().await {
                    let lag = backlog.pending + progress.held.load(AtomicOrdering::Relaxed);
                    let position = progress.done_through.load(AtomicOrdering::Relaxed);
                    telemetry.lag.set(i64::try_from(lag).unwrap_or(i64::MAX));
                    if let Some(last) = backlog.last_sequence {
                        telemetry
                            .source_last_sequence
                            .set(i64::try_from(last).unwrap_or(i64::MAX));
                    }
                    board.update(&name, |status| {
                        status.lag = Some(lag);
                        status.position = Some(position);
                    });
                }
                tokio::time::sleep(LAG_REFRESH).await;
            }
        }))
    }

    /// Waits for the publishes in flight (until the shutdown deadline) and saves the checkpoint.
    async fn drain(&mut self, session: &mut Session) {
        session
            .writer
            .drain(&self.stop, &mut session.watermark)
            .await;
        self.save(session);
    }

    /// Writes the checkpoint, both halves, when it moved.
    fn save(&self, session: &mut Session) {
        let sequence = session.watermark.done_through();
        let target_sequence = session.watermark.target_through();
        if (sequence, target_sequence) == session.saved {
            return;
        }
        let checkpoint = Checkpoint {
            source: Some(session.source.identity.clone()),
            sequence,
            forced: None,
            target: Some(TargetPosition {
                sequence: target_sequence,
                ..session.target.clone()
            }),
        };
        match self.checkpoints.save(&self.config.name, &checkpoint) {
            Ok(()) => {
                tracing::debug!(replicator = %self.config.name, sequence, target_sequence, "checkpoint saved");
                session.saved = (sequence, target_sequence);
                self.telemetry.checkpoint_sequence.set(sequence as i64);
                self.board.update(&self.config.name, |status| {
                    status.position = Some(sequence);
                    status.lag = Some(self.telemetry.lag.get().max(0) as u64);
                });
            }
            Err(error) => {
                tracing::error!(replicator = %self.config.name, %error, "cannot save the checkpoint")
            }
        }
    }

    fn sweep(&self) {
        let Some(sampler) = &self.sampler else { return };
        for advisory in sampler.sweep(unix_now()) {
            if let Some(publisher) = &self.advisories {
                publisher.send(advisory);
            }
        }
    }
}

/// The task [`Copier::watch_lag`] runs; it ends when this is dropped.
struct LagWatch(tokio::task::JoinHandle<()>);

impl Drop for LagWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolves when the lease says this instance no longer leads (never without election).
async fn demoted(lease: &mut Option<watch::Receiver<Role>>) {
    match lease {
        Some(lease) => {
            let _ = lease.wait_for(|role| *role != Role::Leader).await;
        }
        None => std::future::pending().await,
    }
}

fn end_for(error: StreamError, refused_state: PipelineState) -> SessionEnd {
    match error.kind() {
        StreamErrorKind::Unavailable => SessionEnd::Retry(error.to_string()),
        StreamErrorKind::Refused => SessionEnd::Halt(refused_state, error.to_string()),
    }
}

fn new_backoff() -> crate::retry::Backoff {
    crate::retry::backoff(Duration::from_millis(200), MAX_BACKOFF)
}

/// The raw subject of a source message whose subject is not UTF-8.
fn unparsed_subject(message: &SourceMessage) -> Option<Bytes> {
    message.headers.as_ref()?.unparsed()?.subject.clone()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
