//! `${VAR}` expansion in the config's string values (SPEC section 3).
//!
//! Expansion happens on the parsed YAML tree, before it is turned into the schema, so a secret
//! never has to be written into the file and every string value can use it the same way. Only
//! string scalars are expanded (mapping keys, numbers and booleans are not): a key such as a
//! connection name is an identifier, not a value. `$${` writes a literal `${`; a `$` not followed by
//! `{` is kept as it is. An unset variable is an error rather than an empty string, because an empty
//! token or password fails later in a far less obvious way.

use std::env::VarError;

use serde_norway::Value;

use super::redact::{redact_url, Secrets};
use super::yaml_path::{join_key, key_text};
use super::Problem;

/// Expands `${VAR}` references in `text`, reading variables through `lookup`. The error is the
/// message for the key holding `text` (its path is the caller's). It never quotes `text`, which
/// may be a secret written literally (`password: "abc${def"`).
pub fn expand_str(
    text: &str,
    lookup: &dyn Fn(&str) -> Result<String, VarError>,
) -> Result<String, ExpandError> {
    expand_recording(text, lookup, &mut Vec::new())
}

/// Why a string value cannot be expanded. Positions are 1-based, in characters: the messages
/// never quote the value, which may be a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("unterminated \"${{\" at character {0} (close it with '}}', or write $${{ for a literal ${{)")]
    Unterminated(usize),
    #[error("invalid environment variable reference at character {0} (names use A-Z, a-z, 0-9 and _ and do not start with a digit; write $${{ for a literal ${{)")]
    InvalidName(usize),
    #[error("environment variable {0:?} is not set (export it before starting ferry, or write $${{{0}}} for a literal ${{{0}}})")]
    Unset(String),
    #[error("environment variable {0:?} is not valid UTF-8")]
    NotUnicode(String),
}

/// [`expand_str`], pushing each variable used and its value onto `used`.
fn expand_recording(
    text: &str,
    lookup: &dyn Fn(&str) -> Result<String, VarError>,
    used: &mut Vec<(String, String)>,
) -> Result<String, ExpandError> {
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar..];
        // 1-based, in characters, for the messages (which cannot quote the text).
        let position = text[..text.len() - after.len()].chars().count() + 1;
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let close = tail.find('}').ok_or(ExpandError::Unterminated(position))?;
            let name = &tail[..close];
            if !valid_variable_name(name) {
                return Err(ExpandError::InvalidName(position));
            }
            match lookup(name) {
                Ok(value) => {
                    out.push_str(&value);
                    used.push((name.to_string(), value));
                }
                Err(VarError::NotPresent) => return Err(ExpandError::Unset(name.to_string())),
                Err(VarError::NotUnicode(_)) => {
                    return Err(ExpandError::NotUnicode(name.to_string()))
                }
            }
            rest = &tail[close + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn valid_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Where `${VAR}` references take their values from.
#[derive(Clone, Copy)]
pub enum Environment<'a> {
    /// Each variable is read through this lookup (the process environment, or a test's).
    Lookup(&'a dyn Fn(&str) -> Result<String, VarError>),
    /// None is read: references stay as written (`ferry check --no-env`, for CI without the
    /// secrets). Their syntax is still checked; see [`Reference`] for what becomes of the rest.
    Absent,
}

/// A value holding `${VAR}` references: where it is and which variables it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub path: String,
    pub variables: Vec<String>,
}

