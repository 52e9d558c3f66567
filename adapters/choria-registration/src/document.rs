//! The JSON document Choria's streams adapter stores, for requests and replies alike, written
//! byte for byte as Go's `encoding/json` writes it.

use std::fmt::Write as _;

use ferry_adapter::DecodeError;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::wire::invalid;

/// The `protocol` of the stored document, as Choria's streams adapter writes it.
pub const OUTPUT_PROTOCOL: &str = "choria:adapters:choria_streams:output:1";

/// What Choria's adapter keeps of a request or a reply (its `transformer.Msg`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The payload's bytes, which Choria's adapter stores as a Go string (so bytes that are not
    /// UTF-8 are written as `\ufffd`, one per byte).
    pub data: Vec<u8>,
    /// The sending node's identity.
    pub sender: String,
    /// The id of the request (for a reply: of the request it answers).
    pub request_id: String,
    /// When the message was made, as its sender stamped it.
    pub time: OffsetDateTime,
}

impl Document {
    /// The stored document, byte-compatible with Choria's streams adapter (a Go struct marshalled
    /// by `encoding/json`): fixed key order, Go string escaping, RFC 3339 time with Go's trimmed
    /// fractional seconds (`time.Time`'s JSON form is RFC3339Nano).
    pub fn render(&self) -> Result<String, DecodeError> {
        // RFC 3339 needs a four-digit year; Go's `time.Time.MarshalJSON` refuses the same times.
        let time = self
            .time
            .format(&Rfc3339)
            .map_err(|error| invalid("time", error))?;
        let mut out = String::with_capacity(self.data.len() + 256);
        out.push_str("{\"protocol\":\"");
        out.push_str(OUTPUT_PROTOCOL);
        out.push_str("\",\"data\":");
        push_go_json_bytes(&mut out, &self.data);
        out.push_str(",\"sender\":");
        push_go_json_string(&mut out, &self.sender);
        out.push_str(",\"time\":");
        push_go_json_string(&mut out, &time);
        out.push_str(",\"requestid\":");
        push_go_json_string(&mut out, &self.request_id);
        out.push('}');
        Ok(out)
    }
}

/// Appends `value` as a JSON string the way Go's `encoding/json` writes it: `<`, `>`, `&`, U+2028
/// and U+2029 as `\u` escapes (its HTML-safe default), `\b` `\f` `\n` `\r` `\t` short escapes (as
/// since Go 1.22), other control characters as `\u00xx`. Byte-identical output keeps ferry's
/// stored documents (and their hashes) interchangeable with Choria's.
fn push_go_json_string(out: &mut String, value: &str) {
    out.push('"');
    push_go_json_text(out, value);
    out.push('"');
}

/// The inside of [`push_go_json_string`]: `value` escaped as Go escapes it, without the quotes.
fn push_go_json_text(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\u{0}'..='\u{1f}' => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// Appends `bytes` as Go's `encoding/json` writes a Go string holding them: the UTF-8 parts as
/// [`push_go_json_string`] does, and every byte that is not part of valid UTF-8 as the escape
/// `\ufffd` (one per byte; a U+FFFD that is in the input as valid UTF-8 stays as it is).
fn push_go_json_bytes(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        push_go_json_text(out, chunk.valid());
        for _ in chunk.invalid() {
            out.push_str("\\ufffd");
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(value: &str) -> String {
        let mut out = String::new();
        push_go_json_string(&mut out, value);
        out
    }

    #[test]
    fn escapes_like_go() {
        assert_eq!(go("a<b>&c"), r#""a\u003cb\u003e\u0026c""#);
        assert_eq!(go("\"\\\n\r\t\u{8}\u{c}"), r#""\"\\\n\r\t\b\f""#);
        assert_eq!(go("\u{1}\u{1f}\u{7f}"), "\"\\u0001\\u001f\u{7f}\"");
        assert_eq!(go("\u{2028}\u{2029}é"), "\"\\u2028\\u2029é\"");
    }

    /// What Go's `json.Marshal(string(bytes))` prints for each (checked against Go 1.22's
    /// `encoding/json`: `encodeState.string` writes `\ufffd` for each byte of an invalid
    /// sequence, and leaves a valid U+FFFD as it is).
    #[test]
    fn invalid_utf8_becomes_one_escaped_replacement_per_byte() {
        let go_bytes = |bytes: &[u8]| {
            let mut out = String::new();
            push_go_json_bytes(&mut out, bytes);
            out
        };
        assert_eq!(go_bytes(b"a\xe2\x82b"), r#""a\ufffd\ufffdb""#);
        assert_eq!(go_bytes(b"\xed\xa0\x80"), r#""\ufffd\ufffd\ufffd""#);
        assert_eq!(go_bytes(b"\xff<"), r#""\ufffd\u003c""#);
        assert_eq!(go_bytes("ok € \u{fffd}".as_bytes()), "\"ok € \u{fffd}\"");
    }

    #[test]
    fn times_are_formatted_like_go_rfc3339nano() {
        let render_at = |time: OffsetDateTime| {
            let document = Document {
                data: Vec::new(),
                sender: "s".into(),
                request_id: "r".into(),
                time,
            };
            let out = document.render().expect("renders");
            let value: serde_json::Value = serde_json::from_str(&out).expect("json");
            value["time"].as_str().expect("time").to_string()
        };
        let at = |nanos: i128| OffsetDateTime::from_unix_timestamp_nanos(nanos).expect("in range");
        assert_eq!(
            render_at(at(1_767_225_600_000_000_000)),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(
            render_at(at(1_767_225_600_500_000_000)),
            "2026-01-01T00:00:00.5Z"
        );
        assert_eq!(
            render_at(at(1_767_225_600_000_000_001)),
            "2026-01-01T00:00:00.000000001Z"
        );
        assert_eq!(render_at(at(-1)), "1969-12-31T23:59:59.999999999Z");
    }
}
