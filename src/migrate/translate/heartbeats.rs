//! SR's `heartbeats` → a `heartbeat` on the replicators whose source streams can take them.

use std::collections::BTreeMap;

use super::connections::{server_address, split_servers};
use super::{format_duration, sr_duration, Notes};
use crate::migrate::sr_config::{SrConfig, SrHeartbeats};
use crate::migrate::yaml_out::{Entry, Item, MapBuilder, Node};

/// SR's `heartbeats`: ferry publishes heartbeats per replicator, into its source stream, on the
/// replicator's source connection. Each SR heartbeat subject goes to the replicators reading
/// from the same servers that select it.
pub(super) fn attach_heartbeats(
    sr: &SrConfig,
    heartbeats: &SrHeartbeats,
    replicators: &mut [MapBuilder],
    names: &[String],
    notes: &mut Notes,
) -> Result<(), String> {
    let at = "heartbeats";
    let interval = if heartbeats.interval.is_empty() {
        None
    } else {
        Some(sr_duration(&heartbeats.interval, "heartbeats.interval")?)
    };
    let servers: Vec<String> = split_servers(&heartbeats.url)
        .iter()
        .map(|server| server_address(server))
        .collect();
    for (index, subject) in heartbeats.subjects.iter().enumerate() {
        // Replicators reading from the heartbeat's servers whose filter selects the subject;
        // one whose filter names it beats one that reads everything.
        let mut candidates: Vec<(bool, usize)> = sr
            .streams
            .iter()
            .enumerate()
            .filter(|(_, stream)| {
                split_servers(&stream.source_url)
                    .iter()
                    .any(|server| servers.contains(&server_address(server)))
            })
            .filter(|(_, stream)| {
                stream.filter_subject.is_empty()
                    || crate::subject::matches(&stream.filter_subject, &subject.subject)
            })
            .map(|(index, stream)| (stream.filter_subject.is_empty(), index))
            .collect();
        candidates.sort();
        let candidates: Vec<usize> = candidates.into_iter().map(|(_, index)| index).collect();
        let Some(&chosen) = candidates.first() else {
            notes.add(
                format!("{at}.subjects[{index}]"),
                format!(
                    "no replicator reads from {} with a filter selecting {:?}; ferry publishes heartbeats into a replicator's source stream: add a heartbeat to the replicator whose source stream listens on it",
                    heartbeats.url, subject.subject
                ),
            );
            continue;
        };
        if candidates.len() > 1 {
            notes.add(
                format!("{at}.subjects[{index}]"),
                format!(
                    "several replicators read from {}; the heartbeat on {:?} went to {}: move it if that replicator's source stream does not listen on it",
                    heartbeats.url, subject.subject, names[chosen]
                ),
            );
        }
        let mut entry = MapBuilder::new();
        entry.text("subject", &subject.subject);
        if !subject.interval.is_empty() {
            let own = sr_duration(
                &subject.interval,
                &format!("{at}.subjects[{index}].interval"),
            )?;
            entry.text("interval", &format_duration(own));
        }
        if !subject.headers.is_empty() {
            entry.node("headers", headers(&subject.headers));
        }
        let mut heartbeat = MapBuilder::new();
        heartbeat
            .comment("SR's heartbeats: same body (Unix seconds) and headers, so `nats server check")
            .comment("message --body-timestamp` keeps working; published into the source stream.")
            .text("format", "choria");
        if let Some(interval) = interval {
            heartbeat.text("interval", &format_duration(interval));
        }
        if !heartbeats.headers.is_empty() {
            heartbeat.node("headers", headers(&heartbeats.headers));
        }
        heartbeat.node(
            "subjects",
            Node::List(vec![Item {
                comments: Vec::new(),
                value: entry.build(),
            }]),
        );
        // A replicator with several heartbeat subjects gets them merged below.
        merge_heartbeat(&mut replicators[chosen], heartbeat.build());
    }
    if heartbeats.leader_election {
        notes.add(
            format!("{at}.leader_election"),
            "ferry's heartbeats follow their replicator's leader_election: only the leader publishes",
        );
    }
    if heartbeats.tls.as_ref().is_some_and(|tls| !tls.is_empty())
        || heartbeats.choria.as_ref().is_some_and(|c| !c.is_empty())
    {
        notes.add(
            format!("{at}.tls/choria"),
            "ferry publishes heartbeats on the replicator's source connection, with its TLS and login",
        );
    }
    Ok(())
}

/// Adds a `heartbeat` to a replicator, or its subjects to the one it has.
fn merge_heartbeat(replicator: &mut MapBuilder, heartbeat: Node) {
    let built = std::mem::take(replicator).build();
    let Node::Map(mut entries) = built else {
        return;
    };
    let Node::Map(new_entries) = heartbeat else {
        return;
    };
    if let Some(existing) = entries.iter_mut().find(|e| e.key == "heartbeat") {
        if let Node::Map(fields) = &mut existing.value {
            let new_subjects = new_entries
                .into_iter()
                .find(|e| e.key == "subjects")
                .map(|e| e.value);
            if let (Some(subjects), Some(Node::List(more))) = (
                fields.iter_mut().find(|e| e.key == "subjects"),
                new_subjects,
            ) {
                if let Node::List(items) = &mut subjects.value {
                    items.extend(more);
                }
            }
        }
    } else {
        entries.push(Entry {
            comments: Vec::new(),
            key: "heartbeat".into(),
            value: Node::Map(new_entries),
        });
    }
    let mut rebuilt = MapBuilder::new();
    for entry in entries {
        for comment in entry.comments {
            rebuilt.comment(comment);
        }
        rebuilt.node(&entry.key, entry.value);
    }
    *replicator = rebuilt;
}

fn headers(headers: &BTreeMap<String, String>) -> Node {
    let mut map = MapBuilder::new();
    for (name, value) in headers {
        map.text(name, value);
    }
    map.build()
}
