//! Choria stream replicator's configuration → ferry's: one replicator per `streams` entry, one
//! connection per distinct server set and login, and a note for every key that has no exact
//! equivalent, saying what ferry does instead. The notes are written into the output as
//! comments and returned, so the operator sees them where they apply and all together.

use std::collections::BTreeMap;
use std::time::Duration;

mod connections;
mod heartbeats;

use super::sr_config::{SrConfig, SrStream};
use super::yaml_out::{text_list, Item, MapBuilder, Node};
use crate::config::replicator::parse_start_time;
use crate::config::units::format_duration;
use connections::Connections;
use heartbeats::attach_heartbeats;

/// SR's leader election bucket; ferry uses a bucket of its own (its keys and values differ).
const ELECTION_BUCKET: &str = "FERRY_LEADER_ELECTION";
/// The election TTL ferry is given: SR's campaign interval is about 10 s.
const ELECTION_TTL: &str = "10s";

/// The translation: the ferry file's text and what the operator must know.
#[derive(Debug)]
pub struct Migration {
    pub yaml: String,
    pub notes: Vec<Note>,
    /// SR entry → ferry replicator, for importing the sampling state.
    pub replicators: Vec<Mapped>,
}

/// One key without an exact equivalent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Where in SR's file (`streams[0].target_initiated`).
    pub at: String,
    pub text: String,
}

/// How one `streams` entry was translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// The ferry replicator's name.
    pub name: String,
    /// SR's stream and entry name, which name its state file.
    pub stream: String,
    pub entry_name: String,
    /// Whether it samples (only then is there state to import).
    pub samples: bool,
}

/// Translates a loaded SR config. `source` names the file in the output's header.
pub fn translate(sr: &SrConfig, source: &str) -> Result<Migration, String> {
    let mut notes = Notes::default();
    let mut connections = Connections::default();
    let names = replicator_names(sr);
    let mut replicators = Vec::new();
    let mut mapped = Vec::new();
    for (index, stream) in sr.streams.iter().enumerate() {
        let at = format!("streams[{index}]");
        let (node, samples) =
            replicator(sr, stream, &names[index], &at, &mut connections, &mut notes)?;
        replicators.push(node);
        mapped.push(Mapped {
            name: names[index].clone(),
            stream: stream.stream.clone(),
            entry_name: sr.entry_name(stream).to_string(),
            samples,
        });
    }
    if let Some(heartbeats) = &sr.heartbeats {
        attach_heartbeats(sr, heartbeats, &mut replicators, &names, &mut notes)?;
    }
    top_level_notes(sr, &mut notes);

    let mut top = super::translation_head(
        &format!("ferry migrate stream-replicator {source}"),
        "docs/migrating-from-stream-replicator.md",
        &notes.list,
    );
    top.comment("SR's name: ferry's instance name, in the Choria-SR-Source header of every copy")
        .comment("and in heartbeats, as in SR.")
        .text("name", &sr.name);
    if sr.state_store.is_empty() {
        top.comment(
            "Checkpoints, sampling state and spools (SR kept no state: it had no state_store).",
        );
    } else {
        top.comment("Checkpoints, sampling state and spools. SR's state_store stays as it is:");
        top.comment(
            "`ferry migrate stream-replicator SR_FILE --import-state -c FILE` reads its files.",
        );
    }
    let state_dir = super::DEFAULT_STATE_DIR;
    top.text("state_dir", state_dir);
    if sr.monitor_port != 0 {
        let mut monitor = MapBuilder::new();
        monitor.text("listen", &format!("0.0.0.0:{}", sr.monitor_port));
        top.comment("SR's monitor_port: /metrics (ferry_* names; see the metric map in the docs),")
            .comment("/healthz, /readyz and /status.")
            .node("monitor", monitor.build());
    }
    top.node("connections", connections.build());
    top.node(
        "replicators",
        Node::List(
            replicators
                .into_iter()
                .map(|value| Item {
                    comments: Vec::new(),
                    value: value.build(),
                })
                .collect(),
        ),
    );
    Ok(Migration {
        yaml: super::yaml_out::render(&top.build()),
        notes: notes.list,
        replicators: mapped,
    })
}

/// Collects notes.
#[derive(Default)]
struct Notes {
    list: Vec<Note>,
}

impl Notes {
    fn add(&mut self, at: impl Into<String>, text: impl Into<String>) {
        self.list.push(Note {
            at: at.into(),
            text: text.into(),
        });
    }
}

