//! The core NATS side of an adapter: subscribe, decode, filter, render, route.
//!
//! This task must never wait on JetStream: the router hands every event to the bounded queue or,
//! when that is full or JetStream is away, to the disk spool. The only waits are the subscription
//! itself and republishing undecodable messages to `invalid_subject`.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, HeaderMap, Message, Subscriber};
use bytes::Bytes;
use ferry_adapter::{DecodedEvent, Decoder, HeaderLookup, Input, Payload};
use futures_util::stream::SelectAll;
use futures_util::StreamExt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::message::{EventHeaders, OutMessage};
use super::router::{Routed, Router};
use super::telemetry::{AdapterTelemetry, UNPARSEABLE_HEADERS, UNPARSEABLE_SUBJECT};
use super::Health;
use crate::config::schema::AdapterConfig;
use crate::filter::{Filter, Verdict};
use crate::shutdown::StopSignal;
use crate::subject::{self, Template};

pub struct Intake {
    pub config: AdapterConfig,
    pub client: Client,
    pub decoder: Box<dyn Decoder>,
    pub filter: Filter,
    pub template: Template,
    pub router: Arc<Router>,
    pub telemetry: AdapterTelemetry,
    pub health: Arc<Health>,
    pub stop: StopSignal,
}

/// What became of one message.
enum Step {
    Invalid(&'static str),
    Filtered,
    Out(OutMessage),
}

/// Headers of a core NATS message, for decoders and filters.
struct NatsHeaders<'a>(Option<&'a HeaderMap>);

impl HeaderLookup for NatsHeaders<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.0?.get(name).map(|value| value.as_str())
    }
}

impl Intake {
    /// Subscribes, then handles messages until ferry stops; on stop it unsubscribes and still
    /// handles everything the client had already received, so a graceful stop loses nothing.
    pub async fn run(mut self) {
        let mut subscriptions = match self.subscribe().await {
            Some(subscriptions) => subscriptions,
            None => {
                self.router.close_queue();
                return;
            }
        };
        self.confirm_subscriptions().await;
        loop {
            tokio::select! {
                message = subscriptions.next() => match message {
                    Some(message) => self.handle(message).await,
                    None => break,
                },
                _ = self.stop.stopping() => break,
            }
        }
        for subscriber in subscriptions.iter_mut() {
            if let Err(error) = subscriber.unsubscribe().await {
                tracing::debug!(adapter = %self.config.name, %error, "unsubscribe failed");
            }
        }
        while let Some(message) = subscriptions.next().await {
            self.handle(message).await;
        }
        self.router.close_queue();
        tracing::debug!(adapter = %self.config.name, "intake stopped");
    }

    async fn subscribe(&self) -> Option<SelectAll<Subscriber>> {
        let mut all = SelectAll::new();
        for subject in &self.config.subjects {
            let result = match &self.config.queue_group {
                Some(group) => {
                    self.client
                        .queue_subscribe(subject.clone(), group.clone())
                        .await
                }
                None => self.client.subscribe(subject.clone()).await,
            };
            match result {
                Ok(subscriber) => all.push(subscriber),
                Err(error) => {
                    let text = format!("cannot subscribe to {subject}: {error}");
                    tracing::error!(adapter = %self.config.name, %text);
                    self.health.set_failed(Some(text));
                    return None;
                }
            }
        }
        Some(all)
    }

    /// The subscriptions count as established once the server has processed them, which a
    /// flush round trip proves. While disconnected, the client re-sends them on reconnect.
    async fn confirm_subscriptions(&self) {
        let client = self.client.clone();
        let health = self.health.clone();
        tokio::spawn(async move {
            loop {
                if tokio::time::timeout(Duration::from_secs(5), client.flush())
                    .await
                    .is_ok_and(|flushed| flushed.is_ok())
                {
                    health.set_subscribed();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }

    async fn handle(&mut self, message: Message) {
        self.telemetry.received.inc();
        if let Some(reason) = unparseable(&message) {
            self.telemetry.invalid(
                reason,
                &message.subject,
                &format_args!("{reason}: the message does not follow the NATS format"),
            );
            self.republish_invalid(&message, reason).await;
            return;
        }
        match self.process(&message) {
            Step::Invalid(reason) => self.republish_invalid(&message, reason).await,
            Step::Filtered => self.telemetry.filtered.inc(),
            Step::Out(out) => match self.router.submit(out) {
                Routed::Queued => {}
                Routed::Spooled => self.telemetry.spooled.inc(),
                Routed::Dropped(error) => self.telemetry.spool_refused(&error),
            },
        }
    }

    /// Decodes and filters one message (no waiting here: decoders and filters are plain functions).
    fn process(&self, message: &Message) -> Step {
        let headers = NatsHeaders(message.headers.as_ref());
        let input = Input::with_headers(message.subject.as_str(), &message.payload, &headers);
        let event = match self.decoder.decode(&input) {
            Ok(event) => event,
            Err(error) => {
                self.telemetry
                    .invalid(error.reason(), &message.subject, &error);
                return Step::Invalid(error.reason());
            }
        };
        if !self.filter.is_pass_through() {
            let document: &[u8] = match (&event.filter_document, &event.payload) {
                (Some(document), _) => document,
                (None, Payload::Replaced(bytes)) => bytes,
                (None, Payload::Unchanged) => &message.payload,
            };
            if self
                .filter
                .check(message.subject.as_str(), document, &headers)
                != Verdict::Accept
            {
                return Step::Filtered;
            }
        }
        Step::Out(self.build(message, event))
    }

    fn build(&self, message: &Message, event: DecodedEvent) -> OutMessage {
        let subject = self.template.render(|name| event.field(name));
        let msg_id = subject::content_digest(message.subject.as_str(), &message.payload);
        let received = now_rfc3339();
        let headers = EventHeaders {
            msg_id: &msg_id,
            adapter: &self.config.name,
            sender: event.sender.as_deref(),
            received: &received,
            source_subject: message.subject.as_str(),
        };
        let payload = match event.payload {
            Payload::Unchanged => message.payload.clone(),
            Payload::Replaced(bytes) => Bytes::from(bytes),
        };
        OutMessage::new(subject, &headers, payload)
    }

    /// Undecodable messages go, unchanged, to `invalid_subject` for inspection, with headers
    /// saying where they came from and why they were refused. A header block that does not parse
    /// is kept byte for byte, ferry's headers added before its final empty line.
    async fn republish_invalid(&self, message: &Message, reason: &str) {
        let Some(invalid_subject) = &self.config.invalid_subject else {
            return;
        };
        let mut headers = message.headers.clone().unwrap_or_default();
        headers.insert("Ferry-Adapter", self.config.name.as_str());
        headers.insert(
            "Ferry-Source-Subject",
            subject::sanitize_header_value(message.subject.as_str()).as_str(),
        );
        headers.insert("Ferry-Invalid-Reason", reason);
        if let Err(error) = self
            .client
            .publish_with_headers(invalid_subject.clone(), headers, message.payload.clone())
            .await
        {
            tracing::debug!(adapter = %self.config.name, %error, "cannot republish an invalid event");
        }
    }
}

/// Why a message the client could not parse is invalid (the client hands such messages over
/// with their raw parts instead of dropping the connection; see docs/design.md).
fn unparseable(message: &Message) -> Option<&'static str> {
    let unparsed = message.headers.as_ref()?.unparsed()?;
    if unparsed.subject.is_some() {
        Some(UNPARSEABLE_SUBJECT)
    } else if unparsed.headers.is_some() {
        Some(UNPARSEABLE_HEADERS)
    } else {
        None
    }
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}
