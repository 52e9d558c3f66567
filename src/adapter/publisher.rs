//! The JetStream side of an adapter: publishes with up to `max_in_flight` acks outstanding, first
//! from the in-memory queue, then from the spool, and rides out outages.
//!
//! Every ack is classified:
//! - stored (maybe as a duplicate of an earlier publish of the same `Nats-Msg-Id`);
//! - a **reject**, permanent for this event: too large, no stream listening on its subject while
//!   the output stream itself is fine, or the stream refusing it; counted and logged, never retried;
//! - an **outage**: timeouts, lost connection, stream missing, storage full. The publisher then
//!   sends all new events to the spool, moves what it held in memory there too, and probes the
//!   spool's head with jittered exponential backoff, forever, until JetStream takes it again.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use tokio::sync::mpsc;

use super::message::OutMessage;
use super::router::Router;
use super::spool::Spool;
use super::stream;
use super::telemetry::{AdapterTelemetry, Rejected, SpoolOp};
use super::Health;
use crate::config::schema::AdapterConfig;
use crate::connect::Connection;
use crate::jetstream::ack_inbox::AckInbox;
use crate::jetstream::answer::{Outcome, RejectReason};
use crate::jetstream::{StreamError, StreamErrorKind};
use crate::shutdown::StopSignal;
use crate::subject;

/// How many spooled events are read from the store at a time.
const SPOOL_BATCH: usize = 1024;
/// How many finished spooled events are removed from the store at a time.
const REMOVE_BATCH: usize = 256;
/// Longest pause between two probes while JetStream is away.
const MAX_BACKOFF: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    Queue,
    Spool,
}

struct InFlight {
    message: OutMessage,
    origin: Origin,
    started: Instant,
}

impl InFlight {
    /// The event, when it came from the spool and must leave it once done.
    fn spooled(self) -> Option<OutMessage> {
        (self.origin == Origin::Spool).then_some(self.message)
    }
}

/// What a completed publish means for the loop.
enum Finished {
    /// Stored or rejected for good; a spooled event is handed back for removal.
    Done(Option<OutMessage>),
    /// JetStream is not taking events.
    Outage(String),
}

pub struct Publisher {
    pub config: AdapterConfig,
    pub stream_subjects: Vec<String>,
    pub js: jetstream::Context,
    /// The output connection, checked before each publish: while it is down, the client would
    /// only buffer publishes and send them on reconnect, after ferry has given up on their acks.
    pub output: Connection,
    /// Held for the publisher's life; should it fail, the queue and its events stay with the
    /// adapter (see `Adapter::stop`).
    pub queue: tokio::sync::OwnedMutexGuard<mpsc::Receiver<OutMessage>>,
    pub router: Arc<Router>,
    pub spool: Arc<Spool>,
    pub telemetry: AdapterTelemetry,
    pub health: Arc<Health>,
    /// Stopping: finish what is in memory. Past the deadline: spill it to the spool and exit.
    pub stop: StopSignal,
    /// The output connection's connect count when the stream's binding was last verified: a
    /// reconnect verifies it again (SPEC section 4).
    pub verified_connects: u64,
}

/// How the normal loop ended.
enum Exit {
    Outage(String),
    Done,
}

impl Publisher {
    pub async fn run(mut self) {
        let mut stream_ready = false;
        loop {
            if !stream_ready {
                let connects = self.connects();
                match stream::ensure(&self.js, &self.config, &self.stream_subjects).await {
                    Ok(()) => {
                        self.verified_connects = connects;
                        stream_ready = true;
                    }
                    Err(problem) => {
                        if !self
                            .ride_out_outage(problem.to_string(), Some(problem))
                            .await
                        {
                            return;
                        }
                        stream_ready = true;
                    }
                }
            }
            self.health.set_output(None);
            match self.publish_loop().await {
                Exit::Done => return,
                Exit::Outage(reason) => {
                    if !self.ride_out_outage(reason, None).await {
                        return;
                    }
                }
            }
        }
    }

