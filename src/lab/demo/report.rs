//! What the demo shows at the end: the streams' contents, example messages and the summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::anyhow;
use futures_util::StreamExt as _;

use super::*;
use crate::status::thousands as group;

/// The info of `stream` (an error while nobody has created it yet).
pub(super) async fn stream_info(
    jetstream: &async_nats::jetstream::Context,
    stream: &str,
) -> anyhow::Result<async_nats::jetstream::stream::Info> {
    let mut handle = jetstream
        .get_stream(stream)
        .await
        .map_err(|error| anyhow!("stream {stream}: {error}"))?;
    let info = handle
        .info()
        .await
        .map_err(|error| anyhow!("stream {stream} info: {error}"))?;
    Ok(info.clone())
}

/// The number of messages in `stream`.
pub(super) async fn stream_messages(
    jetstream: &async_nats::jetstream::Context,
    stream: &str,
) -> anyhow::Result<u64> {
    Ok(stream_info(jetstream, stream).await?.state.messages)
}

/// The last sequence of `stream`.
pub(super) async fn last_sequence(
    jetstream: &async_nats::jetstream::Context,
    stream: &str,
) -> anyhow::Result<u64> {
    Ok(stream_info(jetstream, stream).await?.state.last_sequence)
}

/// What landed, as lines for people: the lifecycle stream's subjects with their message counts in
/// east and west, and a few of the registration stream's per-node subjects.
pub(super) async fn examples(
    east: &async_nats::jetstream::Context,
    west: &async_nats::jetstream::Context,
) -> Vec<String> {
    let mut lines = Vec::new();
    let west_lifecycle = subject_counts(west, LIFECYCLE_STREAM).await;
    for (subject, count) in subject_counts(east, LIFECYCLE_STREAM).await {
        let copied = west_lifecycle.get(&subject).copied().unwrap_or(0);
        lines.push(format!(
            "{subject}: {} (west {})",
            group(count),
            group(copied)
        ));
    }
    let registration = subject_counts(east, REGISTRATION_STREAM).await;
    let west_registration = subject_counts(west, REGISTRATION_STREAM).await;
    for (subject, count) in registration.iter().take(3) {
        let copied = west_registration.get(subject).copied().unwrap_or(0);
        lines.push(format!(
            "{subject}: {} (west {})",
            group(*count),
            group(copied)
        ));
    }
    if registration.len() > 3 {
        lines.push(format!(
            "... one subject per node: {} registration subjects in east, {} in west",
            group(registration.len() as u64),
            group(west_registration.len() as u64)
        ));
    }
    lines
}

/// Messages per subject in `stream` (empty when the stream cannot be read).
pub(super) async fn subject_counts(
    jetstream: &async_nats::jetstream::Context,
    stream: &str,
) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    if let Ok(stream) = jetstream.get_stream(stream).await {
        if let Ok(mut subjects) = stream.info_with_subjects(">").await {
            while let Some(Ok((subject, count))) = subjects.next().await {
                counts.insert(subject, count as u64);
            }
        }
    }
    counts
}

pub(super) fn print_summary(opts: &DemoOptions, summary: &DemoSummary) {
    if opts.json {
        match serde_json::to_string(summary) {
            Ok(json) => println!("{json}"),
            Err(error) => eprintln!("encoding the summary: {error}"),
        }
        return;
    }
    let advisories = if summary.advisories.is_empty() {
        "none".to_string()
    } else {
        summary
            .advisories
            .iter()
            .map(|(event, count)| format!("{event} {}", group(*count)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let west: u64 = summary.west.values().sum();
    let rows = [
        (
            "published",
            summary.published,
            "events sent by the simulated fleet on core NATS in east".to_string(),
        ),
        (
            "received",
            summary.received,
            "taken in by ferry's adapters".to_string(),
        ),
        (
            "stored",
            summary.stored,
            format!("messages in east's {LIFECYCLE_STREAM} + {REGISTRATION_STREAM}"),
        ),
        (
            "duplicates",
            summary.duplicates,
            "identical alive events re-sent within the duplicate window: stored once".to_string(),
        ),
        (
            "invalid",
            summary.invalid,
            "refused by a decoder (counted, never stored)".to_string(),
        ),
        (
            "dropped",
            summary.dropped,
            "dropped and counted (spool full, oversize, rejected)".to_string(),
        ),
        (
            "filtered",
            summary.filtered,
            "removed by a filter".to_string(),
        ),
        (
            "copied",
            summary.copied,
            format!("replicated to west (west now holds {})", group(west)),
        ),
        (
            "sampled_out",
            summary.sampled_out,
            "registrations skipped by per-sender sampling".to_string(),
        ),
        (
            "lag",
            summary.lag,
            "source messages not yet copied at the end".to_string(),
        ),
        (
            "lost",
            summary.lost,
            "published but neither stored nor counted, or missing in west: must be 0".to_string(),
        ),
    ];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nferry demo: {} simulated Choria nodes for {}, east → west\n",
        group(summary.nodes as u64),
        format_duration(opts.duration)
    );
    for (name, value, meaning) in rows {
        let _ = writeln!(out, "  {name:<12} {:>12}   {meaning}", group(value));
    }
    let _ = writeln!(out, "  {:<12} {:>12}   {advisories}", "advisories", "");

    let _ = writeln!(out, "\nReplicators (source in east → target in west):");
    for (name, books) in &summary.replicators {
        let how = if books.sampled {
            format!(
                "copied {}, sampled out {}",
                group(books.copied),
                group(books.sampled_out)
            )
        } else {
            format!("copied {}", group(books.copied))
        };
        let mut line = format!(
            "  {name:<22} {}: {} → {}   {how}",
            books.stream,
            group(books.source),
            group(books.target)
        );
        if books.duplicates > 0 {
            let _ = write!(line, ", duplicates {}", group(books.duplicates));
        }
        if books.skipped_other > 0 {
            let _ = write!(line, ", skipped otherwise {}", group(books.skipped_other));
        }
        if books.lost > 0 {
            let _ = write!(line, ", LOST {}", group(books.lost));
        }
        let _ = writeln!(out, "{line}");
    }
    if !summary.examples.is_empty() {
        let _ = writeln!(
            out,
            "\nWhat landed (subject: messages in east, and in west):"
        );
        for line in &summary.examples {
            let _ = writeln!(out, "  {line}");
        }
    }
    print!("{out}");
}
