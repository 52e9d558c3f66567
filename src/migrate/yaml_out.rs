//! A small writer of commented YAML: the migration's output is read by a person before it is
//! run, so every translated key can carry the reason it is what it is. (The YAML libraries at
//! hand serialise values but drop comments.)

/// A value in the output.
#[derive(Debug, Clone)]
pub enum Node {
    /// Already rendered (see [`scalar`]).
    Scalar(String),
    Map(Vec<Entry>),
    List(Vec<Item>),
}

/// One key of a mapping, with the comment lines written above it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub comments: Vec<String>,
    pub key: String,
    pub value: Node,
}

/// One element of a list, with the comment lines written above it.
#[derive(Debug, Clone)]
pub struct Item {
    pub comments: Vec<String>,
    pub value: Node,
}

/// Builds a mapping entry by entry.
#[derive(Debug, Clone, Default)]
pub struct MapBuilder {
    entries: Vec<Entry>,
    pending: Vec<String>,
}

impl MapBuilder {
    pub fn new() -> MapBuilder {
        MapBuilder::default()
    }

    /// A comment line above the next entry.
    pub fn comment(&mut self, text: impl Into<String>) -> &mut Self {
        self.pending.push(text.into());
        self
    }

    pub fn node(&mut self, key: &str, value: Node) -> &mut Self {
        self.entries.push(Entry {
            comments: std::mem::take(&mut self.pending),
            key: key.to_string(),
            value,
        });
        self
    }

    /// A string value, quoted when YAML would read it as something else.
    pub fn text(&mut self, key: &str, value: &str) -> &mut Self {
        self.node(key, Node::Scalar(scalar(value)))
    }

    /// A number or boolean, written as is.
    pub fn raw(&mut self, key: &str, value: impl ToString) -> &mut Self {
        self.node(key, Node::Scalar(value.to_string()))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn build(mut self) -> Node {
        // Comments with nothing after them stay, as the mapping's last lines.
        if !self.pending.is_empty() {
            self.entries.push(Entry {
                comments: std::mem::take(&mut self.pending),
                key: String::new(),
                value: Node::Scalar(String::new()),
            });
        }
        Node::Map(self.entries)
    }
}

/// A list of strings.
pub fn text_list<S: AsRef<str>>(values: &[S]) -> Node {
    Node::List(
        values
            .iter()
            .map(|value| Item {
                comments: Vec::new(),
                value: Node::Scalar(scalar(value.as_ref())),
            })
            .collect(),
    )
}

/// `value` as a YAML scalar: plain when it can only be read back as this string, else
/// double-quoted with every control and line-breaking character escaped (YAML refuses some raw
/// control characters and folds others, such as NEL, into spaces).
pub fn scalar(value: &str) -> String {
    let plain = !value.is_empty()
        && value.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':' | '@' | '+')
        })
        && !value.starts_with(['-', ':', '.', '@'])
        && !value.ends_with(':')
        && !value.contains(": ")
        && !looks_typed(value)
        // Whatever else YAML resolves to another type (0x10, 0o17, +.inf, ...) shows on reading
        // it back.
        && serde_norway::from_str::<serde_norway::Value>(value).ok()
            == Some(serde_norway::Value::String(value.to_string()));
    if plain {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Words and numbers YAML would read as another type.
fn looks_typed(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    matches!(
        lower.as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null" | "~"
    ) || value.parse::<f64>().is_ok()
        || value.starts_with(|c: char| c.is_ascii_digit()) && value.contains(':')
}

/// Renders a top-level mapping.
pub fn render(node: &Node) -> String {
    let mut out = String::new();
    if let Node::Map(entries) = node {
        write_entries(&mut out, entries, 0, None);
    }
    out
}

fn write_comments(out: &mut String, comments: &[String], indent: usize) {
    for comment in comments {
        // Every character YAML breaks lines at, so no text in a comment can start a line of
        // its own (a key hidden in an SR value).
        for line in comment.split(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}']) {
            out.push_str(&" ".repeat(indent));
            if line.is_empty() {
                out.push_str("#\n");
            } else {
                out.push_str("# ");
                // YAML refuses control characters even in comments: they are shown escaped.
                for c in line.chars() {
                    if (c.is_control() && c != '\t') || c == '\u{feff}' {
                        out.push_str(&format!("\\u{:04x}", u32::from(c)));
                    } else {
                        out.push(c);
                    }
                }
                out.push('\n');
            }
        }
    }
}

