//! Reads the source stream in order for one session: an ephemeral pull consumer without acks,
//! pulled over one inbox subscription, with the stream sequence and timestamp read from each
//! message's reply subject.
//!
//! Why not async-nats's ordered consumer: it clones a JetStream context into every message, parses
//! its metadata into a struct and drops an unused acker, about a fifth of the copy loop. And its
//! one advantage, recreating the consumer by itself after a gap, a server restart or missed
//! heartbeats, the copier already has: a session that ends with an error is restarted from the
//! checkpoint. So this reader reports every anomaly (a gap in the consumer's sequence, missed
//! heartbeats, a deleted consumer) as an error and lets the session end.

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::stream::Stream;
use async_nats::{HeaderMap, Subject, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::config::units::format_duration;
use crate::connect::Connection;
use crate::jetstream::answer::{classify_pull, PullAnswer};

/// Why reading the source stopped; every kind ends the session, which restarts from the
/// checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadErrorKind {
    /// The consumer, its inbox or a pull request could not be set up.
    Setup,
    /// Neither a message nor a heartbeat came for too long: the consumer or the link is gone.
    Stalled,
    /// The server answered with a status the reader does not expect (e.g. a deleted consumer).
    Refused,
    /// Messages were lost on the way or came without their JetStream metadata.
    OutOfOrder,
}

pub type ReadError = crate::jetstream::Error<ReadErrorKind>;

/// How long a pull request waits on the server before it expires (and is renewed).
const EXPIRES: Duration = Duration::from_secs(30);
/// The server sends a heartbeat this often while a pull request waits without messages.
const IDLE_HEARTBEAT: Duration = Duration::from_secs(5);
/// Silence this long from the server means the consumer or the link is gone.
const MISSED_HEARTBEATS: Duration = Duration::from_secs(12);
/// How long an idle consumer lives on the server after ferry stops pulling (e.g. after a crash).
const INACTIVE_THRESHOLD: Duration = Duration::from_secs(60);

/// One source message, with what the copier needs from its metadata.
pub struct SourceMessage {
    pub subject: Subject,
    pub headers: Option<HeaderMap>,
    pub payload: Bytes,
    pub sequence: u64,
    /// Messages left in the consumer after this one (the lag).
    pub pending: u64,
    pub published: OffsetDateTime,
}

pub struct SourceReader {
    client: async_nats::Client,
    stream: Stream,
    consumer: String,
    /// `<api prefix>.CONSUMER.MSG.NEXT.<stream>.<consumer>`.
    next_subject: Subject,
    inbox: Subject,
    subscription: Subscriber,
    batch: usize,
    /// Messages requested and not yet delivered or expired.
    requested: usize,
    last_consumer_sequence: u64,
    /// `last_consumer_sequence`, for a [`PendingProbe`] asked while reading pauses.
    accepted: Arc<AtomicU64>,
    last_activity: Instant,
}

/// Asks the server how many source messages this reader has not handed over yet: the
/// consumer's pending count, plus what it delivered that still waits in the inbox. What the
/// lag is read from while reading pauses (the target away), when no message brings it.
#[derive(Clone)]
pub struct PendingProbe {
    stream: Stream,
    consumer: String,
    accepted: Arc<AtomicU64>,
}

/// One reading of a [`PendingProbe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Source messages the reader has not handed over yet.
    pub pending: u64,
    /// The source stream's last sequence; `None` when the stream info could not be read this
    /// time (the consumer's answer does not carry it).
    pub last_sequence: Option<u64>,
}

impl PendingProbe {
    /// Reads the consumer's and the stream's state, both requests at once, so the reading costs
    /// one round trip.
    pub async fn read(&self) -> Result<Backlog, ReadError> {
        let (consumer, stream) = tokio::join!(
            self.stream.consumer_info(&self.consumer),
            self.stream.get_info()
        );
        let info = consumer.map_err(|error| {
            ReadError::with_source(
                ReadErrorKind::Setup,
                format!("cannot ask for consumer {}", self.consumer),
                error,
            )
        })?;
        let waiting = info
            .delivered
            .consumer_sequence
            .saturating_sub(self.accepted.load(AtomicOrdering::Relaxed));
        Ok(Backlog {
            pending: info.num_pending + waiting,
            last_sequence: stream.ok().map(|stream| stream.state.last_sequence),
        })
    }
}

