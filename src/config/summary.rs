//! The one-line-per-pipeline summary `ferry check` prints, and its JSON form for `--json`.

use super::replicator::HeartbeatFormat;
use super::*;

/// The summary as `ferry check --json` gives it: the counts, and per pipeline in the order of
/// [`summary`] its kind, name, the main settings as fields, and its summary line as `text`.
/// Every string passes through `shown` (which hides credentials).
pub fn summary_json(config: &Config, shown: &dyn Fn(&str) -> String) -> serde_json::Value {
    use serde_json::json;
    let lines = summary(config);
    let adapters = config.adapters.iter().map(|adapter| {
        json!({
            "kind": "adapter",
            "name": shown(&adapter.name),
            "decoder": adapter.kind.to_string(),
            "connection": shown(&adapter.connection),
            "subjects": adapter.subjects.iter().map(|s| shown(s)).collect::<Vec<_>>(),
            "queue_group": adapter.queue_group.as_deref().map(shown),
            "output": {
                "connection": shown(adapter.output_connection()),
                "stream": shown(&adapter.output.stream),
                "subject": shown(&adapter.output.subject),
            },
        })
    });
    let replicators = config.replicators.iter().map(|replicator| {
        json!({
            "kind": "replicator",
            "name": shown(&replicator.name),
            "from": {
                "connection": shown(&replicator.from.connection),
                "stream": shown(&replicator.from.stream),
            },
            "to": {
                "connection": shown(&replicator.to.connection),
                "stream": shown(&replicator.to.stream),
            },
            "start": shown(&replicator.start.to_string()),
            "writes": match replicator.to.writes {
                replicator::Writes::Exclusive => "exclusive",
                replicator::Writes::Shared => "shared",
            },
        })
    });
    let pipelines: Vec<serde_json::Value> = adapters
        .chain(replicators)
        .zip(lines)
        .map(|(mut pipeline, line)| {
            pipeline["text"] = serde_json::Value::String(shown(&line));
            pipeline
        })
        .collect();
    json!({
        "adapters": config.adapters.len(),
        "replicators": config.replicators.len(),
        "pipelines": pipelines,
    })
}

/// One line per pipeline for `ferry check`, adapters first, e.g. `adapter lifecycle:
/// choria_lifecycle on east [choria.lifecycle.event.>] queue ferry -> stream FERRY_LIFECYCLE on
/// east as ferry.lifecycle.{type}.{component}` and `replicator registration-to-west:
/// east/CHORIA_REGISTRATION -> west/CHORIA_REGISTRATION start all, sampled by field sender every 1h`.
pub fn summary(config: &Config) -> Vec<String> {
    let adapters = config.adapters.iter().map(|adapter| {
        let queue = adapter
            .queue_group
            .as_deref()
            .map(|group| format!(" queue {group}"))
            .unwrap_or_default();
        format!(
            "adapter {}: {} on {} [{}]{queue} -> stream {} on {} as {}",
            adapter.name,
            adapter.kind,
            adapter.connection,
            adapter.subjects.join(", "),
            adapter.output.stream,
            adapter.output_connection(),
            adapter.output.subject
        )
    });
    adapters
        .chain(config.replicators.iter().map(replicator_summary))
        .collect()
}

/// `replicator NAME: FROM/STREAM [filter subjects] -> TO/STREAM [rewrite] start X, writes[, extras]`.
fn replicator_summary(replicator: &ReplicatorConfig) -> String {
    let filter = replicator
        .filter
        .as_ref()
        .filter(|filter| !filter.subjects.is_empty())
        .map(|filter| format!(" [{}]", filter.subjects.join(", ")))
        .unwrap_or_default();
    let to = &replicator.to;
    let mut rewrite = String::new();
    if let Some(strip) = &to.subject_strip_prefix {
        rewrite.push_str(&format!(" strip {strip}"));
    }
    if let Some(prefix) = &to.subject_prefix {
        rewrite.push_str(&format!(" prefix {prefix}"));
    }
    if let Some(infix) = &to.subject_remove {
        rewrite.push_str(&format!(" remove {infix:?}"));
    }
    let mut line = format!(
        "replicator {}: {}/{}{filter} -> {}/{}{rewrite} start {}",
        replicator.name,
        replicator.from.connection,
        replicator.from.stream,
        to.connection,
        to.stream,
        replicator.start
    );
    let mut extras = vec![match to.writes {
        replicator::Writes::Exclusive => {
            "exclusive writes (fenced by sequence: exact at any distance, the target's only writer)"
        }
        replicator::Writes::Shared => {
            "shared writes (Nats-Msg-Id: exact while a replay falls inside the target's duplicate window)"
        }
    }
    .to_string()];
    if replicator.ordering == replicator::Ordering::Subject {
        extras.push("ordered per subject".to_string());
    }
    if let Some(sample) = replicator.sample() {
        extras.push(format!(
            "sampled by {} every {}",
            sample.key,
            units::format_duration(sample.interval.0)
        ));
    }
    if let Some(limit) = &replicator.limit {
        if let Some(rate) = &limit.rate {
            extras.push(format!("rate {rate}"));
        }
        if let Some(bytes) = &limit.bytes {
            extras.push(format!("bytes {bytes}"));
        }
    }
    if let Some(advisories) = &replicator.advisories {
        extras.push(format!("advisories on {}", advisories.subject));
    }
    if let Some(heartbeat) = &replicator.heartbeat {
        let targets = heartbeat.targets();
        let format = match heartbeat.format {
            HeartbeatFormat::Ferry => "",
            HeartbeatFormat::Choria => " (choria format)",
        };
        match targets.as_slice() {
            [one] => extras.push(format!(
                "heartbeat every {}{format}",
                units::format_duration(one.interval)
            )),
            many => extras.push(format!("heartbeats on {} subjects{format}", many.len())),
        }
    }
    if let Some(election) = &replicator.leader_election {
        extras.push(format!("elected in {}", election.bucket));
    }
    if replicator.recopy_at_start {
        extras.push("copied again from the start at every start".to_string());
    }
    for extra in extras {
        line.push_str(", ");
        line.push_str(&extra);
    }
    line
}
