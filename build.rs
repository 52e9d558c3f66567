//! Build metadata for `ferry --version`, the first log line of `ferry run` and the
//! `ferry_build_info` metric: the git commit and the build date, exported to the crate as
//! `FERRY_BUILD_COMMIT` and `FERRY_BUILD_DATE` (read with `env!`, see `src/build_info.rs`).
//!
//! - The commit is `git rev-parse --short=12 HEAD`, or `FERRY_BUILD_COMMIT` when set (a
//!   container build has no `.git` in its context: `docker build --build-arg
//!   FERRY_BUILD_COMMIT=$(git rev-parse --short=12 HEAD) .`), or `unknown` without either (no git
//!   installed, a source tarball): a build never fails for want of it.
//! - The date is `SOURCE_DATE_EPOCH` when set (reproducible builds), else today's, in UTC.
//!
//! The script reruns only when HEAD moves (the HEAD file and the branch it points to) or one of
//! the two variables changes, so an ordinary edit-and-build cycle does not rerun it, and the date
//! is that of the last time it ran.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=FERRY_BUILD_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());

    let commit = match std::env::var("FERRY_BUILD_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_string(),
        _ => {
            watch_head(&root);
            git(&root, &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=FERRY_BUILD_COMMIT={commit}");

    let seconds = match std::env::var("SOURCE_DATE_EPOCH") {
        // Empty counts as unset: a container build passes an ARG it was not given as "".
        Ok(text) if !text.trim().is_empty() => match text.trim().parse::<i64>() {
            Ok(seconds) => seconds,
            Err(_) => {
                println!("cargo:warning=SOURCE_DATE_EPOCH={text:?} is not a number of seconds; using the current time");
                now()
            }
        },
        _ => now(),
    };
    println!("cargo:rustc-env=FERRY_BUILD_DATE={}", date(seconds));
}

/// Reruns this script when HEAD moves: the HEAD file itself (a checkout) and the loose ref it
/// points to (a commit on the branch), or packed-refs when the ref is packed. Nothing is watched
/// outside a git work tree; a watched file that does not exist would rerun the script on every
/// build, so only existing ones are named.
fn watch_head(root: &Path) {
    let Some(git_dir) = git(root, &["rev-parse", "--git-dir"]) else {
        return;
    };
    let mut watched = vec![root.join(git_dir).join("HEAD")];
    if let Some(reference) = git(root, &["symbolic-ref", "-q", "HEAD"]) {
        for file in [reference.as_str(), "packed-refs"] {
            if let Some(path) = git(root, &["rev-parse", "--git-path", file]) {
                watched.push(root.join(path));
            }
        }
    }
    for path in watched.into_iter().filter(|path| path.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// `git ARGS` run in `root`: its trimmed output, or `None` when git is missing or fails.
fn git(root: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?.trim().to_string();
    (output.status.success() && !text.is_empty()).then_some(text)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

/// `YYYY-MM-DD` (UTC) of Unix time `seconds`: the civil-from-days algorithm of H. Hinnant's
/// date library (no dependency for one date in a build script).
fn date(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
