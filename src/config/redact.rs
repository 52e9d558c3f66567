//! Keeps secrets out of the problems `ferry check` and `ferry run` report about a config file.
//!
//! A problem's message often quotes the value it is about (`invalid type: string "...", expected
//! usize`, `"nats://..." has an invalid port`), and validation quotes values of other keys too
//! (subjects, stream and connection names). Values can be secrets: every value taken from the
//! environment (SPEC section 3: `${VAR}` is there for secrets), the `token` and `password` of a
//! connection, and credentials written into a server URL. [`Secrets`] collects them while the
//! file is loaded and rewrites each message before it is shown:
//!
//! - a value taken from the environment is shown as its reference (`${NATS_TOKEN}`), and a string
//!   that was expanded as it is written in the file (`nats://${HOST}:4222`);
//! - a `token` or `password` and the user information of a URL are shown as `***`.
//!
//! Values of at least [`MIN_HIDDEN_EVERYWHERE`] characters are replaced wherever they appear;
//! shorter ones only where a message about their own key quotes them (replacing every `1` or `ab`
//! in every message would garble them, and so short a value protects nothing).

use serde_norway::Value;

use super::yaml_path::{join_key, key_text};
use super::Problem;

/// Shortest value that is hidden in every message, not only in those about its own key.
pub const MIN_HIDDEN_EVERYWHERE: usize = 4;

/// The secrets of one config file and what to show instead.
#[derive(Debug, Default)]
pub struct Secrets {
    entries: Vec<Hidden>,
}

#[derive(Debug)]
struct Hidden {
    /// The key the value was found at.
    path: String,
    value: String,
    shown_as: String,
}

impl Secrets {
    /// Hides `value` (found at `path`) behind `shown_as`.
    pub fn hide(&mut self, path: &str, value: &str, shown_as: &str) {
        if value.is_empty() || value == shown_as {
            return;
        }
        self.entries.push(Hidden {
            path: path.to_string(),
            value: value.to_string(),
            shown_as: shown_as.to_string(),
        });
    }

