//! The `ferry` binary under test, run as a child process.
//!
//! Running the real binary (rather than calling the library) is the point: these tests check what a
//! user gets, including signal handling, exit codes, the single-process lock on the state store,
//! logging and the HTTP monitor.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use ferry_testkit::{
    http_get, log_tail_of_ferry, note, parse_metrics, ChildError, FerryChild, Metrics, WorkDir,
};

use super::free_port;

/// Deadline for `/readyz` to answer 200 in [`Ferry::wait_ready`].
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Fresh monitor ports tried when ferry exits because its picked port was taken.
const PORT_ATTEMPTS: usize = 3;

/// Path of the ferry binary Cargo built for this test run.
pub fn ferry_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ferry"))
}

/// A `Command` for one-shot invocations (`ferry check -c FILE`, `ferry status --json`, ...).
///
/// Sets `NO_COLOR=1` so output is plain text to assert on, and `RUST_BACKTRACE=1` so a panic in
/// the binary explains itself in the test output.
pub fn ferry_command() -> Command {
    let mut cmd = Command::new(ferry_bin());
    cmd.env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null());
    cmd
}

/// Extra knobs for [`Ferry::start_with`].
#[derive(Debug, Clone, Default)]
pub struct FerryOptions {
    /// Use this state directory (caller owns it) instead of a fresh temporary one.
    pub state_dir: Option<PathBuf>,
    /// Extra environment for the child (e.g. secrets referenced as `${VAR}` in the YAML).
    pub env: Vec<(String, String)>,
    /// Extra arguments after `run -c FILE --log-level debug`.
    pub args: Vec<String>,
}

impl FerryOptions {
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }
}

/// A `ferry run` child process with its own config file, state directory, monitor port and log.
/// Killed (SIGKILL) on drop; if the test is panicking, the tail of ferry's log is printed then, which
/// is usually the explanation of the failure.
///
/// The YAML given to [`Ferry::start`] may use placeholders:
/// - `{state_dir}`: the state directory (fresh temp dir, or [`FerryOptions::state_dir`]);
/// - `{monitor}`: `127.0.0.1:<free port>`, e.g. `monitor: { listen: "{monitor}" }`;
/// - `{work_dir}`: this instance's temp dir (holds the config and log; put creds files here).
pub struct Ferry {
    child: Option<FerryChild>,
    template: String,
    opts: FerryOptions,
    monitor: Option<String>,
    state_dir: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    work: WorkDir,
    _state_tmp: Option<WorkDir>,
    /// Set once a panic message already carried the log tail, so Drop does not print it again.
    reported: std::cell::Cell<bool>,
}

impl Ferry {
    /// Writes `config_yaml` (placeholders expanded) and starts `ferry run` on it, with a fresh
    /// temporary state dir. Does not wait: call [`Ferry::wait_ready`].
    pub fn start(config_yaml: &str) -> Ferry {
        Self::start_with(config_yaml, FerryOptions::default())
    }

    /// Like [`Ferry::start`] but on a caller-owned state dir, e.g. to run a second instance against
    /// the same store (which must fail: one process per store), or to continue from another
    /// instance's state after it exited. The directory must outlive this `Ferry`.
    pub fn start_in(state_dir: PathBuf, config_yaml: &str) -> Ferry {
        Self::start_with(config_yaml, FerryOptions::default().state_dir(state_dir))
    }

