//! The two streams of a replicator: the source's identity and bounds, and the target, created
//! when missing (SPEC section 5) and asked for the last copy this replicator made.

use async_nats::jetstream::stream::{Config as StreamConfig, RetentionPolicy};
use async_nats::jetstream::{self};

use super::checkpoint::SourceIdentity;
use super::headers::{parse_ferry_source, FerrySource};
use crate::config::replicator::ReplicatorConfig;
use crate::config::units::format_duration;
use crate::jetstream::{answer, streams, wire_headers, StreamError};

/// What the replicator needs to know about its source.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub identity: SourceIdentity,
    pub first_sequence: u64,
    pub last_sequence: u64,
    pub subjects: Vec<String>,
    /// The source's settings, used for what `to` leaves unset when ferry creates the target.
    pub config: StreamConfig,
}

/// Reads the source stream's identity and bounds; a WorkQueue source is refused (it cannot serve
/// the ordered consumer ferry reads with).
pub async fn source_info(
    js: &jetstream::Context,
    config: &ReplicatorConfig,
) -> Result<SourceInfo, StreamError> {
    let name = &config.from.stream;
    let context = || format!("source stream {name}");
    let mut stream = js
        .get_stream(name)
        .await
        .map_err(|error| StreamError::unavailable_from(context(), error))?;
    let info = stream
        .info()
        .await
        .map_err(|error| StreamError::unavailable_from(context(), error))?;
    if info.config.retention == RetentionPolicy::WorkQueue {
        return Err(StreamError::refused(format!(
            "source stream {name} uses WorkQueue retention, which cannot serve the ordered consumer ferry reads with; replicate from a Limits or Interest stream"
        )));
    }
    Ok(SourceInfo {
        identity: SourceIdentity {
            stream: name.clone(),
            created_ns: info.created.unix_timestamp_nanos(),
        },
        first_sequence: info.state.first_sequence,
        last_sequence: info.state.last_sequence,
        subjects: info.config.subjects.clone(),
        config: info.config.clone(),
    })
}

/// The subjects this replicator reads: the filter's, else the source stream's.
fn read_subjects(config: &ReplicatorConfig, source_subjects: &[String]) -> Vec<String> {
    config
        .filter
        .as_ref()
        .map(|filter| filter.subjects.clone())
        .filter(|subjects| !subjects.is_empty())
        .unwrap_or_else(|| source_subjects.to_vec())
}

/// The subjects this replicator writes on the target: the source's (or the filter's), rewritten.
pub fn target_subjects(config: &ReplicatorConfig, source_subjects: &[String]) -> Vec<String> {
    read_subjects(config, source_subjects)
        .iter()
        .map(|subject| config.to.rewrite_subject(subject).into_owned())
        .collect()
}

/// What a session needs to know about the target when it starts.
#[derive(Debug, Clone)]
pub struct TargetInfo {
    /// Name and creation time: the `Ferry-Origin` value of messages that originated there, and
    /// what tells a recreated target from the one the checkpoint knew.
    pub identity: SourceIdentity,
    /// The stream's last sequence (kept by a purge; 0 for a stream never written).
    pub last_sequence: u64,
}

/// Makes sure the target exists (creating it when `to.create` is set), that it listens on every
/// subject this replicator writes, and returns what a session starts from.
pub async fn ensure_target(
    js: &jetstream::Context,
    config: &ReplicatorConfig,
    source: &SourceInfo,
) -> Result<TargetInfo, StreamError> {
    let name = &config.to.stream;
    let context = || format!("target stream {name}");
    // A rewrite that leaves a subject empty, or only `>` (which a stream may not capture), can
    // never be written: say which key did it rather than retrying the server's refusal.
    if config.to.rewrites_subjects() {
        for (theirs, ours) in read_subjects(config, &source.subjects)
            .iter()
            .map(|s| (s, config.to.rewrite_subject(s)))
        {
            if ours.is_empty() || ours == ">" || crate::subject::validate(&ours, true).is_err() {
                return Err(StreamError::refused(format!(
                    "the source subject {theirs:?} becomes {ours:?} on the target, which no stream can capture; change to.subject_remove, to.subject_prefix or to.subject_strip_prefix"
                )));
            }
        }
    }
    let found = streams::find(js, name)
        .await
        .map_err(|error| StreamError::unavailable_from(context(), error))?;
    let mut stream = match found {
        Some(stream) => stream,
        None if !config.to.create => {
            return Err(StreamError::unavailable(format!(
                "target stream {name} does not exist and to.create is false; create it or set create: true"
            )))
        }
        None => create_target(js, config, source).await?,
    };
    let info = stream
        .info()
        .await
        .map_err(|error| StreamError::unavailable_from(context(), error))?;
    // No `Nats-Expected-Stream` is stored with copies (SPEC section 5), so the binding of the
    // subjects written to this stream is checked here, and each ack's stream in the copy loop.
    for subject in target_subjects(config, &source.subjects) {
        if !info
            .config
            .subjects
            .iter()
            .any(|theirs| crate::subject::matches(theirs, &subject))
        {
            return Err(StreamError::refused(format!(
                "target stream {name} does not listen on {subject} (its subjects: {:?}); add the subject to the stream or rewrite subjects with to.subject_prefix",
                info.config.subjects
            )));
        }
    }
    Ok(TargetInfo {
        identity: SourceIdentity {
            stream: name.clone(),
            created_ns: info.created.unix_timestamp_nanos(),
        },
        last_sequence: info.state.last_sequence,
    })
}

