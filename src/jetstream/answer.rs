//! The one place that reads the server's answers: publish acks sorted into what the pipelines act
//! on (stored, maybe as a duplicate; a reject that no retry can fix; an outage to ride out; a
//! fence that failed; nobody listening), the status messages of a pull request, and the API
//! error codes the stream steps branch on. Adapters, replicators and the election bucket share it,
//! so the same answer is treated the same way everywhere.

use async_nats::jetstream::context::{
    CreateStreamError, CreateStreamErrorKind, GetStreamError, GetStreamErrorKind,
};
use async_nats::jetstream::stream::{LastRawMessageError, LastRawMessageErrorKind};
use async_nats::jetstream::ErrorCode;
use async_nats::StatusCode;

/// What happened to one publish.
pub enum Outcome {
    Stored {
        duplicate: bool,
        /// The stream sequence the server stored the message at (or, for a duplicate, the
        /// sequence of the copy it already had).
        sequence: u64,
    },
    /// A publish fenced with `Nats-Expected-Last-Sequence` found the stream's last sequence
    /// elsewhere: an earlier publish of the same pipeline failed, or someone else wrote.
    WrongLastSequence(String),
    Rejected {
        reason: RejectReason,
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

/// Why a message can never be stored, whatever the retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Larger than the server's max payload or the stream's message or header limit.
    Oversize,
    /// No stream listens on the subject, while the intended stream is there.
    NoResponders,
    /// The server refuses it for good (e.g. the subject belongs to another stream).
    Refused,
    /// Its subject cannot be published by a NATS client (a replicator's source held it).
    UnpublishableSubject,
}

impl RejectReason {
    /// The name in logs and pause reasons.
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::Oversize => "oversize",
            RejectReason::NoResponders => "no_responders",
            RejectReason::Refused => "rejected",
            RejectReason::UnpublishableSubject => "unpublishable_subject",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Sorts a JetStream API error code: the few that no retry can fix, and outages.
fn classify_api_error(code: ErrorCode, detail: String) -> Outcome {
    match code {
        ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM | ErrorCode::STREAM_HEADER_EXCEEDS_MAXIMUM => {
            Outcome::Rejected {
                reason: RejectReason::Oversize,
                detail,
            }
        }
        ErrorCode::STREAM_WRONG_LAST_SEQUENCE => Outcome::WrongLastSequence(detail),
        ErrorCode::STREAM_NOT_MATCH => Outcome::Rejected {
            reason: RejectReason::Refused,
            detail: format!(
                "the subject belongs to another stream ({detail}); check output.subject and stream_subjects"
            ),
        },
        // Storage full, JetStream disabled or restarting, and anything unknown: retry rather
        // than lose the event.
        _ => Outcome::Outage(format!("publish: {detail}")),
    }
}

/// The parts of a JetStream publish ack that decide its outcome. A plain struct rather than
/// async-nats's untagged response enum: serde then reads the JSON once, without buffering it.
#[derive(serde::Deserialize)]
struct AckReply<'a> {
    #[serde(default, borrow)]
    stream: std::borrow::Cow<'a, str>,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    duplicate: bool,
    #[serde(default, borrow)]
    error: Option<AckError<'a>>,
}

#[derive(serde::Deserialize)]
struct AckError<'a> {
    #[serde(default)]
    err_code: u64,
    #[serde(default, borrow)]
    description: std::borrow::Cow<'a, str>,
}

