//! NATS header blocks as they are on the wire, for the messages the client could not parse.
//!
//! nats-server forwards and stores a header block that breaks the NATS format (a value that is not
//! UTF-8, a line without `:`, a name with a space, an unknown version line). The carried copy of
//! async-nats hands such a message over with the block untouched (`HeaderMap::unparsed`) instead of
//! dropping the connection (docs/design.md, "Patched dependencies"). Adapters count it as invalid; a
//! replicator copies it, since the source server accepted it. This module is what both need: a
//! header lookup that also reads such a block, and the byte-level version of the replicator's header
//! hygiene (SPEC section 5), which keeps every byte ferry has no reason to change. It also writes
//! the blocks ferry renders itself, which skips the client's header map on the hot path.

use async_nats::HeaderMap;
use bytes::Bytes;

/// Appends `name: value\r\n` to a header block ferry writes itself (stored events, copies). A
/// value cannot span lines: CR and LF become spaces, as the client's own `HeaderMap::insert` does.
pub fn push_header(block: &mut Vec<u8>, name: &str, value: &str) {
    if memchr::memchr2(b'\r', b'\n', value.as_bytes()).is_none() {
        return push_line_free_header(block, name, value);
    }
    block.extend_from_slice(name.as_bytes());
    block.extend_from_slice(b": ");
    block.extend(value.bytes().map(|byte| match byte {
        b'\r' | b'\n' => b' ',
        other => other,
    }));
    block.extend_from_slice(b"\r\n");
}

/// [`push_header`] for a value known to hold no line break: one the client parsed (its
/// `HeaderValue` cannot hold one) or one ferry renders from numbers and names. Skipping the search
/// matters for a copy, which writes a dozen short values.
pub fn push_line_free_header(block: &mut Vec<u8>, name: &str, value: &str) {
    block.extend_from_slice(name.as_bytes());
    block.extend_from_slice(b": ");
    block.extend_from_slice(value.as_bytes());
    block.extend_from_slice(b"\r\n");
}

/// The raw header block of a message whose headers the client could not parse.
pub fn unparsed_block(headers: Option<&HeaderMap>) -> Option<&Bytes> {
    headers?.unparsed()?.headers.as_ref()
}

/// The first value of header `name`, from the parsed map or, when the client could not parse the
/// block, from the raw block (a value that is not UTF-8 counts as absent).
pub fn lookup<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    let headers = headers?;
    match unparsed_block(Some(headers)) {
        Some(block) => block_lookup(block, name),
        None => headers.get(name).map(|value| value.as_str()),
    }
}

/// The first value of header `name` in a block ferry rendered (or any block in the wire format).
pub fn block_lookup<'a>(block: &'a [u8], name: &str) -> Option<&'a str> {
    header_lines(block)
        .find(|line| line.name == Some(name.as_bytes()))
        .and_then(|line| std::str::from_utf8(line.value).ok())
}

/// One line of a header block after the version line.
struct Line<'a> {
    /// The whole line without its CRLF.
    text: &'a [u8],
    /// The bytes before the first `:`; `None` for a line without one (and for continuations).
    name: Option<&'a [u8]>,
    /// The bytes after the first `:`, without surrounding blanks.
    value: &'a [u8],
    /// A folded continuation of the previous line (starts with a space or tab).
    continuation: bool,
}

/// The lines after the version line, up to the block's final empty line.
fn header_lines(block: &[u8]) -> impl Iterator<Item = Line<'_>> {
    split_crlf(block)
        .skip(1)
        .filter(|text| !text.is_empty())
        .map(|text| {
            let continuation = matches!(text.first(), Some(b' ' | b'\t'));
            let colon = text.iter().position(|byte| *byte == b':');
            match colon {
                Some(at) if !continuation => Line {
                    text,
                    name: Some(&text[..at]),
                    value: text[at + 1..].trim_ascii(),
                    continuation,
                },
                _ => Line {
                    text,
                    name: None,
                    value: &[],
                    continuation,
                },
            }
        })
}

