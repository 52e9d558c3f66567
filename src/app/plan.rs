//! What a reload changes: the running config's pipelines and connections against the new file's.
//!
//! Pure: the caller supplies each connection's [`ConnectionIdentity`] (its settings and the
//! contents of the files they name), so a rotated credentials file counts as a change even though
//! the YAML did not move.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::config::schema::{AdapterConfig, Config, ConnectionConfig};
use crate::config::ReplicatorConfig;

/// A pipeline's entry in the config, whichever kind it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PipelineEntry<'a> {
    Adapter(&'a AdapterConfig),
    Replicator(&'a ReplicatorConfig),
}

impl<'a> PipelineEntry<'a> {
    /// The connection names this pipeline uses.
    pub fn connections(&self) -> [&'a str; 2] {
        match self {
            PipelineEntry::Adapter(adapter) => {
                [adapter.connection.as_str(), adapter.output_connection()]
            }
            PipelineEntry::Replicator(replicator) => [
                replicator.from.connection.as_str(),
                replicator.to.connection.as_str(),
            ],
        }
    }
}

/// Every pipeline of `config` by name.
pub fn pipelines(config: &Config) -> BTreeMap<&str, PipelineEntry<'_>> {
    config
        .adapters
        .iter()
        .map(|adapter| (adapter.name.as_str(), PipelineEntry::Adapter(adapter)))
        .chain(config.replicators.iter().map(|replicator| {
            (
                replicator.name.as_str(),
                PipelineEntry::Replicator(replicator),
            )
        }))
        .collect()
}

/// The names of the connections that `config`'s pipelines use (connections defined but unused
/// are never opened).
pub fn used_connections(config: &Config) -> BTreeSet<&str> {
    pipelines(config)
        .values()
        .flat_map(|entry| entry.connections())
        .collect()
}

/// The pipelines using the connection `name`.
pub fn users_of(config: &Config, name: &str) -> Vec<String> {
    pipelines(config)
        .iter()
        .filter(|(_, entry)| entry.connections().contains(&name))
        .map(|(pipeline, _)| pipeline.to_string())
        .collect()
}

/// What makes two connections the same: their settings and what the files they name hold.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionIdentity {
    settings: ConnectionConfig,
    /// Each named file with its contents (`None`: unreadable now, which connecting will report).
    files: Vec<(PathBuf, Option<Vec<u8>>)>,
}

impl ConnectionIdentity {
    /// Reads the files `settings` names (credentials, nkey seed, Choria JWT and seed, TLS CA,
    /// certificate and key).
    pub fn read(settings: &ConnectionConfig) -> ConnectionIdentity {
        let tls = settings.tls.as_ref();
        let choria = settings.choria.as_ref();
        let files = [
            settings.credentials.as_ref(),
            settings.nkey.as_ref(),
            choria.map(|choria| &choria.jwt_file),
            choria.map(|choria| &choria.seed_file),
            tls.and_then(|tls| tls.ca.as_ref()),
            tls.and_then(|tls| tls.cert.as_ref()),
            tls.and_then(|tls| tls.key.as_ref()),
        ]
        .into_iter()
        .flatten()
        .map(|path| (path.clone(), std::fs::read(path).ok()))
        .collect();
        ConnectionIdentity {
            settings: settings.clone(),
            files,
        }
    }
}

/// What a reload does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// In the new file only: started.
    pub added: Vec<String>,
    /// In the running config only: stopped gracefully (checkpoints saved, spool kept).
    pub removed: Vec<String>,
    /// In both, but the entry, its kind or a connection it uses differs: stopped, then started
    /// with the new entry.
    pub changed: Vec<String>,
    /// In both and the same: left running untouched.
    pub unchanged: Vec<String>,
    /// Unchanged but failed (stopped until an operator acts): started again, since the reload
    /// may be that act (the conflicting stream removed, the permission granted).
    pub retried: Vec<String>,
    /// Connections to open (new names, or settings or files changed), by name.
    pub connections_to_open: Vec<String>,
    /// Running connections that no pipeline of the new config uses as they are: closed once the
    /// pipelines using them have stopped.
    pub connections_to_retire: Vec<String>,
    /// The top-level settings that only take effect at a start (`name`, `state_dir`, `monitor`)
    /// and differ: a reload keeps their running values and says so.
    pub needs_restart: Vec<&'static str>,
}

