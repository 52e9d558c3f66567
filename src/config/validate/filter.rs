//! Checks of `filter` blocks (adapters and replicators).

use super::*;

/// A JSON field path: dot-separated, non-empty object keys.
pub(super) fn check_field_path(field: &str) -> Result<(), String> {
    if field.is_empty() || field.split('.').any(str::is_empty) {
        return Err(format!(
            "{field:?} is not a valid field path (dot-separated object keys, e.g. data.identity)"
        ));
    }
    Ok(())
}

/// A header name: non-empty printable ASCII without ':' or whitespace.
pub(super) fn check_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name is empty".into());
    }
    if !name.chars().all(|c| c.is_ascii_graphic() && c != ':') {
        return Err(format!(
            "{name:?} is not a valid header name (printable ASCII without ':' or spaces)"
        ));
    }
    Ok(())
}

/// A `filter` (SPEC section 6). `inputs` are the subjects messages can arrive on, described by
/// `scope` in messages; empty when unknown (a replicator's source stream not made by this file).
pub(super) fn check_filter(
    out: &mut Problems,
    base: &str,
    filter: &FilterConfig,
    inputs: &[String],
    scope: &str,
) {
    for (index, subject) in filter.subjects.iter().enumerate() {
        let path = format!("{base}.subjects[{index}]");
        match subject::validate(subject, true) {
            Err(message) => out.push(path, message),
            Ok(()) => {
                if !inputs.is_empty() && !inputs.iter().any(|i| subject::overlaps(i, subject)) {
                    out.push(
                        path,
                        format!("{subject:?} matches none of {scope}, so it never selects anything; widen it or remove it"),
                    );
                }
            }
        }
    }
    for (index, subject) in filter.exclude_subjects.iter().enumerate() {
        if let Err(message) = subject::validate(subject, true) {
            out.push(format!("{base}.exclude_subjects[{index}]"), message);
        }
    }
    for (index, predicate) in filter.predicates.iter().enumerate() {
        let path = format!("{base}.match[{index}]");
        match (&predicate.field, &predicate.header) {
            (Some(_), Some(_)) => out.push(
                &path,
                "has both field and header: give exactly one (write two match entries to test both)",
            ),
            (None, None) => out.push(
                &path,
                "needs exactly one of field (a JSON path such as data.identity) or header (a header name)",
            ),
            _ => {}
        }
        if let Some(field) = &predicate.field {
            if let Err(message) = check_field_path(field) {
                out.push(format!("{path}.field"), message);
            }
        }
        if let Some(header) = &predicate.header {
            if let Err(message) = check_header_name(header) {
                out.push(format!("{path}.header"), message);
            }
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
            out.push(
                &path,
                format!("needs exactly one of equals, regex, in or exists (found: {found}); write one match entry per test"),
            );
        }
        if let Some(pattern) = &predicate.regex {
            if let Err(error) = regex::Regex::new(pattern) {
                out.push(
                    format!("{path}.regex"),
                    format!(
                        "invalid regex {pattern:?}: {}",
                        one_line(&error.to_string())
                    ),
                );
            }
        }
        if predicate.one_of.as_ref().is_some_and(Vec::is_empty) {
            out.push(format!("{path}.in"), "is empty, so nothing could match");
        }
    }
}
