//! Bounds on a config file, checked before it is parsed: its size, how deeply it nests, and how
//! much its YAML aliases would add once expanded.
//!
//! The YAML parser is not bounded by itself. It takes time quadratic in the nesting depth of flow
//! collections (100,000 `[` take 20 s), and an alias expands to a copy of its anchored node, so a
//! few kilobytes of aliases to aliases become gigabytes once the file is turned into a tree (the
//! deserializer's own repetition limit is passed by padding the file with a long list). This
//! pre-scan reads the event stream of the same parser (libyaml, as `serde_norway` does), keeps
//! only a stack of open collections and one expanded size per anchor, and stops at the first
//! bound exceeded, so its own cost is bounded whatever the file. Only when it passes does the
//! file reach `serde_norway`, which then parses exactly the events the pre-scan accepted.
//!
//! Anchors and aliases stay usable (e.g. one `filter` shared by several adapters): only what
//! aliases add in total is capped.

use std::ffi::CStr;
use std::mem::MaybeUninit;

use unsafe_libyaml_norway as unsafe_yaml;

/// Largest config file. A ferry config is a few kilobytes; the reference file with every key
/// documented is under 20 KiB.
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// Deepest nesting of lists and mappings. A ferry config nests fewer than ten levels (a filter
/// value compared with `equals` may add a few).
pub const MAX_DEPTH: usize = 64;
/// Most nodes (scalars, lists, mappings) that aliases may add when expanded, counted over the
/// whole file, an alias of an alias counting everything it copies.
pub const MAX_ALIAS_NODES: u64 = 10_000;

/// `Err` with the message (naming the limit and where it was passed) when the file exceeds a bound.
/// A file that is not valid YAML passes here: the parser that follows reports that, and it stops
/// at the same place, so it never sees more than this scan accepted.
pub fn check(text: &[u8]) -> Result<(), OverLimit> {
    if text.len() > MAX_FILE_BYTES {
        return Err(OverLimit::FileSize);
    }
    let mut parser = EventParser::new(text);
    let mut scan = Scan::default();
    while let Some((event, mark)) = parser.next() {
        scan.event(event).map_err(|limit| OverLimit::At {
            limit,
            line: mark.line + 1,
            column: mark.column + 1,
        })?;
    }
    Ok(())
}

/// The bound a config file passes, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverLimit {
    #[error("the file is larger than {MAX_FILE_BYTES} bytes (1 MiB), the limit for a config file: a ferry config is a few kilobytes, so check that this is the right file")]
    FileSize,
    #[error("{limit} (at line {line}, column {column})")]
    At {
        limit: NodeLimit,
        line: u64,
        column: u64,
    },
}

/// A bound on the file's nodes, passed at one event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeLimit {
    #[error("lists and mappings nest more than {MAX_DEPTH} levels deep, the limit (a ferry config needs fewer than ten)")]
    Depth,
    #[error("the alias *{0} is inside the node it refers to, which would repeat it without end")]
    RecursiveAlias(String),
    #[error("YAML aliases would add more than {MAX_ALIAS_NODES} values once expanded, the limit (each use of an alias copies its anchored node, the aliases inside it included): write the repeated settings out, or share fewer of them")]
    AliasNodes,
    #[error("an alias nests lists and mappings more than {MAX_DEPTH} levels deep, the limit")]
    AliasDepth,
}

/// The pre-scan's state: open collections and the expanded size of every anchor seen.
#[derive(Default)]
struct Scan {
    /// One entry per open list or mapping.
    open: Vec<Open>,
    /// Nodes in the file so far with aliases expanded.
    expanded: u64,
    /// Of those, the nodes that aliases added.
    from_aliases: u64,
    /// Per anchor: its node, once complete. An anchor is defined from where its node starts, as
    /// the deserializer reads it, so an alias inside the node refers to the node itself.
    anchors: std::collections::HashMap<Vec<u8>, Anchored>,
}

#[derive(Clone, Copy)]
enum Anchored {
    /// The node has started and not ended yet.
    Open,
    /// Its size with aliases expanded, and its height (levels of nesting).
    Complete { nodes: u64, height: usize },
}

