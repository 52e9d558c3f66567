//! Logging in to a Choria broker with a Choria JWT and its ed25519 seed (a connection's
//! `choria: { jwt_file, seed_file, collective }`), the way go-choria and Choria's stream
//! replicator do:
//!
//! - The JWT (a `choria_client_id` or `choria_server` token) goes into the CONNECT as both
//!   `auth_token` and `jwt`: the Choria broker reads it from `auth_token`, while a NATS server
//!   with auth callout passes both on.
//! - The server's nonce (the string from INFO, as bytes) is signed with the ed25519 key made
//!   from the seed; the CONNECT `sig` is that 64-byte signature, base64url without padding. The
//!   broker verifies it against the hex `public_key` claim of the JWT.
//! - The seed file holds the 32-byte seed hex-encoded (64 characters), as go-choria writes it.
//!   go-choria decodes the file as it is; ferry also accepts surrounding whitespace (a trailing
//!   newline from an editor), nothing else.
//! - A client may only subscribe to its private reply subjects, `<collective>.reply.<hash>.>`
//!   where `<hash>` is the lowercase hex md5 of the JWT's caller id (`callerid` of a client
//!   token, `identity` of a server token). ferry's inboxes go there unless `inbox_prefix` says
//!   otherwise. (Brokers since the FIPS work also accept the sha256 hex; older ones only the md5,
//!   so ferry uses the md5, as go-choria does outside FIPS mode.)
//!
//! The seed never leaves this module except as the signing key; it is never logged or shown.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use md5::{Digest as _, Md5};

use crate::config::schema::ChoriaLogin;

/// The token purposes a Choria broker accepts for a nonce-signed login.
const CLIENT_PURPOSE: &str = "choria_client_id";
const SERVER_PURPOSE: &str = "choria_server";

/// A problem with one of the two files, at its key (`choria.jwt_file` or `choria.seed_file`).
#[derive(Debug)]
pub struct FileProblem {
    pub key: &'static str,
    pub path: PathBuf,
    pub problem: Problem,
}

#[derive(Debug)]
pub enum Problem {
    /// The file cannot be read.
    Unreadable(std::io::Error),
    /// It was read but does not hold what it should; the message says what and how to fix it.
    Invalid(String),
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            Problem::Unreadable(error) => write!(
                f,
                "cannot read {}: {error} (check the path and permissions)",
                self.path.display()
            ),
            Problem::Invalid(message) => write!(f, "{}: {message}", self.path.display()),
        }
    }
}

/// The claims of a Choria token that the login needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// `choria_client_id` or `choria_server`.
    pub purpose: String,
    /// The caller id (client) or identity (server) the broker names the connection by.
    pub caller: String,
    /// The ed25519 public key the broker verifies the nonce signature with.
    pub public_key: [u8; 32],
    /// Expiry, seconds since the epoch.
    pub expires: Option<i64>,
}

/// A loaded login: the token to send and the key to sign the server's nonce with.
#[derive(Clone)]
pub struct Login {
    token: String,
    claims: TokenClaims,
    key: SigningKey,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("claims", &self.claims)
            .field("key", &"***")
            .finish()
    }
}

impl Login {
    /// Reads the JWT and the seed named by `config`. Does not check that they belong together
    /// (see [`Login::check`]): a broker that refuses the pair says so itself.
    pub fn read(config: &ChoriaLogin) -> Result<Login, FileProblem> {
        let token = read_file("choria.jwt_file", &config.jwt_file)?;
        let token = token.trim().to_string();
        let claims = parse_token(&token).map_err(|message| FileProblem {
            key: "choria.jwt_file",
            path: config.jwt_file.clone(),
            problem: Problem::Invalid(message),
        })?;
        let seed = read_file("choria.seed_file", &config.seed_file)?;
        let key = parse_seed(&seed).map_err(|message| FileProblem {
            key: "choria.seed_file",
            path: config.seed_file.clone(),
            problem: Problem::Invalid(message),
        })?;
        Ok(Login { token, claims, key })
    }

