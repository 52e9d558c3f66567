//! One JetStream publish awaiting its ack, for the few low-rate messages (heartbeats, reliable
//! advisories). The pipelines' own publishes go through [`super::ack_inbox`], which keeps many in
//! flight.

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::publish::PublishAck;
use async_nats::HeaderMap;
use bytes::Bytes;

use super::Error;

/// Where a publish failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishErrorKind {
    /// The client could not send it (disconnected, too large).
    Send,
    /// No stream stored it: a refusal, no stream on the subject, or no ack in time.
    Ack,
}

pub type PublishError = Error<PublishErrorKind>;

/// Publishes and waits for the stream's ack.
pub async fn publish_acked(
    js: &async_nats::jetstream::Context,
    subject: &str,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<PublishAck, PublishError> {
    let ack: PublishAckFuture = js
        .publish_with_headers(subject.to_string(), headers, payload)
        .await
        .map_err(|error| {
            Error::with_source(
                PublishErrorKind::Send,
                format!("publish to {subject}"),
                error,
            )
        })?;
    ack.await.map_err(|error| {
        Error::with_source(PublishErrorKind::Ack, format!("ack for {subject}"), error)
    })
}