/// The parts of a `$JS.ACK.` reply subject the copier uses.
#[derive(Debug, PartialEq, Eq)]
struct Metadata {
    stream_sequence: u64,
    consumer_sequence: u64,
    timestamp_ns: i128,
    pending: u64,
}

/// Parses `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>` and the newer
/// form with `<domain>.<account hash>.` after `$JS.ACK.` and possibly more tokens at the end.
fn parse_metadata(reply: &str) -> Option<Metadata> {
    let rest = reply.strip_prefix("$JS.ACK.")?;
    let mut tokens = [""; 11];
    let mut count = 0;
    for token in rest.split('.') {
        if count == tokens.len() {
            break;
        }
        tokens[count] = token;
        count += 1;
    }
    let base = match count {
        7 => 0,
        n if n >= 9 => 2,
        _ => return None,
    };
    let number = |index: usize| tokens[base + index].parse::<u64>().ok();
    Some(Metadata {
        stream_sequence: number(3)?,
        consumer_sequence: number(4)?,
        timestamp_ns: tokens[base + 5].parse::<i128>().ok()?,
        pending: number(6)?,
    })
}

impl SourceReader {
    /// Creates the consumer on `stream` and sends the first pull request.
    pub async fn open(
        connection: &Connection,
        stream: Stream,
        filter_subjects: Vec<String>,
        deliver_policy: DeliverPolicy,
        batch: usize,
    ) -> Result<SourceReader, ReadError> {
        let stream_name = stream.cached_info().config.name.clone();
        let consumer = stream
            .create_consumer(pull::Config {
                filter_subjects,
                deliver_policy,
                ack_policy: AckPolicy::None,
                memory_storage: true,
                num_replicas: 1,
                inactive_threshold: INACTIVE_THRESHOLD,
                ..Default::default()
            })
            .await
            .map_err(|error| {
                ReadError::with_source(
                    ReadErrorKind::Setup,
                    format!("cannot create a consumer on {stream_name}"),
                    error,
                )
            })?;
        let consumer = consumer.cached_info().name.clone();
        let client = connection.client.clone();
        let inbox = Subject::from(client.new_inbox());
        let subscription = client.subscribe(inbox.clone()).await.map_err(|error| {
            ReadError::with_source(
                ReadErrorKind::Setup,
                format!("cannot subscribe to read {stream_name}"),
                error,
            )
        })?;
        let next_subject = Subject::from(format!(
            "{}.CONSUMER.MSG.NEXT.{stream_name}.{consumer}",
            connection.api_prefix()
        ));
        let mut reader = SourceReader {
            client,
            stream,
            consumer,
            next_subject,
            inbox,
            subscription,
            batch: batch.max(1),
            requested: 0,
            last_consumer_sequence: 0,
            accepted: Arc::new(AtomicU64::new(0)),
            last_activity: Instant::now(),
        };
        reader.pull().await?;
        Ok(reader)
    }

    /// A handle that reports this reader's pending messages from the server.
    pub fn pending_probe(&self) -> PendingProbe {
        PendingProbe {
            stream: self.stream.clone(),
            consumer: self.consumer.clone(),
            accepted: self.accepted.clone(),
        }
    }

    /// Asks for another batch.
    async fn pull(&mut self) -> Result<(), ReadError> {
        let request = format!(
            r#"{{"batch":{},"expires":{},"idle_heartbeat":{}}}"#,
            self.batch,
            EXPIRES.as_nanos(),
            IDLE_HEARTBEAT.as_nanos()
        );
        self.client
            .publish_with_reply(
                self.next_subject.clone(),
                self.inbox.clone(),
                request.into(),
            )
            .await
            .map_err(|error| {
                ReadError::with_source(
                    ReadErrorKind::Setup,
                    "cannot ask for source messages",
                    error,
                )
            })?;
        self.requested += self.batch;
        self.last_activity = Instant::now();
        Ok(())
    }

