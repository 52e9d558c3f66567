//! Making sure the output stream exists (SPEC section 4): created with the configured settings
//! when missing (an existing stream is never changed), refused when its subjects would overlap
//! another stream or an existing one does not listen on them, and checked for the lifecycle
//! duplicate-window rule.

use std::time::Duration;

use async_nats::jetstream::stream::{Config as StreamConfig, RetentionPolicy};
use async_nats::jetstream::{self};
use futures_util::TryStreamExt;

use crate::config::schema::{AdapterConfig, AdapterKind};
use crate::config::units::format_duration;
use crate::jetstream::{answer, streams, StreamError};
use crate::subject;

/// Choria servers resend identical alive events every 30 minutes; a lifecycle stream that
/// remembers message ids that long would drop every one of them as a duplicate.
pub const LIFECYCLE_MAX_DUPLICATE_WINDOW: Duration = Duration::from_secs(30 * 60);

/// Checks the output stream, creating it when missing and allowed. A [`StreamError`] of kind
/// `Unavailable` is worth retrying (JetStream unreachable, the stream missing with `create:
/// false`); one of kind `Refused` needs the operator.
pub async fn ensure(
    js: &jetstream::Context,
    adapter: &AdapterConfig,
    stream_subjects: &[String],
) -> Result<(), StreamError> {
    let name = &adapter.output.stream;
    let found = streams::find(js, name).await.map_err(|error| {
        StreamError::unavailable_from(format!("cannot look up stream {name}"), error)
    })?;
    match found {
        Some(stream) => check_existing(js, adapter, stream_subjects, &stream).await,
        None if !adapter.output.create => Err(StreamError::unavailable(format!(
            "stream {name} does not exist and adapters[{}].output.create is false; create the stream or set create: true",
            adapter.name
        ))),
        None => create(js, adapter, stream_subjects).await,
    }
}

async fn check_existing(
    js: &jetstream::Context,
    adapter: &AdapterConfig,
    stream_subjects: &[String],
    stream: &jetstream::stream::Stream,
) -> Result<(), StreamError> {
    let config = &stream.cached_info().config;
    warn_on_long_duplicate_window(adapter, config.duplicate_window);
    verify_binding(
        js,
        &adapter.output.stream,
        stream_subjects,
        &config.subjects,
    )
    .await
}

async fn create(
    js: &jetstream::Context,
    adapter: &AdapterConfig,
    stream_subjects: &[String],
) -> Result<(), StreamError> {
    let name = &adapter.output.stream;
    refuse_overlap(js, name, stream_subjects).await?;
    let output = &adapter.output;
    let config = StreamConfig {
        name: name.clone(),
        subjects: stream_subjects.to_vec(),
        retention: RetentionPolicy::Limits,
        max_age: output.max_age.map(|d| d.0).unwrap_or_default(),
        num_replicas: output.replicas,
        storage: streams::storage_type(output.storage),
        duplicate_window: output.duplicate_window.map(|d| d.0).unwrap_or_default(),
        ..Default::default()
    };
    match streams::create(js, config).await {
        Ok((_, true)) => {
            tracing::info!(adapter = %adapter.name, stream = %name, subjects = ?stream_subjects, "created output stream");
            Ok(())
        }
        // Another instance created it in the meantime: fine.
        Ok((_, false)) => Ok(()),
        Err(error) if answer::is_subject_overlap(&error) => Err(StreamError::refused(format!(
            "cannot create stream {name}: its subjects {stream_subjects:?} overlap another stream's; change output.stream_subjects"
        ))),
        Err(error) => Err(StreamError::unavailable_from(
            format!("cannot create stream {name}"),
            error,
        )),
    }
}

/// SPEC section 4: at start ferry refuses stream subjects that overlap another stream, since the
/// server would either refuse the stream or, with mappings, store events twice.
async fn refuse_overlap(
    js: &jetstream::Context,
    name: &str,
    stream_subjects: &[String],
) -> Result<(), StreamError> {
    let mut streams = js.streams();
    loop {
        let info = match streams.try_next().await {
            Ok(Some(info)) => info,
            Ok(None) => return Ok(()),
            Err(error) => return Err(StreamError::unavailable_from("cannot list streams", error)),
        };
        if info.config.name == name {
            continue;
        }
        for theirs in &info.config.subjects {
            if let Some(ours) = stream_subjects
                .iter()
                .find(|ours| subject::overlaps(ours, theirs))
            {
                return Err(StreamError::refused(format!(
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
) -> Result<(), StreamError> {
    let listens = stream_subjects.iter().any(|ours| {
        theirs
            .iter()
            .any(|subject| subject::overlaps(subject, ours))
    });
    if !listens {
        return Err(StreamError::refused(format!(
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
