//! The command line around `ferry run` (SPEC sections 2 and 9): the HTTP monitor's endpoints and their
//! shapes, `ferry status` (table and `--json`, with and without a running instance), exit codes,
//! `ferry --version` (version, commit and build date, also first in the log), and the generated
//! shell completions and man page.

mod common;

use std::process::Output;
use std::time::Duration;

use common::{copy_yaml, lifecycle_yaml};
use common::{ferry_command, http_get, js_client, parse_metrics, wait_until, Ferry, NatsServer};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

fn two_adapters_yaml(url: &str) -> String {
    lifecycle_yaml(
        Some("ferry-cli-test"),
        "core",
        url,
        r#"  - name: registration
    kind: choria_registration
    connection: core
    subjects: ["mcollective.broadcast.agent.registration"]
    output: { stream: CHORIA_REGISTRATION, subject: "choria.stream.input.registration.{sender}" }
"#,
    )
}

const STARTUP: &str = r#"{"protocol":"io.choria.lifecycle.v1.startup","id":"4b0e6a52-6f0e-4c1e-9d7a-2f4f3c0b9a11","identity":"db3.fra.acme.test","component":"server","timestamp":1767225600,"version":"0.29.4"}"#;

/// ferry running the two adapters against `server`, ready, and its config file's path.
async fn running_ferry(server: &NatsServer) -> (Ferry, String) {
    let mut ferry = Ferry::start(&two_adapters_yaml(&server.url()));
    ferry.wait_ready().await;
    let config = ferry
        .config_path()
        .to_str()
        .expect("utf-8 path")
        .to_string();
    (ferry, config)
}