/// Expands every string scalar under `value` in place. A value that fails is left unexpanded and
/// reported at its path (`connections.east.token`, `adapters[0].subjects[1]`), so every bad
/// reference in the file is reported at once. Every value taken from the environment goes into
/// `secrets`, to be shown as its reference in messages. Every value holding a reference is
/// recorded in `references` (expanded or not).
pub fn expand_value(
    value: &mut Value,
    path: &str,
    environment: Environment<'_>,
    problems: &mut Vec<Problem>,
    secrets: &mut Secrets,
    references: &mut Vec<Reference>,
) {
    match value {
        Value::String(text) => {
            let mut used = Vec::new();
            let result = match environment {
                Environment::Lookup(lookup) => expand_recording(text, lookup, &mut used),
                // Each reference "expands" to itself: its syntax is checked, its name found,
                // and `$${` still reads as a literal `${`, as it does with the environment.
                Environment::Absent => {
                    expand_recording(text, &|name| Ok(format!("${{{name}}}")), &mut used)
                }
            };
            if !used.is_empty() {
                references.push(Reference {
                    path: path.to_string(),
                    variables: used.iter().map(|(name, _)| name.clone()).collect(),
                });
            }
            match result {
                Ok(expanded) => {
                    if !used.is_empty() && matches!(environment, Environment::Lookup(_)) {
                        secrets.hide(path, &expanded, &redact_url(text));
                        for (name, value) in &used {
                            secrets.hide(path, value, &format!("${{{name}}}"));
                        }
                    }
                    *text = expanded;
                }
                Err(error) => problems.push(Problem::new(path, error.to_string())),
            }
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                let child = format!("{path}[{index}]");
                expand_value(item, &child, environment, problems, secrets, references);
            }
        }
        Value::Mapping(mapping) => {
            for (key, item) in mapping.iter_mut() {
                let child = join_key(path, &key_text(key));
                expand_value(item, &child, environment, problems, secrets, references);
            }
        }
        Value::Tagged(tagged) => expand_value(
            &mut tagged.value,
            path,
            environment,
            problems,
            secrets,
            references,
        ),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Result<String, VarError> {
        match name {
            "TOKEN" => Ok("s3cret".into()),
            "EMPTY" => Ok(String::new()),
            "HOST" => Ok("10.0.0.1".into()),
            _ => Err(VarError::NotPresent),
        }
    }

    #[test]
    fn references_are_replaced() {
        assert_eq!(expand_str("${TOKEN}", &env).unwrap(), "s3cret");
        assert_eq!(
            expand_str("nats://${HOST}:4222", &env).unwrap(),
            "nats://10.0.0.1:4222"
        );
        assert_eq!(expand_str("a${EMPTY}b", &env).unwrap(), "ab");
        assert_eq!(
            expand_str("${HOST}${TOKEN}", &env).unwrap(),
            "10.0.0.1s3cret"
        );
        assert_eq!(expand_str("no refs", &env).unwrap(), "no refs");
    }

    #[test]
    fn dollars_and_escapes() {
        assert_eq!(expand_str("$${TOKEN}", &env).unwrap(), "${TOKEN}");
        assert_eq!(expand_str("cost $5", &env).unwrap(), "cost $5");
        assert_eq!(expand_str("a$", &env).unwrap(), "a$");
        assert_eq!(expand_str("$$", &env).unwrap(), "$$");
    }

    #[test]
    fn errors_explain_the_fix() {
        let unset = expand_str("${NATS_TOKEN}", &env).unwrap_err().to_string();
        assert!(
            unset.starts_with("environment variable \"NATS_TOKEN\" is not set"),
            "{unset}"
        );
        // The text may be a secret written literally: messages give a position, not the text.
        assert_eq!(
            expand_str("abc${def", &env).unwrap_err().to_string(),
            "unterminated \"${\" at character 4 (close it with '}', or write $${ for a literal ${)"
        );
        assert_eq!(
            expand_str("pässw${1X}", &env).unwrap_err().to_string(),
            "invalid environment variable reference at character 6 (names use A-Z, a-z, 0-9 and _ and do not start with a digit; write $${ for a literal ${)"
        );
        assert!(expand_str("${}", &env).is_err());
        let not_unicode = |_: &str| Err(VarError::NotUnicode(Default::default()));
        assert!(expand_str("${X}", &not_unicode)
            .unwrap_err()
            .to_string()
            .contains("UTF-8"));
    }

    #[test]
    fn every_bad_reference_is_reported_with_its_path() {
        let mut value: Value = serde_norway::from_str(
            "connections:\n  east:\n    token: ${NATS_TOKEN}\n    servers: [\"nats://${HOST}:4222\", \"${NOPE}\"]\n7: ${TOKEN}\n",
        )
        .unwrap();
        let mut problems = Vec::new();
        let mut secrets = Secrets::default();
        let mut references = Vec::new();
        let environment = Environment::Lookup(&env);
        expand_value(
            &mut value,
            "",
            environment,
            &mut problems,
            &mut secrets,
            &mut references,
        );
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["connections.east.token", "connections.east.servers[1]"]
        );
        assert_eq!(
            value["connections"]["east"]["servers"][0].as_str(),
            Some("nats://10.0.0.1:4222")
        );
        assert_eq!(value[7].as_str(), Some("s3cret"));
        let found: Vec<&str> = references.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(found, ["connections.east.servers[0]", "7"]);
    }

    #[test]
    fn without_an_environment_references_stay_as_written() {
        let mut value: Value = serde_norway::from_str(
            "a: \"${TOKEN}\"\nb: \"nats://${HOST}:${PORT}\"\nc: \"$${LITERAL}\"\nd: \"abc${def\"\ne: plain\n",
        )
        .unwrap();
        let mut problems = Vec::new();
        let mut secrets = Secrets::default();
        let mut references = Vec::new();
        expand_value(
            &mut value,
            "",
            Environment::Absent,
            &mut problems,
            &mut secrets,
            &mut references,
        );
        assert_eq!(value["a"].as_str(), Some("${TOKEN}"));
        assert_eq!(value["b"].as_str(), Some("nats://${HOST}:${PORT}"));
        assert_eq!(value["c"].as_str(), Some("${LITERAL}"));
        // The syntax is still checked.
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "d");
        assert_eq!(
            references,
            [
                Reference {
                    path: "a".into(),
                    variables: vec!["TOKEN".into()]
                },
                Reference {
                    path: "b".into(),
                    variables: vec!["HOST".into(), "PORT".into()]
                },
            ]
        );
    }
}