    /// Whether the login can work now: the seed's public key is the one in the JWT, and the
    /// JWT has not expired. `now` is seconds since the epoch.
    pub fn check(&self, config: &ChoriaLogin, now: i64) -> Result<(), FileProblem> {
        if self.key.verifying_key().to_bytes() != self.claims.public_key {
            return Err(FileProblem {
                key: "choria.seed_file",
                path: config.seed_file.clone(),
                problem: Problem::Invalid(format!(
                    "is not the key of the JWT in {} (its public_key claim names another key): give the seed the token was issued for",
                    config.jwt_file.display()
                )),
            });
        }
        if let Some(expires) = self.claims.expires.filter(|&expires| expires <= now) {
            return Err(FileProblem {
                key: "choria.jwt_file",
                path: config.jwt_file.clone(),
                problem: Problem::Invalid(format!(
                    "the token expired {} ago: issue a new one (e.g. `choria jwt client`) for {:?}",
                    crate::config::units::format_duration(std::time::Duration::from_secs(
                        u64::try_from(now - expires).unwrap_or(0)
                    )),
                    self.claims.caller
                )),
            });
        }
        Ok(())
    }

    /// The JWT, sent as the CONNECT `auth_token` and `jwt`.
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn claims(&self) -> &TokenClaims {
        &self.claims
    }

    /// The CONNECT `sig` before encoding: the ed25519 signature of the nonce bytes.
    pub fn sign(&self, nonce: &[u8]) -> Vec<u8> {
        self.key.sign(nonce).to_bytes().to_vec()
    }

    /// `<collective>.reply.<md5 hex of the caller id>`: the subjects this login may subscribe
    /// below.
    pub fn inbox_prefix(&self, collective: &str) -> String {
        reply_prefix(collective, &self.claims.caller)
    }
}

/// `<collective>.reply.<md5 hex of caller>`, go-choria's private reply subject prefix.
pub fn reply_prefix(collective: &str, caller: &str) -> String {
    let hash = Md5::digest(caller.as_bytes());
    let hex: String = hash.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{collective}.reply.{hex}")
}

fn read_file(key: &'static str, path: &Path) -> Result<String, FileProblem> {
    std::fs::read_to_string(path).map_err(|error| FileProblem {
        key,
        path: path.to_path_buf(),
        problem: match error.kind() {
            std::io::ErrorKind::InvalidData => {
                Problem::Invalid("is not text (a Choria JWT or a hex seed is ASCII)".to_string())
            }
            _ => Problem::Unreadable(error),
        },
    })
}

/// The 32-byte seed from its hex form. Messages never quote the file: it is a secret.
pub fn parse_seed(text: &str) -> Result<SigningKey, String> {
    let hex = text.trim();
    const HINT: &str = "a Choria seed file holds 64 hex characters (the 32-byte ed25519 seed), as `choria jwt keys` writes it";
    if hex.len() != 64 {
        return Err(format!(
            "holds {} characters, not a seed ({HINT})",
            hex.chars().count()
        ));
    }
    let mut seed = [0u8; 32];
    for (index, pair) in hex.as_bytes().chunks(2).enumerate() {
        let digits = std::str::from_utf8(pair).ok();
        let byte = digits.and_then(|digits| u8::from_str_radix(digits, 16).ok());
        match byte {
            Some(byte) => seed[index] = byte,
            None => return Err(format!("holds characters that are not hex ({HINT})")),
        }
    }
    Ok(SigningKey::from_bytes(&seed))
}

/// The claims the login needs, from the token's payload (unverified: the broker verifies it).
pub fn parse_token(token: &str) -> Result<TokenClaims, String> {
    const HINT: &str =
        "give a Choria client or server JWT, e.g. the one `choria jwt client` issues";
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|part| part.is_empty()) {
        return Err(format!(
            "is not a JWT (three base64url parts separated by dots) ({HINT})"
        ));
    }
    let payload = URL_SAFE_NO_PAD
        .decode(parts[1].trim_end_matches('='))
        .map_err(|_| format!("the JWT's payload is not base64url ({HINT})"))?;
    let claims: serde_json::Value = serde_json::from_slice(&payload)
        .map_err(|_| format!("the JWT's payload is not a JSON object ({HINT})"))?;
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let purpose = text("purpose");
    let caller = match purpose.as_str() {
        CLIENT_PURPOSE => text("callerid"),
        SERVER_PURPOSE => text("identity"),
        "" => return Err(format!("the JWT has no Choria purpose claim ({HINT})")),
        other => {
            return Err(format!(
                "is a {other:?} token; a broker login takes a {CLIENT_PURPOSE} or {SERVER_PURPOSE} token ({HINT})"
            ))
        }
    };
    if caller.is_empty() {
        let claim = if purpose == CLIENT_PURPOSE {
            "callerid"
        } else {
            "identity"
        };
        return Err(format!("the {purpose} token has no {claim} claim ({HINT})"));
    }
    let public_key = text("public_key");
    let public_key = decode_public_key(&public_key).ok_or_else(|| {
        format!(
            "the JWT has no valid public_key claim (64 hex characters), so the broker could not verify the signed nonce: issue the token for the seed's public key ({HINT})"
        )
    })?;
    let expires = claims.get("exp").and_then(serde_json::Value::as_i64);
    Ok(TokenClaims {
        purpose,
        caller,
        public_key,
        expires,
    })
}

