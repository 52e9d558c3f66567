//! Filters shared by adapters and replicators (SPEC section 6).
//!
//! A filter is compiled once from its config ([`Filter::compile`]): regexes are built and field paths
//! are merged into one tree, so the per-message [`Filter::check`] does no setup work. Checks run from
//! cheap to expensive: subject patterns, then header predicates, then field predicates, and the JSON
//! document is parsed only when a field predicate is actually reached.
//!
//! Parsing visits only the keys on the configured paths: everything else is validated and skipped
//! without building a JSON tree (the hot path must not allocate a whole document per message). A
//! value is materialised only where a path ends. The parsing is [`crate::fields`], the extractor
//! sampling uses too.
//!
//! Semantics worth knowing:
//! - A document that is not valid JSON (as a whole) fails every field predicate, `exists: false`
//!   included: the filter cannot say anything about a document it cannot read.
//! - A key whose value is `null` exists.
//! - `equals` and `in` compare JSON values strictly by type: the string `"5"` does not equal the
//!   number `5`. Numbers compare by value, so `5` equals `5.0`.
//! - `regex` tests strings, and numbers and booleans as their JSON text (`5`, `true`); nulls,
//!   arrays and objects never match.
//! - Headers are strings: `equals` and `in` compare the header with a string predicate value as is,
//!   and with any other value as its JSON text (`equals: 5` matches the header `5`).
//!
//! `mod.rs` compiles and applies a filter; `predicate.rs` holds the tests of one `match` entry.

mod predicate;
#[cfg(test)]
mod tests;

use ferry_adapter::HeaderLookup;

use crate::config::schema::{FilterConfig, PredicateConfig};
use crate::fields::{FieldPaths, InvalidPath};
use predicate::{compile_test, field_holds, header_holds, FieldPredicate, HeaderPredicate};

/// The outcome of [`Filter::check`]; anything but `Accept` means the message is filtered out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The message passes.
    Accept,
    /// The subject is outside `subjects` or inside `exclude_subjects`.
    SubjectExcluded,
    /// A `match` predicate does not hold.
    NotMatched,
}

/// Why a `filter` does not compile. The text names the entry, e.g. `match[2].regex: ...`.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// A `subjects` or `exclude_subjects` pattern.
    #[error("{key}[{index}]: {reason}")]
    Pattern {
        key: &'static str,
        index: usize,
        reason: crate::subject::InvalidSubject,
    },
    /// A `match` entry.
    #[error("match[{index}]{problem}")]
    Predicate {
        index: usize,
        problem: PredicateError,
    },
}

/// What is wrong with one `match` entry; the text starts with the key it concerns (`.regex: ...`).
#[derive(Debug, thiserror::Error)]
pub enum PredicateError {
    #[error(": needs exactly one of `field` or `header`")]
    Target,
    #[error(": needs exactly one of `equals`, `regex`, `in` or `exists`")]
    Test,
    #[error(".field: {0}")]
    Field(InvalidPath),
    #[error(".header: empty header name")]
    EmptyHeader,
    #[error(".regex: {0}")]
    Regex(regex::Error),
    #[error(".in: empty list (it could never match)")]
    EmptyIn,
}

/// A compiled `filter`.
#[derive(Debug, Clone)]
pub struct Filter {
    subjects: Vec<String>,
    exclude_subjects: Vec<String>,
    header_predicates: Vec<HeaderPredicate>,
    field_predicates: Vec<FieldPredicate>,
    /// The field paths of `field_predicates`, merged; each path end has a slot.
    paths: FieldPaths,
}

impl Filter {
    /// Compiles a filter, checking its subject patterns, that each `match` entry names exactly one
    /// of `field` or `header` and exactly one test, and that regexes compile. Errors name the
    /// entry, e.g. `match[2].regex: ...`.
    pub fn compile(config: &FilterConfig) -> Result<Filter, FilterError> {
        check_patterns("subjects", &config.subjects)?;
        check_patterns("exclude_subjects", &config.exclude_subjects)?;
        let mut filter = Filter {
            subjects: config.subjects.clone(),
            exclude_subjects: config.exclude_subjects.clone(),
            ..Filter::accept_all()
        };
        for (index, predicate) in config.predicates.iter().enumerate() {
            filter
                .add_predicate(predicate)
                .map_err(|problem| FilterError::Predicate { index, problem })?;
        }
        Ok(filter)
    }