    pub fn start_with(config_yaml: &str, opts: FerryOptions) -> Ferry {
        let work = WorkDir::new("run").expect("create ferry work dir");
        let (state_dir, state_tmp) = match &opts.state_dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let tmp = WorkDir::new("state").expect("create ferry state dir");
                (tmp.path().to_path_buf(), Some(tmp))
            }
        };
        let mut ferry = Ferry {
            child: None,
            template: config_yaml.to_string(),
            opts,
            monitor: None,
            state_dir,
            config_path: work.path().join("ferry.yaml"),
            log_path: work.path().join("ferry.log"),
            work,
            _state_tmp: state_tmp,
            reported: std::cell::Cell::new(false),
        };
        if ferry.template.contains("{monitor}") {
            ferry.monitor = Some(format!("127.0.0.1:{}", free_port()));
        }
        ferry.write_config();
        ferry.spawn();
        ferry
    }

    /// `127.0.0.1:PORT` of the monitor. Panics if the YAML did not use `{monitor}`.
    pub fn monitor_addr(&self) -> &str {
        self.monitor
            .as_deref()
            .expect("this ferry's YAML has no {monitor} placeholder, so the harness knows no monitor address")
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// This instance's temp dir (`{work_dir}`).
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// The child's pid while it has not been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(FerryChild::pid)
    }

    /// True while the process is alive.
    pub fn is_running(&mut self) -> bool {
        self.poll_exit().is_none() && self.child.is_some()
    }

    /// Everything ferry wrote to stdout and stderr so far (all runs: restarts append), ANSI codes
    /// removed.
    pub fn log(&self) -> String {
        ferry_testkit::read_log(&self.log_path)
    }

    /// `GET {path}` on the monitor.
    pub async fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http_get(self.monitor_addr(), path).await
    }

    /// Scrapes `/metrics` once. Panics if the monitor is unreachable or does not answer 200.
    pub async fn metrics(&self) -> Metrics {
        match self.get("/metrics").await {
            Ok((200, body)) => parse_metrics(&body),
            Ok((code, body)) => self.fail(&format!("GET /metrics answered {code}: {body}")),
            Err(e) => self.fail(&format!("GET /metrics: {e}")),
        }
    }

    /// Polls `/readyz` until it answers 200 (every pipeline connected and running), up to 30 s.
    /// Panics with the log tail on timeout or if ferry exits meanwhile.
    ///
    /// If ferry exits because its monitor port was taken (a free port is only free until someone
    /// binds it), the config is rewritten with another port and ferry started again.
    pub async fn wait_ready(&mut self) {
        let mut port_retries = 0;
        loop {
            let monitor = self.monitor_addr().to_string();
            let child = self.child.as_mut().expect("ferry was spawned");
            let outcome = child.wait_ready(&monitor, READY_TIMEOUT).await;
            match outcome {
                Ok(()) => return,
                Err(ChildError::Exited { status, .. }) => {
                    let log = self.run_log().to_ascii_lowercase();
                    if log.contains("address already in use") && port_retries < PORT_ATTEMPTS {
                        port_retries += 1;
                        self.monitor = Some(format!("127.0.0.1:{}", free_port()));
                        self.write_config();
                        note(
                            &self.log_path,
                            "monitor port was taken; restarting on another port",
                        );
                        self.spawn();
                        continue;
                    }
                    self.fail(&format!("ferry exited ({status}) before becoming ready"));
                }
                Err(ChildError::NotReady { last, .. }) => {
                    self.fail(&format!("not ready after {READY_TIMEOUT:?} (last: {last})"))
                }
                Err(error) => self.fail(&error.to_string()),
            }
        }
    }

    /// Replaces the config file with `config_yaml` (same placeholders as [`Ferry::start`], same
    /// state dir and monitor address) without touching the running process: send SIGHUP with
    /// [`Ferry::reload`] to apply it.
    pub fn rewrite_config(&mut self, config_yaml: &str) {
        self.template = config_yaml.to_string();
        self.write_config();
    }

    /// Sends SIGHUP and waits until ferry has acted on it: its log gains a line saying the
    /// config reloaded or the reload failed. Returns what the run logged from the signal on.
    pub async fn reload(&mut self) -> String {
        let from = ferry_testkit::log_len(&self.log_path);
        self.signal(libc::SIGHUP);
        let log_path = self.log_path.clone();
        let finished = ferry_testkit::wait_for(Duration::from_secs(60), || {
            let log = ferry_testkit::read_log_from(&log_path, from);
            async move { log.contains("config reloaded") || log.contains("config reload failed") }
        })
        .await;
        if finished.is_err() {
            self.fail("no reload outcome logged within 60 s of SIGHUP");
        }
        ferry_testkit::read_log_from(&self.log_path, from)
    }

    /// Sends SIGTERM (graceful shutdown). No-op if the process already exited.
    pub fn sigterm(&mut self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends SIGKILL (crash). No-op if the process already exited.
    pub fn sigkill(&mut self) {
        self.signal(libc::SIGKILL);
    }

    /// Sends any signal (e.g. `libc::SIGINT`). No-op if the process already exited.
    pub fn signal(&mut self, signal: libc::c_int) {
        if let Some(child) = self.child.as_mut() {
            child.signal(signal);
        }
    }

    /// Waits for the process to exit and returns its status; panics with the log tail if it is
    /// still running after `timeout`. Returns the same status again if called after it exited.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("ferry was spawned");
        match child.wait_exit(timeout).await {
            Ok(Some(status)) => status,
            Ok(None) => self.fail(&format!(
                "still running {timeout:?} later, expected it to exit"
            )),
            Err(error) => self.fail(&error.to_string()),
        }
    }

    /// Starts ferry again with the same config file and state dir (and monitor port). If the
    /// previous process is still running it is SIGKILLed first: stop it yourself (`sigterm` +
    /// `wait_exit`) to test a graceful restart. Does not wait: call [`Ferry::wait_ready`].
    pub fn restart(&mut self) {
        if let Some(child) = self.child.as_mut() {
            child.kill();
        }
        note(&self.log_path, "restart");
        self.spawn();
    }

    fn poll_exit(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.poll_exit().unwrap_or_else(|error| panic!("{error}"))
    }

    /// What the current run wrote so far.
    fn run_log(&self) -> String {
        self.child
            .as_ref()
            .map(FerryChild::run_log)
            .unwrap_or_default()
    }

    fn write_config(&self) {
        let mut yaml = self
            .template
            .replace("{state_dir}", &self.state_dir.display().to_string())
            .replace("{work_dir}", &self.work.path().display().to_string());
        if let Some(monitor) = &self.monitor {
            yaml = yaml.replace("{monitor}", monitor);
        }
        std::fs::write(&self.config_path, yaml).expect("write ferry config");
    }

    fn spawn(&mut self) {
        let mut command = FerryChild::run_command(&ferry_bin(), &self.config_path, "debug");
        command
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "1")
            .args(&self.opts.args)
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)));
        let child = FerryChild::spawn(command, &self.log_path).unwrap_or_else(|e| panic!("{e}"));
        self.child = Some(child);
    }

    fn fail(&self, why: &str) -> ! {
        self.reported.set(true);
        panic!(
            "ferry ({}): {why}\n--- config ---\n{}\n--- ferry log (tail) ---\n{}",
            self.config_path.display(),
            std::fs::read_to_string(&self.config_path).unwrap_or_default(),
            log_tail_of_ferry(&self.log_path, 80)
        );
    }
}

impl Drop for Ferry {
    fn drop(&mut self) {
        // The child kills itself on drop; the log tail is printed here, once, if a test failed.
        if std::thread::panicking() && !self.reported.get() {
            eprintln!(
                "--- ferry log tail ({}) ---\n{}",
                self.log_path.display(),
                log_tail_of_ferry(&self.log_path, 80)
            );
        }
    }
}