fn decode_public_key(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (index, pair) in hex.as_bytes().chunks(2).enumerate() {
        key[index] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(key)
}

/// Choria logins for unit tests: a token for a seed's key, unsigned (ferry never verifies it).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Writes `<name>.jwt` and `<name>.seed` into `dir` for a client token of `caller`, with a
    /// key derived from `key_byte`; returns their paths.
    pub fn write_login(dir: &Path, name: &str, caller: &str, key_byte: u8) -> (PathBuf, PathBuf) {
        let seed = [key_byte; 32];
        let public: String = SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "purpose": CLIENT_PURPOSE, "callerid": caller, "public_key": public,
        });
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let jwt = dir.join(format!("{name}.jwt"));
        let seed_file = dir.join(format!("{name}.seed"));
        let seed_hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(&jwt, format!("{header}.{payload}.c2ln")).expect("write the jwt");
        std::fs::write(&seed_file, seed_hex).expect("write the seed");
        (jwt, seed_file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_with(claims: serde_json::Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        format!("{header}.{payload}.c2ln")
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_reply_prefix_is_the_md5_of_the_caller() {
        // md5("choria=ferry.mcollective"), as go-choria's ClientIDClaims.UniqueID computes it
        // (and as docs/configuration.md shows it).
        assert_eq!(
            reply_prefix("choria", "choria=ferry.mcollective"),
            "choria.reply.909c686cee60b9c10c2feec42092f428"
        );
        assert_eq!(
            reply_prefix("c", ""),
            "c.reply.d41d8cd98f00b204e9800998ecf8427e"
        );
    }

    #[test]
    fn a_seed_is_64_hex_characters_with_optional_surrounding_whitespace() {
        let seed = "8e7099f92288dfe8ac899dba887eaeca9fa33cf8a794fd73e76696670c63ea38";
        assert!(parse_seed(seed).is_ok());
        assert!(parse_seed(&format!("{seed}\n")).is_ok());
        let short = parse_seed(&seed[..62]).unwrap_err();
        assert!(short.contains("62 characters"), "{short}");
        let not_hex = parse_seed(&seed.replace('8', "g")).unwrap_err();
        assert!(not_hex.contains("not hex"), "{not_hex}");
        assert!(
            !not_hex.contains("7099"),
            "the seed is never quoted: {not_hex}"
        );
    }

    #[test]
    fn client_and_server_tokens_name_their_caller() {
        let key = hex(&[7u8; 32]);
        let client = token_with(serde_json::json!({
            "purpose": "choria_client_id", "callerid": "choria=ferry", "public_key": key, "exp": 5
        }));
        let claims = parse_token(&client).unwrap();
        assert_eq!(claims.caller, "choria=ferry");
        assert_eq!(claims.public_key, [7u8; 32]);
        assert_eq!(claims.expires, Some(5));
        let server = token_with(serde_json::json!({
            "purpose": "choria_server", "identity": "n1.example.net", "public_key": key
        }));
        assert_eq!(parse_token(&server).unwrap().caller, "n1.example.net");
    }

    #[test]
    fn tokens_a_broker_would_not_take_are_refused_with_the_reason() {
        let key = hex(&[7u8; 32]);
        let cases = [
            ("not-a-jwt".to_string(), "is not a JWT"),
            (
                token_with(
                    serde_json::json!({"purpose": "choria_provisioning", "public_key": key}),
                ),
                "\"choria_provisioning\" token",
            ),
            (
                token_with(serde_json::json!({"purpose": "choria_client_id", "public_key": key})),
                "no callerid claim",
            ),
            (
                token_with(serde_json::json!({"purpose": "choria_client_id", "callerid": "c"})),
                "no valid public_key",
            ),
            (
                token_with(serde_json::json!({"sub": "x"})),
                "no Choria purpose",
            ),
        ];
        for (token, expected) in cases {
            let error = parse_token(&token).unwrap_err();
            assert!(error.contains(expected), "{expected:?} in {error:?}");
        }
    }
}