impl ReloadPlan {
    /// Whether the reload changes nothing that runs.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.retried.is_empty()
            && self.connections_to_open.is_empty()
            && self.connections_to_retire.is_empty()
    }

    /// One line for the log: `1 added (a), 1 removed (b), 2 changed (c, d), 3 unchanged`.
    pub fn summary(&self) -> String {
        let list = |what: &str, names: &[String]| {
            if names.is_empty() {
                format!("0 {what}")
            } else {
                format!("{} {what} ({})", names.len(), names.join(", "))
            }
        };
        let mut summary = format!(
            "{}, {}, {}, {} unchanged",
            list("added", &self.added),
            list("removed", &self.removed),
            list("changed", &self.changed),
            self.unchanged.len()
        );
        if !self.retried.is_empty() {
            summary.push_str(&format!(
                ", {} failed restarted ({})",
                self.retried.len(),
                self.retried.join(", ")
            ));
        }
        summary
    }
}

/// Compares the running config `old` (whose open connections have the identities `running`)
/// with `new` (whose connections have the identities `wanted`).
pub fn plan(
    old: &Config,
    running: &BTreeMap<String, ConnectionIdentity>,
    new: &Config,
    wanted: &BTreeMap<String, ConnectionIdentity>,
) -> ReloadPlan {
    let mut plan = ReloadPlan::default();
    for (name, identity) in wanted {
        if running.get(name) != Some(identity) {
            plan.connections_to_open.push(name.clone());
        }
    }
    for name in running.keys() {
        if wanted.get(name) != running.get(name) {
            plan.connections_to_retire.push(name.clone());
        }
    }
    let before = pipelines(old);
    let after = pipelines(new);
    for (name, entry) in &after {
        match before.get(name) {
            None => plan.added.push(name.to_string()),
            Some(previous) => {
                let reconnected = entry
                    .connections()
                    .iter()
                    .any(|connection| plan.connections_to_open.iter().any(|c| c == connection));
                if previous != entry || reconnected {
                    plan.changed.push(name.to_string());
                } else {
                    plan.unchanged.push(name.to_string());
                }
            }
        }
    }
    plan.removed = before
        .keys()
        .filter(|name| !after.contains_key(*name))
        .map(|name| name.to_string())
        .collect();
    if old.name != new.name {
        plan.needs_restart.push("name");
    }
    if old.state_dir != new.state_dir {
        plan.needs_restart.push("state_dir");
    }
    if old.monitor != new.monitor {
        plan.needs_restart.push("monitor");
    }
    plan
}

