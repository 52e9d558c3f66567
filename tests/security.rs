//! Secured NATS (SPEC section 3 `connections`, issue: security) against real servers configured
//! for it: TLS with a server certificate, mutual TLS, and a decentralised-auth credentials file
//! (operator, account and user JWTs made here with nkeys). Also: secrets never reach logs, errors
//! or `/status`, and a config file that others can read with a secret in it draws a warning.
//!
//! The certificates in `tests/tls/` are test-only (see its README).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::ConnectOptions;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::{ferry_command, stream_message_count, wait_until, Ferry, NatsServer, ServerOptions};
use nkeys::KeyPair;

const EVENT: &str = r#"{"protocol":"io.choria.lifecycle.v1.alive","id":"x","identity":"web1.example.net","component":"server","timestamp":1700000000,"version":"0.29.4"}"#;

fn tls_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tls")
        .join(name)
}

/// A lifecycle adapter on connection `core` with `servers` and the given extra connection lines.
fn yaml(servers: &str, connection: &str) -> String {
    format!(
        r#"
state_dir: "{{state_dir}}"
monitor: {{ listen: "{{monitor}}" }}
connections:
  core:
    servers: ["{servers}"]
{connection}
adapters:
  - name: lifecycle
    kind: choria_lifecycle
    connection: core
    subjects: ["choria.lifecycle.event.>"]
    output: {{ stream: FERRY_LIFECYCLE, subject: "ferry.lifecycle.{{type}}.{{component}}" }}
"#
    )
}

/// Publishes one event through a test client made with `options` and waits until it is stored.
async fn assert_event_flows(url: &str, options: ConnectOptions) {
    let client = options.connect(url).await.expect("test client connects");
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

fn tls_server(verify_clients: bool) -> NatsServer {
    tls_server_with(verify_clients, "")
}

/// A TLS server with `extra` lines in its `tls` block.
fn tls_server_with(verify_clients: bool, extra: &str) -> NatsServer {
    let mut block = format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n{extra}",
        tls_file("server.pem").display(),
        tls_file("server-key.pem").display()
    );
    if verify_clients {
        block.push_str(&format!(
            "  ca_file: \"{}\"\n  verify: true\n",
            tls_file("ca.pem").display()
        ));
    }
    block.push_str("}\n");
    NatsServer::start_with(ServerOptions::default().config(block))
}

fn tls_url(server: &NatsServer) -> String {
    format!("tls://127.0.0.1:{}", server.port())
}

