//! The two streams of a replicator: the source's identity and bounds, and the target, created
//! when missing (SPEC section 5) and asked for the last copy this replicator made.

use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::{Config as StreamConfig, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, ErrorCode};

use super::checkpoint::SourceIdentity;
use super::headers::parse_ferry_source;
use crate::config::replicator::ReplicatorConfig;
use crate::config::schema::StorageKind;
use crate::wire_headers;

/// Why a stream step failed: worth retrying, or not.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Refused(String),
}

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
    let mut stream = js
        .get_stream(name)
        .await
        .map_err(|error| StreamError::Unavailable(format!("source stream {name}: {error}")))?;
    let info = stream
        .info()
        .await
        .map_err(|error| StreamError::Unavailable(format!("source stream {name}: {error}")))?;
    if info.config.retention == RetentionPolicy::WorkQueue {
        return Err(StreamError::Refused(format!(
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

/// The subjects this replicator writes on the target: the source's (or the filter's), rewritten.
pub fn target_subjects(config: &ReplicatorConfig, source_subjects: &[String]) -> Vec<String> {
    let from_filter = config
        .filter
        .as_ref()
        .map(|filter| filter.subjects.clone())
        .filter(|subjects| !subjects.is_empty());
    from_filter
        .unwrap_or_else(|| source_subjects.to_vec())
        .iter()
        .map(|subject| config.to.rewrite_subject(subject).into_owned())
        .collect()
}

/// Makes sure the target exists (creating it when `to.create` is set) and returns its identity,
/// the `Ferry-Origin` value of messages that originated there.
pub async fn ensure_target(
    js: &jetstream::Context,
    config: &ReplicatorConfig,
    source: &SourceInfo,
) -> Result<String, StreamError> {
    let name = &config.to.stream;
    match js.get_stream(name).await {
        Ok(stream) => Ok(identity_of(name, stream.cached_info().created)),
        Err(error) => match error.kind() {
            GetStreamErrorKind::JetStream(api)
                if api.error_code() == ErrorCode::STREAM_NOT_FOUND =>
            {
                if !config.to.create {
                    return Err(StreamError::Unavailable(format!(
                        "target stream {name} does not exist and to.create is false; create it or set create: true"
                    )));
                }
                create_target(js, config, source).await
            }
            _ => Err(StreamError::Unavailable(format!(
                "target stream {name}: {error}"
            ))),
        },
    }
}

fn identity_of(name: &str, created: time::OffsetDateTime) -> String {
    SourceIdentity {
        stream: name.to_string(),
        created_ns: created.unix_timestamp_nanos(),
    }
    .to_string()
}

async fn create_target(
    js: &jetstream::Context,
    config: &ReplicatorConfig,
    source: &SourceInfo,
) -> Result<String, StreamError> {
    let to = &config.to;
    let stream_config = StreamConfig {
        name: to.stream.clone(),
        subjects: target_subjects(config, &source.subjects),
        retention: RetentionPolicy::Limits,
        // Unset overrides take the source's value: the copy behaves like the original.
        num_replicas: to.replicas.unwrap_or(source.config.num_replicas.max(1)),
        storage: match to.storage {
            Some(StorageKind::File) => StorageType::File,
            Some(StorageKind::Memory) => StorageType::Memory,
            None => source.config.storage,
        },
        max_age: to.max_age.map_or(source.config.max_age, |d| d.0),
        duplicate_window: to
            .duplicate_window
            .map_or(source.config.duplicate_window, |d| d.0),
        ..Default::default()
    };
    match js.create_stream(stream_config).await {
        Ok(stream) => {
            tracing::info!(replicator = %config.name, stream = %to.stream, "created target stream");
            Ok(identity_of(&to.stream, stream.cached_info().created))
        }
        Err(error) => {
            // Another instance may have created it meanwhile.
            match js.get_stream(&to.stream).await {
                Ok(stream) => Ok(identity_of(&to.stream, stream.cached_info().created)),
                Err(_) => Err(StreamError::Unavailable(format!(
                    "cannot create target stream {}: {error}",
                    to.stream
                ))),
            }
        }
    }
}

/// The source sequence of the last message this replicator copied to the target, read from the
/// `Ferry-Source` header of the target's newest message on its subjects. Accepted only when the
/// header names this source stream and replicator (and the message id this source's identity).
pub async fn last_copied(
    js: &jetstream::Context,
    config: &ReplicatorConfig,
    source: &SourceInfo,
) -> Result<Option<u64>, StreamError> {
    let stream = js.get_stream(&config.to.stream).await.map_err(|error| {
        StreamError::Unavailable(format!("target stream {}: {error}", config.to.stream))
    })?;
    let mut best: Option<u64> = None;
    for subject in target_subjects(config, &source.subjects) {
        let Ok(message) = stream.get_last_raw_message_by_subject(&subject).await else {
            continue;
        };
        // A copied block the client could not parse is read raw (see wire_headers).
        let headers = Some(&message.headers);
        let Some(value) = wire_headers::lookup(headers, "Ferry-Source") else {
            continue;
        };
        let Some(parsed) = parse_ferry_source(value) else {
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