    /// Publishes from the queue, then the spool, until an outage or the end of a shutdown.
    async fn publish_loop(&mut self) -> Exit {
        let max = self.config.max_in_flight.max(1);
        let mut in_flight = match AckInbox::on(&self.output, &self.config.output.stream).await {
            Ok(inbox) => inbox,
            Err(error) => return Exit::Outage(error.to_string()),
        };
        let mut cursor: Option<u64> = None;
        // Spooled events read but not yet published; they stay in the spool until acked.
        let mut read_ahead: VecDeque<OutMessage> = VecDeque::new();
        // Spooled events JetStream has taken, removed from the spool in batches.
        let mut acked_spooled: Vec<OutMessage> = Vec::new();
        let mut queue_closed = false;
        let mut stopping = self.stop.is_stopping();
        loop {
            if self.connects() != self.verified_connects {
                // Reconnected (maybe to another server or cluster): is the output subject still
                // bound to the output stream? Until it is, events wait in the spool.
                let connects = self.connects();
                if let Err(problem) =
                    stream::ensure(&self.js, &self.config, &self.stream_subjects).await
                {
                    self.report_stream_problem(&problem);
                    self.flush_removals(&mut acked_spooled);
                    return self.spill_for_outage(in_flight, problem.to_string()).await;
                }
                self.verified_connects = connects;
            }
            // Fill the pipeline: the queue first (its events are older than the spool's).
            while in_flight.len() < max {
                match self.queue.try_recv() {
                    Ok(message) => match self.start(&mut in_flight, message, Origin::Queue).await {
                        Ok(()) => {}
                        Err(down) => {
                            return self.spill_for_outage(in_flight, down.to_string()).await
                        }
                    },
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        queue_closed = true;
                        break;
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                }
            }
            // Then the spool, unless shutting down (it stays on disk for the next start). It is
            // read ahead in batches, so a freed slot costs no read of the store.
            if in_flight.len() < max && !stopping && self.router.is_spooling() {
                if read_ahead.is_empty() {
                    match self.spool.read_after(cursor, SPOOL_BATCH) {
                        Ok(batch) if batch.is_empty() => {
                            self.flush_removals(&mut acked_spooled);
                            self.router.finish_spooling(cursor);
                        }
                        Ok(batch) => {
                            cursor = batch.last().map(|message| message.seq);
                            read_ahead.extend(batch);
                        }
                        Err(error) => {
                            self.telemetry.spool_failed(SpoolOp::Read, &error);
                        }
                    }
                }
                if !read_ahead.is_empty() {
                    while in_flight.len() < max {
                        let Some(message) = read_ahead.pop_front() else {
                            break;
                        };
                        match self.start(&mut in_flight, message, Origin::Spool).await {
                            Ok(()) => {}
                            Err(reason) => {
                                self.flush_removals(&mut acked_spooled);
                                return self.spill_for_outage(in_flight, reason.to_string()).await;
                            }
                        }
                    }
                    continue;
                }
            }
            if stopping && queue_closed && in_flight.is_empty() {
                self.flush_removals(&mut acked_spooled);
                return Exit::Done;
            }
            if acked_spooled.len() >= REMOVE_BATCH
                || (in_flight.is_empty() && !acked_spooled.is_empty())
            {
                self.flush_removals(&mut acked_spooled);
            }

            let can_take = in_flight.len() < max;
            let wait_for_spool = can_take && !stopping && self.router.is_spooling();
            tokio::select! {
                Some((item, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                    match self.finish(item, outcome).await {
                        Finished::Done(Some(spooled)) => acked_spooled.push(spooled),
                        Finished::Done(None) => {}
                        Finished::Outage(reason) => {
                            self.flush_removals(&mut acked_spooled);
                            return self.spill_for_outage(in_flight, reason).await;
                        }
                    }
                }
                received = self.queue.recv(), if can_take && !queue_closed => match received {
                    Some(message) => match self.start(&mut in_flight, message, Origin::Queue).await {
                        Ok(()) => {}
                        Err(down) => return self.spill_for_outage(in_flight, down.to_string()).await,
                    },
                    None => queue_closed = true,
                },
                _ = self.router.spool_grew.notified(), if wait_for_spool => {}
                _ = tokio::time::sleep(Duration::from_millis(200)), if wait_for_spool => {}
                _ = self.stop.stopping(), if !stopping => stopping = true,
                _ = self.stop.past_deadline() => {
                    self.flush_removals(&mut acked_spooled);
                    self.spill_at_deadline(in_flight).await;
                    return Exit::Done;
                }
            }
        }
    }

    fn connects(&self) -> u64 {
        self.output
            .client
            .statistics()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends one event; its ack comes back through `in_flight`. `Err` means an outage.
    async fn start(
        &self,
        in_flight: &mut AckInbox<InFlight>,
        message: OutMessage,
        origin: Origin,
    ) -> Result<(), Disconnected> {
        if !self.output.is_connected() {
            // Keep the event: it goes to the spool with everything else in memory.
            self.spool_or_drop(&message, origin);
            return Err(Disconnected(self.output.name.clone()));
        }
        let headers = message.header_map();
        let subject = message.subject.clone();
        let payload = message.payload.clone();
        let item = InFlight {
            message,
            origin,
            started: Instant::now(),
        };
        if origin == Origin::Queue {
            self.health.queue_publish_started();
        }
        // A publish the client refuses (too large, or the client closed) comes back from
        // `in_flight` as a reject or an outage, like an ack would.
        in_flight.publish(subject, headers, payload, item).await;
        Ok(())
    }

    /// Accounts for one completed publish: done with it (handing back a spooled event that can
    /// now leave the spool), or an outage it revealed.
    async fn finish(&mut self, item: InFlight, outcome: Outcome) -> Finished {
        if item.origin == Origin::Queue {
            self.health.queue_publish_finished();
        }
        let outcome = match outcome {
            Outcome::NoResponders => self.resolve_no_responders(&item.message).await,
            other => other,
        };
        match outcome {
            Outcome::Stored { duplicate, .. } => {
                self.telemetry
                    .publish_seconds
                    .observe(item.started.elapsed().as_secs_f64());
                if duplicate {
                    self.telemetry.duplicates.inc();
                } else {
                    self.telemetry.published.inc();
                }
                Finished::Done(item.spooled())
            }
            Outcome::Rejected { reason, detail } => {
                self.telemetry.rejected(Rejected {
                    reason,
                    subject: &item.message.subject,
                    source_subject: item
                        .message
                        .header("Ferry-Source-Subject")
                        .unwrap_or_default(),
                    bytes: item.message.payload.len(),
                    detail: &detail,
                });
                Finished::Done(item.spooled())
            }
            // Adapters do not fence their publishes, so a wrong last sequence means the server
            // is confused: ride it out like any outage.
            Outcome::Outage(reason)
            | Outcome::StreamUnavailable(reason)
            | Outcome::WrongLastSequence(reason) => {
                self.spool_or_drop(&item.message, item.origin);
                Finished::Outage(reason)
            }
            // Resolved above; should it ever get here, treat it as the outage it may be.
            Outcome::NoResponders => {
                self.spool_or_drop(&item.message, item.origin);
                Finished::Outage("no responders".into())
            }
        }
    }

    /// Like [`Publisher::finish`], removing a finished spooled event from the spool at once.
    async fn finish_now(&mut self, item: InFlight, outcome: Outcome) -> Option<String> {
        match self.finish(item, outcome).await {
            Finished::Done(Some(spooled)) => {
                self.flush_removals(&mut vec![spooled]);
                None
            }
            Finished::Done(None) => None,
            Finished::Outage(reason) => Some(reason),
        }
    }

    /// Removes spooled events that need no further attempt, in one batch.
    fn flush_removals(&self, done: &mut Vec<OutMessage>) {
        if done.is_empty() {
            return;
        }
        if let Err(error) = self.spool.remove_all(done) {
            self.telemetry.spool_failed(SpoolOp::Remove, &error);
        }
        done.clear();
    }

    /// Keeps an event that could not be published: events from the queue go to the spool (where
    /// they sort by arrival); spooled ones are still there.
    fn spool_or_drop(&self, message: &OutMessage, origin: Origin) {
        if origin == Origin::Spool {
            return;
        }
        match self.spool.push(message) {
            Ok(()) => self.telemetry.spooled.inc(),
            Err(error) => self.telemetry.spool_refused(&error),
        }
    }

    /// "No responders" means no stream listens on the subject. If our stream is there and simply
    /// does not cover this subject, the event can never be stored: a reject. If the stream is
    /// missing or JetStream is not answering, it is an outage.
    async fn resolve_no_responders(&self, message: &OutMessage) -> Outcome {
        match self.js.get_stream(&self.config.output.stream).await {
            Ok(stream) => {
                let subjects = &stream.cached_info().config.subjects;
                if subjects
                    .iter()
                    .any(|s| subject::matches(s, &message.subject))
                {
                    Outcome::Outage(format!(
                        "no responders for {} although stream {} listens on it",
                        message.subject, self.config.output.stream
                    ))
                } else {
                    Outcome::Rejected {
                        reason: RejectReason::NoResponders,
                        detail: format!(
                            "no stream listens on {} (stream {} has subjects {:?})",
                            message.subject, self.config.output.stream, subjects
                        ),
                    }
                }
            }
            Err(error) => Outcome::StreamUnavailable(format!(
                "stream {} unavailable: {error}",
                self.config.output.stream
            )),
        }
    }

    /// An outage: send new events to the spool, wait for the publishes still in flight, and move
    /// what failed or waits in the queue to the spool as well.
    async fn spill_for_outage(
        &mut self,
        mut in_flight: AckInbox<InFlight>,
        reason: String,
    ) -> Exit {
        self.router.start_spooling();
        while let Some((item, outcome)) = in_flight.next().await {
            let _ = self.finish_now(item, outcome).await;
        }
        self.move_queue_to_spool();
        Exit::Outage(reason)
    }

    /// The shutdown deadline passed: stop taking events and let the publishes in flight finish
    /// (each is bounded by the JetStream ack timeout); failed ones and the queue go to the spool.
    async fn spill_at_deadline(&mut self, mut in_flight: AckInbox<InFlight>) {
        self.router.start_spooling();
        while let Some((item, outcome)) = in_flight.next().await {
            let _ = self.finish_now(item, outcome).await;
        }
        let spilled = self.move_queue_to_spool();
        tracing::warn!(
            adapter = %self.config.name,
            spilled,
            "shutdown timeout reached; events still in memory were written to the spool"
        );
    }

    fn move_queue_to_spool(&mut self) -> usize {
        let mut moved = 0;
        while let Ok(message) = self.queue.try_recv() {
            self.spool_or_drop(&message, Origin::Queue);
            moved += 1;
        }
        moved
    }

    /// Probes JetStream with the spool's head until it accepts events again. Returns false when
    /// ferry is stopping (everything is in the spool by then).
    async fn ride_out_outage(&mut self, reason: String, problem: Option<StreamError>) -> bool {
        self.router.start_spooling();
        self.move_queue_to_spool();
        tracing::warn!(
            adapter = %self.config.name,
            stream = %self.config.output.stream,
            %reason,
            "JetStream is not accepting events; spooling to disk until it recovers"
        );
        self.health.set_output(Some(reason));
        if let Some(problem) = &problem {
            self.report_stream_problem(problem);
        }
        // The stream is checked before any probe: an outage can come from a stream that is gone
        // or no longer bound to the subjects (an ack from another stream), and a probe would
        // then store another event in the wrong place.
        let mut check_stream = true;
        let mut backoff = crate::retry::backoff(Duration::from_millis(200), MAX_BACKOFF);
        loop {
            let delay = backoff.next_delay();
            let go_on = self.stop.sleep(delay).await;
            self.move_queue_to_spool();
            if !go_on {
                return false;
            }
            if check_stream {
                match stream::ensure(&self.js, &self.config, &self.stream_subjects).await {
                    Ok(()) => {
                        check_stream = false;
                        self.health.set_failed(None);
                    }
                    Err(problem) => {
                        self.report_stream_problem(&problem);
                        continue;
                    }
                }
            }
            match self.probe().await {
                Probe::Recovered => {
                    tracing::info!(
                        adapter = %self.config.name,
                        spooled = self.spool.messages(),
                        "JetStream accepts events again; draining the spool"
                    );
                    return true;
                }
                Probe::StillDown(reason) => self.health.set_output(Some(reason)),
                Probe::StreamGone(reason) => {
                    self.health.set_output(Some(reason));
                    check_stream = true;
                }
            }
        }
    }

    fn report_stream_problem(&self, problem: &StreamError) {
        let text = problem.to_string();
        match problem.kind() {
            StreamErrorKind::Refused => {
                tracing::error!(adapter = %self.config.name, problem = %text, "output stream refused");
                self.health.set_failed(Some(text));
            }
            StreamErrorKind::Unavailable => self.health.set_output(Some(text)),
        }
    }

    /// Publishes the spool's head (and whatever follows that JetStream rejects outright) and
    /// waits for the ack.
    async fn probe(&mut self) -> Probe {
        let mut in_flight = match AckInbox::on(&self.output, &self.config.output.stream).await {
            Ok(inbox) => inbox,
            Err(error) => return Probe::StillDown(error.to_string()),
        };
        loop {
            let head = match self.spool.read_after(None, 1) {
                Ok(mut batch) => batch.pop(),
                Err(error) => return Probe::StillDown(format!("cannot read the spool: {error}")),
            };
            let Some(message) = head else {
                return Probe::Recovered;
            };
            if let Err(reason) = self.start(&mut in_flight, message, Origin::Spool).await {
                return Probe::StillDown(reason.to_string());
            }
            let Some((item, outcome)) = in_flight.next().await else {
                return Probe::StillDown("the probe's publish was lost".into());
            };
            let outcome = match outcome {
                Outcome::NoResponders => self.resolve_no_responders(&item.message).await,
                other => other,
            };
            match outcome {
                Outcome::StreamUnavailable(reason) => return Probe::StreamGone(reason),
                Outcome::Outage(reason) | Outcome::WrongLastSequence(reason) => {
                    return Probe::StillDown(reason)
                }
                Outcome::Rejected { .. } => {
                    let _ = self.finish_now(item, outcome).await;
                }
                other => {
                    let _ = self.finish_now(item, other).await;
                    return Probe::Recovered;
                }
            }
        }
    }
}

enum Probe {
    Recovered,
    StillDown(String),
    StreamGone(String),
}
/// The output connection is down: an outage, not a reject (the event waits in the spool).
#[derive(Debug, thiserror::Error)]
#[error("connection {0} is down")]
struct Disconnected(String);
