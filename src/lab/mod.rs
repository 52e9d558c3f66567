//! The lab wing: `ferry demo` and `ferry bench`. Neither is part of the product's data path; both
//! drive a real `ferry run` child process against throwaway nats-servers (`ferry-testkit`) with
//! traffic from the simulated fleet (`ferry-sim`), through the same command line, config file and
//! HTTP monitor an operator uses.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use ferry_testkit::FerryChild;

pub mod bench;
pub mod demo;

/// How long ferry may take to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long ferry may take to exit after SIGTERM (its default shutdown_timeout is 10s).
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts `ferry run -c config` (this very binary) with its output in `log`; does not wait.
fn spawn_ferry(config: &Path, log: &Path) -> anyhow::Result<FerryChild> {
    let exe = std::env::current_exe().context("locating the ferry binary")?;
    Ok(FerryChild::spawn(
        FerryChild::run_command(&exe, config, "warn"),
        log,
    )?)
}