/// ferry's replicator names: SR's entry name (unique per source stream in SR), made unique across
/// the file with the stream's name where two entries share one, and limited to the characters
/// ferry allows in names.
pub fn replicator_names(sr: &SrConfig) -> Vec<String> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for stream in &sr.streams {
        *count.entry(sr.entry_name(stream)).or_default() += 1;
    }
    let mut names: Vec<String> = sr
        .streams
        .iter()
        .map(|stream| {
            let name = sr.entry_name(stream);
            let raw = if count[name] > 1 {
                format!("{name}_{}", stream.stream)
            } else {
                name.to_string()
            };
            sanitize(&raw)
        })
        .collect();
    // Names that differ only in characters ferry replaces (`dc.1`, `dc_1`) must not meet: the
    // state import finds a stream's replicator by its name.
    let mut taken = std::collections::BTreeSet::new();
    for (index, name) in names.iter_mut().enumerate() {
        if !taken.insert(name.clone()) {
            let mut suffix = index + 1;
            while !taken.insert(format!("{name}_{suffix}")) {
                suffix += 1;
            }
            *name = format!("{name}_{suffix}");
        }
    }
    names
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn replicator(
    sr: &SrConfig,
    stream: &SrStream,
    name: &str,
    at: &str,
    connections: &mut Connections,
    notes: &mut Notes,
) -> Result<(MapBuilder, bool), String> {
    let tls_default = stream.tls.as_ref().or(sr.tls.as_ref());
    let choria_default = stream.choria.as_ref().or(sr.choria.as_ref());
    let source = connections.add(
        "source",
        &stream.source_url,
        stream.source_tls.as_ref().or(tls_default),
        stream.source_choria.as_ref().or(choria_default),
        &format!("{at}.source_url"),
        notes,
    );
    let target = connections.add(
        "target",
        &stream.target_url,
        stream.target_tls.as_ref().or(tls_default),
        stream.target_choria.as_ref().or(choria_default),
        &format!("{at}.target_url"),
        notes,
    );
    let mut out = MapBuilder::new();
    out.comment(format!(
        "{at}: stream {} (SR name {})",
        stream.stream,
        sr.entry_name(stream)
    ));
    out.text("name", name);
    let mut from = MapBuilder::new();
    from.text("connection", &source)
        .text("stream", &stream.stream);
    out.node("from", from.build());
    out.node("to", target_block(stream, &target, at, notes));

    if let Some(start) = start(stream, at, notes)? {
        out.comment("Where the first run starts; later runs resume from the checkpoint, and a")
            .comment("target SR wrote to is resumed from its newest Choria-SR-Source header.")
            .node("start", start);
    }
    if stream.ephemeral {
        out.comment("SR's ephemeral: the whole stream is copied again every time ferry starts.")
            .raw("recopy_at_start", true);
        if stream.start_at_end || !stream.start_delta.is_empty() || !stream.start_time.is_empty() {
            notes.add(
                format!("{at}.ephemeral"),
                "with a start other than the stream's beginning, each start copies from there again: messages stored while the replicator was down and before that start are never copied, in SR as in ferry",
            );
        }
    }
    if !stream.max_age.is_empty() {
        let max_age = sr_duration(&stream.max_age, &format!("{at}.max_age"))?;
        out.text("max_age", &format_duration(max_age));
    }
    if !stream.filter_subject.is_empty() {
        let mut filter = MapBuilder::new();
        filter.node("subjects", text_list(&[stream.filter_subject.as_str()]));
        out.node("filter", filter.build());
    }
    let samples = sampling(stream, at, &mut out, notes)?;
    if !stream.leader_election_name.is_empty() {
        let mut election = MapBuilder::new();
        election
            .text("bucket", ELECTION_BUCKET)
            .text("ttl", ELECTION_TTL);
        out.comment(format!(
            "SR's leader_election_name {:?}: instances running this replicator campaign in a bucket",
            stream.leader_election_name
        ))
        .comment("on the target; ferry does not share SR's CHORIA_LEADER_ELECTION keys, so stop")
        .comment("every SR instance of this stream before starting ferry.")
        .node("leader_election", election.build());
    }
    if stream.target_initiated {
        notes.add(
            format!("{at}.target_initiated"),
            "ferry's copier pipelines its publishes wherever it runs, so there is no separate mode: run ferry near the target and keep this replicator as it is",
        );
    }
    for key in stream.unknown.keys() {
        notes.add(
            format!("{at}.{key}"),
            "not a stream-replicator key (SR ignores it); left out",
        );
    }
    Ok((out, samples))
}

