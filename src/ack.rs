//! Sorting JetStream publish acks into what the pipelines act on: stored (maybe as a duplicate),
//! a reject that no retry can fix, or an outage to ride out. Shared by adapters and replicators so
//! both treat the same server answer the same way.

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{self, ErrorCode};

/// What happened to one publish.
pub enum Outcome {
    Stored {
        duplicate: bool,
    },
    Rejected {
        reason: &'static str,
        detail: String,
    },
    Outage(String),
    /// An outage in which the output stream itself could not be found: check (and maybe
    /// recreate) it before probing again.
    StreamUnavailable(String),
    /// The server said no stream listens on the subject: a reject if the stream is there, an
    /// outage if the stream is gone: the caller decides by looking at the stream.
    NoResponders,
}

/// Sorts a JetStream ack into stored, reject and outage.
pub fn classify(result: Result<PublishAck, PublishError>) -> Outcome {
    let error = match result {
        Ok(ack) => {
            return Outcome::Stored {
                duplicate: ack.duplicate,
            }
        }
        Err(error) => error,
    };
    match error.kind() {
        PublishErrorKind::StreamNotFound => Outcome::NoResponders,
        PublishErrorKind::MaxPayloadExceeded => Outcome::Rejected {
            reason: "oversize",
            detail: error.to_string(),
        },
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
            Outcome::Outage(format!("publish: {error}"))
        }
        _ => {
            let api = std::error::Error::source(&error)
                .and_then(|source| source.downcast_ref::<jetstream::Error>());
            match api.map(|api| api.error_code()) {
                Some(ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM)
                | Some(ErrorCode::STREAM_HEADER_EXCEEDS_MAXIMUM) => Outcome::Rejected {
                    reason: "oversize",
                    detail: error.to_string(),
                },
                Some(ErrorCode::STREAM_NOT_MATCH) => Outcome::Rejected {
                    reason: "rejected",
                    detail: format!(
                        "the subject belongs to another stream ({error}); check output.subject and stream_subjects"
                    ),
                },
                // Storage full, JetStream disabled or restarting, and anything unknown: retry
                // rather than lose the event.
                _ => Outcome::Outage(format!("publish: {error}")),
            }
        }
    }
}
