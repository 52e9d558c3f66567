//! NATS subjects: validation, wildcard matching, overlap between patterns, and output subject
//! templates rendered from event content (SPEC section 4, "Rendering subjects from event content").

use sha2::{Digest, Sha256};

/// Longest subject ferry renders; longer ones are cut and end in a hash of the whole.
pub const MAX_RENDERED_SUBJECT: usize = 256;

/// Checks a subject or subject pattern: non-empty tokens, no whitespace, `>` only last,
/// wildcards only as whole tokens (and none at all when `allow_wildcards` is false).
pub fn validate(subject: &str, allow_wildcards: bool) -> Result<(), InvalidSubject> {
    if subject.is_empty() {
        return Err(InvalidSubject::Empty);
    }
    let invalid = |kind: fn(String) -> InvalidSubject| Err(kind(subject.to_string()));
    let tokens: Vec<&str> = subject.split('.').collect();
    for (index, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return invalid(InvalidSubject::EmptyToken);
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return invalid(InvalidSubject::Whitespace);
        }
        let wildcard = *token == "*" || *token == ">";
        if !wildcard && (token.contains('*') || token.contains('>')) {
            return invalid(InvalidSubject::PartialWildcard);
        }
        if wildcard && !allow_wildcards {
            return invalid(InvalidSubject::Wildcard);
        }
        if *token == ">" && index + 1 != tokens.len() {
            return invalid(InvalidSubject::TailNotLast);
        }
    }
    Ok(())
}

/// Why a subject or pattern is not valid (each names the subject).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSubject {
    #[error("subject is empty")]
    Empty,
    #[error("subject {0:?} has an empty token")]
    EmptyToken(String),
    #[error("subject {0:?} contains whitespace")]
    Whitespace(String),
    #[error("subject {0:?}: wildcards must be whole tokens")]
    PartialWildcard(String),
    #[error("subject {0:?} must not contain wildcards")]
    Wildcard(String),
    #[error("subject {0:?}: '>' must be the last token")]
    TailNotLast(String),
}

/// Why an output subject template is not valid (each names the template).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTemplate {
    #[error("template {0:?} has an unclosed '{{'")]
    Unclosed(String),
    #[error("template {0:?} has an empty or nested token")]
    EmptyOrNestedToken(String),
    #[error("template {0:?} has a stray '}}'")]
    StrayClose(String),
    #[error("template {template:?}: {subject}")]
    Subject {
        template: String,
        subject: InvalidSubject,
    },
}

