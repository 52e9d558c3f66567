//! Choria broker adapters (`plugin.choria.adapter.<name>.*` in `broker.conf`) → ferry adapters.
//!
//! A broker adapter subscribes to `ingest.topic` in the queue group `nats_ingest_<name>`,
//! unwraps Choria requests or replies (`ingest.protocol`, default `reply`) and publishes the
//! `choria:adapters:choria_streams:output:1` document to `stream.topic` (`%s` = the sender) with
//! core NATS, where a stream captures it. ferry's `choria_registration` (requests) and
//! `choria_reply` adapters store the same document, through JetStream with acks and a spool.
//!
//! The ferry adapter joins the same queue group, so during the switch the broker's adapter and
//! ferry share the messages (each goes to one of them) and nothing is lost or stored twice;
//! stopping the broker's adapter then hands ferry everything.

use std::collections::BTreeMap;
use std::path::Path;

use super::translate::Note;
use super::yaml_out::{text_list, Item, MapBuilder, Node};

/// The translation of the adapters in one broker config.
#[derive(Debug)]
pub struct AdaptersMigration {
    pub yaml: String,
    pub notes: Vec<Note>,
    pub adapters: usize,
}

/// Choria's config file: `key = value` lines; `#` starts a comment line (go-choria's
/// `parseConfigContents`). A later line wins.
pub fn parse_choria_config(text: &str) -> BTreeMap<String, String> {
    let mut keys = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let (key, value) = (key.trim(), value.trim());
            if !key.is_empty() && !value.is_empty() {
                keys.insert(key.to_string(), value.to_string());
            }
        }
    }
    keys
}

/// The keys of `plugin.d/<name>.cfg` beside the broker config, as `plugin.<name>.<key>`, which
/// go-choria reads after the file itself (so they win); a `.conf` file there makes it read the
/// `.cfg` of the same name.
fn plugin_d(config: &Path) -> Result<BTreeMap<String, String>, String> {
    let dir = config
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("plugin.d");
    let mut keys = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(keys);
    };
    let mut plugins: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("cfg" | "conf")
            )
        })
        .filter_map(|path| {
            path.file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_string)
        })
        .collect();
    plugins.sort();
    plugins.dedup();
    for plugin in plugins {
        let file = dir.join(format!("{plugin}.cfg"));
        if !file.is_file() {
            continue;
        }
        let text = super::read_config_file(&file, "Choria plugin config")
            .map_err(|message| format!("{}: {message}", file.display()))?;
        for (key, value) in parse_choria_config(&text) {
            keys.insert(format!("plugin.{plugin}.{key}"), value);
        }
    }
    Ok(keys)
}

/// Reads `path` and translates its adapters. `streams` names the JetStream stream that
/// captures each adapter's output (`--stream NAME=STREAM`); the broker config does not say.
pub fn translate_file(
    path: &Path,
    streams: &BTreeMap<String, String>,
) -> Result<AdaptersMigration, String> {
    let text = super::read_config_file(path, "Choria broker config")
        .map_err(|message| format!("{}: {message}", path.display()))?;
    let mut keys = parse_choria_config(&text);
    keys.extend(plugin_d(path)?);
    translate(&keys, streams, &path.display().to_string())
        .map_err(|message| format!("{}: {message}", path.display()))
}

