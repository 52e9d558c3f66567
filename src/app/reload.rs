//! Reloading the config on SIGHUP without a restart.
//!
//! The file is read and validated exactly as at start. A file with problems changes nothing: every
//! problem is logged and the running config stays. Otherwise only what differs moves: added
//! pipelines start, removed ones stop gracefully (checkpoints saved, spool kept on disk for a
//! later return), changed ones (their entry, or a connection they use, or a file that connection
//! reads) stop and start again with the new entry, and unchanged ones are not touched at all: no
//! message of theirs is lost or copied twice; a failed one (stopped until an operator acts) is
//! started again, since the reload may be that act. Settings that only take effect at a start
//! (`name`, `state_dir`, `monitor`) keep their running values, with a warning.

use std::path::Path;

use super::pipelines::{FirstStart, OpenConnection, Pipelines};
use super::plan::{self, ReloadPlan};
use crate::config;
use crate::status::PipelineState;

/// How long a connection opened for a reload that then failed may take to close.
const RETIRE_UNUSED: std::time::Duration = std::time::Duration::from_secs(1);

/// Re-reads `path` and applies it to `pipelines`. Returns the plan it carried out, or `None`
/// when the file had problems (logged) and nothing changed.
pub async fn reload(pipelines: &mut Pipelines, path: &Path) -> Option<ReloadPlan> {
    let metrics = pipelines.shared().metrics.clone();
    tracing::info!(config = %path.display(), "SIGHUP: reloading the config");
    let outcome = apply(pipelines, path).await;
    let result = if outcome.is_some() {
        "success"
    } else {
        "failure"
    };
    metrics.config_reloads.with_label_values(&[result]).inc();
    metrics
        .config_last_reload_successful
        .with_label_values::<&str>(&[])
        .set(i64::from(outcome.is_some()));
    outcome
}

async fn apply(pipelines: &mut Pipelines, path: &Path) -> Option<ReloadPlan> {
    let mut new = match config::load(path) {
        Ok(new) => new,
        Err(error) => {
            tracing::error!(
                config = %path.display(),
                problems = error.problems.len(),
                "config reload failed: the file has problems; the running config stays"
            );
            for problem in &error.problems {
                tracing::error!(config = %path.display(), "{problem}");
            }
            return None;
        }
    };
    for warning in config::permissions::warnings(path, &new, &[]) {
        tracing::warn!("{warning}");
    }
    let running = &pipelines.config;
    let current: std::collections::BTreeMap<_, _> = pipelines
        .connections
        .iter()
        .map(|(name, open)| (name.clone(), open.identity.clone()))
        .collect();
    let wanted = plan::identities(&new);
    let mut plan = plan::plan(running, &current, &new, &wanted);
    let failed: Vec<String> = pipelines
        .shared()
        .board
        .snapshot()
        .into_iter()
        .filter(|status| status.state == PipelineState::Failed)
        .map(|status| status.name)
        .collect();
    plan.unchanged.retain(|name| {
        let retry = failed.contains(name);
        if retry {
            plan.retried.push(name.clone());
        }
        !retry
    });
    for setting in &plan.needs_restart {
        tracing::warn!(
            setting,
            "config reload: `{setting}` changed; it takes effect at the next restart, the running value stays"
        );
    }
    new.name = running.name.clone();
    new.state_dir = running.state_dir.clone();
    new.monitor = running.monitor.clone();

    // Connections first: one that cannot even be set up (a credentials file gone) fails the
    // reload before anything running is touched.
    let mut opened: Vec<(String, OpenConnection)> = Vec::new();
    for name in &plan.connections_to_open {
        let Some(identity) = wanted.get(name).cloned() else {
            continue;
        };
        match pipelines.open_connection(&new, name).await {
            Ok(connection) => opened.push((
                name.clone(),
                OpenConnection::new(connection, identity, pipelines.shared().board.clone()),
            )),
            Err(error) => {
                tracing::error!(connection = %name, %error, "config reload failed: cannot set up the connection; the running config stays");
                for (_, open) in opened {
                    open.connection.retire(RETIRE_UNUSED).await;
                }
                show_connections(pipelines, true);
                return None;
            }
        }
    }

    let stopping: Vec<String> = plan
        .removed
        .iter()
        .chain(&plan.changed)
        .chain(&plan.retried)
        .cloned()
        .collect();
    pipelines.stop(&stopping).await;
    let board = pipelines.shared().board.clone();
    for name in &plan.removed {
        board.unregister(name);
    }
    for name in &plan.connections_to_retire {
        pipelines.retire_connection(name).await;
    }
    pipelines.connections.extend(opened);
    pipelines.config = new;
    show_connections(pipelines, false);
    let config = pipelines.config.clone();
    for name in plan.added.iter().chain(&plan.changed).chain(&plan.retried) {
        if let Err(error) = pipelines.start(&config, name, FirstStart::Retry) {
            // Only a config the validation let through by mistake gets here.
            tracing::error!(pipeline = %name, %error, "config reload: cannot start the pipeline");
        }
    }
    if plan.is_empty() {
        tracing::info!("config reloaded: no pipeline or connection changed");
        return Some(plan);
    }
    tracing::info!(
        added = plan.added.len(),
        removed = plan.removed.len(),
        changed = plan.changed.len(),
        unchanged = plan.unchanged.len(),
        "config reloaded: {}",
        plan.summary()
    );
    Some(plan)
}

/// Puts the board's connection entries in line with what runs: each open connection with the
/// pipelines that use it now, none for connections closed; with `restate`, also each one's state
/// (after a failed reload, whose new connection briefly took over the entry of the same name).
fn show_connections(pipelines: &Pipelines, restate: bool) {
    let board = &pipelines.shared().board;
    for (name, open) in &pipelines.connections {
        board.set_connection_users(name, plan::users_of(&pipelines.config, name));
        if restate {
            board.set_connection_up(name, open.connection.is_connected());
        }
    }
    for name in board.connection_names() {
        if !pipelines.connections.contains_key(&name) {
            board.unregister_connection(&name);
        }
    }
}