/// Sorts the reply to a publish sent with its own reply subject (see `ack_inbox`). With
/// `expected_stream`, an ack from any other stream means the intended stream is not there for
/// this subject: the message was stored in a stream that took the subject over (ferry stores no
/// `Nats-Expected-Stream` header, which would have made the server refuse it; SPEC section 4).
pub fn classify_reply(reply: &async_nats::Message, expected_stream: Option<&str>) -> Outcome {
    if let Some(status) = reply.status {
        if status == async_nats::StatusCode::NO_RESPONDERS {
            return Outcome::NoResponders;
        }
        return Outcome::Outage(format!("publish: the server answered with status {status}"));
    }
    match serde_json::from_slice::<AckReply>(&reply.payload) {
        Ok(AckReply {
            error: None,
            stream,
            ..
        }) if expected_stream.is_some_and(|expected| expected != stream) => {
            // Stored, but elsewhere: the pipeline stops writing until the binding is right again
            // (the event itself is kept and written again to the right stream later).
            Outcome::StreamUnavailable(format!(
                "stored in stream {stream:?} instead of {:?}: another stream listens on the subject; fix the streams' subjects",
                expected_stream.unwrap_or_default()
            ))
        }
        Ok(AckReply {
            error: None,
            duplicate,
            seq,
            ..
        }) => Outcome::Stored {
            duplicate,
            sequence: seq,
        },
        Ok(AckReply {
            error: Some(error), ..
        }) => classify_api_error(
            ErrorCode(error.err_code),
            format!("{} (error code {})", error.description, error.err_code),
        ),
        Err(error) => Outcome::Outage(format!("publish: unreadable ack ({error})")),
    }
}

/// Sorts a publish that could not even be handed to the client.
pub fn classify_send_error(error: async_nats::PublishError) -> Outcome {
    match error.kind() {
        async_nats::PublishErrorKind::MaxPayloadExceeded => Outcome::Rejected {
            reason: RejectReason::Oversize,
            detail: error.to_string(),
        },
        async_nats::PublishErrorKind::InvalidSubject => Outcome::Rejected {
            reason: RejectReason::Refused,
            detail: format!("{error}: the target subject is not a valid NATS subject"),
        },
        _ => Outcome::Outage(format!("publish: {error}")),
    }
}

