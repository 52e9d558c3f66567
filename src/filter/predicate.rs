//! The tests of one `match` entry (`equals`, `regex`, `in`, `exists`) and how they hold on a
//! header or a field value (see the semantics in the module documentation of `filter`).

use ferry_adapter::HeaderLookup;
use regex::Regex;
use serde_json::Value;

use super::PredicateError;
use crate::config::schema::PredicateConfig;

/// What a predicate tests.
#[derive(Debug, Clone)]
pub(super) enum Test {
    Equals(Value),
    Regex(Regex),
    OneOf(Vec<Value>),
    Exists(bool),
}

#[derive(Debug, Clone)]
pub(super) struct HeaderPredicate {
    pub(super) name: String,
    pub(super) test: Test,
}

#[derive(Debug, Clone)]
pub(super) struct FieldPredicate {
    /// Index into the values extracted from the document.
    pub(super) slot: usize,
    pub(super) test: Test,
}

/// Builds the single test of a predicate.
pub(super) fn compile_test(config: &PredicateConfig) -> Result<Test, PredicateError> {
    let mut tests = Vec::with_capacity(1);
    if let Some(value) = &config.equals {
        tests.push(Test::Equals(value.clone()));
    }
    if let Some(pattern) = &config.regex {
        let regex = Regex::new(pattern).map_err(PredicateError::Regex)?;
        tests.push(Test::Regex(regex));
    }
    if let Some(values) = &config.one_of {
        if values.is_empty() {
            return Err(PredicateError::EmptyIn);
        }
        tests.push(Test::OneOf(values.clone()));
    }
    if let Some(exists) = config.exists {
        tests.push(Test::Exists(exists));
    }
    match tests.len() {
        1 => Ok(tests.remove(0)),
        _ => Err(PredicateError::Test),
    }
}

/// Evaluates a header predicate against the message's headers.
pub(super) fn header_holds(predicate: &HeaderPredicate, headers: &dyn HeaderLookup) -> bool {
    let value = headers.header(&predicate.name);
    match (&predicate.test, value) {
        (Test::Exists(expected), value) => value.is_some() == *expected,
        (_, None) => false,
        (Test::Equals(expected), Some(value)) => header_equals(expected, value),
        (Test::OneOf(options), Some(value)) => options.iter().any(|o| header_equals(o, value)),
        (Test::Regex(regex), Some(value)) => regex.is_match(value),
    }
}

/// A header equals a string predicate value as is, any other value as its JSON text.
fn header_equals(expected: &Value, header: &str) -> bool {
    match expected {
        Value::String(text) => text == header,
        other => {
            // Not `*other == header`: serde_json's `Value == str` only matches JSON strings.
            let text = other.to_string();
            text == header
        }
    }
}

/// Evaluates a field predicate against the value found at its path (`None`: the path is absent).
pub(super) fn field_holds(test: &Test, value: Option<&Value>) -> bool {
    match (test, value) {
        (Test::Exists(expected), value) => value.is_some() == *expected,
        (_, None) => false,
        (Test::Equals(expected), Some(value)) => json_equal(expected, value),
        (Test::OneOf(options), Some(value)) => options.iter().any(|o| json_equal(o, value)),
        (Test::Regex(regex), Some(value)) => regex_matches(regex, value),
    }
}

/// Strict JSON equality, except that numbers compare by value (`5` equals `5.0`).
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_equal(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, x)| y.get(key).is_some_and(|y| json_equal(x, y)))
        }
        _ => a == b,
    }
}

/// Integers compare exactly (no rounding through `f64` for large values); otherwise as floats.
fn numbers_equal(x: &serde_json::Number, y: &serde_json::Number) -> bool {
    if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
        return x == y;
    }
    match (x.as_f64(), y.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Regexes test strings, and numbers and booleans as their JSON text.
fn regex_matches(regex: &Regex, value: &Value) -> bool {
    match value {
        Value::String(text) => regex.is_match(text),
        Value::Number(number) => regex.is_match(&number.to_string()),
        Value::Bool(flag) => regex.is_match(if *flag { "true" } else { "false" }),
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}