/// Whether the literal `subject` matches `pattern` (`*` one token, `>` one or more trailing tokens).
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut pattern_tokens = pattern.split('.');
    let mut subject_tokens = subject.split('.');
    loop {
        match (pattern_tokens.next(), subject_tokens.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(p), Some(s)) if p == s => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether some literal subject could match both patterns.
pub fn overlaps(a: &str, b: &str) -> bool {
    let mut a_tokens = a.split('.');
    let mut b_tokens = b.split('.');
    loop {
        match (a_tokens.next(), b_tokens.next()) {
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some("*"), Some(_)) | (Some(_), Some("*")) => {}
            (Some(x), Some(y)) if x == y => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// One piece of a parsed output subject template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Token(String),
}

/// An output subject template such as `ferry.lifecycle.{type}.{component}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
    /// Whether the last `{token}` is the whole last subject token, where dots are kept.
    last_token_index: Option<usize>,
}

impl Template {
    /// Parses a template; `{name}` marks a token.
    pub fn parse(text: &str) -> Result<Template, InvalidTemplate> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Literal(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| InvalidTemplate::Unclosed(text.to_string()))?;
            let name = &rest[open + 1..open + close];
            if name.is_empty() || name.contains('{') {
                return Err(InvalidTemplate::EmptyOrNestedToken(text.to_string()));
            }
            pieces.push(Piece::Token(name.to_string()));
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(InvalidTemplate::StrayClose(text.to_string()));
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.to_string()));
        }
        // The template's shape must itself be a valid literal subject once tokens are filled.
        let probe: String = pieces
            .iter()
            .map(|piece| match piece {
                Piece::Literal(text) => text.as_str(),
                Piece::Token(_) => "x",
            })
            .collect();
        validate(&probe, false).map_err(|subject| InvalidTemplate::Subject {
            template: text.to_string(),
            subject,
        })?;
        let last_token_index = match pieces.last() {
            Some(Piece::Token(_)) => {
                let index = pieces.len() - 1;
                let starts_token = index == 0
                    || matches!(&pieces[index - 1], Piece::Literal(text) if text.ends_with('.'));
                starts_token.then_some(index)
            }
            _ => None,
        };
        Ok(Template {
            pieces,
            last_token_index,
        })
    }

    /// The token names used, in order.
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Token(name) => Some(name.as_str()),
            Piece::Literal(_) => None,
        })
    }

    /// The literal text before the first token, cut back to whole subject tokens
    /// (`ferry.lifecycle.{type}` → `ferry.lifecycle`). Empty when the template starts with a token.
    pub fn literal_prefix(&self) -> String {
        let literal = match self.pieces.first() {
            Some(Piece::Literal(text)) => text.as_str(),
            _ => return String::new(),
        };
        if self.pieces.len() == 1 {
            return literal.to_string();
        }
        match literal.rfind('.') {
            Some(dot) => literal[..dot].to_string(),
            None => String::new(),
        }
    }

    /// The default stream subjects: the literal prefix followed by `>`, or the literal subject itself
    /// for a template without tokens.
    pub fn default_stream_subject(&self) -> String {
        if self.pieces.len() == 1 {
            return self.literal_prefix();
        }
        format!("{}.>", self.literal_prefix())
    }

    /// Renders the subject, taking token values from `lookup`. A token without a value renders as `_`.
    pub fn render<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
        let mut out = String::with_capacity(64);
        for (index, piece) in self.pieces.iter().enumerate() {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Token(name) => {
                    let value = lookup(name).unwrap_or("");
                    if Some(index) == self.last_token_index {
                        push_multi_token(&mut out, value);
                    } else {
                        push_single_token(&mut out, value);
                    }
                }
            }
        }
        limit_length(out)
    }
}

fn replaced(c: char) -> bool {
    c == '*' || c == '>' || c.is_whitespace() || c.is_control()
}

/// A value filling one token: dots and wildcards become `_`, empty becomes `_`.
fn push_single_token(out: &mut String, value: &str) {
    if value.is_empty() {
        out.push('_');
        return;
    }
    out.extend(
        value
            .chars()
            .map(|c| if c == '.' || replaced(c) { '_' } else { c }),
    );
}

/// A value filling the last token: dots kept (identities become several tokens, as Choria does)
/// but empty tokens collapsed.
fn push_multi_token(out: &mut String, value: &str) {
    let mut wrote = false;
    for part in value.split('.').filter(|part| !part.is_empty()) {
        if wrote {
            out.push('.');
        }
        out.extend(part.chars().map(|c| if replaced(c) { '_' } else { c }));
        wrote = true;
    }
    if !wrote {
        out.push('_');
    }
}

/// Cuts a subject longer than [`MAX_RENDERED_SUBJECT`] and ends it in a hash of the whole, so two
/// long subjects with a common beginning stay apart.
fn limit_length(subject: String) -> String {
    if subject.len() <= MAX_RENDERED_SUBJECT {
        return subject;
    }
    let digest = Sha256::digest(subject.as_bytes());
    let hash = hex(&digest[..8]);
    let mut keep = MAX_RENDERED_SUBJECT - hash.len() - 1;
    while !subject.is_char_boundary(keep) {
        keep -= 1;
    }
    let mut head = subject[..keep].trim_end_matches('.').to_string();
    head.push('.');
    head.push_str(&hash);
    head
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 0xf) as usize] as char);
    }
    out
}

/// The adapter's `Nats-Msg-Id`: lowercase hex of the first 16 bytes of
/// SHA-256(source subject, 0x00, payload). Equal events received by two instances get equal ids.
pub fn content_digest(subject: &str, payload: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(subject.as_bytes());
    hasher.update([0u8]);
    hasher.update(payload);
    hex(&hasher.finalize()[..16])
}

/// [`sanitize_header_value`] without a copy for the common value that needs no change.
pub fn sanitized_header_value(value: &str) -> std::borrow::Cow<'_, str> {
    if value.len() <= MAX_HEADER_VALUE && !value.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(value);
    }
    std::borrow::Cow::Owned(sanitize_header_value(value))
}

