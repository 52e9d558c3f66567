//! JetStream publishes with their acks collected on one wildcard inbox subscription.
//!
//! async-nats's `send_publish` gives every publish its own inbox subject, response-map entry,
//! oneshot channel and timer, and parses the ack through an untagged enum: together about a third
//! of the replicator's copy loop. Here a session subscribes once to `<inbox>.*`, each publish
//! carries `<inbox>.<token>` as its reply subject, and tokens count up, so the publishes waiting
//! for an answer sit in a queue in the order they were sent. That order is also the order of their
//! deadlines, so one timer (for the oldest) covers them all.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::{Client, HeaderMap, Subject, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::Instant;

use super::answer::{classify_reply, classify_send_error, Outcome};
use super::StreamError;
use crate::config::units::format_duration;
use crate::connect::{Connection, JETSTREAM_TIMEOUT};

struct Waiting<T> {
    item: T,
    deadline: Instant,
}

/// Publishes in flight, each carrying an item of the caller's (what to retry or account for).
pub struct AckInbox<T> {
    client: Client,
    /// `<inbox>.`: a reply subject is this followed by the token.
    prefix: String,
    replies: Subscriber,
    timeout: Duration,
    /// The token of `slots[0]`.
    base: u64,
    /// Publishes by token; `None` once answered (trimmed from the front as answers arrive).
    slots: VecDeque<Option<Waiting<T>>>,
    outstanding: usize,
    /// Publishes that failed before reaching the server, returned first by `next`.
    ready: VecDeque<(T, Outcome)>,
    /// The stream every ack must name (see `answer::classify_reply`).
    expected_stream: Option<String>,
}

impl<T> AckInbox<T> {
    /// Subscribes to a fresh inbox on `client`; a publish unanswered after `timeout` counts as an
    /// outage (the caller retries it; the target's duplicate window absorbs a late store).
    pub async fn open(client: &Client, timeout: Duration) -> Result<Self, async_nats::Error> {
        let inbox = client.new_inbox();
        let replies = client.subscribe(format!("{inbox}.*")).await?;
        Ok(AckInbox {
            client: client.clone(),
            prefix: format!("{inbox}."),
            replies,
            timeout,
            base: 0,
            slots: VecDeque::new(),
            outstanding: 0,
            ready: VecDeque::new(),
            expected_stream: None,
        })
    }

    /// Every ack must come from `stream`; one from another stream is a reject.
    pub fn expecting_stream(mut self, stream: &str) -> Self {
        self.expected_stream = Some(stream.to_string());
        self
    }

    /// `open` on a configured connection with the JetStream ack timeout, for publishes into
    /// `stream`; the error names the connection.
    pub async fn on(connection: &Connection, stream: &str) -> Result<Self, StreamError> {
        AckInbox::open(&connection.client, JETSTREAM_TIMEOUT)
            .await
            .map(|inbox| inbox.expecting_stream(stream))
            .map_err(|error| {
                StreamError::unavailable_from(
                    format!(
                        "cannot subscribe for acks on connection {}",
                        connection.name
                    ),
                    error,
                )
            })
    }

    /// Publishes not yet returned by `next`.
    pub fn len(&self) -> usize {
        self.outstanding + self.ready.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records a publish that was not even attempted; `next` returns it with `outcome`.
    pub fn fail(&mut self, item: T, outcome: Outcome) {
        self.ready.push_back((item, outcome));
    }

    /// Sends one publish. One the client cannot take comes back from `next` with its outcome.
    pub async fn publish(&mut self, subject: Subject, headers: HeaderMap, payload: Bytes, item: T) {
        let token = self.base + self.slots.len() as u64;
        let mut reply = String::with_capacity(self.prefix.len() + 20);
        reply.push_str(&self.prefix);
        reply.push_str(itoa::Buffer::new().format(token));
        let sent = self
            .client
            .publish_with_reply_and_headers(subject, Subject::from(reply), headers, payload)
            .await;
        if let Err(error) = sent {
            self.ready.push_back((item, classify_send_error(error)));
            return;
        }
        self.slots.push_back(Some(Waiting {
            item,
            deadline: Instant::now() + self.timeout,
        }));
        self.outstanding += 1;
    }

    /// The next publish answered (or given up on), or `None` when none is in flight.
    /// Cancel-safe: an answer is taken off the subscription only when it is returned.
    pub async fn next(&mut self) -> Option<(T, Outcome)> {
        if let Some(failed) = self.ready.pop_front() {
            return Some(failed);
        }
        loop {
            self.trim();
            let oldest = self.slots.front()?.as_ref()?.deadline;
            tokio::select! {
                reply = self.replies.next() => {
                    let Some(reply) = reply else {
                        // The subscription is gone (the client closed): nothing will be answered.
                        let item = self.take_oldest()?;
                        return Some((item, Outcome::Outage("publish: the ack subscription closed".into())));
                    };
                    if let Some(item) = self.token(&reply.subject).and_then(|token| self.take(token)) {
                        return Some((item, classify_reply(&reply, self.expected_stream.as_deref())));
                    }
                    // An answer to a publish already given up on: it was retried or accounted for.
                }
                _ = tokio::time::sleep_until(oldest) => {
                    let item = self.take_oldest()?;
                    return Some((item, Outcome::Outage(format!(
                        "publish: no ack within {}", format_duration(self.timeout)
                    ))));
                }
            }
        }
    }

    fn token(&self, subject: &str) -> Option<u64> {
        subject.strip_prefix(self.prefix.as_str())?.parse().ok()
    }

    fn take(&mut self, token: u64) -> Option<T> {
        let index = usize::try_from(token.checked_sub(self.base)?).ok()?;
        let waiting = self.slots.get_mut(index)?.take()?;
        self.outstanding -= 1;
        Some(waiting.item)
    }

    fn take_oldest(&mut self) -> Option<T> {
        self.trim();
        let waiting = self.slots.pop_front()??;
        self.base += 1;
        self.outstanding -= 1;
        Some(waiting.item)
    }

    /// Drops answered slots from the front, so the front is the oldest publish still waiting.
    fn trim(&mut self) {
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.base += 1;
        }
    }
}