/// Translates the adapters of a parsed broker config.
pub fn translate(
    keys: &BTreeMap<String, String>,
    streams: &BTreeMap<String, String>,
    source: &str,
) -> Result<AdaptersMigration, String> {
    let names: Vec<String> = keys
        .get("plugin.choria.adapters")
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        return Err(
            "plugin.choria.adapters is not set: this broker runs no adapters, so there is nothing to migrate (give the broker.conf that has plugin.choria.adapters = ...)".into(),
        );
    }
    for name in streams.keys() {
        if !names.contains(name) {
            return Err(format!(
                "--stream names adapter {name:?}, which plugin.choria.adapters does not list ({})",
                names.join(", ")
            ));
        }
    }
    let mut notes = Vec::new();
    let mut note = |at: String, text: String| notes.push(Note { at, text });
    let mut outputs: Vec<(Vec<String>, String)> = Vec::new();
    let mut adapters = Vec::new();
    for name in &names {
        let option = |key: &str| keys.get(&format!("plugin.choria.adapter.{name}.{key}"));
        let at = |key: &str| format!("plugin.choria.adapter.{name}.{key}");
        match option("type").map(String::as_str) {
            Some("choria_streams" | "jetstream") => {}
            Some(other) => {
                return Err(format!(
                    "{} is {other:?}; only choria_streams (or jetstream) adapters exist in current Choria",
                    at("type")
                ))
            }
            None => return Err(format!("{} is required (Choria refuses to start without it)", at("type"))),
        }
        let topic = option("ingest.topic").ok_or_else(|| {
            format!(
                "{} is required (Choria refuses to start without it)",
                at("ingest.topic")
            )
        })?;
        let (kind, protocol_note) = match option("ingest.protocol").map(String::as_str) {
            Some("request") => ("choria_registration", None),
            Some("reply") | None => ("choria_reply", None),
            // Choria takes anything but `request` as a reply.
            Some(other) => (
                "choria_reply",
                Some(format!(
                    "is {other:?}, which Choria reads as reply; so does this file"
                )),
            ),
        };
        if let Some(text) = protocol_note {
            note(at("ingest.protocol"), text);
        }
        let topic_out = option("stream.topic")
            .cloned()
            .unwrap_or_else(|| name.clone());
        if topic_out.contains("%s") && !topic_out.ends_with(".%s") && topic_out != "%s" {
            note(
                at("stream.topic"),
                format!("{topic_out:?} puts the sender before the end: Choria keeps the dots of a sender such as node1.example.net there, ferry's {{sender}} keeps them only as the last token and writes node1_example_net elsewhere, so one node's messages would land under two subjects during the switch; put %s last, or expect the other form"),
            );
        }
        let subject = topic_out.replace("%s", "{sender}");
        let output_connection = match option("stream.servers") {
            Some(servers) => {
                let servers: Vec<String> = servers
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        if s.contains("://") {
                            s.to_string()
                        } else {
                            format!("nats://{s}")
                        }
                    })
                    .collect();
                let index = outputs
                    .iter()
                    .position(|(known, _)| *known == servers)
                    .unwrap_or_else(|| {
                        let connection = if outputs.is_empty() {
                            "streams".to_string()
                        } else {
                            format!("streams_{}", outputs.len() + 1)
                        };
                        outputs.push((servers, connection));
                        outputs.len() - 1
                    });
                Some(outputs[index].1.clone())
            }
            None => None,
        };
        for key in ["queue_len", "stream.workers", "ingest.workers"] {
            if option(key).is_some() {
                note(
                    at(key),
                    "ferry sizes its own queues and workers (max_in_flight, spool); left out"
                        .into(),
                );
            }
        }
        let known = [
            "type",
            "ingest.topic",
            "ingest.protocol",
            "stream.topic",
            "stream.servers",
            "queue_len",
            "stream.workers",
            "ingest.workers",
        ];
        let prefix = format!("plugin.choria.adapter.{name}.");
        for key in keys.keys().filter_map(|k| k.strip_prefix(&prefix)) {
            if !known.contains(&key) {
                note(at(key), "not an adapter key Choria reads; left out".into());
            }
        }
        let stream = match streams.get(name) {
            Some(stream) => stream.clone(),
            None => {
                let guess = format!(
                    "CHORIA_{}",
                    name.to_ascii_uppercase()
                        .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
                );
                note(
                    format!("adapter {name}"),
                    format!("the broker config does not name the stream that captures {subject:?}; output.stream is {guess}, a guess (create: false makes a wrong one fail at start): give the real one with --stream {name}=STREAM (`nats stream ls`)"),
                );
                guess
            }
        };
        let mut output = MapBuilder::new();
        if let Some(connection) = output_connection {
            output.text("connection", &connection);
        }
        output
            .text("stream", &stream)
            .comment("Choria's stream.topic; %s (the sender) is {sender}.")
            .text("subject", &subject)
            .comment("The stream exists already (Choria's adapter published into it).")
            .raw("create", false);
        let mut adapter = MapBuilder::new();
        adapter
            .comment(format!(
                "plugin.choria.adapter.{name} (ingest.protocol {})",
                if kind == "choria_reply" {
                    "reply"
                } else {
                    "request"
                }
            ))
            .text("name", name)
            .text("kind", kind)
            .text("connection", "broker")
            .node("subjects", text_list(&[topic.as_str()]))
            .comment("Choria's own queue group: while both run, each message goes to one of them.")
            .text("queue_group", &format!("nats_ingest_{name}"))
            .node("output", output.build());
        adapters.push(Item {
            comments: Vec::new(),
            value: adapter.build(),
        });
    }

    let port = keys
        .get("plugin.choria.network.client_port")
        .map_or("4222", String::as_str);
    note(
        "connections.broker".into(),
        format!("ferry reaches the broker over the network: nats://localhost:{port} is this broker's client port; add its TLS (tls.ca, tls.cert, tls.key) or a Choria login (choria: {{jwt_file, seed_file, collective}}) as the broker requires"),
    );
    let mut connections = MapBuilder::new();
    let mut broker = MapBuilder::new();
    broker.node("servers", text_list(&[format!("nats://localhost:{port}")]));
    connections
        .comment("The broker the adapters ran in (its client port).")
        .node("broker", broker.build());
    for (servers, name) in &outputs {
        let mut block = MapBuilder::new();
        block.node("servers", text_list(servers));
        connections
            .comment("From stream.servers.")
            .node(name, block.build());
    }

    let mut top = super::translation_head(
        &format!("ferry migrate choria-adapters {source}"),
        "docs/migrating-from-choria-adapters.md",
        &notes,
    );
    top.text("state_dir", super::DEFAULT_STATE_DIR)
        .node("connections", connections.build())
        .node("adapters", Node::List(adapters));
    Ok(AdaptersMigration {
        yaml: super::yaml_out::render(&top.build()),
        notes,
        adapters: names.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const BROKER: &str = "
# /etc/choria/broker.conf
plugin.choria.network.client_port = 4223
plugin.choria.adapters = inventory, discovery
plugin.choria.adapter.inventory.type = jetstream
plugin.choria.adapter.inventory.stream.topic = choria.stream.input.registration.%s
plugin.choria.adapter.inventory.ingest.topic = choria.broadcast.agent.registration
plugin.choria.adapter.inventory.ingest.protocol = request
plugin.choria.adapter.discovery.type = choria_streams
plugin.choria.adapter.discovery.queue_len = 1000
plugin.choria.adapter.discovery.stream.servers = js1:4222,js2:4222
plugin.choria.adapter.discovery.ingest.topic = mcollective.reply.>
plugin.choria.adapter.discovery.ingest.workers = 20
";

    fn yaml(migration: &AdaptersMigration) -> Value {
        serde_norway::from_str(&migration.yaml).expect("YAML")
    }

    #[test]
    fn the_walkthrough_adapters_become_ferry_adapters_ferry_check_accepts() {
        let streams =
            BTreeMap::from([("inventory".to_string(), "CHORIA_REGISTRATION".to_string())]);
        let migration = translate(&parse_choria_config(BROKER), &streams, "broker.conf").unwrap();
        let value = yaml(&migration);
        assert_eq!(
            value["adapters"][0],
            json!({
                "name": "inventory",
                "kind": "choria_registration",
                "connection": "broker",
                "subjects": ["choria.broadcast.agent.registration"],
                "queue_group": "nats_ingest_inventory",
                "output": {"stream": "CHORIA_REGISTRATION", "subject": "choria.stream.input.registration.{sender}", "create": false}
            })
        );
        // Replies by default; the topic defaults to the adapter's name; stream.servers is a
        // connection of its own.
        let discovery = &value["adapters"][1];
        assert_eq!(discovery["kind"], "choria_reply");
        assert_eq!(discovery["output"]["subject"], "discovery");
        assert_eq!(discovery["output"]["connection"], "streams");
        assert_eq!(
            value["connections"]["streams"]["servers"],
            json!(["nats://js1:4222", "nats://js2:4222"])
        );
        assert_eq!(
            value["connections"]["broker"]["servers"],
            json!(["nats://localhost:4223"])
        );
        let at: Vec<&str> = migration.notes.iter().map(|n| n.at.as_str()).collect();
        for expected in [
            "plugin.choria.adapter.discovery.queue_len",
            "plugin.choria.adapter.discovery.ingest.workers",
            "adapter discovery",
            "connections.broker",
        ] {
            assert!(at.contains(&expected), "{expected}: {at:?}");
        }
        let problems = crate::config::check_str(
            &migration.yaml,
            Path::new("x.yaml"),
            crate::config::expand::Environment::Absent,
        )
        .problems;
        assert!(problems.is_empty(), "{problems:?}\n{}", migration.yaml);
    }

    #[test]
    fn what_choria_refuses_is_refused_with_the_key() {
        let none = BTreeMap::new();
        for (text, expected) in [
            ("identity = x\n", "plugin.choria.adapters is not set"),
            (
                "plugin.choria.adapters = a\n",
                "plugin.choria.adapter.a.type is required",
            ),
            (
                "plugin.choria.adapters = a\nplugin.choria.adapter.a.type = nats_stream\n",
                "only choria_streams",
            ),
            (
                "plugin.choria.adapters = a\nplugin.choria.adapter.a.type = jetstream\n",
                "plugin.choria.adapter.a.ingest.topic is required",
            ),
        ] {
            let error = translate(&parse_choria_config(text), &none, "b").unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
        let unknown = BTreeMap::from([("nope".to_string(), "S".to_string())]);
        let error = translate(&parse_choria_config(BROKER), &unknown, "b").unwrap_err();
        assert!(error.contains("--stream names adapter \"nope\""), "{error}");
    }

    #[test]
    fn adapters_in_plugin_d_are_read_as_choria_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("broker.conf");
        std::fs::write(&conf, "plugin.choria.adapters = x\n").unwrap();
        std::fs::create_dir(dir.path().join("plugin.d")).unwrap();
        std::fs::write(
            dir.path().join("plugin.d/choria.cfg"),
            "adapters = inv\nadapter.inv.type = jetstream\nadapter.inv.ingest.topic = reg\nadapter.inv.stream.topic = choria.%s.registration\n",
        )
        .unwrap();
        let migration = translate_file(&conf, &BTreeMap::new()).unwrap();
        let value = yaml(&migration);
        assert_eq!(
            value["adapters"][0]["name"], "inv",
            "plugin.d wins over the file"
        );
        assert_eq!(
            value["adapters"][0]["output"]["subject"],
            "choria.{sender}.registration"
        );
        assert!(
            migration
                .notes
                .iter()
                .any(|n| n.at == "plugin.choria.adapter.inv.stream.topic"),
            "a sender before the end is noted: {:?}",
            migration.notes
        );
    }

    #[test]
    fn choria_config_lines_are_read_as_choria_reads_them() {
        let keys = parse_choria_config("# c\n  a.b = x = y  \nempty =\nc=1\nc = 2\n");
        assert_eq!(keys.get("a.b").map(String::as_str), Some("x = y"));
        assert_eq!(keys.get("c").map(String::as_str), Some("2"));
        assert_eq!(keys.get("empty"), None);
    }
}
