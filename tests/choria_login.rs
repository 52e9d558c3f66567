//! Choria JWT logins (`connections.<name>.choria`) against a real nats-server standing in for a
//! Choria broker.
//!
//! A plain nats-server does not know Choria tokens, so its auth callout hands every login to a
//! service in this test that does what a Choria broker's authenticator does: it takes a token
//! login only over TLS, takes the Choria JWT from the CONNECT `auth_token`, verifies it was signed
//! by the trusted issuer, verifies the CONNECT `sig` over the server's nonce with the ed25519
//! `public_key` the token carries, and then grants what a non-admin Choria client gets:
//! publishing for JetStream, subscribing only to `<collective>.reply.<md5 of the caller id>.>`.
//! Anything else is denied.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::ConnectOptions;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::{ferry_command, stream_message_count, wait_until, Ferry, NatsServer, ServerOptions};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use futures_util::StreamExt as _;
use md5::{Digest as _, Md5};
use serde_json::{json, Value};

const CALLER: &str = "choria=ferry.mcollective";
const COLLECTIVE: &str = "choria";

/// The test-only certificates (see tests/tls/README).
fn tls_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tls")
        .join(name)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// `header.payload.signature`, each base64url without padding.
fn jwt(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = sign(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn claims_of(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// A Choria client token for `client`'s public key, signed (EdDSA) by `issuer`, as
/// `choria jwt client` issues them.
fn choria_token(issuer: &SigningKey, client: &SigningKey, caller: &str) -> String {
    let claims = json!({
        "purpose": "choria_client_id",
        "callerid": caller,
        "public_key": hex(&client.verifying_key().to_bytes()),
        "iss": "Choria Test Issuer",
        "iat": now(),
        "exp": now() + 3600,
        "jti": "ferry-test",
    });
    jwt(&json!({"alg": "EdDSA", "typ": "JWT"}), &claims, |input| {
        issuer.sign(input).to_bytes().to_vec()
    })
}

/// The test's Choria broker authenticator: what it trusts, and how many logins it let in.
struct Authenticator {
    /// Trusted Choria token issuer.
    issuer: VerifyingKey,
    /// The auth callout account key: signs the responses and the user JWTs.
    account: nkeys::KeyPair,
    allowed: AtomicUsize,
    denied: AtomicUsize,
}

impl Authenticator {
    /// The user permissions for a verified Choria login, or why it is refused.
    fn verify(&self, request: &Value) -> Result<(String, Value), String> {
        // A Choria broker checks token logins only on TLS connections and refuses the rest.
        if request["client_tls"].is_null() {
            return Err("unverified connection without TLS".into());
        }
        let opts = &request["connect_opts"];
        // A Choria broker reads the token from auth_token. (The client sends it as jwt too, but
        // a server outside operator mode drops that field before the callout sees it.)
        let token = opts["auth_token"].as_str().ok_or("no auth_token")?;
        let parts: Vec<&str> = token.split('.').collect();
        let [header, payload, signature] = parts[..] else {
            return Err("not a JWT".into());
        };
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|e| format!("token signature: {e}"))?;
        let signature = Signature::from_slice(&signature).map_err(|e| e.to_string())?;
        self.issuer
            .verify(format!("{header}.{payload}").as_bytes(), &signature)
            .map_err(|_| "token not signed by the trusted issuer".to_string())?;
        let claims = claims_of(token).ok_or("token payload")?;
        if claims["purpose"] != "choria_client_id" {
            return Err("not a client token".into());
        }
        if claims["exp"].as_i64().unwrap_or(0) <= now() {
            return Err("token expired".into());
        }
        let caller = claims["callerid"]
            .as_str()
            .ok_or("no callerid")?
            .to_string();
        let public_key = claims["public_key"].as_str().ok_or("no public_key")?;
        let public_key: [u8; 32] = (0..32)
            .map(|i| u8::from_str_radix(&public_key[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|e| e.to_string())?
            .try_into()
            .map_err(|_| "public_key length")?;
        let public_key = VerifyingKey::from_bytes(&public_key).map_err(|e| e.to_string())?;
        // The nonce as the server sent it in INFO; the sig is base64url without padding.
        let nonce = request["client_info"]["nonce"].as_str().ok_or("no nonce")?;
        let sig = opts["sig"].as_str().ok_or("nonce not signed")?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|e| format!("sig not base64url: {e}"))?;
        let sig = Signature::from_slice(&sig).map_err(|e| e.to_string())?;
        public_key
            .verify(nonce.as_bytes(), &sig)
            .map_err(|_| "nonce signature does not verify with the token's key".to_string())?;
        let private_replies = format!(
            "{COLLECTIVE}.reply.{}.>",
            hex(&Md5::digest(caller.as_bytes()))
        );
        let permissions = json!({
            "pub": { "allow": ["$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "DST.>", "$SYS.REQ.USER.INFO"] },
            "sub": { "allow": [private_replies] },
        });
        Ok((caller, permissions))
    }

    /// The signed authorization response to one request JWT.
    fn respond(&self, request_jwt: &[u8]) -> Option<String> {
        let request = claims_of(std::str::from_utf8(request_jwt).ok()?)?;
        let request = &request["nats"];
        let user = request["user_nkey"].as_str()?.to_string();
        let server = request["server_id"]["id"].as_str()?.to_string();
        let issuer = self.account.public_key();
        let header = json!({"typ": "JWT", "alg": "ed25519-nkey"});
        let sign = |input: &[u8]| self.account.sign(input).expect("the account key signs");
        let mut response = json!({
            "jti": format!("r{}", now()), "iat": now(), "iss": issuer, "sub": user, "aud": server,
            "nats": { "type": "authorization_response", "version": 2 },
        });
        match self.verify(request) {
            Ok((caller, permissions)) => {
                self.allowed.fetch_add(1, Ordering::SeqCst);
                let mut nats = permissions;
                nats["subs"] = json!(-1);
                nats["data"] = json!(-1);
                nats["payload"] = json!(-1);
                nats["type"] = json!("user");
                nats["version"] = json!(2);
                let user_claims = json!({
                    "jti": format!("u{}", now()), "iat": now(), "iss": issuer, "sub": user,
                    "name": caller, "aud": "APP", "nats": nats,
                });
                response["nats"]["jwt"] = json!(jwt(&header, &user_claims, sign));
            }
            Err(reason) => {
                self.denied.fetch_add(1, Ordering::SeqCst);
                response["nats"]["error"] = json!(reason);
            }
        }
        Some(jwt(&header, &response, sign))
    }
}

/// A nats-server whose auth callout is the test's authenticator, with JetStream in account APP
/// and an `admin` user there that bypasses the callout.
struct Broker {
    server: NatsServer,
    auth: Arc<Authenticator>,
    _service: tokio::task::JoinHandle<()>,
}

impl Broker {
    async fn start(issuer: VerifyingKey) -> Broker {
        let account = nkeys::KeyPair::new_account();
        let service_user = nkeys::KeyPair::new_user();
        let service_pub = service_user.public_key();
        // The service's nkey user also makes the server send a nonce to every client.
        let config = format!(
            r#"tls {{ cert_file: "{}", key_file: "{}" }}
accounts {{
  AUTH: {{ users: [ {{ nkey: "{service_pub}" }} ] }}
  APP: {{ jetstream: enabled, users: [ {{ user: admin, password: admin }} ] }}
}}
authorization {{
  auth_callout {{
    issuer: "{}"
    account: AUTH
    auth_users: [ "{service_pub}", admin ]
  }}
}}"#,
            tls_file("server.pem").display(),
            tls_file("server-key.pem").display(),
            account.public_key()
        );
        let server = NatsServer::start_with(ServerOptions::default().config(config));
        let auth = Arc::new(Authenticator {
            issuer,
            account,
            allowed: AtomicUsize::new(0),
            denied: AtomicUsize::new(0),
        });
        let seed = service_user.seed().expect("the service user has a seed");
        let client = ConnectOptions::with_nkey(seed)
            .require_tls(true)
            .add_root_certificates(tls_file("ca.pem"))
            .connect(Self::url_of(&server))
            .await
            .expect("the auth service connects");
        let mut requests = client
            .subscribe("$SYS.REQ.USER.AUTH")
            .await
            .expect("subscribe to auth requests");
        client.flush().await.expect("flush");
        let service_auth = auth.clone();
        let service = tokio::spawn(async move {
            while let Some(message) = requests.next().await {
                let (Some(reply), Some(response)) =
                    (message.reply, service_auth.respond(&message.payload))
                else {
                    continue;
                };
                let _ = client.publish(reply, response.into()).await;
            }
        });
        Broker {
            server,
            auth,
            _service: service,
        }
    }

    fn url_of(server: &NatsServer) -> String {
        format!("tls://127.0.0.1:{}", server.port())
    }

    fn url(&self) -> String {
        Self::url_of(&self.server)
    }

    fn admin() -> ConnectOptions {
        ConnectOptions::with_user_and_password("admin".into(), "admin".into())
            .require_tls(true)
            .add_root_certificates(tls_file("ca.pem"))
    }

    /// SRC with three messages and an empty DST, made as admin.
    async fn streams(&self) -> async_nats::jetstream::Context {
        let client = Self::admin()
            .connect(self.url())
            .await
            .expect("admin connects");
        let js = async_nats::jetstream::new(client);
        for (name, subject) in [("SRC", "SRC.>"), ("DST", "DST.>")] {
            js.create_stream(async_nats::jetstream::stream::Config {
                name: name.into(),
                subjects: vec![subject.into()],
                ..Default::default()
            })
            .await
            .expect("create stream");
        }
        for i in 0..3 {
            js.publish(format!("SRC.{i}"), format!("m{i}").into())
                .await
                .expect("publish")
                .await
                .expect("ack");
        }
        js
    }
}

/// Files for a Choria login in a fresh directory: the token and the seed, hex, mode 0600.
struct LoginFiles {
    dir: tempfile::TempDir,
}

impl LoginFiles {
    fn new(token: &str, seed: &SigningKey) -> LoginFiles {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("ferry.jwt"), token).expect("write jwt");
        let seed_path = dir.path().join("ferry.seed");
        std::fs::write(&seed_path, hex(&seed.to_bytes())).expect("write seed");
        std::fs::set_permissions(&seed_path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod seed");
        LoginFiles { dir }
    }

    fn jwt(&self) -> String {
        self.dir.path().join("ferry.jwt").display().to_string()
    }

    fn seed(&self) -> String {
        self.dir.path().join("ferry.seed").display().to_string()
    }

    /// A replicator from SRC to DST over connection `core`, logging in with these files.
    fn yaml(&self, url: &str, seed: &str) -> String {
        format!(
            r#"
state_dir: "{{state_dir}}"
monitor: {{ listen: "{{monitor}}" }}
connections:
  core:
    servers: ["{url}"]
    tls: {{ ca: "{}" }}
    choria: {{ jwt_file: "{}", seed_file: "{seed}", collective: {COLLECTIVE} }}
replicators:
  - name: copy
    from: {{ connection: core, stream: SRC }}
    to: {{ connection: core, stream: DST, subject_prefix: DST }}
    start: all
"#,
            tls_file("ca.pem").display(),
            self.jwt()
        )
    }
}

fn key(byte: u8) -> SigningKey {
    SigningKey::from_bytes(&[byte; 32])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicator_logs_in_with_a_choria_jwt_and_replies_under_the_collective() {
    let (issuer, client) = (key(11), key(21));
    let broker = Broker::start(issuer.verifying_key()).await;
    let js = broker.streams().await;
    let files = LoginFiles::new(&choria_token(&issuer, &client, CALLER), &client);

    // The authenticator is strict: the same token with a nonce signed by another key is refused.
    let impostor = key(22);
    let refused = ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(tls_file("ca.pem"))
        .token(choria_token(&issuer, &client, CALLER))
        .jwt(choria_token(&issuer, &client, CALLER), move |nonce| {
            let impostor = impostor.clone();
            async move { Ok(impostor.sign(&nonce).to_bytes().to_vec()) }
        })
        .connect(broker.url())
        .await;
    assert!(
        refused.is_err(),
        "a nonce signed with another key is refused"
    );
    assert_eq!(broker.auth.denied.load(Ordering::SeqCst), 1);

    let mut ferry = Ferry::start(&files.yaml(&broker.url(), &files.seed()));
    ferry.wait_ready().await;
    wait_until("the copies in DST", Duration::from_secs(30), || {
        let js = js.clone();
        async move { stream_message_count(&js, "DST").await == 3 }
    })
    .await;
    assert!(broker.auth.allowed.load(Ordering::SeqCst) >= 1);
    // Subscribing is allowed only under choria.reply.<md5 of the caller>: ferry's inboxes are
    // there, derived from the collective and the token, with no inbox_prefix set.
    let log = ferry.log();
    assert!(
        !log.to_lowercase().contains("permissions violation"),
        "no subscription outside the private reply subjects: {log}"
    );
    let seed_hex = hex(&client.to_bytes());
    assert!(!log.contains(&seed_hex), "the seed is never logged");
}

/// An explicit `inbox_prefix` wins over the one the collective implies; here one the broker does
/// not let this client subscribe below, which also shows the permissions bite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_inbox_prefix_wins_over_the_collective() {
    let (issuer, client) = (key(15), key(51));
    let broker = Broker::start(issuer.verifying_key()).await;
    let _js = broker.streams().await;
    let files = LoginFiles::new(&choria_token(&issuer, &client, CALLER), &client);
    let yaml = files.yaml(&broker.url(), &files.seed()).replace(
        "collective: choria }",
        "collective: choria }\n    inbox_prefix: ferry.inbox",
    );
    let ferry = Ferry::start(&yaml);
    wait_until(
        "the refused inbox subscription on /status",
        Duration::from_secs(30),
        || async {
            matches!(ferry.get("/status").await, Ok((200, body)) if body.to_lowercase().contains("permissions violation"))
        },
    )
    .await;
    assert!(
        broker.auth.allowed.load(Ordering::SeqCst) >= 1,
        "the login itself works"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_the_broker_refuses_names_the_choria_keys() {
    let (issuer, client) = (key(12), key(31));
    let broker = Broker::start(issuer.verifying_key()).await;
    // A well-formed token for the right key, but issued by an issuer the broker does not trust.
    let untrusted = key(13);
    let files = LoginFiles::new(&choria_token(&untrusted, &client, CALLER), &client);
    let ferry = Ferry::start(&files.yaml(&broker.url(), &files.seed()));
    wait_until(
        "the refused login on /status",
        Duration::from_secs(30),
        || async {
            matches!(ferry.get("/status").await, Ok((200, body)) if body.contains("connections.core.choria"))
        },
    )
    .await;
    assert!(matches!(ferry.get("/readyz").await, Ok((503, _))));
    assert!(broker.auth.denied.load(Ordering::SeqCst) >= 1);
    let log = ferry.log();
    assert!(
        log.contains("authorization violation") && log.contains("check connections.core.choria"),
        "the log names the keys to check: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_a_missing_or_wrong_seed_file() {
    let (issuer, client) = (key(14), key(41));
    let files = LoginFiles::new(&choria_token(&issuer, &client, CALLER), &client);
    // `ferry check` connects nowhere: the server address need not exist.
    let url = "tls://127.0.0.1:1";
    let check = |yaml: String| {
        let path = files.dir.path().join("ferry.yaml");
        let state_dir = files.dir.path().join("state").display().to_string();
        let yaml = yaml
            .replace("{state_dir}", &state_dir)
            .replace("{monitor}", "127.0.0.1:9464");
        std::fs::write(&path, yaml).expect("write config");
        ferry_command()
            .arg("check")
            .arg("-c")
            .arg(&path)
            .output()
            .expect("ferry runs")
    };
    let valid = check(files.yaml(url, &files.seed()));
    assert!(
        valid.status.success(),
        "{}",
        String::from_utf8_lossy(&valid.stderr)
    );

    let missing = files.dir.path().join("missing.seed").display().to_string();
    let output = check(files.yaml(url, &missing));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("connections.core.choria.seed_file")
            && stderr.contains(&missing)
            && stderr.contains("check the path and permissions"),
        "names the key, the file and the fix: {stderr}"
    );

    let other = LoginFiles::new("unused", &key(42));
    let output = check(files.yaml(url, &other.seed()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("connections.core.choria.seed_file")
            && stderr.contains("is not the key of the JWT"),
        "a seed for another key is refused: {stderr}"
    );
    assert!(
        !stderr.contains(&hex(&key(42).to_bytes())),
        "the seed is never shown"
    );
}
