//! Connection settings against real servers that require authentication: token, user/password
//! (with the secret from the environment), nkey; and the failures an operator will meet: a wrong
//! secret (ferry keeps retrying and reports not ready) and a credentials file that does not exist.

mod common;

use std::time::Duration;

use async_nats::ConnectOptions;
use common::{
    parse_metrics, stream_message_count, try_metric, wait_until, Ferry, FerryOptions, NatsServer,
    ServerOptions,
};

const EVENT: &str = r#"{"protocol":"io.choria.lifecycle.v1.alive","id":"x","identity":"web1.example.net","component":"server","timestamp":1700000000,"version":"0.29.4"}"#;

/// A lifecycle adapter on `core`, with the connection's auth lines spliced in.
fn yaml(url: &str, auth: &str) -> String {
    format!(
        r#"
state_dir: "{{state_dir}}"
monitor: {{ listen: "{{monitor}}" }}
connections:
  core:
    servers: ["{url}"]
{auth}
adapters:
  - name: lifecycle
    kind: choria_lifecycle
    connection: core
    subjects: ["choria.lifecycle.event.>"]
    output: {{ stream: FERRY_LIFECYCLE, subject: "ferry.lifecycle.{{type}}.{{component}}" }}
"#
    )
}

/// Publishes one event with `options` and waits until ferry stored it.
async fn assert_event_flows(server: &NatsServer, options: ConnectOptions) {
    let client = options
        .connect(server.url())
        .await
        .expect("test client connects");
    client
        .publish("choria.lifecycle.event.alive.server", EVENT.into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let js = async_nats::jetstream::new(client);
    wait_until("the event is stored", Duration::from_secs(30), || {
        let js = js.clone();
        async move { stream_message_count(&js, "FERRY_LIFECYCLE").await == 1 }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_the_environment() {
    let server = NatsServer::start_with(
        ServerOptions::default().config(r#"authorization { token: "t0ken-s3cret" }"#),
    );
    let mut ferry = Ferry::start_with(
        &yaml(&server.url(), r#"    token: "${FERRY_TEST_TOKEN}""#),
        FerryOptions::default().env("FERRY_TEST_TOKEN", "t0ken-s3cret"),
    );
    ferry.wait_ready().await;
    assert_event_flows(&server, ConnectOptions::with_token("t0ken-s3cret".into())).await;
    assert!(
        !ferry.log().contains("t0ken-s3cret"),
        "the secret never appears in the log"
    );
    let (_, status) = ferry.get("/status").await.unwrap();
    assert!(!status.contains("t0ken-s3cret"), "nor in /status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password() {
    let server = NatsServer::start_with(
        ServerOptions::default()
            .config(r#"authorization { users: [ { user: ferry, password: "pa55word" } ] }"#),
    );
    let mut ferry = Ferry::start_with(
        &yaml(
            &server.url(),
            "    user: ferry\n    password: \"${FERRY_TEST_PASSWORD}\"",
        ),
        FerryOptions::default().env("FERRY_TEST_PASSWORD", "pa55word"),
    );
    ferry.wait_ready().await;
    assert_event_flows(
        &server,
        ConnectOptions::with_user_and_password("ferry".into(), "pa55word".into()),
    )
    .await;
}

/// The user key pair from the NATS documentation's nkey authentication example.
const NKEY_SEED: &str = "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY";
const NKEY_PUBLIC: &str = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nkey_seed_file() {
    let server = NatsServer::start_with(ServerOptions::default().config(format!(
        "authorization {{ users: [ {{ nkey: {NKEY_PUBLIC} }} ] }}"
    )));
    let seed_dir = tempfile::tempdir().unwrap();
    let seed_file = seed_dir.path().join("ferry.nk");
    std::fs::write(&seed_file, format!("{NKEY_SEED}\n")).unwrap();
    let mut ferry = Ferry::start(&yaml(
        &server.url(),
        &format!("    nkey: \"{}\"", seed_file.display()),
    ));
    ferry.wait_ready().await;
    assert_event_flows(&server, ConnectOptions::with_nkey(NKEY_SEED.into())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_keeps_retrying_and_reports_not_ready() {
    let server = NatsServer::start_with(
        ServerOptions::default().config(r#"authorization { token: "right" }"#),
    );
    let mut ferry = Ferry::start(&yaml(&server.url(), r#"    token: "wrong""#));
    wait_until(
        "an authorization error is counted",
        Duration::from_secs(30),
        || async {
            // The monitor may not listen yet in the first polls.
            match ferry.get("/metrics").await {
                Ok((200, text)) => {
                    parse_metrics(&text)
                        .sum("ferry_connection_errors_total", &[("connection", "core")])
                        > 0.0
                }
                _ => false,
            }
        },
    )
    .await;
    let (code, body) = ferry.get("/readyz").await.unwrap();
    assert_eq!(code, 503, "not ready while it cannot connect: {body}");
    assert!(body.contains("lifecycle"), "names the pipeline: {body}");
    let metrics = ferry.metrics().await;
    assert_eq!(
        metrics.get("ferry_connection_state", &[("connection", "core")]),
        Some(0.0)
    );
    assert!(ferry.is_running(), "a wrong secret does not stop ferry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_file_exits_1_naming_the_key() {
    let server = NatsServer::start();
    let mut ferry = Ferry::start(&yaml(
        &server.url(),
        "    credentials: \"/nonexistent/ferry.creds\"",
    ));
    let status = ferry.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(1), "log: {}", ferry.log());
    let log = ferry.log();
    assert!(
        log.contains("connections.core.credentials") && log.contains("/nonexistent/ferry.creds"),
        "the error names the key and the file: {log}"
    );
}

/// A password the server refuses is named as the cause, not only "the connection is down": in
/// one log line (repeats are rate-limited), as the connection's `last_error` on `/status`, as the
/// reason and last error of the pipeline using it, and as its reason on `/readyz`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_password_is_named_in_the_log_status_and_readyz() {
    let server = NatsServer::start_with(
        ServerOptions::default()
            .config(r#"authorization { users: [ { user: ferry, password: "right-pa55" } ] }"#),
    );
    let ferry = Ferry::start_with(
        &yaml(
            &server.url(),
            "    user: ferry\n    password: \"${FERRY_TEST_PASSWORD}\"",
        ),
        FerryOptions::default().env("FERRY_TEST_PASSWORD", "wr0ng-pa55-s3cret"),
    );
    let cause = format!(
        "127.0.0.1:{}: authorization violation: the server refused ferry's credentials (check connections.core.user and password)",
        server.port()
    );
    let status = || async {
        match ferry.get("/status").await {
            Ok((200, body)) => serde_json::from_str::<serde_json::Value>(&body).ok(),
            _ => None,
        }
    };
    wait_until(
        "/status names the cause",
        Duration::from_secs(30),
        || async {
            status()
                .await
                .is_some_and(|s| s["connections"][0]["last_error"] == cause.as_str())
        },
    )
    .await;
    let status = status().await.expect("/status");
    let connection = &status["connections"][0];
    assert_eq!(connection["name"], "core");
    assert_eq!(connection["state"], "connecting");
    assert_eq!(connection["pipelines"], serde_json::json!(["lifecycle"]));
    let pipeline = &status["pipelines"][0];
    assert_eq!(pipeline["name"], "lifecycle");
    assert_eq!(pipeline["state"], "disconnected");
    assert_eq!(
        pipeline["reason"],
        format!("connection core is down: {cause}").as_str()
    );
    assert_eq!(
        pipeline["last_error"],
        format!("connection core: {cause}").as_str()
    );
    assert!(pipeline["last_error_at"].is_string());

    let (code, body) = ferry.get("/readyz").await.unwrap();
    assert_eq!(code, 503);
    let readyz: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        readyz["not_ready"],
        serde_json::json!([{
            "pipeline": "lifecycle",
            "state": "disconnected",
            "reason": format!("connection core is down: {cause}"),
        }])
    );

    // One line, though the client retried meanwhile: wait for a second attempt to be counted
    // (the client's reconnect delay decides when it comes, so this is a wait, not a check).
    wait_until(
        "the retries are counted",
        Duration::from_secs(30),
        || async {
            try_metric(
                &ferry,
                "ferry_connection_errors_total",
                &[("connection", "core")],
            )
            .await
            .is_some_and(|errors| errors >= 2.0)
        },
    )
    .await;
    let log = ferry.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("cannot connect to NATS"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains("ERROR")
            && lines[0].contains("connection=core")
            && lines[0].contains(&cause),
        "{}",
        lines[0]
    );
    for (what, text) in [
        ("log", log),
        ("/status", status.to_string()),
        ("/readyz", body),
    ] {
        assert!(
            !text.contains("wr0ng-pa55-s3cret"),
            "the password is in the {what}"
        );
    }
}

/// Nothing listening at the address: the cause says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_named() {
    let port = common::free_port();
    let ferry = Ferry::start(&yaml(&format!("nats://127.0.0.1:{port}"), ""));
    let reason = format!(
        "connection core is down: 127.0.0.1:{port}: connection refused: nothing accepts connections there (is nats-server running and listening on this address?)"
    );
    wait_until(
        "/readyz names the cause",
        Duration::from_secs(30),
        || async {
            matches!(ferry.get("/readyz").await, Ok((503, body)) if body.contains(&reason))
        },
    )
    .await;
}
