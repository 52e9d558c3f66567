//! The tolerant section parser: each section (and each list entry) is deserialized on its own,
//! and an offending key is removed and the section retried, so one pass reports every mistake at
//! its path; serde's messages are made friendly here, with "did you mean" suggestions.

use super::*;

/// The entries of a list section (`adapters`, `replicators`) as far as they parsed.
pub(super) struct Entries<T> {
    /// The entries that parsed, in file order.
    pub parsed: Vec<T>,
    /// The position in the file of each parsed entry (entries that failed to parse are missing
    /// from `parsed`; positions keep problem paths pointing at the right entry).
    pub positions: Vec<usize>,
    /// The position and `name` of each entry that failed to parse but has a string name, so the
    /// checks across entries (unique names) still count it: the file is fixed in one pass
    /// rather than a duplicate appearing once a type error elsewhere in the entry is gone.
    pub broken_names: Vec<(usize, String)>,
}

/// Deserializes each entry of the list `key` (`adapters`, `replicators`) as its own section at
/// `key[i]`.
pub(super) fn deserialize_list<T: DeserializeOwned>(
    value: Option<Value>,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Entries<T> {
    let mut entries = Entries {
        parsed: Vec::new(),
        positions: Vec::new(),
        broken_names: Vec::new(),
    };
    match value {
        None | Some(Value::Null) => {}
        Some(Value::Sequence(items)) => {
            for (index, value) in items.into_iter().enumerate() {
                let path = format!("{key}[{index}]");
                let name = match value.get("name") {
                    Some(Value::String(name)) => Some(name.clone()),
                    _ => None,
                };
                match deserialize_section::<T>(value, &path, problems) {
                    Some(entry) => {
                        entries.parsed.push(entry);
                        entries.positions.push(index);
                    }
                    None => entries.broken_names.extend(name.map(|name| (index, name))),
                }
            }
        }
        Some(other) => problems.push(Problem::new(
            key,
            format!(
                "expected a list of {key} (each entry starting with `- name: ...`), not {}",
                describe(&other)
            ),
        )),
    }
    entries
}

/// Whether `path` is `parent` or lies under it (`parent.x`, `parent[0]`).
pub(super) fn within(path: &str, parent: &str) -> bool {
    path == parent
        || path
            .strip_prefix(parent)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// A YAML value's kind, for messages.
pub(super) fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "an empty value",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Most attempts per section; each removes one key, so this only bounds pathological files.
pub(super) const MAX_ATTEMPTS: usize = 64;

/// One step of a path into a YAML value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    Key(String),
    Index(usize),
}

pub(super) fn render_path(prefix: &str, steps: &[Step]) -> String {
    let mut out = prefix.to_string();
    for step in steps {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Step::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// Deserializes one section at `prefix`, recording every problem found in it. After each error
/// the offending key is removed and the section tried again, so independent mistakes in one
/// section are all reported. Returns what parsed in the end, which lacks the removed keys when
/// problems were recorded (enough to validate the rest of the section), or `None` when a required
/// key could not be parsed.
pub(super) fn deserialize_section<T: DeserializeOwned>(
    mut value: Value,
    prefix: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let mut found: Vec<Problem> = Vec::new();
    for _ in 0..MAX_ATTEMPTS {
        let error = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(parsed) => {
                problems.extend(found);
                return Some(parsed);
            }
            Err(error) => error,
        };
        let Some(steps) = error
            .path()
            .iter()
            .map(|segment| match segment {
                serde_path_to_error::Segment::Seq { index } => Some(Step::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(Step::Key(key.clone())),
                serde_path_to_error::Segment::Enum { variant } => Some(Step::Key(variant.clone())),
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect::<Option<Vec<Step>>>()
        else {
            found.push(Problem::new(
                render_path(prefix, &[]),
                friendly(&error.inner().to_string()),
            ));
            break;
        };
        let message = error.inner().to_string();
        let removal: Vec<Step> = if let Some(field) = missing_field(&message) {
            let mut path = steps.clone();
            path.push(Step::Key(field.to_string()));
            let full = render_path(prefix, &path);
            // A required key removed after an earlier error is not reported again; the section
            // (or sub-section) holding it cannot be parsed further, so it goes next.
            if !found.iter().any(|p| within(&p.path, &full)) {
                found.push(Problem::new(
                    full,
                    "is required but missing (see config/ferry.yaml for every key)",
                ));
            }
            steps
        } else {
            let full = render_path(prefix, &steps);
            // After a key inside a value was reported and removed, the value's own complaint
            // (`start: needs exactly one of ...` once `start.since` is gone) is a consequence.
            if !found
                .iter()
                .any(|p| p.path != full && within(&p.path, &full))
            {
                found.push(Problem::new(full, friendly(&message)));
            }
            // Removing a list element would shift the positions of later ones in messages;
            // remove the whole list instead.
            match steps.last() {
                Some(Step::Index(_)) => {
                    let mut list = steps;
                    while matches!(list.last(), Some(Step::Index(_))) {
                        list.pop();
                    }
                    list
                }
                _ => steps,
            }
        };
        if removal.is_empty() || !remove_at(&mut value, &removal) {
            break;
        }
    }
    problems.extend(found);
    None
}

/// Removes the node at `steps` from `value`; false when there is no such node.
pub(super) fn remove_at(value: &mut Value, steps: &[Step]) -> bool {
    let Some((last, parents)) = steps.split_last() else {
        return false;
    };
    let mut node = value;
    for step in parents {
        node = match (step, node) {
            (Step::Key(key), Value::Mapping(mapping)) => match find_key(mapping, key) {
                Some(found) => match mapping.get_mut(&found) {
                    Some(child) => child,
                    None => return false,
                },
                None => return false,
            },
            (Step::Index(index), Value::Sequence(items)) => match items.get_mut(*index) {
                Some(child) => child,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Step::Key(key), Value::Mapping(mapping)) => match find_key(mapping, key) {
            Some(found) => mapping.shift_remove(&found).is_some(),
            None => false,
        },
        (Step::Index(index), Value::Sequence(items)) if *index < items.len() => {
            items.remove(*index);
            true
        }
        _ => false,
    }
}

/// The mapping key whose text is `key` (keys are usually strings, but `1:` is a number).
pub(super) fn find_key(mapping: &Mapping, key: &str) -> Option<Value> {
    mapping
        .keys()
        .find(|candidate| yaml_path::key_text(candidate) == key)
        .cloned()
}

/// The field named in serde's "missing field `x`" message.
pub(super) fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split_once('`').map(|(field, _)| field)
}

/// The backquoted names after "expected" in a serde message (`expected one of `a`, `b``).
pub(super) fn expected_names(message: &str) -> Vec<&str> {
    let Some((_, expected)) = message.split_once("expected") else {
        return Vec::new();
    };
    expected.split('`').skip(1).step_by(2).collect()
}

/// Rewrites serde's messages into ones that say the fix, in the config's terms rather than Rust's
/// (`expected a whole number`, not `expected usize`).
pub(super) fn friendly(message: &str) -> String {
    plain_types(&reword(message))
}

/// serde's message for the common mistakes (unknown keys and values, wrong types) with the fix.
fn reword(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let Some((field, _)) = rest.split_once('`') else {
            return message.to_string();
        };
        let valid = expected_names(rest);
        if valid.is_empty() {
            return format!("unknown key {field:?} (this section takes no keys)");
        }
        let suggestion = closest(field, &valid)
            .map(|name| format!("did you mean {name:?}? "))
            .unwrap_or_default();
        return format!(
            "unknown key {field:?} ({suggestion}valid keys: {})",
            valid.join(", ")
        );
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let Some((value, _)) = rest.split_once('`') else {
            return message.to_string();
        };
        let valid = expected_names(rest);
        let suggestion = closest(value, &valid)
            .map(|name| format!("did you mean {name:?}? "))
            .unwrap_or_default();
        return format!(
            "unknown value {value:?} ({suggestion}use one of: {})",
            valid.join(", ")
        );
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let rest = rest.replace("unit value", "an empty value");
        let hint = if rest.ends_with("expected a sequence") {
            " (write a list: [a, b], or one `- item` per line)"
        } else if rest.contains("expected struct") || rest.ends_with("expected a map") {
            " (write a mapping of keys, e.g. `key: value` lines indented under it)"
        } else if rest.ends_with("expected a string") {
            " (quote it)"
        } else {
            ""
        };
        let rest = match rest.split_once("expected struct ") {
            Some((head, _)) => format!("{head}expected a mapping"),
            None => rest,
        };
        return format!("invalid type: {rest}{hint}");
    }
    message.to_string()
}

/// `message` with the Rust type serde names after its last "expected" (`usize`, `u64`, `f64`, the
/// YAML parser's `a Value::Tagged enum`) said in the words of a config file, and the `as u128` the
/// parser adds to a number beyond 64 bits dropped: an operator writes numbers, not Rust types.
/// Public to the config module, so the YAML parser's own errors read the same.
pub(super) fn plain_types(message: &str) -> String {
    // Only right after a number in backquotes, so a quoted value keeps its text.
    let mut out = message.replace("` as u128", "`").replace("` as i128", "`");
    if let Some(at) = out.rfind("expected ") {
        let start = at + "expected ".len();
        let rest = &out[start..];
        // The YAML parser appends the position: `expected usize at line 3 column 5`.
        let end = start + rest.find(" at line ").unwrap_or(rest.len());
        if let Some(plain) = plain_expectation(&out[start..end]) {
            out.replace_range(start..end, plain);
        }
    }
    out
}

/// What a Rust type in serde's "expected ..." means in a config file.
fn plain_expectation(expected: &str) -> Option<&'static str> {
    Some(match expected {
        "usize" | "u64" | "u128" => "a whole number (0 or more)",
        "u32" => "a whole number from 0 to 4294967295",
        "u16" => "a whole number from 0 to 65535",
        "u8" => "a whole number from 0 to 255",
        "isize" | "i64" | "i128" | "i32" | "i16" | "i8" => "a whole number",
        "f64" | "f32" => "a number",
        "char" => "a single character",
        "path string" => "a path (a string such as /var/lib/ferry)",
        "a boolean" => "true or false",
        // A key whose value is one word from a fixed list (`ordering: relaxed`), given a mapping
        // or a list; the unknown-word message lists the words, this one cannot.
        "a Value::Tagged enum" => {
            "one of this key's words, written plainly (not a mapping or list)"
        }
        _ => return None,
    })
}

/// The candidate closest to `word` by edit distance, when close enough to be a likely typo.
pub(super) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|candidate| (edit_distance(word, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance, with a swap of neighbours counting as one edit.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_types_are_said_in_config_terms() {
        for (serde, friendly_text) in [
            (
                "invalid type: string \"lots\", expected usize",
                "invalid type: string \"lots\", expected a whole number (0 or more)",
            ),
            (
                "invalid value: integer `-3`, expected usize",
                "invalid value: integer `-3`, expected a whole number (0 or more)",
            ),
            (
                "invalid type: floating point `1.5`, expected u64",
                "invalid type: floating point `1.5`, expected a whole number (0 or more)",
            ),
            (
                "invalid value: integer `70000`, expected u16",
                "invalid value: integer `70000`, expected a whole number from 0 to 65535",
            ),
            (
                "invalid type: string \"x\", expected i64",
                "invalid type: string \"x\", expected a whole number",
            ),
            (
                "invalid type: string \"x\", expected f64",
                "invalid type: string \"x\", expected a number",
            ),
            (
                "invalid type: string \"maybe\", expected a boolean",
                "invalid type: string \"maybe\", expected true or false",
            ),
            (
                "invalid type: sequence, expected path string",
                "invalid type: sequence, expected a path (a string such as /var/lib/ferry)",
            ),
            (
                "invalid type: map, expected a Value::Tagged enum",
                "invalid type: map, expected one of this key's words, written plainly (not a mapping or list)",
            ),
            (
                "invalid type: integer `99999999999999999999999` as u128, expected any YAML value at line 3 column 20",
                "invalid type: integer `99999999999999999999999`, expected any YAML value at line 3 column 20",
            ),
            (
                "invalid type: string \"x\", expected usize at line 3 column 5",
                "invalid type: string \"x\", expected a whole number (0 or more) at line 3 column 5",
            ),
        ] {
            let said = friendly(serde);
            assert_eq!(said, friendly_text);
            for rust in ["usize", "u64", "u16", "i64", "f64", "u128", "Value::"] {
                assert!(!said.contains(rust), "{said}");
            }
        }
        // A value's own text is kept, even where it looks like a Rust type.
        assert_eq!(
            friendly("invalid type: string \"n as u128\", expected a boolean"),
            "invalid type: string \"n as u128\", expected true or false"
        );
        // Messages without a Rust type are left as they are.
        assert_eq!(
            friendly("invalid type: integer `5`, expected a string"),
            "invalid type: integer `5`, expected a string (quote it)"
        );
    }
}
