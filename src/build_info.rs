//! What build of ferry this is, as `build.rs` found it: shown by `ferry --version`, in the first
//! log line of `ferry run` and as the labels of `ferry_build_info`, so a log or a scrape says
//! which code produced it.

/// The release, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit built (12 hex digits), or `unknown` when the source had no git metadata.
pub const COMMIT: &str = env!("FERRY_BUILD_COMMIT");
/// The build date, `YYYY-MM-DD` in UTC (`SOURCE_DATE_EPOCH` when set).
pub const DATE: &str = env!("FERRY_BUILD_DATE");
/// `0.1.0 (abc123def456 2026-12-07)`: what `ferry --version` prints after the name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("FERRY_BUILD_COMMIT"),
    " ",
    env!("FERRY_BUILD_DATE"),
    ")"
);