/// Splits on CRLF; a last piece without one is kept.
fn split_crlf(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(block);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.windows(2).position(|pair| pair == b"\r\n") {
            Some(at) => {
                rest = Some(&text[at + 2..]).filter(|remaining| !remaining.is_empty());
                Some(&text[..at])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// A raw block after the replicator's header hygiene.
pub struct CleanBlock {
    /// The block to send: every line kept byte for byte except the dropped ones, and a final empty
    /// line so headers ferry adds can follow (see `HeaderMap::from_raw_block`).
    pub block: Bytes,
    /// The source carried `Ferry-Origin`: ferry keeps it instead of setting its own.
    pub has_origin: bool,
}

/// Drops the lines of headers that `drop` names (with their continuations), renames the source's
/// `Nats-Msg-Id` to `Ferry-Source-Msg-Id` (value bytes unchanged), and ends the block with an empty
/// line.
pub fn clean_block(block: &[u8], drop: impl Fn(&str) -> bool) -> CleanBlock {
    let mut out = Vec::with_capacity(block.len() + 16);
    let mut has_origin = false;
    let mut lines = split_crlf(block);
    if let Some(version) = lines.next() {
        out.extend_from_slice(version);
        out.extend_from_slice(b"\r\n");
    }
    let mut dropping = false;
    for line in header_lines(block) {
        if line.continuation {
            if !dropping {
                push_line(&mut out, line.text);
            }
            continue;
        }
        let name = line.name.and_then(|name| std::str::from_utf8(name).ok());
        dropping = false;
        match name {
            Some("Nats-Msg-Id") => {
                out.extend_from_slice(b"Ferry-Source-Msg-Id:");
                push_line(&mut out, &line.text[b"Nats-Msg-Id:".len()..]);
            }
            Some(name) if drop(name) => dropping = true,
            Some("Ferry-Origin") => {
                has_origin = true;
                push_line(&mut out, line.text);
            }
            _ => push_line(&mut out, line.text),
        }
    }
    out.extend_from_slice(b"\r\n");
    CleanBlock {
        block: Bytes::from(out),
        has_origin,
    }
}

fn push_line(out: &mut Vec<u8>, text: &[u8]) {
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unparsed(block: &'static [u8]) -> HeaderMap {
        HeaderMap::from_raw_block(Bytes::from_static(block))
    }

    #[test]
    fn lookups_read_parsed_maps_and_raw_blocks() {
        let mut parsed = HeaderMap::new();
        parsed.insert("Ferry-Origin", "SRC@1");
        assert_eq!(lookup(Some(&parsed), "Ferry-Origin"), Some("SRC@1"));
        assert_eq!(lookup(None, "Ferry-Origin"), None);

        let raw = unparsed(b"NATS/1.0\r\nX Node: caf\xe9\r\nFerry-Origin:  SRC@1 \r\nbare\r\n\r\n");
        assert_eq!(lookup(Some(&raw), "Ferry-Origin"), Some("SRC@1"));
        assert_eq!(lookup(Some(&raw), "X Node"), None, "not UTF-8");
        assert_eq!(lookup(Some(&raw), "bare"), None, "no colon, no header");
        assert_eq!(
            lookup(Some(&raw), "NATS/1.0"),
            None,
            "the version line is no header"
        );
    }

    #[test]
    fn hygiene_keeps_every_other_byte() {
        let block = b"NATS/2.0\r\nX Node: caf\xe9\r\nNats-Msg-Id: a\xffb\r\nNats-Expected-Stream: S\r\n folded\r\nno colon\r\nFerry-Origin: SRC@1\r\nNats-TTL: 1s\r\n\r\n";
        let dropped = |name: &str| name.starts_with("Nats-Expected-") || name == "Nats-TTL";
        let clean = clean_block(block, dropped);
        assert_eq!(
            &clean.block[..],
            &b"NATS/2.0\r\nX Node: caf\xe9\r\nFerry-Source-Msg-Id: a\xffb\r\nno colon\r\nFerry-Origin: SRC@1\r\n\r\n"[..]
        );
        assert!(clean.has_origin);
    }

    #[test]
    fn a_block_without_its_final_empty_line_gets_one() {
        for block in [
            &b"NATS/1.0\r\nX: caf\xe9"[..],
            b"NATS/1.0\r\nX: caf\xe9\r\n",
        ] {
            let clean = clean_block(block, |_| false);
            assert_eq!(&clean.block[..], b"NATS/1.0\r\nX: caf\xe9\r\n\r\n");
            assert!(!clean.has_origin);
        }
        assert_eq!(&clean_block(b"", |_| false).block[..], b"\r\n\r\n");
    }
}