/// Runs a one-shot ferry command without blocking the runtime's other tasks.
fn run(args: &[&str]) -> Output {
    let mut cmd = ferry_command();
    cmd.args(args);
    tokio::task::block_in_place(|| cmd.output()).expect("run ferry")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every string value anywhere in `v`.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Object(map) => map.values().for_each(|i| strings(i, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_endpoints_healthz_readyz_status_metrics() {
    let server = NatsServer::start();
    let mut ferry = Ferry::start(&two_adapters_yaml(&server.url()));
    ferry.wait_ready().await;

    let (code, _) = ferry.get("/healthz").await.unwrap();
    assert_eq!(code, 200, "/healthz");
    let (code, body) = ferry.get("/readyz").await.unwrap();
    assert_eq!(code, 200, "/readyz: {body}");

    // One event through, so the per-pipeline series exist.
    let (client, _js) = js_client(&server.url()).await;
    client
        .publish("choria.lifecycle.event.startup.server", STARTUP.into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let f = &ferry;
    wait_until("the event to be published", DEADLINE, move || async move {
        f.metrics().await.sum(
            "ferry_adapter_published_total",
            &[("pipeline", "lifecycle")],
        ) == 1.0
    })
    .await;

    let (code, body) = ferry.get("/metrics").await.unwrap();
    assert_eq!(code, 200);
    let m = parse_metrics(&body);
    let lc = [("pipeline", "lifecycle")];
    assert_eq!(m.get("ferry_adapter_received_total", &lc), Some(1.0));
    assert_eq!(m.get("ferry_adapter_published_total", &lc), Some(1.0));
    assert_eq!(m.sum("ferry_adapter_spool_messages", &lc), 0.0);
    assert_eq!(m.sum("ferry_adapter_spool_bytes", &lc), 0.0);
    assert_eq!(
        m.get("ferry_connection_state", &[("connection", "core")]),
        Some(1.0)
    );
    // Families that alerts are written against exist before their first event, at zero.
    assert_eq!(
        m.get("ferry_connection_errors_total", &[("connection", "core")]),
        Some(0.0)
    );
    for reason in ["not_json", "unknown_type", "unparseable_headers"] {
        assert_eq!(
            m.get(
                "ferry_adapter_invalid_total",
                &[("pipeline", "lifecycle"), ("reason", reason)]
            ),
            Some(0.0),
            "{reason}"
        );
    }
    for (family, kind) in [
        ("ferry_adapter_received_total", "counter"),
        ("ferry_adapter_published_total", "counter"),
        ("ferry_adapter_spool_messages", "gauge"),
        ("ferry_adapter_spool_bytes", "gauge"),
        ("ferry_connection_state", "gauge"),
        ("ferry_adapter_publish_seconds", "histogram"),
    ] {
        assert_eq!(m.metric_type(family), Some(kind), "# TYPE of {family}");
    }
    assert_eq!(
        m.histogram_count("ferry_adapter_publish_seconds", &lc),
        Some(1.0)
    );

    let (code, body) = ferry.get("/status").await.unwrap();
    assert_eq!(code, 200);
    let status: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {body}"));
    assert_eq!(status["instance"], "ferry-cli-test", "{status}");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"), "{status}");
    let pipelines = status["pipelines"].as_array().expect("pipelines array");
    assert_eq!(pipelines.len(), 2, "{status}");
    for name in ["lifecycle", "registration"] {
        let p = pipelines
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no pipeline {name} in {status}"));
        assert_eq!(p["kind"], "adapter", "{p}");
        for key in [
            "role",
            "state",
            "reason",
            "position",
            "lag",
            "spool_messages",
            "spool_bytes",
            "last_error",
        ] {
            assert!(p.get(key).is_some(), "pipeline {name} has no {key:?}: {p}");
        }
        assert!(p["state"].is_string(), "{p}");
        assert_eq!(p["spool_messages"], 0, "{p}");
        assert_eq!(p["spool_bytes"], 0, "{p}");
        assert!(p["last_error"].is_null(), "{p}");
    }

    // The adapter's event counters are on /status as in the metrics (the board is refreshed
    // every 250 ms, so wait for it), and the connection names its server.
    let name = server.name().to_string();
    wait_until("/status to show the event and the server", DEADLINE, || {
        let name = name.clone();
        async move {
            let Ok((200, body)) = f.get("/status").await else {
                return false;
            };
            let status: Value = serde_json::from_str(&body).unwrap_or_default();
            status["pipelines"][0]["events"]["published"] == 1
                && status["connections"][0]["server"] == name.as_str()
        }
    })
    .await;
    let (_, body) = ferry.get("/status").await.unwrap();
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["pipelines"][0]["name"], "lifecycle", "{status}");
    assert_eq!(
        status["pipelines"][0]["events"],
        serde_json::json!({
            "received": 1, "published": 1, "duplicates": 0, "filtered": 0,
            "invalid": 0, "dropped": 0, "spooled": 0
        }),
        "{status}"
    );
    let connection = &status["connections"][0];
    assert_eq!(connection["name"], "core", "{status}");
    assert_eq!(connection["state"], "up", "{status}");
    assert!(connection["server_version"].is_string(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_the_connection_is_down() {
    let mut server = NatsServer::start();
    let mut ferry = Ferry::start(&two_adapters_yaml(&server.url()));
    ferry.wait_ready().await;

    server.stop();
    let f = &ferry;
    wait_until("/readyz to answer 503", DEADLINE, move || async move {
        matches!(f.get("/readyz").await, Ok((503, _)))
    })
    .await;
    let (_, body) = ferry.get("/readyz").await.unwrap();
    let reason: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("/readyz 503 body is not JSON ({e}): {body}"));
    assert!(!reason.is_null(), "{body}");
    // Alive all the same.
    assert_eq!(ferry.get("/healthz").await.unwrap().0, 200);
    let m = ferry.metrics().await;
    assert_eq!(
        m.get("ferry_connection_state", &[("connection", "core")]),
        Some(0.0)
    );
    // The gauge an alert can use alone says what /readyz says.
    for pipeline in ["lifecycle", "registration"] {
        assert_eq!(
            m.get("ferry_pipeline_ready", &[("pipeline", pipeline)]),
            Some(0.0),
            "{pipeline}"
        );
    }

    server.restart();
    ferry.wait_ready().await;
    let m = ferry.metrics().await;
    for pipeline in ["lifecycle", "registration"] {
        assert_eq!(
            m.get("ferry_pipeline_ready", &[("pipeline", pipeline)]),
            Some(1.0),
            "{pipeline}"
        );
    }
    assert_eq!(
        m.get("ferry_connection_state", &[("connection", "core")]),
        Some(1.0)
    );
    assert!(m.sum("ferry_reconnects_total", &[("connection", "core")]) >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_command_prints_a_table_and_json() {
    let server = NatsServer::start();
    let (mut ferry, config) = running_ferry(&server).await;

    // While running: from the monitor, once the connection's server is known (it is read
    // from the client once a second).
    let name = server.name().to_string();
    let f = &ferry;
    wait_until("/status to name the server", DEADLINE, || {
        let name = name.clone();
        async move {
            let Ok((200, body)) = f.get("/status").await else {
                return false;
            };
            let status: Value = serde_json::from_str(&body).unwrap_or_default();
            status["connections"][0]["server"] == name.as_str()
        }
    })
    .await;
    let out = run(&["status", "-c", &config]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "status: {out:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    let heading = lines
        .iter()
        .position(|l| l.starts_with("PIPELINE "))
        .unwrap_or_else(|| panic!("no pipelines table:\n{stdout}"));
    for column in ["SPOOL", "RECEIVED", "PUBLISHED", "DROPPED", "SPOOLED"] {
        assert!(lines[heading].contains(column), "{column}:\n{stdout}");
    }
    for name in ["lifecycle", "registration"] {
        let row = lines
            .iter()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from:\n{stdout}"));
        // Running, nothing received yet: every counter reads 0.
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[3], "running", "{row}");
        assert_eq!(&cells[cells.len() - 4..], ["0", "0", "0", "0"], "{row}");
    }
    let connection = lines
        .iter()
        .find(|l| l.starts_with("core "))
        .unwrap_or_else(|| panic!("no connection row:\n{stdout}"));
    let cells: Vec<&str> = connection.split_whitespace().collect();
    assert_eq!(&cells[..3], ["core", "up", name.as_str()], "{stdout}");

    let out = run(&["status", "-c", &config, "--json"]);
    assert!(out.status.success(), "status --json: {out:?}");
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(&out.stdout)));
    let mut all = Vec::new();
    strings(&json, &mut all);
    for name in ["lifecycle", "registration"] {
        assert!(all.iter().any(|s| s == name), "{name} missing from {json}");
    }

    // Stopped: from the state store, read-only.
    ferry.sigterm();
    assert_eq!(
        ferry.wait_exit(Duration::from_secs(15)).await.code(),
        Some(0)
    );
    let out = run(&["status", "-c", &config]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "status without a running instance: {out:?}"
    );
    for name in ["lifecycle", "registration"] {
        assert!(stdout.contains(name), "{name} missing from:\n{stdout}");
    }
    let out = run(&["status", "-c", &config, "--json"]);
    assert!(out.status.success(), "status --json (stopped): {out:?}");
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(&out.stdout)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_when_idle_exits_0_promptly() {
    let server = NatsServer::start();
    let mut ferry = Ferry::start(&two_adapters_yaml(&server.url()));
    ferry.wait_ready().await;
    let started = std::time::Instant::now();
    ferry.sigterm();
    let status = ferry.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "idle shutdown took {:?}",
        started.elapsed()
    );
    // The monitor is gone with it.
    assert!(http_get(ferry.monitor_addr(), "/healthz").await.is_err());
    // The log says which build wrote it, before anything else.
    let log = ferry.log();
    let first = log.lines().next().unwrap_or_default();
    for needle in [
        "ferry starting".to_string(),
        format!("version={}", env!("CARGO_PKG_VERSION")),
        format!("commit={}", env!("FERRY_BUILD_COMMIT")),
    ] {
        assert!(
            first.contains(&needle),
            "{needle:?} not in the first log line:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_an_invalid_config_exits_1_naming_the_problem() {
    let yaml = r#"
state_dir: "{state_dir}"
connections:
  core: { servers: ["nats://127.0.0.1:4222"] }
adapters:
  - name: lifecycle
    kind: choria_lifecycle
    connection: core
    subjects: ["choria.lifecycle.event.>"]
    output: { stream: FERRY_LIFECYCLE, subject: "ferry.lifecycle.{type}.{component}", duplicate_window: 1x }
"#;
    let mut ferry = Ferry::start(yaml);
    let status = ferry.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(1), "invalid config exits 1");
    let log = ferry.log();
    assert!(
        log.contains("adapters[0].output.duplicate_window"),
        "the error names the path:\n{log}"
    );
}

/// The commit `build.rs` should have found: HEAD of the checkout the tests run in, or `unknown`
/// when the source is not a git work tree (or git is missing).
fn expected_commit() -> String {
    std::process::Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short=12",
            "HEAD",
        ])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| text(&out.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

#[test]
fn version_flag_prints_version_commit_and_build_date() {
    for flag in ["--version", "-V"] {
        let out = ferry_command().arg(flag).output().expect("run ferry");
        assert!(out.status.success(), "{out:?}");
        let stdout = text(&out.stdout);
        // `ferry 0.1.0 (abc123def456 2026-12-07)`
        let line = stdout.trim_end();
        let rest = line
            .strip_prefix(&format!("ferry {} (", env!("CARGO_PKG_VERSION")))
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("ferry {flag}: {line:?}"));
        let (commit, date) = rest
            .split_once(' ')
            .unwrap_or_else(|| panic!("ferry {flag}: no commit and date in {line:?}"));
        if std::env::var_os("FERRY_BUILD_COMMIT").is_none() {
            assert_eq!(commit, expected_commit(), "{line:?}");
        }
        let digits: Vec<&str> = date.split('-').collect();
        assert!(
            digits.len() == 3
                && [4, 2, 2]
                    .iter()
                    .zip(&digits)
                    .all(|(len, part)| part.len() == *len
                        && part.chars().all(|c| c.is_ascii_digit())),
            "the build date is YYYY-MM-DD: {line:?}"
        );
    }
}

#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    // SPEC section 2: 1 for invalid config or usage; clap's own default (2) is the code of a
    // runtime failure.
    for args in [
        vec!["run"],
        vec!["check", "--no-such-flag"],
        vec!["demo", "--duration", "soon"],
        vec!["no-such-command"],
    ] {
        let out = ferry_command().args(&args).output().expect("run ferry");
        assert_eq!(out.status.code(), Some(1), "ferry {args:?}: {out:?}");
        assert!(!out.stderr.is_empty(), "ferry {args:?} says why: {out:?}");
    }
    let out = ferry_command().arg("--help").output().expect("run ferry");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stdout).contains("Usage"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_exits_0_while_the_monitor_answers_and_1_otherwise() {
    let mut server = NatsServer::start();
    let (mut ferry, config) = running_ferry(&server).await;

    let out = run(&["health", "-c", &config]);
    assert_eq!(out.status.code(), Some(0), "alive: {out:?}");
    let out = run(&["health", "-c", &config, "--ready"]);
    assert_eq!(out.status.code(), Some(0), "ready: {out:?}");

    // Not ready while NATS is away, alive all the same.
    server.stop();
    let config_for_wait = config.clone();
    wait_until("ferry health --ready to fail", DEADLINE, move || {
        let config = config_for_wait.clone();
        async move { run(&["health", "-c", &config, "--ready"]).status.code() == Some(1) }
    })
    .await;
    let out = run(&["health", "-c", &config, "--ready"]);
    assert!(text(&out.stderr).contains("503"), "{out:?}");
    assert_eq!(run(&["health", "-c", &config]).status.code(), Some(0));

    // Nothing listening: unhealthy, with the reason.
    ferry.sigterm();
    ferry.wait_exit(Duration::from_secs(15)).await;
    let out = run(&["health", "-c", &config]);
    assert_eq!(out.status.code(), Some(1), "stopped: {out:?}");
    assert!(text(&out.stderr).contains("no answer"), "{out:?}");
}

#[test]
fn status_without_any_state_creates_nothing_and_says_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state_dir = dir.path().join("never-ran");
    // Nothing listens on this monitor address, and no server is needed: status connects to none.
    let yaml = lifecycle_yaml(None, "core", "nats://127.0.0.1:1", "")
        .replace("{state_dir}", state_dir.to_str().expect("utf-8 path"))
        .replace("{monitor}", "127.0.0.1:1");
    let config = dir.path().join("ferry.yaml");
    std::fs::write(&config, yaml).expect("write config");
    let config = config.to_str().expect("utf-8 path");

    let out = ferry_command()
        .args(["status", "-c", config])
        .output()
        .expect("run ferry status");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("no state yet"), "{stdout}");
    assert!(stdout.contains("lifecycle"), "{stdout}");
    let out = ferry_command()
        .args(["status", "-c", config, "--json"])
        .output()
        .expect("run ferry status --json");
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["state"], "none", "{json}");
    assert!(
        !state_dir.exists(),
        "ferry status created {}",
        state_dir.display()
    );
}

/// The commands `ferry --help` lists (but `help`), so a command added later is covered too.
fn listed_commands() -> Vec<String> {
    let out = ferry_command().arg("--help").output().expect("run ferry");
    let help = text(&out.stdout);
    let commands: Vec<String> = help
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect();
    assert!(
        ["run", "check", "completions", "man"]
            .iter()
            .all(|name| commands.iter().any(|c| c == name)),
        "no command list in:\n{help}"
    );
    commands
}

/// Whether `program` can be run here (an optional checker such as `zsh` or `man`).
fn installed(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

#[test]
fn completion_scripts_cover_every_command_and_parse() {
    let commands = listed_commands();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = ferry_command()
            .args(["completions", shell])
            .output()
            .expect("run ferry completions");
        assert_eq!(out.status.code(), Some(0), "{shell}: {out:?}");
        let script = text(&out.stdout);
        assert!(!script.trim().is_empty(), "{shell}: empty script");
        for command in &commands {
            assert!(
                script.contains(command.as_str()),
                "{shell}: {command} is not completed"
            );
        }
        // Each script as its shell reads it, without running it: bash always (the tests need it
        // anyway), the others where they are installed.
        let checker: &[&str] = match shell {
            "bash" => &["bash", "-n"],
            "zsh" => &["zsh", "-n"],
            "fish" => &["fish", "--no-execute"],
            _ => &[],
        };
        let Some((program, args)) = checker.split_first() else {
            continue;
        };
        if *program != "bash" && !installed(program) {
            continue;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join(format!("ferry.{shell}"));
        std::fs::write(&file, &script).expect("write script");
        let checked = std::process::Command::new(program)
            .args(args)
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            checked.status.success(),
            "{program} rejects the {shell} completion script: {}",
            text(&checked.stderr)
        );
    }
    let out = ferry_command()
        .args(["completions", "tcsh"])
        .output()
        .expect("run ferry completions");
    assert_eq!(
        out.status.code(),
        Some(1),
        "an unknown shell is a usage error"
    );
}

#[test]
fn the_man_page_lists_every_command_and_renders() {
    let commands = listed_commands();
    let out = ferry_command().arg("man").output().expect("run ferry man");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let page = text(&out.stdout);
    assert!(
        page.lines().any(|line| line.starts_with(".TH ferry 1 ")),
        "no title header in:\n{page}"
    );
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH SUBCOMMANDS"] {
        assert!(page.contains(section), "no {section} in:\n{page}");
    }
    for command in &commands {
        assert!(
            page.contains(&format!("ferry\\-{command}(1)")),
            "{command} is not in the SUBCOMMANDS section:\n{page}"
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("ferry.1");
    std::fs::write(&file, &page).expect("write page");
    if installed("man") {
        let rendered = std::process::Command::new("man")
            .arg("-l")
            .arg(&file)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .expect("run man -l");
        let shown = text(&rendered.stdout);
        assert!(rendered.status.success(), "man -l: {rendered:?}");
        assert!(
            shown.contains("SYNOPSIS") && shown.contains("ferry-check(1)"),
            "man -l shows:\n{shown}"
        );
    }

    // One page per command in a directory.
    let pages = dir.path().join("man1");
    let out = ferry_command()
        .args(["man", "--dir"])
        .arg(&pages)
        .output()
        .expect("run ferry man --dir");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    for name in std::iter::once("ferry".to_string())
        .chain(commands.iter().map(|command| format!("ferry-{command}")))
    {
        let page = std::fs::read_to_string(pages.join(format!("{name}.1")))
            .unwrap_or_else(|e| panic!("{name}.1: {e}"));
        assert!(
            page.lines()
                .any(|line| line.starts_with(&format!(".TH {name} 1 "))),
            "{name}.1 has no title header:\n{page}"
        );
    }
}

#[test]
fn reset_then_status_say_the_forced_position_in_plain_words() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Neither command connects anywhere: reset is offline, and nothing listens on the monitor
    // address, so status reads the state store.
    let yaml = copy_yaml(
        "ferry-reset-test",
        "nats://127.0.0.1:1",
        "nats://127.0.0.1:1",
        "",
        "",
    )
    .replace(
        "{state_dir}",
        dir.path().join("state").to_str().expect("utf-8 path"),
    )
    .replace("{monitor}", "127.0.0.1:1");
    let config = dir.path().join("ferry.yaml");
    std::fs::write(&config, yaml).expect("write config");
    let config = config.to_str().expect("utf-8 path");
    let cli = |args: &[&str]| {
        ferry_command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run ferry {args:?}: {e}"))
    };

    for (to, said) in [
        ("sequence:100000", "sequence 100000"),
        ("time:2026-01-01T00:00:00Z", "time 2026-01-01T00:00:00Z"),
        ("start", "start"),
        ("end", "end"),
    ] {
        let out = cli(&["reset", "-c", config, "copy", "--to", to]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let stdout = text(&out.stdout);
        assert!(
            stdout.starts_with(&format!(
                "replicator copy: next start forced to {said} (was: "
            )),
            "{stdout}"
        );
        let out = cli(&["status", "-c", config]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let stdout = text(&out.stdout);
        let reason = format!("    reason: next start forced to {said} by ferry reset");
        assert!(
            stdout.lines().any(|l| l == reason),
            "{reason:?} in:\n{stdout}"
        );
        let out = cli(&["status", "-c", config, "--json"]);
        let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(
            json["pipelines"][0]["reason"],
            format!("next start forced to {said} by ferry reset").as_str(),
            "{json}"
        );
    }

    // An unknown replicator: the known ones are listed as names, not as a Rust list.
    let out = cli(&["reset", "-c", config, "nope", "--to", "start"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("(replicators: copy)"), "{stderr}");
}