/// The target stream's settings: the source's own (so the copy keeps what consumers of the
/// source rely on: per-subject limits such as Choria's registration stream's one message per
/// node, message and byte limits, the discard policy, the largest message, rollups, direct gets,
/// compression, metadata), with the target's subjects and the `to` overrides. Left out is what
/// belongs to the source's place or would act a second time on the target: mirror and sources,
/// republish, subject transforms, placement, the first sequence, message schedules and counters;
/// the retention is always `limits` (a work queue or interest target would delete the copies no
/// one has consumed there yet).
fn target_config(
    config: &ReplicatorConfig,
    source: &SourceInfo,
    subjects: Vec<String>,
) -> StreamConfig {
    let to = &config.to;
    let from = &source.config;
    StreamConfig {
        name: to.stream.clone(),
        subjects,
        retention: RetentionPolicy::Limits,
        // Unset overrides take the source's value: the copy behaves like the original.
        num_replicas: to.replicas.unwrap_or(from.num_replicas.max(1)),
        storage: to.storage.map_or(from.storage, streams::storage_type),
        max_age: to.max_age.map_or(from.max_age, |d| d.0),
        duplicate_window: to.duplicate_window.map_or(from.duplicate_window, |d| d.0),
        max_bytes: from.max_bytes,
        max_messages: from.max_messages,
        max_messages_per_subject: from.max_messages_per_subject,
        discard: from.discard,
        discard_new_per_subject: from.discard_new_per_subject,
        max_message_size: from.max_message_size,
        max_consumers: from.max_consumers,
        description: from.description.clone(),
        allow_rollup: from.allow_rollup,
        deny_delete: from.deny_delete,
        deny_purge: from.deny_purge,
        allow_direct: from.allow_direct,
        metadata: from.metadata.clone(),
        compression: from.compression.clone(),
        consumer_limits: from.consumer_limits.clone(),
        allow_message_ttl: from.allow_message_ttl,
        subject_delete_marker_ttl: from.subject_delete_marker_ttl,
        ..Default::default()
    }
}

async fn create_target(
    js: &jetstream::Context,
    config: &ReplicatorConfig,
    source: &SourceInfo,
) -> Result<jetstream::stream::Stream, StreamError> {
    let to = &config.to;
    let subjects = target_subjects(config, &source.subjects);
    let stream_config = target_config(config, source, subjects.clone());
    match streams::create(js, stream_config).await {
        Ok((stream, created)) => {
            if created {
                tracing::info!(replicator = %config.name, stream = %to.stream, "created target stream");
            }
            Ok(stream)
        }
        // Retrying cannot help: the target server needs another stream removed or this one
        // other subjects. Reported as a failure, not as an outage to wait out.
        Err(error) if answer::is_subject_overlap(&error) => Err(StreamError::refused(format!(
            "cannot create target stream {}: its subjects {} overlap another stream's on the target server; remove that stream, or give this one other subjects with to.subject_prefix",
            to.stream,
            subjects.join(", ")
        ))),
        Err(error) => Err(StreamError::unavailable_from(
            format!("cannot create target stream {}", to.stream),
            error,
        )),
    }
}

/// `writes: shared`: the source sequence of the last message this replicator copied to the
/// target, read from the provenance of the target's newest message on its subjects. Accepted only
/// when it names this source stream and replicator (and the message id this source's identity).
pub async fn last_copied(
    js: &jetstream::Context,
    config: &ReplicatorConfig,
    source: &SourceInfo,
) -> Result<Option<u64>, StreamError> {
    let stream = js.get_stream(&config.to.stream).await.map_err(|error| {
        StreamError::unavailable_from(format!("target stream {}", config.to.stream), error)
    })?;
    let mut best: Option<u64> = None;
    for subject in target_subjects(config, &source.subjects) {
        let Ok(message) = stream.get_last_raw_message_by_subject(&subject).await else {
            continue;
        };
        // A copied block the client could not parse is read raw (see wire_headers).
        let headers = Some(&message.headers);
        let Some(parsed) = provenance(headers) else {
            continue;
        };
        let same_identity = wire_headers::lookup(headers, "Nats-Msg-Id").is_some_and(|id| {
            id.starts_with(&format!(
                "{}:{}:",
                source.identity.stream, source.identity.created_ns
            ))
        });
        if parsed.stream == source.identity.stream
            && parsed.replicator == config.name
            && same_identity
        {
            best = Some(best.map_or(parsed.sequence, |b| b.max(parsed.sequence)));
        }
    }
    Ok(best)
}

