//! `ferry run` as a child process, driven from outside exactly as an operator would: through its
//! command line, its config file, signals and its HTTP monitor. The integration tests, `ferry
//! demo` and `ferry bench` all use it, so what they check, show and measure is the product's real
//! surface, not an in-process shortcut.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::files::{append_file, log_len, log_tail_of_ferry, read_log, read_log_from};
use crate::http::http_get;

/// Why a ferry child is not (or no longer) doing what was expected of it. Each carries the tail
/// of ferry's log, which usually explains it.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("starting {command}: {error}")]
    Spawn {
        command: String,
        error: std::io::Error,
    },
    #[error("ferry exited unexpectedly with {status}\n--- ferry log (tail) ---\n{log}")]
    Exited { status: ExitStatus, log: String },
    #[error("ferry was not ready within {timeout:?} (last /readyz: {last})\n--- ferry log (tail) ---\n{log}")]
    NotReady {
        timeout: Duration,
        last: String,
        log: String,
    },
    #[error("ferry did not exit within {timeout:?} of SIGTERM\n--- ferry log (tail) ---\n{log}")]
    StillRunning { timeout: Duration, log: String },
    #[error("waiting for ferry (pid {pid}): {error}")]
    Wait { pid: u32, error: std::io::Error },
}

/// Sends `signal` to a child that has not been reaped yet.
///
/// Only call this while the `Child` is still un-waited: until then its pid cannot be reused by
/// another process, so the signal cannot hit a stranger. A child that already exited (a zombie)
/// is left alone.
pub fn signal_child(child: &Child, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid belongs to our un-reaped
        // child. Its only failure here is ESRCH, a child that is already a zombie.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Waits (blocking, polling) up to `timeout` for `child` to exit.
pub fn wait_child_blocking(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => return None,
        }
    }
}

/// Peak resident memory of process `pid` (`VmHWM` in `/proc/<pid>/status`), while it runs.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A `ferry run` child process, its stdout and stderr appended to a log file. Killed on drop if
/// still running.
#[derive(Debug)]
pub struct FerryChild {
    child: Child,
    /// Exit status once reaped; the pid is never signalled afterwards.
    exit: Option<ExitStatus>,
    log: PathBuf,
    /// Where this run's output starts in the log file (restarts append to it).
    run_log_start: u64,
}

impl FerryChild {
    /// `bin run -c config --log-level level`, the command line every ferry child starts from.
    pub fn run_command(bin: &Path, config: &Path, log_level: &str) -> Command {
        let mut command = Command::new(bin);
        command
            .arg("run")
            .arg("-c")
            .arg(config)
            .args(["--log-level", log_level]);
        command
    }

    /// Starts `command` (see [`FerryChild::run_command`]) with stdin closed and its output
    /// appended to `log`.
    pub fn spawn(mut command: Command, log: &Path) -> Result<FerryChild, ChildError> {
        let spawn_error = |error| ChildError::Spawn {
            command: format!("{command:?}"),
            error,
        };
        let run_log_start = log_len(log);
        let out = append_file(log).map_err(spawn_error)?;
        let err = out.try_clone().map_err(spawn_error)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|error| ChildError::Spawn {
                command: format!("{command:?}"),
                error,
            })?;
        Ok(FerryChild {
            child,
            exit: None,
            log: log.to_path_buf(),
            run_log_start,
        })
    }

    /// The child's pid while it has not been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.exit.is_none().then(|| self.child.id())
    }

    /// The child's peak resident memory so far.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        peak_rss_bytes(self.pid()?)
    }

    /// The exit status, once it exited (reaping it).
    pub fn poll_exit(&mut self) -> Result<Option<ExitStatus>, ChildError> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().map_err(|error| ChildError::Wait {
                pid: self.child.id(),
                error,
            })?;
        }
        Ok(self.exit)
    }

    /// True while the process is alive.
    pub fn is_running(&mut self) -> bool {
        matches!(self.poll_exit(), Ok(None))
    }

    /// Everything the child wrote so far (all runs sharing the log file), ANSI codes removed.
    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    /// What this run wrote so far.
    pub fn run_log(&self) -> String {
        read_log_from(&self.log, self.run_log_start)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last lines of ferry's own log (the NATS client's debug lines left out).
    pub fn log_tail(&self) -> String {
        log_tail_of_ferry(&self.log, 80)
    }

    /// Fails (with the log's tail) when ferry has exited.
    pub fn check_running(&mut self) -> Result<(), ChildError> {
        match self.poll_exit()? {
            Some(status) => Err(ChildError::Exited {
                status,
                log: self.log_tail(),
            }),
            None => Ok(()),
        }
    }

    /// Sends `signal` (SIGTERM, SIGKILL, SIGSTOP, SIGCONT, ...). No-op once it exited.
    pub fn signal(&mut self, signal: libc::c_int) {
        if matches!(self.poll_exit(), Ok(None)) {
            signal_child(&self.child, signal);
        }
    }

    /// SIGKILL, then reaps it.
    pub fn kill(&mut self) {
        if matches!(self.poll_exit(), Ok(None)) {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running then.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, ChildError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.poll_exit()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls `/readyz` on `monitor` (`host:port`) until it answers 200 (every pipeline connected
    /// and running); fails when ferry exits first or `timeout` passes.
    pub async fn wait_ready(&mut self, monitor: &str, timeout: Duration) -> Result<(), ChildError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            let last = match http_get(monitor, "/readyz").await {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => format!("{status} {}", body.trim()),
                Err(error) => error.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(ChildError::NotReady {
                    timeout,
                    last,
                    log: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit; kills it and fails when it does not
    /// exit in time.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus, ChildError> {
        self.signal(libc::SIGTERM);
        match self.wait_exit(timeout).await? {
            Some(status) => Ok(status),
            None => {
                self.kill();
                Err(ChildError::StillRunning {
                    timeout,
                    log: self.log_tail(),
                })
            }
        }
    }
}

impl Drop for FerryChild {
    fn drop(&mut self) {
        if self.exit.is_none() {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_peak_rss_is_readable() {
        let rss = peak_rss_bytes(std::process::id()).expect("VmHWM of this process");
        assert!(rss > 1024 * 1024);
    }

    /// Drives a stand-in child (`sh`) through the same calls a ferry child gets.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn signals_exit_and_logs() {
        let dir = crate::WorkDir::new("child").unwrap();
        let log = dir.path().join("child.log");
        let mut command = Command::new("sh");
        command.args(["-c", "echo started; exec sleep 30"]);
        let mut child = FerryChild::spawn(command, &log).unwrap();
        crate::wait_until("the child's first line", Duration::from_secs(10), || {
            std::future::ready(child.log().contains("started"))
        })
        .await;
        assert!(child.is_running());
        let pid = child.pid().unwrap();
        child.signal(libc::SIGSTOP);
        child.signal(libc::SIGCONT);
        assert!(child.is_running());
        let status = child.terminate(Duration::from_secs(10)).await.unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGTERM)
        );
        assert_eq!(child.pid(), None);
        assert!(child.peak_rss_bytes().is_none());
        assert!(matches!(
            child.check_running(),
            Err(ChildError::Exited { .. })
        ));
        child.signal(libc::SIGKILL); // a no-op once exited
        assert_ne!(pid, 0);
    }
}
