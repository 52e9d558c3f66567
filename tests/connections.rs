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

/// A user that may subscribe only to the event subjects and its own reply space, as a non-admin
/// Choria client may (`<collective>.reply.<hash>.>`), and publish only where ferry writes; an
/// admin user for the test's own client.
const RESTRICTED_USERS: &str = r#"authorization { users: [
  { user: admin, password: admin }
  { user: ferry, password: "r3stricted", permissions: {
      publish: { allow: ["$JS.API.>", "$JS.ACK.>", "ferry.>", "copy.>"] }
      subscribe: { allow: ["choria.lifecycle.event.>", "choria.reply.c0ffee.>"] } } }
] }"#;

/// The adapter and a replicator reading the adapter's stream, on a connection for that user.
fn restricted_yaml(url: &str, extra: &str) -> String {
    yaml(
        url,
        &format!("    user: ferry\n    password: r3stricted\n{extra}"),
    ) + r#"replicators:
  - name: copy
    from: { connection: core, stream: FERRY_LIFECYCLE }
    to: { connection: core, stream: COPY, create: true, subject_prefix: copy }
    start: all
"#
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_inbox_lives_under_the_configured_prefix() {
    let server = NatsServer::start_with(ServerOptions::default().config(RESTRICTED_USERS));
    let admin = || ConnectOptions::with_user_and_password("admin".into(), "admin".into());

    // With the default _INBOX prefix the server refuses ferry's inbox subscriptions.
    let refused = Ferry::start(&restricted_yaml(&server.url(), ""));
    wait_until(
        "the refused inbox subscription on /status",
        Duration::from_secs(30),
        || async {
            matches!(refused.get("/status").await, Ok((200, body)) if body.to_lowercase().contains("permissions violation"))
        },
    )
    .await;
    assert!(matches!(refused.get("/readyz").await, Ok((503, _))));
    drop(refused);

    let mut ferry = Ferry::start(&restricted_yaml(
        &server.url(),
        "    inbox_prefix: choria.reply.c0ffee",
    ));
    ferry.wait_ready().await;
    assert_event_flows(&server, admin()).await;
    // The replicator's pulls and acks use the prefix too: the event is copied.
    let client = admin().connect(server.url()).await.expect("admin connects");
    let js = async_nats::jetstream::new(client);
    wait_until("the event is copied", Duration::from_secs(30), || {
        let js = js.clone();
        async move { stream_message_count(&js, "COPY").await == 1 }
    })
    .await;
    assert!(
        !ferry.log().to_lowercase().contains("permissions violation"),
        "no subscription outside the prefix"
    );
}

/// The JetStream API imported into the user's account under `choria.streams`, as Choria
/// organisation brokers do; the account has no `$JS.API` of its own.
const PREFIXED_API: &str = r#"accounts {
  JS: {
    jetstream: enabled
    users: [ { user: admin, password: admin } ]
    exports: [
      { service: "$JS.API.>", response: stream }
      { service: "$JS.ACK.>" }
      { service: "DST.>" }
    ]
  }
  CLIENT: {
    users: [ { user: ferry, password: "0rg-pass" } ]
    imports: [
      { service: { account: JS, subject: "$JS.API.>" }, to: "choria.streams.>" }
      { service: { account: JS, subject: "$JS.ACK.>" } }
      { service: { account: JS, subject: "DST.>" } }
    ]
  }
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jetstream_api_under_an_arbitrary_prefix() {
    let server = NatsServer::start_with(ServerOptions::default().config(PREFIXED_API));
    let client = ConnectOptions::with_user_and_password("admin".into(), "admin".into())
        .connect(server.url())
        .await
        .expect("admin connects");
    let admin_js = async_nats::jetstream::new(client);
    admin_js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "SRC".into(),
            subjects: vec!["SRC.>".into()],
            ..Default::default()
        })
        .await
        .expect("create SRC");
    admin_js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "DST".into(),
            subjects: vec!["DST.>".into()],
            ..Default::default()
        })
        .await
        .expect("create DST");
    for i in 0..3 {
        admin_js
            .publish(format!("SRC.{i}"), format!("m{i}").into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    let url = server.url();
    let yaml = format!(
        r#"
state_dir: "{{state_dir}}"
monitor: {{ listen: "{{monitor}}" }}
connections:
  org:
    servers: ["{url}"]
    user: ferry
    password: 0rg-pass
    jetstream_api_prefix: choria.streams
replicators:
  - name: copy
    from: {{ connection: org, stream: SRC }}
    to: {{ connection: org, stream: DST, subject_prefix: DST }}
    start: all
"#
    );
    let mut ferry = Ferry::start(&yaml);
    ferry.wait_ready().await;
    wait_until("the copies in DST", Duration::from_secs(30), || {
        let js = admin_js.clone();
        async move { stream_message_count(&js, "DST").await == 3 }
    })
    .await;
}
