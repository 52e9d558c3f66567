//! Checks of `filter` blocks (adapters and replicators).

use super::*;

/// A JSON field path: dot-separated, non-empty object keys.
pub(super) fn check_field_path(at: &mut Scope, field: &str) {
    if field.is_empty() || field.split('.').any(str::is_empty) {
        at.push(format!(
            "{field:?} is not a valid field path (dot-separated object keys, e.g. data.identity)"
        ));
    }
}

/// A header name: non-empty printable ASCII without ':' or whitespace.
pub(super) fn check_header_name(at: &mut Scope, name: &str) {
    if name.is_empty() {
        at.push("header name is empty");
    } else if !name.chars().all(|c| c.is_ascii_graphic() && c != ':') {
        at.push(format!(
            "{name:?} is not a valid header name (printable ASCII without ':' or spaces)"
        ));
    }
}

/// A `filter` (SPEC section 6). `inputs` are the subjects messages can arrive on, described by
/// `scope` in messages; empty when unknown (a replicator's source stream not made by this file).
pub(super) fn check_filter(out: &mut Scope, filter: &FilterConfig, inputs: &[String], scope: &str) {
    for (index, subject) in filter.subjects.iter().enumerate() {
        let mut at = out.at("subjects");
        let mut at = at.index(index);
        match subject::validate(subject, true) {
            Err(message) => at.push(message),
            Ok(()) => {
                if !inputs.is_empty() && !inputs.iter().any(|i| subject::overlaps(i, subject)) {
                    at.push(format!("{subject:?} matches none of {scope}, so it never selects anything; widen it or remove it"));
                }
            }
        }
    }
    for (index, subject) in filter.exclude_subjects.iter().enumerate() {
        if let Err(message) = subject::validate(subject, true) {
            out.at("exclude_subjects").index(index).push(message);
        }
    }
    for (index, predicate) in filter.predicates.iter().enumerate() {
        let mut entries = out.at("match");
        let mut at = entries.index(index);
        match (&predicate.field, &predicate.header) {
            (Some(_), Some(_)) => at.push(
                "has both field and header: give exactly one (write two match entries to test both)",
            ),
            (None, None) => at.push(
                "needs exactly one of field (a JSON path such as data.identity) or header (a header name)",
            ),
            _ => {}
        }
        if let Some(field) = &predicate.field {
            check_field_path(&mut at.at("field"), field);
        }
        if let Some(header) = &predicate.header {
            check_header_name(&mut at.at("header"), header);
        }
        let mut tests = Vec::new();
        if predicate.equals.is_some() {
            tests.push("equals");
        }
        if predicate.regex.is_some() {
            tests.push("regex");
        }
        if predicate.one_of.is_some() {
            tests.push("in");
        }
        if predicate.exists.is_some() {
            tests.push("exists");
        }
        if tests.len() != 1 {
            let found = if tests.is_empty() {
                "none".to_string()
            } else {
                tests.join(", ")
            };
            at.push(format!("needs exactly one of equals, regex, in or exists (found: {found}); write one match entry per test"));
        }
        if let Some(pattern) = &predicate.regex {
            if let Err(error) = regex::Regex::new(pattern) {
                at.at("regex").push(format!(
                    "invalid regex {pattern:?}: {}",
                    one_line(&error.to_string())
                ));
            }
        }
        if predicate.one_of.as_ref().is_some_and(Vec::is_empty) {
            at.at("in").push("is empty, so nothing could match");
        }
    }
}