struct Open {
    anchor: Option<Vec<u8>>,
    /// `Scan::expanded` before this collection started.
    expanded_before: u64,
    /// The deepest nesting below this collection, itself included.
    height: usize,
}

impl Scan {
    fn event(&mut self, event: Event) -> Result<(), NodeLimit> {
        match event {
            Event::Start { anchor } => {
                self.expanded = self.expanded.saturating_add(1);
                if let Some(anchor) = &anchor {
                    self.anchors.insert(anchor.clone(), Anchored::Open);
                }
                self.open.push(Open {
                    anchor,
                    expanded_before: self.expanded - 1,
                    height: 1,
                });
                if self.open.len() > MAX_DEPTH {
                    return Err(NodeLimit::Depth);
                }
            }
            Event::End => {
                if let Some(closed) = self.open.pop() {
                    self.child_height(closed.height);
                    if let Some(anchor) = closed.anchor {
                        let nodes = self.expanded - closed.expanded_before;
                        let height = closed.height;
                        self.anchors
                            .insert(anchor, Anchored::Complete { nodes, height });
                    }
                }
            }
            Event::Scalar { anchor } => {
                self.expanded = self.expanded.saturating_add(1);
                if let Some(anchor) = anchor {
                    let node = Anchored::Complete {
                        nodes: 1,
                        height: 0,
                    };
                    self.anchors.insert(anchor, node);
                }
            }
            Event::Alias { anchor } => {
                let (nodes, height) = match self.anchors.get(&anchor) {
                    Some(Anchored::Complete { nodes, height }) => (*nodes, *height),
                    Some(Anchored::Open) => {
                        return Err(NodeLimit::RecursiveAlias(
                            String::from_utf8_lossy(&anchor).into_owned(),
                        ))
                    }
                    // An unknown anchor is the parser's error to report; it adds nothing here.
                    None => return Ok(()),
                };
                self.expanded = self.expanded.saturating_add(nodes);
                self.from_aliases = self.from_aliases.saturating_add(nodes);
                if self.from_aliases > MAX_ALIAS_NODES {
                    return Err(NodeLimit::AliasNodes);
                }
                if self.open.len() + height > MAX_DEPTH {
                    return Err(NodeLimit::AliasDepth);
                }
                self.child_height(height);
            }
            Event::DocumentStart => self.anchors.clear(),
            Event::Other => {}
        }
        Ok(())
    }

    /// Records a child of the innermost open collection that nests `height` levels.
    fn child_height(&mut self, height: usize) {
        if let Some(parent) = self.open.last_mut() {
            parent.height = parent.height.max(height + 1);
        }
    }
}

/// What the pre-scan needs of one parser event.
enum Event {
    /// A list or mapping begins.
    Start {
        anchor: Option<Vec<u8>>,
    },
    /// The innermost list or mapping ends.
    End,
    Scalar {
        anchor: Option<Vec<u8>>,
    },
    Alias {
        anchor: Vec<u8>,
    },
    /// Anchors are scoped to their document.
    DocumentStart,
    Other,
}

/// libyaml's event parser over a byte slice. `unsafe_libyaml_norway` is a Rust translation of the
/// C library with its C interface, so this is the one place that calls it directly.
struct EventParser<'input> {
    /// Boxed because the parser points at itself once its input is set: it must not move.
    parser: Box<MaybeUninit<unsafe_yaml::yaml_parser_t>>,
    /// The parser reads this slice; the borrow keeps it alive as long as the parser.
    _input: &'input [u8],
    /// Whether `yaml_parser_initialize` succeeded, so `drop` must delete the parser.
    initialized: bool,
    /// No more events: the stream ended, or the parser stopped at an error.
    done: bool,
}

