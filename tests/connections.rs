//! Connection settings against real servers that require authentication: token, user/password
//! (with the secret from the environment), nkey; and the failures an operator will meet: a wrong
//! secret (ferry keeps retrying and reports not ready) and a credentials file that does not exist.

mod common;

use std::time::Duration;

use async_nats::ConnectOptions;
use common::{
    parse_metrics, stream_message_count, wait_until, Ferry, FerryOptions, NatsServer, ServerOptions,
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