    /// Records the secrets of the expanded tree `root`: the `token` and `password` of each
    /// connection (whatever their type) and the user information of each server URL. Values at
    /// the paths in `unexpanded` (their expansion failed, or there is no environment) are left
    /// out: they are still the text of the file, a `${VAR}` reference.
    pub fn collect_connection_secrets(&mut self, root: &Value, unexpanded: &[String]) {
        let Some(Value::Mapping(connections)) = root.get("connections") else {
            return;
        };
        for (name, connection) in connections {
            let base = join_key("connections", &key_text(name));
            let Value::Mapping(settings) = connection else {
                continue;
            };
            for (key, value) in settings {
                let key = key_text(key);
                let path = join_key(&base, &key);
                if unexpanded.contains(&path) {
                    continue;
                }
                match key.as_str() {
                    "token" | "password" => {
                        if let Some(text) = scalar_text(value) {
                            self.hide(&path, &text, "***");
                        }
                    }
                    "servers" => {
                        let servers = match value {
                            Value::Sequence(items) => items.iter().collect(),
                            other => vec![other],
                        };
                        for (index, server) in servers.into_iter().enumerate() {
                            if let Some((userinfo, _)) = server.as_str().and_then(split_userinfo) {
                                self.hide(&format!("{path}[{index}]"), userinfo, "***");
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// `text` with every credential (a connection's `token` or `password`, the user
    /// information of a URL) of at least [`MIN_HIDDEN_EVERYWHERE`] characters shown as `***`.
    /// Other values from the environment stay: this is for showing the config as it runs.
    pub fn hide_credentials(&self, text: &str) -> String {
        let mut entries: Vec<&Hidden> = self
            .entries
            .iter()
            .filter(|entry| entry.shown_as == "***")
            .filter(|entry| entry.value.chars().count() >= MIN_HIDDEN_EVERYWHERE)
            .collect();
        entries.sort_by_key(|entry| std::cmp::Reverse(entry.value.len()));
        let mut out = text.to_string();
        for entry in entries {
            if out.contains(&entry.value) {
                out = out.replace(&entry.value, "***");
            }
        }
        out
    }

    /// `problem` with every secret replaced by what is shown instead.
    pub fn redact(&self, mut problem: Problem) -> Problem {
        // Longest first, so a secret that contains another is replaced whole.
        let mut entries: Vec<&Hidden> = self.entries.iter().collect();
        entries.sort_by_key(|entry| std::cmp::Reverse(entry.value.len()));
        for entry in entries {
            let own = within(&problem.path, &entry.path);
            let long = entry.value.chars().count() >= MIN_HIDDEN_EVERYWHERE;
            if !own && !long {
                continue;
            }
            let escaped = escaped(&entry.value);
            let forms: Vec<(String, String)> = if long {
                vec![
                    (entry.value.clone(), entry.shown_as.clone()),
                    (escaped, self::escaped(&entry.shown_as)),
                ]
            } else {
                // A short value only where it is quoted, as messages quote values.
                vec![
                    (
                        format!("\"{escaped}\""),
                        format!("\"{}\"", self::escaped(&entry.shown_as)),
                    ),
                    (
                        format!("`{}`", entry.value),
                        format!("`{}`", entry.shown_as),
                    ),
                ]
            };
            for (secret, shown) in forms {
                if problem.message.contains(&secret) {
                    problem.message = problem.message.replace(&secret, &shown);
                }
            }
        }
        problem
    }
}

/// A URL's user information and the rest, when it has any: `nats://user:pass@host:4222` gives
/// `("user:pass", ...)`; a bare `host:port` or a URL without `@` before its path gives `None`.
pub fn split_userinfo(url: &str) -> Option<(&str, &str)> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let (userinfo, _) = authority.rsplit_once('@')?;
    Some((userinfo, &rest[userinfo.len() + 1..]))
}

/// `url` with its user information shown as `***`.
pub fn redact_url(url: &str) -> String {
    match split_userinfo(url) {
        Some((userinfo, _)) => url.replacen(&format!("{userinfo}@"), "***@", 1),
        None => url.to_string(),
    }
}

/// A scalar's text as YAML wrote it (a token may be written as a number).
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Tagged(tagged) => scalar_text(&tagged.value),
        _ => None,
    }
}

/// `text` as it appears inside a `{:?}`-quoted string in a message (quotes and backslashes
/// escaped).
fn escaped(text: &str) -> String {
    let quoted = format!("{text:?}");
    quoted[1..quoted.len() - 1].to_string()
}

/// Whether `path` is `parent` or lies under it.
fn within(path: &str, parent: &str) -> bool {
    path == parent
        || path
            .strip_prefix(parent)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(path: &str, message: &str) -> Problem {
        Problem::new(path, message)
    }

    #[test]
    fn long_values_are_hidden_everywhere_short_ones_where_quoted_at_their_key() {
        let mut secrets = Secrets::default();
        secrets.hide("a.port", "s3cretvalue", "${PORT}");
        secrets.hide("b.x", "7", "${SEVEN}");
        assert_eq!(
            secrets
                .redact(problem(
                    "a.port",
                    "invalid type: string \"s3cretvalue\", expected usize"
                ))
                .message,
            "invalid type: string \"${PORT}\", expected usize"
        );
        assert_eq!(
            secrets
                .redact(problem("z", "overlaps \"x.s3cretvalue.y\""))
                .message,
            "overlaps \"x.${PORT}.y\""
        );
        assert_eq!(
            secrets
                .redact(problem(
                    "b.x",
                    "invalid type: string \"7\", must be at least 7"
                ))
                .message,
            "invalid type: string \"${SEVEN}\", must be at least 7"
        );
        assert_eq!(
            secrets.redact(problem("c", "string \"7\"")).message,
            "string \"7\""
        );
    }

    #[test]
    fn escaped_forms_and_the_longest_secret_first() {
        let mut secrets = Secrets::default();
        secrets.hide("t", "ab\"cd", "***");
        secrets.hide("u", "abcdef", "***");
        secrets.hide("v", "abcdefgh", "${V}");
        assert_eq!(
            secrets
                .redact(problem("x", "got \"ab\\\"cd\" and abcdefgh and abcdef"))
                .message,
            "got \"***\" and ${V} and ***"
        );
    }

    #[test]
    fn connection_secrets_are_collected() {
        let root: Value = serde_norway::from_str(
            "connections:\n  east:\n    token: 12345678\n    password: pw\n    servers: [\"nats://bob:hunter2@h:1\", \"h:2\", \"tok@h\"]\n",
        )
        .unwrap();
        let mut secrets = Secrets::default();
        secrets.collect_connection_secrets(&root, &[]);
        let found: Vec<(&str, &str)> = secrets
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                ("connections.east.token", "12345678"),
                ("connections.east.password", "pw"),
                ("connections.east.servers[0]", "bob:hunter2"),
                ("connections.east.servers[2]", "tok"),
            ]
        );
    }

    #[test]
    fn urls() {
        assert_eq!(split_userinfo("nats://u:p@h:4222"), Some(("u:p", "h:4222")));
        assert_eq!(split_userinfo("u:p@h:4222"), Some(("u:p", "h:4222")));
        assert_eq!(split_userinfo("ws://h/a@b"), None);
        assert_eq!(split_userinfo("nats://h:4222"), None);
        assert_eq!(redact_url("nats://u:p@h:4222"), "nats://***@h:4222");
        assert_eq!(redact_url("nats://a@b@h"), "nats://***@h");
        assert_eq!(redact_url("nats://h"), "nats://h");
    }
}
