//! The ferry configs many tests start from. Each test adds only what it is about (`extra`), so a
//! change to the common part is made once.

/// A config with one `choria_lifecycle` adapter `lifecycle` on connection `connection` (`url`),
/// storing into FERRY_LIFECYCLE as `ferry.lifecycle.{type}.{component}` (2-minute duplicate
/// window). `name` is the instance name (`None`: ferry's default). `extra` is appended after the
/// adapter's keys: more of its keys (indented four spaces) or more adapters (`  - name: ...`).
pub fn lifecycle_yaml(name: Option<&str>, connection: &str, url: &str, extra: &str) -> String {
    let name = name
        .map(|name| format!("name: {name}\n"))
        .unwrap_or_default();
    format!(
        r#"{name}state_dir: "{{state_dir}}"
monitor: {{ listen: "{{monitor}}" }}
connections:
  {connection}: {{ servers: ["{url}"] }}
adapters:
  - name: lifecycle
    kind: choria_lifecycle
    connection: {connection}
    subjects: ["choria.lifecycle.event.>"]
    output: {{ stream: FERRY_LIFECYCLE, subject: "ferry.lifecycle.{{type}}.{{component}}", duplicate_window: 2m }}
{extra}"#
    )
}

/// A config for instance `name` with connections `east` and `west` and one replicator `copy` from
/// east's stream SRC to west's stream DST (created when missing, 10-minute duplicate window), with
/// no `start` (ferry's default). `to_extra` is appended inside the `to:` map (start it with `, `);
/// `extra` after the replicator's keys (each line indented by four spaces).
pub fn copy_yaml(
    name: &str,
    east_url: &str,
    west_url: &str,
    to_extra: &str,
    extra: &str,
) -> String {
    format!(
        r#"name: {name}
state_dir: "{{state_dir}}"
monitor: {{ listen: "{{monitor}}" }}
connections:
  east: {{ servers: ["{east_url}"] }}
  west: {{ servers: ["{west_url}"] }}
replicators:
  - name: copy
    from: {{ connection: east, stream: SRC }}
    to: {{ connection: west, stream: DST, create: true, duplicate_window: 10m{to_extra} }}
{extra}"#
    )
}

/// A config whose adapters subscribe on connection `core` (`input`) and write to JetStream on
/// connection `js` (`output`). `settings` are more top-level keys (e.g. `shutdown_timeout: 5s\n`),
/// `adapters` the items of the `adapters:` list.
pub fn two_connections_yaml(input: &str, output: &str, settings: &str, adapters: &str) -> String {
    format!(
        r#"state_dir: "{{state_dir}}"
monitor: {{ listen: "{{monitor}}" }}
{settings}connections:
  core: {{ servers: ["{input}"] }}
  js: {{ servers: ["{output}"] }}
adapters:
{adapters}"#
    )
}

/// A passthrough adapter `raw` from `data.>` on `core` to stream DATA (`out.<subject>`) on `js`,
/// for [`two_connections_yaml`]. More of its keys may follow, indented four spaces.
pub const PASSTHROUGH_RAW: &str = r#"  - name: raw
    kind: passthrough
    connection: core
    subjects: ["data.>"]
    output: { connection: js, stream: DATA, subject: "out.{subject}" }
"#;
