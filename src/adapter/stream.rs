//! Making sure the output stream exists (SPEC section 4): created with the configured settings
//! when missing (an existing stream is never changed), refused when its subjects would overlap
//! another stream or an existing one does not listen on them, and checked for the lifecycle
//! duplicate-window rule.

use std::time::Duration;

use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
use async_nats::jetstream::stream::{Config as StreamConfig, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, ErrorCode};
use futures_util::TryStreamExt;

use crate::config::schema::{AdapterConfig, AdapterKind, StorageKind};
use crate::config::units::format_duration;
use crate::subject;

/// Choria servers resend identical alive events every 30 minutes; a lifecycle stream that
/// remembers message ids that long would drop every one of them as a duplicate.
pub const LIFECYCLE_MAX_DUPLICATE_WINDOW: Duration = Duration::from_secs(30 * 60);

/// Why the stream is not usable yet.
#[derive(Debug, thiserror::Error)]
pub enum StreamProblem {
    /// Retry later: JetStream unreachable, or the stream missing with `create: false`.
    #[error("{0}")]
    Unavailable(String),
    /// Needs the operator: retrying will not help.
    #[error("{0}")]
    Refused(String),
}

/// Checks the output stream, creating it when missing and allowed.
pub async fn ensure(
    js: &jetstream::Context,
    adapter: &AdapterConfig,
    stream_subjects: &[String],
) -> Result<(), StreamProblem> {
    let name = &adapter.output.stream;
    match js.get_stream(name).await {
        Ok(stream) => {
            let config = &stream.cached_info().config;
            warn_on_long_duplicate_window(adapter, config.duplicate_window);
            verify_binding(js, name, stream_subjects, &config.subjects).await
        }
        Err(error) => match error.kind() {
            GetStreamErrorKind::JetStream(api)
                if api.error_code() == ErrorCode::STREAM_NOT_FOUND =>
            {
                if !adapter.output.create {
                    return Err(StreamProblem::Unavailable(format!(
                        "stream {name} does not exist and adapters[{}].output.create is false; create the stream or set create: true",
                        adapter.name
                    )));
                }
                create(js, adapter, stream_subjects).await
            }
            _ => Err(StreamProblem::Unavailable(format!(
                "cannot look up stream {name}: {error}"
            ))),
        },
    }
}

async fn create(
    js: &jetstream::Context,
    adapter: &AdapterConfig,
    stream_subjects: &[String],
) -> Result<(), StreamProblem> {
    let name = &adapter.output.stream;
    refuse_overlap(js, name, stream_subjects).await?;
    let output = &adapter.output;
    let config = StreamConfig {
        name: name.clone(),
        subjects: stream_subjects.to_vec(),
        retention: RetentionPolicy::Limits,
        max_age: output.max_age.map(|d| d.0).unwrap_or_default(),
        num_replicas: output.replicas,
        storage: match output.storage {
            StorageKind::File => StorageType::File,
            StorageKind::Memory => StorageType::Memory,
        },
        duplicate_window: output.duplicate_window.map(|d| d.0).unwrap_or_default(),
        ..Default::default()
    };
    match js.create_stream(config).await {
        Ok(_) => {
            tracing::info!(adapter = %adapter.name, stream = %name, subjects = ?stream_subjects, "created output stream");
            Ok(())
        }
        Err(error) => match error.kind() {
            CreateStreamErrorKind::JetStream(api)
                if api.error_code() == ErrorCode::STREAM_SUBJECT_OVERLAP =>
            {
                Err(StreamProblem::Refused(format!(
                    "cannot create stream {name}: its subjects {stream_subjects:?} overlap another stream's; change output.stream_subjects"
                )))
            }
            // Another instance created it in the meantime: fine.
            CreateStreamErrorKind::JetStream(api)
                if api.error_code() == ErrorCode::STREAM_NAME_EXIST =>
            {
                Ok(())
            }
            _ => Err(StreamProblem::Unavailable(format!(
                "cannot create stream {name}: {error}"
            ))),
        },
    }
}

/// SPEC section 4: at start ferry refuses stream subjects that overlap another stream, since the
/// server would either refuse the stream or, with mappings, store events twice.
async fn refuse_overlap(
    js: &jetstream::Context,
    name: &str,
    stream_subjects: &[String],
) -> Result<(), StreamProblem> {
    let mut streams = js.streams();
    loop {
        let info = match streams.try_next().await {
            Ok(Some(info)) => info,
            Ok(None) => return Ok(()),
            Err(error) => {
                return Err(StreamProblem::Unavailable(format!(
                    "cannot list streams: {error}"
                )))
            }
        };
        if info.config.name == name {
            continue;
        }
        for theirs in &info.config.subjects {
            if let Some(ours) = stream_subjects
                .iter()
                .find(|ours| subject::overlaps(ours, theirs))
            {
                return Err(StreamProblem::Refused(format!(
                    "output stream subjects {ours:?} overlap {theirs:?} of existing stream {}; change output.stream_subjects or output.subject",
                    info.config.name
                )));
            }
        }
    }
}

/// SPEC section 4: no `Nats-Expected-Stream` is stored with events, so the binding of the output
/// subjects to the output stream is checked here instead (at start and after every reconnect): the
/// stream listens on the output subjects, and no other stream does. A stream that listens on part
/// of them is accepted: an event rendered outside it is a counted reject ("no responders").
async fn verify_binding(
    js: &jetstream::Context,
    name: &str,
    stream_subjects: &[String],
    theirs: &[String],
) -> Result<(), StreamProblem> {
    let listens = stream_subjects.iter().any(|ours| {
        theirs
            .iter()
            .any(|subject| subject::overlaps(subject, ours))
    });
    if !listens {
        return Err(StreamProblem::Refused(format!(
            "stream {name} does not listen on {} (its subjects: {theirs:?}): events would not be stored there; add the subject to the stream or change output.subject",
            stream_subjects.join(", ")
        )));
    }
    refuse_overlap(js, name, stream_subjects).await
}

fn warn_on_long_duplicate_window(adapter: &AdapterConfig, window: Duration) {
    // A window of 0 means the server default of 2 minutes.
    if adapter.kind == AdapterKind::ChoriaLifecycle && window >= LIFECYCLE_MAX_DUPLICATE_WINDOW {
        tracing::warn!(
            adapter = %adapter.name,
            stream = %adapter.output.stream,
            duplicate_window = %format_duration(window),
            "the lifecycle stream's duplicate window is 30 minutes or longer: Choria resends identical alive events every 30 minutes, so they will be dropped as duplicates; shorten the stream's duplicate_window"
        );
    }
}