/// The longest header value taken from event content.
const MAX_HEADER_VALUE: usize = 1024;

/// Header values come from event content: control characters (CR and LF among them) are removed
/// and the value is cut to 1 KiB.
pub fn sanitize_header_value(value: &str) -> String {
    // Almost every value is already clean: one copy, without walking it char by char.
    if !value.chars().any(char::is_control) {
        return ferry_adapter::truncate(value, MAX_HEADER_VALUE);
    }
    let cleaned: String = value.chars().filter(|c| !c.is_control()).collect();
    ferry_adapter::truncate(&cleaned, MAX_HEADER_VALUE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(validate("a.b.c", false).is_ok());
        assert!(validate("a.*.>", true).is_ok());
        assert!(validate("a.*", false).is_err());
        assert!(validate("a..b", true).is_err());
        assert!(validate("a.>.b", true).is_err());
        assert!(validate("a b", true).is_err());
        assert!(validate("a.b*", true).is_err());
        assert!(validate("", true).is_err());
    }

    #[test]
    fn matching_and_overlap() {
        assert!(matches("a.>", "a.b.c"));
        assert!(!matches("a.>", "a"));
        assert!(matches("a.*.c", "a.b.c"));
        assert!(!matches("a.*", "a.b.c"));
        assert!(overlaps("ferry.>", "ferry.lifecycle.x"));
        assert!(overlaps("a.*.c", "a.b.>"));
        assert!(overlaps("choria.>", ">"));
        assert!(!overlaps("ferry.lifecycle.>", "choria.lifecycle.event.>"));
        assert!(!overlaps("a.b", "a.b.c"));
    }

    #[test]
    fn template_prefix_and_default_subjects() {
        let t = Template::parse("ferry.lifecycle.{type}.{component}").unwrap();
        assert_eq!(t.literal_prefix(), "ferry.lifecycle");
        assert_eq!(t.default_stream_subject(), "ferry.lifecycle.>");
        assert_eq!(t.tokens().collect::<Vec<_>>(), ["type", "component"]);
        let t = Template::parse("{sender}.x").unwrap();
        assert_eq!(t.literal_prefix(), "");
        let t = Template::parse("ab.c{x}").unwrap();
        assert_eq!(t.literal_prefix(), "ab");
        assert!(Template::parse("a.{x").is_err());
        assert!(Template::parse("a.{}").is_err());
        assert!(Template::parse("a..{x}").is_err());
        let t = Template::parse("fixed.subject").unwrap();
        assert_eq!(t.default_stream_subject(), "fixed.subject");
    }

    #[test]
    fn rendering_sanitises_values() {
        let t = Template::parse("ferry.{type}.{identity}").unwrap();
        let values = |name: &str| match name {
            "type" => Some("a.b *>"),
            "identity" => Some("..web1..acme.test.."),
            _ => None,
        };
        assert_eq!(t.render(values), "ferry.a_b___.web1.acme.test");
        assert_eq!(t.render(|_| Some("")), "ferry._._");
        let t = Template::parse("x.{a}.{b}end").unwrap();
        assert_eq!(t.render(|_| Some("p.q")), "x.p_q.p_qend");
    }

    #[test]
    fn long_subjects_are_cut_with_a_hash() {
        let t = Template::parse("x.{identity}").unwrap();
        let long_a = "a".repeat(300);
        let long_b = format!("{}b", "a".repeat(299));
        let a = t.render(|_| Some(long_a.as_str()));
        let b = t.render(|_| Some(long_b.as_str()));
        assert!(a.len() <= MAX_RENDERED_SUBJECT);
        assert_ne!(a, b);
        assert!(validate(&a, false).is_ok());
    }

    #[test]
    fn digest_is_sha256_prefix() {
        // sha256("s\0p") computed independently.
        let id = content_digest("s", b"p");
        assert_eq!(id.len(), 32);
        assert_eq!(id, hex(&Sha256::digest(b"s\0p")[..16]));
        assert_ne!(content_digest("s", b"p"), content_digest("t", b"p"));
    }

    #[test]
    fn header_values_are_cleaned() {
        assert_eq!(sanitize_header_value("a\r\nb\u{7}c"), "abc");
        assert_eq!(sanitize_header_value(&"x".repeat(5000)).len(), 1024);
    }
}