/// The stream asked for does not exist (as opposed to a server that cannot say).
pub fn is_stream_not_found(error: &GetStreamError) -> bool {
    matches!(error.kind(), GetStreamErrorKind::JetStream(api) if api.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// A stream of that name exists already (another instance created it a moment ago).
pub fn is_stream_name_taken(error: &CreateStreamError) -> bool {
    matches!(error.kind(), CreateStreamErrorKind::JetStream(api) if api.error_code() == ErrorCode::STREAM_NAME_EXIST)
}

/// The new stream's subjects overlap another stream's.
pub fn is_subject_overlap(error: &CreateStreamError) -> bool {
    matches!(error.kind(), CreateStreamErrorKind::JetStream(api) if api.error_code() == ErrorCode::STREAM_SUBJECT_OVERLAP)
}

/// The stream holds no message on the subject asked for.
pub fn is_no_message(error: &LastRawMessageError) -> bool {
    error.kind() == LastRawMessageErrorKind::NoMessageFound
}

/// What arrived on a pull request's inbox.
#[derive(Debug, PartialEq, Eq)]
pub enum PullAnswer {
    /// A stored message.
    Message,
    /// The server is still there; nothing to deliver yet.
    Heartbeat,
    /// The request expired or found nothing: `undelivered` of it will not come (the whole batch
    /// when the server does not say).
    Ended { undelivered: Option<usize> },
    /// Any other status: the consumer or the request is not what the reader set up.
    Refused(String),
}

/// Sorts a message on a pull inbox. A stored message is one whatever its header block says: a
/// publisher can store a block that mimics a status line, but only the server's own status
/// messages come without the `$JS.ACK.` reply of a delivered message.
pub fn classify_pull(message: &async_nats::Message) -> PullAnswer {
    if message
        .reply
        .as_deref()
        .is_some_and(|reply| reply.starts_with("$JS.ACK."))
    {
        return PullAnswer::Message;
    }
    match message.status {
        None | Some(StatusCode::OK) => PullAnswer::Message,
        Some(StatusCode::IDLE_HEARTBEAT) => PullAnswer::Heartbeat,
        Some(StatusCode::TIMEOUT) | Some(StatusCode::NOT_FOUND) => PullAnswer::Ended {
            undelivered: message
                .headers
                .as_ref()
                .and_then(|headers| headers.get("Nats-Pending-Messages"))
                .and_then(|value| value.as_str().parse::<usize>().ok()),
        },
        Some(status) => PullAnswer::Refused(format!(
            "the source consumer answered {status}{}",
            message
                .description
                .as_ref()
                .map(|text| format!(" ({text})"))
                .unwrap_or_default()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::{classify_pull, classify_reply, Outcome, PullAnswer, RejectReason};

    fn reply(payload: &str, status: Option<async_nats::StatusCode>) -> async_nats::Message {
        async_nats::Message {
            subject: "_INBOX.x.1".into(),
            reply: None,
            payload: payload.to_string().into(),
            headers: None,
            status,
            description: None,
            length: payload.len(),
        }
    }

    #[test]
    fn replies_are_sorted_like_the_client_sorts_acks() {
        let classify = |payload: &str| classify_reply(&reply(payload, None), Some("DST"));
        let stored = classify(r#"{"stream":"DST","domain":"b","seq":7}"#);
        assert!(matches!(
            stored,
            Outcome::Stored {
                duplicate: false,
                sequence: 7
            }
        ));
        let duplicate = classify(r#"{"stream":"DST","seq":7,"duplicate":true}"#);
        assert!(matches!(
            duplicate,
            Outcome::Stored {
                duplicate: true,
                ..
            }
        ));
        let elsewhere = classify(r#"{"stream":"OTHER","seq":3}"#);
        assert!(
            matches!(&elsewhere, Outcome::StreamUnavailable(detail) if detail.contains("OTHER")),
            "an ack from another stream: the intended stream is not there for the subject"
        );
        let unchecked = classify_reply(&reply(r#"{"stream":"OTHER","seq":3}"#, None), None);
        assert!(matches!(unchecked, Outcome::Stored { sequence: 3, .. }));
        let oversize = classify(
            r#"{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"},"stream":"DST","seq":0}"#,
        );
        assert!(matches!(
            oversize,
            Outcome::Rejected {
                reason: RejectReason::Oversize,
                ..
            }
        ));
        let wrong_stream = classify(
            r#"{"error":{"code":400,"err_code":10060,"description":"expected stream does not match"}}"#,
        );
        assert!(matches!(
            wrong_stream,
            Outcome::Rejected {
                reason: RejectReason::Refused,
                ..
            }
        ));
        let fenced = classify(
            r#"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 41"}}"#,
        );
        assert!(matches!(fenced, Outcome::WrongLastSequence(detail) if detail.contains("41")));
        let unavailable = classify(
            r#"{"error":{"code":503,"err_code":10077,"description":"resource limits exceeded for account"}}"#,
        );
        assert!(matches!(unavailable, Outcome::Outage(detail) if detail.contains("10077")));
        let nobody = classify_reply(
            &reply("", Some(async_nats::StatusCode::NO_RESPONDERS)),
            Some("DST"),
        );
        assert!(matches!(nobody, Outcome::NoResponders));
        let garbage = classify("{not json");
        assert!(matches!(garbage, Outcome::Outage(_)));
    }

    #[test]
    fn pull_inbox_messages_are_sorted_by_status_unless_delivered() {
        let mut delivered = reply("{}", Some(async_nats::StatusCode::IDLE_HEARTBEAT));
        delivered.reply = Some("$JS.ACK.S.c.1.2.2.1700000000000000000.0".into());
        assert_eq!(
            classify_pull(&delivered),
            PullAnswer::Message,
            "a stored block mimicking a status line"
        );
        assert_eq!(classify_pull(&reply("", None)), PullAnswer::Message);
        assert_eq!(
            classify_pull(&reply("", Some(async_nats::StatusCode::IDLE_HEARTBEAT))),
            PullAnswer::Heartbeat
        );
        let mut expired = reply("", Some(async_nats::StatusCode::TIMEOUT));
        assert_eq!(
            classify_pull(&expired),
            PullAnswer::Ended { undelivered: None }
        );
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Pending-Messages", "7");
        expired.headers = Some(headers);
        assert_eq!(
            classify_pull(&expired),
            PullAnswer::Ended {
                undelivered: Some(7)
            }
        );
        let mut gone = reply(
            "",
            Some(async_nats::StatusCode::from_u16(409).expect("a status")),
        );
        gone.description = Some("Consumer Deleted".into());
        assert!(
            matches!(classify_pull(&gone), PullAnswer::Refused(text) if text.contains("Consumer Deleted"))
        );
    }
}
