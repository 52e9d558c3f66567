//! Code shared by this crate's integration tests (and, by path, the reply crate's).

pub mod streams;