fn tls_client(with_certificate: bool) -> ConnectOptions {
    let options = ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(tls_file("ca.pem"));
    if with_certificate {
        options.add_client_certificate(tls_file("client.pem"), tls_file("client-key.pem"))
    } else {
        options
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_server_certificate() {
    let server = tls_server(false);
    let mut ferry = Ferry::start(&yaml(
        &tls_url(&server),
        &format!("    tls: {{ ca: \"{}\" }}", tls_file("ca.pem").display()),
    ));
    ferry.wait_ready().await;
    assert_event_flows(&tls_url(&server), tls_client(false)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshake_first_for_servers_that_want_it() {
    let server = tls_server_with(false, "  handshake_first: true\n");
    let url = tls_url(&server);
    let mut ferry = Ferry::start(&yaml(
        &url,
        &format!(
            "    tls: {{ ca: \"{}\", handshake_first: true }}\n    connect_timeout: 2s",
            tls_file("ca.pem").display()
        ),
    ));
    ferry.wait_ready().await;
    assert_event_flows(&url, tls_client(false).tls_first()).await;

    // Without it, the server's TLS-first listener never answers ferry's plain start.
    let plain = Ferry::start(&yaml(
        &url,
        &format!("    tls: {{ ca: \"{}\" }}", tls_file("ca.pem").display()),
    ));
    wait_until(
        "the instance without handshake_first reports its connection failing",
        Duration::from_secs(30),
        || async {
            matches!(plain.get("/status").await, Ok((200, body)) if body.contains("expected INFO"))
        },
    )
    .await;
    assert!(
        matches!(plain.get("/readyz").await, Ok((503, _))),
        "not ready without the TLS-first handshake"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_the_client_certificate() {
    let server = tls_server(true);
    let mut ferry = Ferry::start(&yaml(
        &tls_url(&server),
        &format!(
            "    tls: {{ ca: \"{}\", cert: \"{}\", key: \"{}\" }}",
            tls_file("ca.pem").display(),
            tls_file("client.pem").display(),
            tls_file("client-key.pem").display()
        ),
    ));
    ferry.wait_ready().await;
    assert_event_flows(&tls_url(&server), tls_client(true)).await;

    // Without its certificate, the server refuses ferry: it keeps retrying and is not ready.
    let refused = Ferry::start(&yaml(
        &tls_url(&server),
        &format!("    tls: {{ ca: \"{}\" }}", tls_file("ca.pem").display()),
    ));
    wait_until(
        "the refused instance reports its connection down",
        Duration::from_secs(20),
        || async {
            matches!(refused.get("/readyz").await, Ok((503, body)) if body.contains("lifecycle"))
        },
    )
    .await;
    // The cause is named: the server wanted a client certificate.
    let reason = format!(
        "connection core is down: 127.0.0.1:{}: TLS failure: IO error: received fatal alert: CertificateRequired (check connections.core.tls: ca, cert and key, and the server's certificate)",
        server.port()
    );
    wait_until(
        "/readyz names the TLS failure",
        Duration::from_secs(20),
        || async {
            matches!(refused.get("/readyz").await, Ok((503, body)) if body.contains(&reason))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        matches!(refused.get("/readyz").await, Ok((503, _))),
        "never ready without a client certificate"
    );
}

/// A NATS JWT signed by `issuer`.
fn jwt(issuer: &KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = serde_json::json!({
        "jti": format!("{:032X}", rand_id(subject)),
        "iat": 1_700_000_000,
        "iss": issuer.public_key(),
        "sub": subject,
        "name": name,
        "nats": nats,
    });
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{body}");
    let signature = issuer.sign(signing_input.as_bytes()).expect("sign");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn rand_id(subject: &str) -> u128 {
    subject.bytes().fold(0xcbf29ce484222325u128, |h, b| {
        (h ^ u128::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// An operator-mode server (memory resolver) and a credentials file for a user of its account.
fn operator_setup(dir: &std::path::Path) -> (NatsServer, PathBuf, String) {
    let operator = KeyPair::new_operator();
    let account = KeyPair::new_account();
    let user = KeyPair::new_user();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "ferry-test-operator",
        serde_json::json!({ "type": "operator", "version": 2 }),
    );
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
        "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
    });
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        "FERRY",
        serde_json::json!({ "type": "account", "version": 2, "limits": unlimited }),
    );
    let user_jwt = jwt(
        &account,
        &user.public_key(),
        "ferry",
        serde_json::json!({
            "type": "user", "version": 2, "pub": {}, "sub": {},
            "subs": -1, "data": -1, "payload": -1,
        }),
    );
    // JetStream needs a system account.
    let system = KeyPair::new_account();
    let system_jwt = jwt(
        &operator,
        &system.public_key(),
        "SYS",
        serde_json::json!({ "type": "account", "version": 2 }),
    );
    let server = NatsServer::start_with(ServerOptions::default().config(format!(
        "operator: \"{operator_jwt}\"\nsystem_account: {sys}\nresolver: MEMORY\nresolver_preload: {{\n  {acc}: \"{account_jwt}\"\n  {sys}: \"{system_jwt}\"\n}}\n",
        acc = account.public_key(),
        sys = system.public_key(),
    )));
    let seed = user.seed().expect("user seed");
    let creds = format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    );
    let path = dir.join("ferry.creds");
    std::fs::write(&path, creds).expect("write creds");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    (server, path, seed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_file_in_decentralised_auth() {
    let dir = tempfile::tempdir().unwrap();
    let (server, creds, seed) = operator_setup(dir.path());
    let mut ferry = Ferry::start(&yaml(
        &server.url(),
        &format!("    credentials: \"{}\"", creds.display()),
    ));
    ferry.wait_ready().await;
    let options = ConnectOptions::with_credentials_file(creds.clone())
        .await
        .expect("credentials");
    assert_event_flows(&server.url(), options).await;
    assert!(
        !ferry.log().contains(&seed),
        "the seed never appears in the log"
    );
    let (_, status) = ferry.get("/status").await.unwrap();
    assert!(!status.contains(&seed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_reported_without_the_secret() {
    let server = NatsServer::start_with(
        ServerOptions::default()
            .config(r#"authorization { users: [ { user: ferry, password: "right-pa55" } ] }"#),
    );
    let ferry = Ferry::start(&yaml(
        &server.url(),
        "    user: ferry\n    password: \"wr0ng-pa55-s3cret\"",
    ));
    wait_until(
        "not ready with a wrong password",
        Duration::from_secs(20),
        || async { matches!(ferry.get("/readyz").await, Ok((503, _))) },
    )
    .await;
    wait_until("the failure is logged", Duration::from_secs(20), || async {
        ferry.log().to_lowercase().contains("authorization")
    })
    .await;
    let (_, status) = ferry.get("/status").await.unwrap();
    let (_, metrics) = ferry.get("/metrics").await.unwrap();
    for (what, text) in [
        ("log", ferry.log()),
        ("/status", status),
        ("/metrics", metrics),
    ] {
        assert!(
            !text.contains("wr0ng-pa55-s3cret"),
            "the password appears in the {what}"
        );
    }
}

#[test]
fn check_warns_about_a_readable_config_with_a_secret_and_never_prints_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.yaml");
    let text = yaml("nats://127.0.0.1:4222", "    token: \"plain-t0ken-s3cret\"")
        .replace(
            "{state_dir}",
            &dir.path().join("state").display().to_string(),
        )
        .replace("{monitor}", "127.0.0.1:9464");
    std::fs::write(&path, &text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = ferry_command()
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .expect("ferry check");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("connections.core.token") && stderr.contains("chmod 600"),
        "warns, naming the key and the fix: {stderr}"
    );
    assert!(!stderr.contains("plain-t0ken-s3cret") && !stdout.contains("plain-t0ken-s3cret"));

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = ferry_command()
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .expect("ferry check");
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("warning"),
        "no warning once only the owner can read it"
    );

    // A broken file next to the secret: the errors name paths, never the value.
    let broken = text.replace("subjects: [\"choria.lifecycle.event.>\"]", "subjects: 7");
    std::fs::write(&path, broken).unwrap();
    let output = ferry_command()
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .expect("ferry check");
    assert_eq!(output.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!all.contains("plain-t0ken-s3cret"), "{all}");
}

/// Credentials written into a server URL are refused, naming the fix: the NATS client does not
/// send them (ferry would retry a refused login forever) and URLs are logged. Refused by `run`
/// as by `check`, without showing the password; the same credentials as `user` and `password`
/// connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_a_server_url_are_refused_naming_the_fix() {
    let server = NatsServer::start_with(
        ServerOptions::default()
            .config(r#"authorization { users: [ { user: ferry, password: "url-pa55word" } ] }"#),
    );
    let url = format!("nats://ferry:url-pa55word@127.0.0.1:{}", server.port());
    let mut ferry = Ferry::start(&yaml(&url, ""));
    let status = ferry.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(1));
    let log = ferry.log();
    assert!(
        log.contains(&format!(
            "connections.core.servers[0]: \"nats://***@127.0.0.1:{}\" carries credentials in the URL, which ferry does not use",
        server.port())) && log.contains("set them on the connection instead, as user and password"),
        "{log}"
    );
    assert!(!log.contains("url-pa55word"), "{log}");

    let mut ferry = Ferry::start(&yaml(
        &server.url(),
        "    user: ferry\n    password: \"url-pa55word\"",
    ));
    ferry.wait_ready().await;
    assert_event_flows(
        &server.url(),
        ConnectOptions::with_user_and_password("ferry".into(), "url-pa55word".into()),
    )
    .await;
}

/// Runs `ferry run -c FILE --log-level LEVEL` until its log names an authorization violation,
/// and returns the log.
async fn log_at_level(config: &std::path::Path, level: &str) -> String {
    let log_path = config.with_extension(format!("{level}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = ferry_command()
        .args(["run", "--log-level", level, "-c"])
        .arg(config)
        .env("FERRY_TEST_TOKEN", "t0ken-from-env-s3cret")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("ferry runs");
    let read = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let named = tokio::time::timeout(Duration::from_secs(30), async {
        while !read().contains("authorization violation") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        named.is_ok(),
        "no authorization violation logged at {level}: {}",
        read()
    );
    read()
}

/// A refused token, at every log level (`trace` includes the NATS client's own lines): the log
/// names the cause and never shows the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_secret_never_reaches_the_log_at_any_level() {
    let server = NatsServer::start_with(
        ServerOptions::default().config(r#"authorization { token: "the-right-t0ken" }"#),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.yaml");
    let text = yaml(&server.url(), "    token: \"${FERRY_TEST_TOKEN}\"")
        .replace(
            "{state_dir}",
            &dir.path().join("state").display().to_string(),
        )
        .replace("monitor: { listen: \"{monitor}\" }\n", "");
    std::fs::write(&config, text).unwrap();
    for level in ["info", "trace"] {
        let log = log_at_level(&config, level).await;
        assert!(
            log.contains("authorization violation: the server refused ferry's credentials (check connections.core.token)"),
            "{log}"
        );
        assert!(!log.contains("t0ken-from-env-s3cret"), "{level}: {log}");
        std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    }
}