impl<'input> EventParser<'input> {
    fn new(input: &'input [u8]) -> EventParser<'input> {
        let mut parser = Box::new(MaybeUninit::<unsafe_yaml::yaml_parser_t>::uninit());
        let raw = parser.as_mut_ptr();
        // SAFETY: `raw` points at writable memory for a parser, which `yaml_parser_initialize`
        // fills in (it only fails when it cannot allocate its buffers). The input slice outlives
        // the parser (the `'input` borrow), and the parser is deleted exactly once, in `drop`.
        let initialized = unsafe {
            let ok = unsafe_yaml::yaml_parser_initialize(raw).ok;
            if ok {
                unsafe_yaml::yaml_parser_set_encoding(raw, unsafe_yaml::YAML_UTF8_ENCODING);
                unsafe_yaml::yaml_parser_set_input_string(raw, input.as_ptr(), input.len() as u64);
            }
            ok
        };
        EventParser {
            parser,
            _input: input,
            initialized,
            // A parser that could not allocate yields no events; `serde_norway` reports it.
            done: !initialized,
        }
    }

    /// The next event and where it starts, or `None` at the end of the stream or at a syntax
    /// error (left for the deserializer to report).
    fn next(&mut self) -> Option<(Event, unsafe_yaml::yaml_mark_t)> {
        if self.done {
            return None;
        }
        let raw = self.parser.as_mut_ptr();
        let mut event = MaybeUninit::<unsafe_yaml::yaml_event_t>::uninit();
        // SAFETY: the parser was initialised in `new` (`done` is false otherwise) and has not been
        // deleted. `yaml_parser_parse` fills `event` when it succeeds; only then is it read, and
        // it is deleted right after its fields are copied out.
        unsafe {
            if !unsafe_yaml::yaml_parser_parse(raw, event.as_mut_ptr()).ok {
                self.done = true;
                return None;
            }
            let event = event.as_mut_ptr();
            let mark = (*event).start_mark;
            let converted = match (*event).type_ {
                unsafe_yaml::YAML_STREAM_END_EVENT => {
                    self.done = true;
                    Event::Other
                }
                unsafe_yaml::YAML_DOCUMENT_START_EVENT => Event::DocumentStart,
                unsafe_yaml::YAML_SEQUENCE_START_EVENT => Event::Start {
                    anchor: anchor((*event).data.sequence_start.anchor),
                },
                unsafe_yaml::YAML_MAPPING_START_EVENT => Event::Start {
                    anchor: anchor((*event).data.mapping_start.anchor),
                },
                unsafe_yaml::YAML_SEQUENCE_END_EVENT | unsafe_yaml::YAML_MAPPING_END_EVENT => {
                    Event::End
                }
                unsafe_yaml::YAML_SCALAR_EVENT => Event::Scalar {
                    anchor: anchor((*event).data.scalar.anchor),
                },
                unsafe_yaml::YAML_ALIAS_EVENT => Event::Alias {
                    anchor: anchor((*event).data.alias.anchor).unwrap_or_default(),
                },
                _ => Event::Other,
            };
            unsafe_yaml::yaml_event_delete(event);
            Some((converted, mark))
        }
    }
}

/// An anchor name from libyaml: a NUL-terminated string, or null for none.
///
/// # Safety
/// `pointer` is null or points at a NUL-terminated string that lives during the call.
unsafe fn anchor(pointer: *mut u8) -> Option<Vec<u8>> {
    if pointer.is_null() {
        return None;
    }
    // SAFETY: per this function's contract.
    Some(
        unsafe { CStr::from_ptr(pointer.cast()) }
            .to_bytes()
            .to_vec(),
    )
}

impl Drop for EventParser<'_> {
    fn drop(&mut self) {
        if !self.initialized {
            return;
        }
        // SAFETY: the parser was initialised in `new` and is deleted only here.
        unsafe { unsafe_yaml::yaml_parser_delete(self.parser.as_mut_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Checks `text` and returns the error, asserting that the scan was quick.
    fn refused(text: &str) -> String {
        let started = Instant::now();
        let result = check(text.as_bytes());
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
        match result {
            Err(limit) => limit.to_string(),
            Ok(()) => panic!("accepted {} bytes", text.len()),
        }
    }

    #[test]
    fn ordinary_files_pass_with_their_anchors() {
        let shared =
            "filters:\n  - &f { subjects: [\"a.>\"], match: [ { field: x, equals: 1 } ] }\n";
        let uses: String = (0..100).map(|_| "  - *f\n").collect();
        assert_eq!(check(format!("{shared}{uses}").as_bytes()), Ok(()));
        let reference = include_str!("../../config/ferry.yaml");
        assert_eq!(check(reference.as_bytes()), Ok(()));
        // Not YAML: left for the parser to report.
        assert_eq!(check(b"a: [\n"), Ok(()));
        assert_eq!(check(b"a: *nowhere\n"), Ok(()));
        assert_eq!(check(&[0xff, 0xfe, 0x00]), Ok(()));
    }

    #[test]
    fn a_file_over_the_size_limit_is_refused_before_parsing() {
        let text = format!("state_dir: x\n# {}\n", "x".repeat(MAX_FILE_BYTES));
        assert!(refused(&text).starts_with("the file is larger than 1048576 bytes (1 MiB)"));
        let exactly = format!("a: {}", "x".repeat(MAX_FILE_BYTES - 3));
        assert_eq!(check(exactly.as_bytes()), Ok(()));
    }

    #[test]
    fn deep_nesting_is_refused_at_the_limit() {
        // The opening of the 65th level is reported (the top-level mapping is the first).
        for (text, column) in [
            (format!("a: {}", "[".repeat(100_000)), 3 + 63 + 1),
            (format!("a: {}", "{a: ".repeat(100_000)), 3 + 63 * 4 + 1),
            (format!("{}x", "- ".repeat(100_000)), 64 * 2 + 1),
        ] {
            let message = refused(&text);
            assert_eq!(
                message,
                format!("lists and mappings nest more than 64 levels deep, the limit (a ferry config needs fewer than ten) (at line 1, column {column})")
            );
        }
        let at_limit = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(check(at_limit.as_bytes()), Ok(()));
        let over = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(check(over.as_bytes()).is_err());
    }

    #[test]
    fn alias_bombs_are_refused() {
        // A long anchored list used many times: each use is small, the sum is not.
        let padded = format!(
            "a: &a [{}]\nb: [{}]\n",
            "1,".repeat(5_000),
            "*a,".repeat(5_000)
        );
        let message = refused(&padded);
        assert!(
            message.starts_with("YAML aliases would add more than 10000 values once expanded"),
            "{message}"
        );
        assert!(message.ends_with("(at line 2, column 8)"), "{message}");
        // Aliases of aliases ("billion laughs").
        let mut laughs = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for level in 1..10 {
            let uses = vec![format!("*a{}", level - 1); 9].join(", ");
            laughs.push_str(&format!("a{level}: &a{level} [{uses}]\n"));
        }
        assert!(refused(&laughs).starts_with("YAML aliases would add more"));
        // Just under the budget passes.
        let under = format!("a: &a [{}]\nb: [*a, *a, *a, *a]\n", "1,".repeat(2_000));
        assert_eq!(check(under.as_bytes()), Ok(()));
    }

    #[test]
    fn an_alias_counts_the_depth_of_its_node() {
        let deep = format!("a: &a {}{}\n", "[".repeat(40), "]".repeat(40));
        assert_eq!(check(deep.as_bytes()), Ok(()));
        let nested_use = format!("{deep}b: {}*a{}\n", "[".repeat(30), "]".repeat(30));
        assert!(refused(&nested_use).starts_with("an alias nests lists and mappings more than 64"));
    }

    #[test]
    fn an_alias_inside_its_own_node_is_refused() {
        assert_eq!(
            refused("a: &a {b: [1, *a]}\n"),
            "the alias *a is inside the node it refers to, which would repeat it without end (at line 1, column 15)"
        );
        // A redefined anchor names the new node from where it starts (as the deserializer reads
        // it), so an alias inside that node is a cycle too.
        assert_eq!(
            refused("a: &a [1]\nb: &a [*a, *a]\nc: *a\n"),
            "the alias *a is inside the node it refers to, which would repeat it without end (at line 2, column 8)"
        );
    }

    #[test]
    fn anchors_are_scoped_to_their_document() {
        // In the second document `*a` is unknown (the parser reports it), not the first one's.
        let text = format!("a: &a [{}]\n---\nb: [*a, *a, *a]\n", "1,".repeat(5_000));
        assert_eq!(check(text.as_bytes()), Ok(()));
    }
}