/// `to`: the target stream, its creation, and the subject rewrite.
fn target_block(stream: &SrStream, connection: &str, at: &str, notes: &mut Notes) -> Node {
    let mut to = MapBuilder::new();
    let target_stream = if stream.target_stream.is_empty() {
        &stream.stream
    } else {
        &stream.target_stream
    };
    to.text("connection", connection)
        .text("stream", target_stream);
    if stream.no_target_create {
        to.comment("SR's no_target_create: true is ferry's create: false (ferry's default).")
            .raw("create", false);
    } else {
        to.comment("SR creates a missing target unless no_target_create is set; ferry only when")
            .comment("asked, from the source's configuration as SR does.")
            .raw("create", true);
    }
    if !stream.target_subject_prefix.is_empty() {
        // SR joins with a dot and closes up a doubled one, so a trailing dot changes nothing.
        let prefix = stream.target_subject_prefix.trim_end_matches('.');
        to.text("subject_prefix", prefix);
    }
    if !stream.target_subject_remove.is_empty() {
        to.comment("SR's target_subject_remove: cut out wherever it occurs, after the prefix.")
            .text("subject_remove", &stream.target_subject_remove);
        if stream.target_subject_remove.contains(['*', '>']) {
            notes.add(
                format!("{at}.target_subject_remove"),
                "holds a wildcard character, which ferry refuses in subject_remove; remove it from the value",
            );
        }
    }
    to.build()
}