/// Writes mapping entries at `indent`; `first_prefix` replaces the indentation of the first
/// line (a list item's `- `).
fn write_entries(out: &mut String, entries: &[Entry], indent: usize, first_prefix: Option<&str>) {
    let mut prefix = first_prefix;
    for entry in entries {
        if prefix.is_none() {
            write_comments(out, &entry.comments, indent);
        }
        if entry.key.is_empty() {
            if prefix.is_some() {
                write_comments(out, &entry.comments, indent);
            }
            continue;
        }
        match prefix.take() {
            Some(dash) => out.push_str(dash),
            None => out.push_str(&" ".repeat(indent)),
        }
        out.push_str(&scalar(&entry.key));
        out.push(':');
        write_value(out, &entry.value, indent);
    }
}

fn write_value(out: &mut String, value: &Node, indent: usize) {
    match value {
        Node::Scalar(text) => {
            out.push(' ');
            out.push_str(text);
            out.push('\n');
        }
        Node::Map(entries) if entries.iter().all(|e| e.key.is_empty()) => out.push_str(" {}\n"),
        Node::Map(entries) => {
            out.push('\n');
            write_entries(out, entries, indent + 2, None);
        }
        Node::List(items) if items.is_empty() => out.push_str(" []\n"),
        Node::List(items) => {
            out.push('\n');
            for item in items {
                write_comments(out, &item.comments, indent + 2);
                match &item.value {
                    Node::Map(entries) => {
                        // Comments of the first entry go above the dash.
                        if let Some(first) = entries.first() {
                            write_comments(out, &first.comments, indent + 2);
                        }
                        let dash = format!("{}- ", " ".repeat(indent + 2));
                        write_entries(out, entries, indent + 4, Some(&dash));
                    }
                    Node::Scalar(text) => {
                        out.push_str(&" ".repeat(indent + 2));
                        out.push_str("- ");
                        out.push_str(text);
                        out.push('\n');
                    }
                    Node::List(_) => {
                        out.push_str(&" ".repeat(indent + 2));
                        out.push('-');
                        write_value(out, &item.value, indent + 2);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_that_yaml_would_read_otherwise_are_quoted() {
        for (value, expected) in [
            ("CHORIA_REGISTRATION", "CHORIA_REGISTRATION"),
            (
                "nats://broker.example.net:4222",
                "nats://broker.example.net:4222",
            ),
            ("true", "\"true\""),
            ("10", "\"10\""),
            ("", "\"\""),
            ("a: b", "\"a: b\""),
            (
                "choria.advisories.{event}.{value}",
                "\"choria.advisories.{event}.{value}\"",
            ),
            ("*.reg", "\"*.reg\""),
            ("-x", "\"-x\""),
            ("say \"hi\"", "\"say \\\"hi\\\"\""),
        ] {
            assert_eq!(scalar(value), expected, "{value}");
        }
    }

    #[test]
    fn hostile_strings_read_back_as_written_and_comments_stay_comments() {
        let hostile = [
            "0x10",
            "0o17",
            "0b101",
            "+.inf",
            ".NaN",
            "1e3",
            "~",
            "Yes",
            "2026-01-01",
            "12:30",
            "a #b",
            "#x",
            " lead",
            "trail ",
            "q\"uote",
            "back\\slash",
            "new\nline",
            "cr\rx",
            "nel\u{85}x",
            "del\u{7f}",
            "c1\u{9b}",
            "ls\u{2028}x",
            "bom\u{feff}",
            "{a}",
            "[a]",
            "&a",
            "*a",
            "!a",
            "%a",
            "@a",
            "`a`",
            "a: b",
            "<<",
            "ünï",
            "|",
            ">",
            "'",
            "?",
        ];
        for value in hostile {
            let mut map = MapBuilder::new();
            map.comment(format!("note {value}\rstate_dir: /tmp/evil"))
                .text(value, value);
            let text = render(&map.build());
            let read: serde_json::Value =
                serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{value:?}: {e}\n{text}"));
            assert_eq!(
                read,
                serde_json::json!({ value: value }),
                "{value:?}\n{text}"
            );
        }
    }

    #[test]
    fn the_output_reads_back_as_the_values_written() {
        let mut inner = MapBuilder::new();
        inner.comment("why").text("stream", "S").raw("create", true);
        let mut item = MapBuilder::new();
        item.comment("first")
            .text("name", "a")
            .node("to", inner.build());
        let mut top = MapBuilder::new();
        top.comment("head")
            .text("name", "yes")
            .node(
                "replicators",
                Node::List(vec![Item {
                    comments: vec![],
                    value: item.build(),
                }]),
            )
            .node("empty", MapBuilder::new().build())
            .node("subjects", text_list(&["a.>", "b"]));
        let text = render(&top.build());
        let value: serde_json::Value = serde_norway::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "name": "yes",
                "replicators": [{"name": "a", "to": {"stream": "S", "create": true}}],
                "empty": {},
                "subjects": ["a.>", "b"],
            }),
            "{text}"
        );
        assert!(text.contains("# first\n  - name: a\n"), "{text}");
        assert!(text.contains("      # why\n      stream: S\n"), "{text}");
    }
}