    /// The next source message, in stream order. An error ends the session (the consumer, the
    /// link or the order is not what it should be); `None` when the subscription closed.
    /// Cancel-safe: nothing is taken from the subscription without being handled.
    pub async fn next(&mut self) -> Option<Result<SourceMessage, ReadError>> {
        loop {
            if self.requested <= self.batch / 2 {
                if let Err(error) = self.pull().await {
                    return Some(Err(error));
                }
            }
            let deadline = self.last_activity + MISSED_HEARTBEATS;
            let message = tokio::select! {
                biased;
                message = self.subscription.next() => message?,
                _ = tokio::time::sleep_until(deadline) => {
                    return Some(Err(ReadError::new(
                        ReadErrorKind::Stalled,
                        format!("no message or heartbeat from the source for {}", format_duration(MISSED_HEARTBEATS)),
                    )));
                }
            };
            self.last_activity = Instant::now();
            match classify_pull(&message) {
                PullAnswer::Message => return Some(self.accept(message)),
                PullAnswer::Heartbeat => continue,
                PullAnswer::Ended { undelivered } => {
                    // What the expired request did not deliver is no longer coming.
                    let undelivered = undelivered.unwrap_or(self.batch);
                    self.requested = self.requested.saturating_sub(undelivered);
                }
                PullAnswer::Refused(reason) => {
                    return Some(Err(ReadError::new(ReadErrorKind::Refused, reason)));
                }
            }
        }
    }

    fn accept(&mut self, message: async_nats::Message) -> Result<SourceMessage, ReadError> {
        self.requested = self.requested.saturating_sub(1);
        let metadata = message
            .reply
            .as_deref()
            .and_then(parse_metadata)
            .ok_or_else(|| {
                ReadError::new(
                    ReadErrorKind::OutOfOrder,
                    format!(
                        "a source message without JetStream metadata (reply subject: {})",
                        message.reply.as_deref().unwrap_or("none")
                    ),
                )
            })?;
        if metadata.consumer_sequence != self.last_consumer_sequence + 1 {
            return Err(ReadError::new(
                ReadErrorKind::OutOfOrder,
                format!(
                    "source messages were lost on the way (consumer sequence {} after {})",
                    metadata.consumer_sequence, self.last_consumer_sequence
                ),
            ));
        }
        self.last_consumer_sequence = metadata.consumer_sequence;
        self.accepted
            .store(metadata.consumer_sequence, AtomicOrdering::Relaxed);
        let published = OffsetDateTime::from_unix_timestamp_nanos(metadata.timestamp_ns)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Ok(SourceMessage {
            subject: message.subject,
            headers: message.headers,
            payload: message.payload,
            sequence: metadata.stream_sequence,
            pending: metadata.pending,
            published,
        })
    }
}

impl Drop for SourceReader {
    fn drop(&mut self) {
        // The server would drop the consumer after INACTIVE_THRESHOLD anyway; deleting it now
        // keeps the source's consumer list short across session restarts.
        let stream = self.stream.clone();
        let consumer = std::mem::take(&mut self.consumer);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = stream.delete_consumer(&consumer).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_subjects_of_both_formats_are_parsed() {
        let old = parse_metadata("$JS.ACK.ORDERS.c1.1.42.7.1700000000123456789.3").unwrap();
        assert_eq!(
            old,
            Metadata {
                stream_sequence: 42,
                consumer_sequence: 7,
                timestamp_ns: 1_700_000_000_123_456_789,
                pending: 3
            }
        );
        let new = parse_metadata("$JS.ACK.hub.ACCHASH.ORDERS.c1.1.42.7.1700000000123456789.3.tok")
            .unwrap();
        assert_eq!(new, old);
        let no_token = parse_metadata("$JS.ACK.hub.ACCHASH.ORDERS.c1.1.42.7.1700000000123456789.3");
        assert_eq!(no_token.as_ref(), Some(&old));
        for bad in [
            "",
            "$JS.ACK.ORDERS.c1.1.42.7.1700000000123456789",
            "_INBOX.x",
            "$JS.ACK.ORDERS.c1.1.x.7.1.3",
            "$JS.ACK.a.b.ORDERS.c1.1.42",
        ] {
            assert_eq!(parse_metadata(bad), None, "{bad}");
        }
    }
}
