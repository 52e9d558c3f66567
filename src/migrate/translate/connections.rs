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
    tls: Option<SrTls>,
    choria: Option<SrChoria>,
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
        for server in split_servers(url) {
            let (server, login) = split_login(&server);
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
        let mut login = logins.into_iter().next();
        if complete.is_some() && login.take().is_some() {
            notes.add(
                at,
                "the URL carries a login beside the choria block; the Choria login is used and the URL's dropped",
            );
        }
        if complete.is_some() && tls.is_none_or(SrTls::is_empty) {
            notes.add(
                at,
                "a Choria login without TLS settings, where SR skips verifying the broker's certificate; ferry always verifies: add tls.ca with the broker's CA",
            );
        }
        let identity = Identity {
            servers,
            login,
            tls: tls.filter(|t| !t.is_empty()).cloned(),
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
    if let Some(tls) = &identity.tls {
        let mut block = MapBuilder::new();
        for (key, value) in [("ca", &tls.ca), ("cert", &tls.cert), ("key", &tls.key)] {
            if !value.is_empty() {
                block.text(key, value);
            }
        }
        out.node("tls", block.build());
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
