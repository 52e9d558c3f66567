//! SR's URLs, TLS and Choria blocks → ferry's named connections.

use std::collections::BTreeMap;

use super::Notes;
use crate::migrate::sr_config::{SrChoria, SrTls};
use crate::migrate::yaml_out::{text_list, MapBuilder, Node};

/// The distinct connections, named by role in order of appearance (`source`, `target`,
/// `source_2`, ...); one used both ways keeps its first name.
#[derive(Default)]
pub(super) struct Connections {
    by_identity: Vec<(Identity, String, MapBuilder)>,
    per_role: BTreeMap<&'static str, usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    servers: Vec<String>,
    login: Option<Login>,
    /// `?credentials=FILE` on a URL.
    credentials: Option<String>,
    tls: Option<SrTls>,
    /// `?tls_handshake_first=true` on a URL.
    handshake_first: bool,
    /// `?connect_timeout=D` on a URL, as ferry writes durations.
    connect_timeout: Option<String>,
    choria: Option<SrChoria>,
}

/// What SR reads from the query of its URLs (`buildNatsOptions` in its `internal/util`): the
/// first URL with a query, until one names credentials.
#[derive(Debug, Default)]
struct UrlOptions {
    credentials: Option<String>,
    handshake_first: bool,
    connect_timeout: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Login {
    UserPassword(String, String),
    Token(String),
}

impl Connections {
    pub(super) fn add(
        &mut self,
        role: &'static str,
        url: &str,
        tls: Option<&SrTls>,
        choria: Option<&SrChoria>,
        at: &str,
        notes: &mut Notes,
    ) -> String {
        let mut servers = Vec::new();
        let mut logins = Vec::new();
        let mut options = UrlOptions::default();
        for server in split_servers(url) {
            let (server, query) = split_query(&server);
            if options.credentials.is_none() {
                options.read(query, at, notes);
            }
            let (server, login) = split_login(server);
            servers.push(server);
            logins.extend(login);
        }
        logins.dedup();
        if logins.len() > 1 {
            notes.add(
                at,
                "the URLs carry different logins; ferry uses one per connection: the first is kept",
            );
        }
        // SR logs in the Choria way only with both files; any other choria block it ignores.
        let choria = choria.filter(|c| !c.is_empty());
        let complete = choria.filter(|c| !c.seed_file.is_empty() && !c.jwt_file.is_empty());
        if choria.is_some() && complete.is_none() {
            notes.add(
                at.replace("_url", "_choria"),
                "a choria block without both jwt_file and seed_file, which SR ignores; left out",
            );
        }
        // ferry takes one login per connection: the Choria login, else the credentials file,
        // else the URL's (the order in which SR's client lets one override another).
        let mut login = logins.into_iter().next();
        let mut credentials = options.credentials.take();
        if complete.is_some() && (login.is_some() || credentials.is_some()) {
            login = None;
            credentials = None;
            notes.add(
                at,
                "the URL carries a login beside the choria block; the Choria login is used and the URL's dropped",
            );
        } else if credentials.is_some() && login.take().is_some() {
            notes.add(
                at,
                "the URL carries a user or token beside ?credentials; the credentials file is used",
            );
        }
        // SR counts TLS as configured only with a client certificate and key; without them a
        // Choria login skips verifying the broker, even with a CA given.
        if complete.is_some() && tls.is_none_or(|t| t.cert.is_empty() || t.key.is_empty()) {
            notes.add(
                at,
                "a Choria login without a client certificate and key, where SR skips verifying the broker's certificate; ferry always verifies: give tls.ca with the broker's CA",
            );
        }
        let identity = Identity {
            servers,
            login,
            credentials,
            tls: tls.filter(|t| !t.is_empty()).cloned(),
            handshake_first: options.handshake_first,
            connect_timeout: options.connect_timeout,
            choria: complete.cloned(),
        };
        if let Some((_, name, _)) = self.by_identity.iter().find(|(i, _, _)| *i == identity) {
            return name.clone();
        }
        let count = self.per_role.entry(role).or_default();
        *count += 1;
        let name = if *count == 1 {
            role.to_string()
        } else {
            format!("{role}_{count}")
        };
        let block = connection_block(&identity, at);
        self.by_identity.push((identity, name.clone(), block));
        name
    }