/// `start`: SR's precedence is start_at_end, start_sequence, start_delta, start_time.
fn start(stream: &SrStream, at: &str, notes: &mut Notes) -> Result<Option<Node>, String> {
    let set: Vec<&str> = [
        ("start_at_end", stream.start_at_end),
        ("start_sequence", stream.start_sequence > 0),
        ("start_delta", !stream.start_delta.is_empty()),
        ("start_time", !stream.start_time.is_empty()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(key, _)| *key)
    .collect();
    if set.len() > 1 {
        notes.add(
            format!("{at}.{}", set[0]),
            format!(
                "{} are all set; SR uses {} (first of start_at_end, start_sequence, start_delta, start_time) and so does this file",
                set.join(", "),
                set[0]
            ),
        );
    }
    let node = if stream.start_at_end {
        Node::Scalar("new".into())
    } else if stream.start_sequence > 0 {
        let mut map = MapBuilder::new();
        map.raw("sequence", stream.start_sequence);
        map.build()
    } else if !stream.start_delta.is_empty() {
        let since = sr_duration(&stream.start_delta, &format!("{at}.start_delta"))?;
        let mut map = MapBuilder::new();
        map.text("since", &format_duration(since));
        map.build()
    } else if !stream.start_time.is_empty() {
        parse_start_time(&stream.start_time).map_err(|e| format!("{at}.start_time: {e}"))?;
        let mut map = MapBuilder::new();
        map.text("time", &stream.start_time);
        map.build()
    } else {
        return Ok(None);
    };
    Ok(Some(node))
}

/// `limit.sample` and `advisories` from SR's inspect_* keys. Returns whether it samples.
fn sampling(
    stream: &SrStream,
    at: &str,
    out: &mut MapBuilder,
    notes: &mut Notes,
) -> Result<bool, String> {
    let interval = if stream.inspect_duration.is_empty() {
        None
    } else {
        Some(sr_duration(
            &stream.inspect_duration,
            &format!("{at}.inspect_duration"),
        )?)
    }
    .filter(|interval| !interval.is_zero());
    // SR starts its limiter only with inspect_field and inspect_duration; without them it copies
    // every message, whatever else is set.
    let Some(interval) = interval.filter(|_| !stream.inspect_field.is_empty()) else {
        for (key, set) in [
            ("inspect_header", !stream.inspect_header.is_empty()),
            ("inspect_subject_token", stream.inspect_subject_token != 0),
            ("inspect_field", !stream.inspect_field.is_empty()),
            (
                "inspect_force_field",
                !stream.inspect_force_field.is_empty(),
            ),
            ("warn_duration", !stream.warn_duration.is_empty()),
            ("size_trigger", stream.size_trigger > 0.0),
            ("advisory", stream.advisory.is_some()),
        ] {
            if set {
                notes.add(
                    format!("{at}.{key}"),
                    "SR samples only with both inspect_field and inspect_duration set, so it copies every message of this stream and this file does too; to sample in ferry, add limit.sample (e.g. key: { header: NAME }, interval: 1h)",
                );
            }
        }
        return Ok(false);
    };
    let mut key = MapBuilder::new();
    key.text("field", &stream.inspect_field);
    let mut sample = MapBuilder::new();
    sample.node("key", key.build());
    sample.text("interval", &format_duration(interval));
    if stream.size_trigger > 0.0 {
        let bytes = stream.size_trigger.ceil() as u64;
        sample
            .comment("Bytes; SR compares with the size last seen, ferry with the size last copied.")
            .raw("size_trigger", bytes);
    }
    if !stream.inspect_force_field.is_empty() {
        sample.text("force_field", &stream.inspect_force_field);
        notes.add(
            format!("{at}.inspect_force_field"),
            "SR forces a copy when the field exists with any value; ferry when it is true: make the producers set it to true",
        );
    }
    let mut limit = MapBuilder::new();
    limit.node("sample", sample.build());
    out.comment("SR's inspect_field and inspect_duration: each sender at most once per interval.")
        .node("limit", limit.build());

    if let Some(advisory) = &stream.advisory {
        let warn = if stream.warn_duration.is_empty() {
            interval / 2
        } else {
            sr_duration(&stream.warn_duration, &format!("{at}.warn_duration"))?
        };
        let subject = advisory
            .subject
            .replace("%s", "{event}")
            .replace("%v", "{value}");
        let mut advisories = MapBuilder::new();
        advisories
            .comment("SR's %s and %v placeholders are ferry's {event} and {value}.")
            .text("subject", &subject);
        if stream.warn_duration.is_empty() {
            advisories.comment(format!(
                "SR's warn_duration defaults to half of inspect_duration: {}.",
                format_duration(warn)
            ));
        } else {
            advisories.comment("SR's warn_duration.");
        }
        advisories.text("timeout_after", &format_duration(warn));
        advisories
            .comment(
                "A sender unheard for inspect_duration is forgotten (expire), as in SR: ferry's",
            )
            .comment("expire_after defaults to limit.sample.interval.");
        if advisory.reliable {
            advisories.raw("reliable", true);
        }
        out.node("advisories", advisories.build());
        if advisory.subject.is_empty() {
            notes.add(
                format!("{at}.advisory.subject"),
                "is empty; ferry needs a subject for advisories: set one (e.g. choria.advisories.{event}.{value})",
            );
        }
    } else if !stream.warn_duration.is_empty() {
        notes.add(
            format!("{at}.warn_duration"),
            "only matters for advisories, and this stream has none; left out",
        );
    }
    Ok(true)
}

fn top_level_notes(sr: &SrConfig, notes: &mut Notes) {
    if !sr.loglevel.is_empty() {
        notes.add(
            "loglevel",
            format!(
                "ferry takes the level on its command line: `ferry --log-level {} run -c FILE` (or RUST_LOG)",
                sr.loglevel
            ),
        );
    }
    if !sr.logfile.is_empty() {
        notes.add(
            "logfile",
            format!(
                "ferry logs to stderr (journald under systemd); to keep a file, redirect: `ferry run -c FILE 2>>{}`",
                sr.logfile
            ),
        );
    }
    if sr.profiling.is_some() {
        notes.add(
            "profiling",
            "ferry serves no profiler; `ferry bench` and perf measure it",
        );
    }
    for key in sr.unknown.keys() {
        notes.add(
            key.clone(),
            "not a stream-replicator key (SR ignores it); left out",
        );
    }
}

/// A duration as SR reads it: Go's (`90s`, `1h30m`) or one number with `d`, `w`, `M` (30 days)
/// or `Y` (365 days).
pub fn sr_duration(text: &str, at: &str) -> Result<Duration, String> {
    let text = text.trim();
    let invalid = || {
        format!("{at}: {text:?} is not a duration stream-replicator reads (e.g. 90s, 1h, 1d, 1w, 1M, 1Y)")
    };
    let Some(unit) = text.chars().last() else {
        return Err(invalid());
    };
    let days = match unit {
        'w' | 'W' => Some(7.0),
        'd' | 'D' => Some(1.0),
        'M' => Some(30.0),
        'Y' | 'y' => Some(365.0),
        _ => None,
    };
    if let Some(days) = days {
        let number: f64 = text[..text.len() - 1].parse().map_err(|_| invalid())?;
        // As SR: the number times 24·days is truncated to whole hours.
        let hours = (number * 24.0 * days).trunc();
        if !hours.is_finite() || hours < 0.0 {
            return Err(invalid());
        }
        return Ok(Duration::from_secs((hours as u64).saturating_mul(3600)));
    }
    // Go's time.ParseDuration, which knows no days or weeks (SR sends `1d12h` there and fails).
    if text.starts_with('-') {
        return Err(format!(
            "{at}: {text:?} is negative, which SR treats as not set; remove the key"
        ));
    }
    if !matches!(unit, 's' | 'm' | 'h') || text.contains(['d', 'w']) {
        return Err(invalid());
    }
    crate::config::units::parse_duration(text).map_err(|_| invalid())
}