    /// A filter that accepts everything (no `filter` in the config).
    pub fn accept_all() -> Filter {
        Filter {
            subjects: Vec::new(),
            exclude_subjects: Vec::new(),
            header_predicates: Vec::new(),
            field_predicates: Vec::new(),
            paths: FieldPaths::new(),
        }
    }

    /// Whether the filter accepts every message, so callers can skip it entirely.
    pub fn is_pass_through(&self) -> bool {
        self.subjects.is_empty()
            && self.exclude_subjects.is_empty()
            && self.header_predicates.is_empty()
            && self.field_predicates.is_empty()
    }

    /// Whether any `field` predicate exists, i.e. whether [`Filter::check`] may look at the document
    /// (callers that have to produce the document, e.g. by decoding, can skip that otherwise).
    pub fn needs_document(&self) -> bool {
        !self.field_predicates.is_empty()
    }

    /// The `subjects` list, which replicators hand to the server as their consumer's filter.
    pub fn server_subjects(&self) -> &[String] {
        &self.subjects
    }

    /// Judges one message. `document` is only read when a field predicate is reached, and then
    /// parsed once.
    pub fn check(&self, subject: &str, document: &[u8], headers: &dyn HeaderLookup) -> Verdict {
        if !self.subject_selected(subject) {
            return Verdict::SubjectExcluded;
        }
        let headers_hold = self
            .header_predicates
            .iter()
            .all(|predicate| header_holds(predicate, headers));
        if !headers_hold || !self.fields_hold(document) {
            return Verdict::NotMatched;
        }
        Verdict::Accept
    }

    fn subject_selected(&self, subject: &str) -> bool {
        let included = self.subjects.is_empty()
            || self
                .subjects
                .iter()
                .any(|pattern| crate::subject::matches(pattern, subject));
        included
            && !self
                .exclude_subjects
                .iter()
                .any(|pattern| crate::subject::matches(pattern, subject))
    }

    fn fields_hold(&self, document: &[u8]) -> bool {
        if self.field_predicates.is_empty() {
            return true;
        }
        let Some(values) = self.paths.values(document) else {
            return false;
        };
        self.field_predicates
            .iter()
            .all(|predicate| field_holds(&predicate.test, values[predicate.slot].as_ref()))
    }

    /// Adds one `match` entry; errors start with the key they concern (`.regex: ...`).
    fn add_predicate(&mut self, config: &PredicateConfig) -> Result<(), PredicateError> {
        let test = compile_test(config)?;
        match (&config.field, &config.header) {
            (Some(path), None) => {
                let slot = self.add_path(path)?;
                self.field_predicates.push(FieldPredicate { slot, test });
            }
            (None, Some(name)) => {
                if name.trim().is_empty() {
                    return Err(PredicateError::EmptyHeader);
                }
                self.header_predicates.push(HeaderPredicate {
                    name: name.clone(),
                    test,
                });
            }
            _ => return Err(PredicateError::Target),
        }
        Ok(())
    }

    /// Adds a dot-separated path to the tree and returns its slot (shared by equal paths).
    fn add_path(&mut self, path: &str) -> Result<usize, PredicateError> {
        FieldPaths::check(path).map_err(PredicateError::Field)?;
        Ok(self.paths.add(path))
    }
}

/// Validates `subjects` or `exclude_subjects` patterns.
fn check_patterns(key: &'static str, patterns: &[String]) -> Result<(), FilterError> {
    for (index, pattern) in patterns.iter().enumerate() {
        crate::subject::validate(pattern, true).map_err(|reason| FilterError::Pattern {
            key,
            index,
            reason,
        })?;
    }
    Ok(())
}