    pub(super) fn build(self) -> Node {
        let mut map = MapBuilder::new();
        for (_, name, block) in self.by_identity {
            map.node(&name, block.build());
        }
        map.build()
    }
}

fn connection_block(identity: &Identity, at: &str) -> MapBuilder {
    let mut out = MapBuilder::new();
    out.comment(format!("From {at}."));
    out.node("servers", text_list(&identity.servers));
    match &identity.login {
        Some(Login::UserPassword(user, password)) => {
            out.comment(
                "Moved out of the URL (ferry refuses credentials in URLs, which get logged);",
            )
            .comment("better: password: \"${NATS_PASSWORD}\" with the variable set for ferry.")
            .text("user", user)
            .text("password", password);
        }
        Some(Login::Token(token)) => {
            out.comment("Moved out of the URL; better: token: \"${NATS_TOKEN}\".")
                .text("token", token);
        }
        None => {}
    }
    if let Some(credentials) = &identity.credentials {
        out.comment("From the URL's ?credentials.")
            .text("credentials", credentials);
    }
    if identity.tls.is_some() || identity.handshake_first {
        let mut block = MapBuilder::new();
        if let Some(tls) = &identity.tls {
            for (key, value) in [("ca", &tls.ca), ("cert", &tls.cert), ("key", &tls.key)] {
                if !value.is_empty() {
                    block.text(key, value);
                }
            }
        }
        if identity.handshake_first {
            block
                .comment("From the URL's ?tls_handshake_first.")
                .raw("handshake_first", true);
        }
        out.node("tls", block.build());
    }
    if let Some(timeout) = &identity.connect_timeout {
        out.comment("From the URL's ?connect_timeout.")
            .text("connect_timeout", timeout);
    }
    if let Some(choria) = &identity.choria {
        let mut block = MapBuilder::new();
        for (key, value) in [
            ("jwt_file", &choria.jwt_file),
            ("seed_file", &choria.seed_file),
            ("collective", &choria.collective),
        ] {
            if !value.is_empty() {
                block.text(key, value);
            }
        }
        out.comment("SR's choria block: log in with the Choria JWT, signing with the seed.")
            .node("choria", block.build());
    }
    out
}

impl UrlOptions {
    /// Reads one URL's query as SR does; what ferry has no key for is noted.
    fn read(&mut self, query: &str, at: &str, notes: &mut Notes) {
        let pairs: Vec<(String, String)> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(key), percent_decode(value))
            })
            .collect();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let truthy =
            |value: Option<&str>| matches!(value, Some("1" | "t" | "T" | "true" | "TRUE" | "True"));
        if let Some(file) = get("credentials") {
            self.credentials = Some(file.to_string());
        }
        if truthy(get("tls_handshake_first")) {
            self.handshake_first = true;
        }
        if truthy(get("insecure")) {
            notes.add(
                at,
                "?insecure skips verifying the server's certificate in SR; ferry always verifies: give tls.ca with the server's CA",
            );
        }
        if let Some(text) = get("connect_timeout") {
            match super::sr_duration(text, at) {
                Ok(timeout) => {
                    self.connect_timeout = Some(crate::config::units::format_duration(timeout));
                }
                Err(_) => notes.add(
                    at,
                    format!("?connect_timeout={text} is not a duration; SR ignores it, and so does this file"),
                ),
            }
        }
        if get("jwt").is_some() && get("nkey").is_some() {
            notes.add(
                at,
                "?jwt and ?nkey name a JWT file and a seed file; ferry reads them as one .creds file: join them (`nsc generate creds` or the two files in the creds layout) and set credentials",
            );
        }
        for (key, _) in &pairs {
            let known = [
                "credentials",
                "tls_handshake_first",
                "insecure",
                "connect_timeout",
                "jwt",
                "nkey",
            ];
            if !known.contains(&key.as_str()) {
                notes.add(at, format!("?{key} is not an option SR reads; left out"));
            }
        }
    }
}

/// A server URL without its query (`nats://h:4222?credentials=f` → `nats://h:4222`, `credentials=f`).
fn split_query(server: &str) -> (&str, &str) {
    server.split_once('?').unwrap_or((server, ""))
}

/// The server a URL names, without login or query: what identifies it.
pub(super) fn server_address(server: &str) -> String {
    split_login(split_query(server).0).0
}

/// SR's comma-separated server list.
pub(super) fn split_servers(url: &str) -> Vec<String> {
    url.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `nats://user:pass@host:4222` → (`nats://host:4222`, user and password); a lone token before
/// the `@` is a token. URLs without a scheme are read as SR's client reads them.
pub(super) fn split_login(server: &str) -> (String, Option<Login>) {
    let (scheme, rest) = match server.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), server),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return (server.to_string(), None);
    };
    let userinfo = &rest[..at];
    let host = &rest[at + 1..];
    let login = match userinfo.split_once(':') {
        Some((user, password)) => {
            Login::UserPassword(percent_decode(user), percent_decode(password))
        }
        None => Login::Token(percent_decode(userinfo)),
    };
    (format!("{scheme}{host}"), Some(login))
}

/// URL userinfo may be percent-encoded (`p%40ss` for `p@ss`).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = |at: usize| {
            bytes
                .get(at)
                .and_then(|b| (*b as char).to_digit(16))
                .map(|d| d as u8)
        };
        match (bytes[index], hex(index + 1), hex(index + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push(high * 16 + low);
                index += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