/// The identity of every connection `config`'s pipelines use.
pub fn identities(config: &Config) -> BTreeMap<String, ConnectionIdentity> {
    used_connections(config)
        .into_iter()
        .filter_map(|name| {
            let settings = config.connections.get(name)?;
            Some((name.to_string(), ConnectionIdentity::read(settings)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::parse_str(text, std::path::Path::new("test.yaml")).expect("valid config")
    }

    const BASE: &str = r#"
state_dir: /tmp/ferry-plan
connections:
  local: { servers: ["nats://127.0.0.1:4222"] }
  remote: { servers: ["nats://127.0.0.1:4223"] }
adapters:
  - name: lifecycle
    kind: choria_lifecycle
    connection: local
    subjects: ["choria.lifecycle.>"]
    output: { stream: LIFECYCLE, subject: "ferry.lifecycle.{type}" }
  - name: raw
    connection: local
    kind: passthrough
    subjects: ["raw.>"]
    output: { stream: RAW, subject: "ferry.raw" }
replicators:
  - name: copy
    from: { connection: local, stream: LIFECYCLE }
    to: { connection: remote, stream: LIFECYCLE_COPY }
"#;

    fn plan_of(old: &str, new: &str) -> ReloadPlan {
        let (old, new) = (config(old), config(new));
        plan(&old, &identities(&old), &new, &identities(&new))
    }

    #[test]
    fn the_same_file_changes_nothing() {
        let plan = plan_of(BASE, BASE);
        assert!(plan.is_empty(), "{plan:?}");
        assert_eq!(plan.unchanged, ["copy", "lifecycle", "raw"]);
        assert_eq!(plan.summary(), "0 added, 0 removed, 0 changed, 3 unchanged");
    }

    #[test]
    fn added_removed_and_changed_pipelines_are_told_apart() {
        let new = BASE
            .replace("name: raw", "name: raw2")
            .replace("ferry.lifecycle.{type}", "fleet.lifecycle.{type}");
        let plan = plan_of(BASE, &new);
        assert_eq!(plan.added, ["raw2"]);
        assert_eq!(plan.removed, ["raw"]);
        assert_eq!(plan.changed, ["lifecycle"]);
        assert_eq!(plan.unchanged, ["copy"]);
        assert_eq!(
            plan.summary(),
            "1 added (raw2), 1 removed (raw), 1 changed (lifecycle), 1 unchanged"
        );
    }

    #[test]
    fn a_changed_connection_restarts_every_pipeline_using_it() {
        let new = BASE.replace("4223", "4224");
        let plan = plan_of(BASE, &new);
        assert_eq!(plan.connections_to_open, ["remote"]);
        assert_eq!(plan.connections_to_retire, ["remote"]);
        assert_eq!(plan.changed, ["copy"]);
        assert_eq!(plan.unchanged, ["lifecycle", "raw"]);
    }

    #[test]
    fn a_rotated_credentials_file_counts_as_a_change() {
        let dir = tempfile::tempdir().expect("temp dir");
        let creds = dir.path().join("remote.creds");
        std::fs::write(&creds, "first").expect("write");
        let text = BASE.replace(
            r#"remote: { servers: ["nats://127.0.0.1:4223"] }"#,
            &format!(
                r#"remote: {{ servers: ["nats://127.0.0.1:4223"], credentials: "{}" }}"#,
                creds.display()
            ),
        );
        let running = config(&text);
        let before = identities(&running);
        std::fs::write(&creds, "second").expect("write");
        let plan = plan(&running, &before, &running, &identities(&running));
        assert_eq!(plan.connections_to_open, ["remote"]);
        assert_eq!(plan.changed, ["copy"]);
    }

    #[test]
    fn a_rotated_choria_jwt_or_seed_counts_as_a_change() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (jwt, seed) = crate::choria::testing::write_login(dir.path(), "ferry", "choria=a", 1);
        let text = BASE.replace(
            r#"remote: { servers: ["nats://127.0.0.1:4223"] }"#,
            &format!(
                r#"remote: {{ servers: ["nats://127.0.0.1:4223"], choria: {{ jwt_file: "{}", seed_file: "{}", collective: choria }} }}"#,
                jwt.display(),
                seed.display()
            ),
        );
        let running = config(&text);
        let renewed = dir.path().join("renewed");
        std::fs::create_dir(&renewed).expect("dir");
        let (new_jwt, new_seed) =
            crate::choria::testing::write_login(&renewed, "ferry", "choria=b", 2);
        for (file, new) in [(&jwt, &new_jwt), (&seed, &new_seed)] {
            let before = identities(&running);
            std::fs::copy(new, file).expect("renew");
            let plan = plan(&running, &before, &running, &identities(&running));
            assert_eq!(plan.connections_to_open, ["remote"], "{}", file.display());
            assert_eq!(plan.changed, ["copy"]);
        }
    }

    #[test]
    fn a_connection_no_longer_used_is_retired() {
        let new = BASE.replace(
            "to: { connection: remote, stream: LIFECYCLE_COPY }",
            "to: { connection: local, stream: LIFECYCLE_COPY }",
        );
        let plan = plan_of(BASE, &new);
        assert!(plan.connections_to_open.is_empty());
        assert_eq!(plan.connections_to_retire, ["remote"]);
        assert_eq!(plan.changed, ["copy"]);
    }

    #[test]
    fn settings_that_need_a_restart_are_named() {
        let new = BASE.replace("/tmp/ferry-plan", "/tmp/elsewhere");
        let plan = plan_of(BASE, &new);
        assert_eq!(plan.needs_restart, ["state_dir"]);
        assert!(plan.is_empty());
    }
}