/// The provenance of a copy: `Choria-SR-Source`, or `Ferry-Source` written by earlier releases.
fn provenance(headers: Option<&async_nats::HeaderMap>) -> Option<FerrySource<'_>> {
    ["Choria-SR-Source", "Ferry-Source"]
        .into_iter()
        .find_map(|name| wire_headers::lookup(headers, name))
        .and_then(parse_ferry_source)
}

/// What the newest message of the target says about where the copy got to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastMessage {
    /// The target holds no message.
    Empty,
    /// A copy of this source stream, of the given source sequence.
    CopyOf(u64),
    /// A message that is no copy of this source stream (another writer, or another source), at
    /// the given target sequence.
    Foreign(u64),
}

/// `writes: exclusive`: the provenance of the target's newest message, whoever wrote it (a copy by
/// Choria's stream replicator counts as a copy too: same header, same layout).
pub async fn last_message(
    js: &jetstream::Context,
    config: &ReplicatorConfig,
    source: &SourceInfo,
) -> Result<LastMessage, StreamError> {
    let name = &config.to.stream;
    let stream = js
        .get_stream(name)
        .await
        .map_err(|error| StreamError::unavailable_from(format!("target stream {name}"), error))?;
    let message = match stream.get_last_raw_message_by_subject(">").await {
        Ok(message) => message,
        Err(error) if answer::is_no_message(&error) => return Ok(LastMessage::Empty),
        Err(error) => {
            return Err(StreamError::unavailable_from(
                format!("cannot read the last message of target stream {name}"),
                error,
            ))
        }
    };
    Ok(match provenance(Some(&message.headers)) {
        Some(copy) if copy.stream == source.identity.stream => LastMessage::CopyOf(copy.sequence),
        _ => LastMessage::Foreign(message.sequence),
    })
}

/// The target's messages after the checkpoint's target sequence: which source sequences they are
/// copies of, and which are no copy of this source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AfterCheckpoint {
    /// Source sequence → the target sequence of its copy.
    pub copied: std::collections::BTreeMap<u64, u64>,
    /// Target sequences of messages that are no copy of this source.
    pub foreign: Vec<u64>,
}

/// Most target messages read after a checkpoint. A crash leaves what one checkpoint interval
/// copied (tens of thousands at full speed); far more means a busy shared target, where the
/// duplicate window has to do. Read with a headers-only consumer: about a second for 250,000 on
/// a 2-core machine over loopback (docs/replicators.md).
pub const MAX_READ_AFTER_CHECKPOINT: u64 = 250_000;

/// How long the scan waits for the next message before it gives up (the session is retried).
const SCAN_STALL: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads the target's messages `after + 1 ..= through` (those retention removed are passed over).
/// `None` when there are more than [`MAX_READ_AFTER_CHECKPOINT`].
pub async fn after_checkpoint(
    js: &jetstream::Context,
    config: &ReplicatorConfig,
    source: &SourceInfo,
    after: u64,
    through: u64,
) -> Result<Option<AfterCheckpoint>, StreamError> {
    use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
    use futures_util::StreamExt;

    if through <= after || through - after > MAX_READ_AFTER_CHECKPOINT {
        return Ok((through <= after).then(AfterCheckpoint::default));
    }
    let name = &config.to.stream;
    let unavailable = |what: &str, error: &dyn std::fmt::Display| {
        StreamError::unavailable(format!(
            "cannot read target stream {name} after sequence {after} ({what}): {error}"
        ))
    };
    let stream = js
        .get_stream(name)
        .await
        .map_err(|error| unavailable("stream", &error))?;
    // Only the headers are needed (the provenance); the server sends no payloads.
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            },
            headers_only: true,
            ..Default::default()
        })
        .await
        .map_err(|error| unavailable("consumer", &error))?;
    let mut found = AfterCheckpoint::default();
    if consumer.cached_info().num_pending == 0 {
        // Removed since (a purge, retention): nothing to wait for.
        return Ok(Some(found));
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|error| unavailable("consumer", &error))?;
    loop {
        let next = tokio::time::timeout(SCAN_STALL, messages.next())
            .await
            .map_err(|_| {
                unavailable(
                    "stalled",
                    &format!("no message for {}", format_duration(SCAN_STALL)),
                )
            })?;
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(error)) => return Err(unavailable("reading", &error)),
            None => return Err(unavailable("reading", &"the consumer ended")),
        };
        let (sequence, pending) = match message.info() {
            Ok(info) => (info.stream_sequence, info.pending),
            Err(error) => return Err(unavailable("message metadata", &error)),
        };
        if sequence > through {
            break;
        }
        match provenance(message.headers.as_ref()) {
            Some(copy) if copy.stream == source.identity.stream => {
                found.copied.insert(copy.sequence, sequence);
            }
            _ => found.foreign.push(sequence),
        }
        if sequence == through || pending == 0 {
            break;
        }
    }
    Ok(Some(found))
}
