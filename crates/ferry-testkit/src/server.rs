//! A throwaway nats-server.
//!
//! Each [`NatsServer`] runs in its own temporary directory (generated config, JetStream storage,
//! log) and is killed on drop, the directory removed. The server picks its own ports (`-1` in the
//! config) and reports them in a ports file (`ports_file_dir`) and, for leafnodes, in its log, so
//! there is no window in which another process could take a port picked for it. Sharing one server
//! between tests would couple them through stream names; a server starts in well under a second,
//! so one each is affordable.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::files::{append_file, log_len, log_tail, note, read_log, read_log_from, WorkDir};
use crate::http::http_get_blocking;
use crate::process::{signal_child, wait_child_blocking};

/// How long a server may take to answer `/healthz` with 200 (JetStream recovered and ready).
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`NatsServer::stop`] waits for a graceful shutdown before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Where `scripts/install-nats-server.sh` installs the pinned binary, relative to the repository.
const INSTALLED_BIN: &str = ".tools/nats/bin/nats-server";

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// No nats-server binary was found.
    #[error(
        "nats-server not found ({0}); install it with `scripts/install-nats-server.sh` (nats-server \
         2.15.1 into .tools/nats) and put it on PATH or set NATS_SERVER_BIN to the path it prints"
    )]
    NotFound(String),
    /// Preparing the directory or starting the process failed.
    #[error("starting nats-server: {0}")]
    Io(#[from] std::io::Error),
    /// The process started but did not become healthy, or exited.
    #[error("nats-server {name} did not become ready: {reason}\n--- server log (tail) ---\n{log}")]
    NotReady {
        name: String,
        reason: String,
        log: String,
    },
}

/// The nats-server binary to run: `$NATS_SERVER_BIN`, else `nats-server` on `PATH`, else
/// `./.tools/nats/bin/nats-server`.
pub fn nats_server_bin() -> Result<PathBuf, ServerError> {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN").filter(|value| !value.is_empty()) {
        let bin = PathBuf::from(bin);
        if bin.is_file() {
            return Ok(bin);
        }
        return Err(ServerError::NotFound(format!(
            "NATS_SERVER_BIN={} does not exist",
            bin.display()
        )));
    }
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(found) = std::env::split_paths(&path)
            .map(|dir| dir.join("nats-server"))
            .find(|candidate| candidate.is_file())
        {
            return Ok(found);
        }
    }
    let installed = PathBuf::from(INSTALLED_BIN);
    if installed.is_file() {
        return Ok(installed);
    }
    Err(ServerError::NotFound(
        "not in NATS_SERVER_BIN, PATH or ./.tools/nats/bin".to_string(),
    ))
}

/// What to put in a server's generated config beyond the defaults.
///
/// The generated config always sets `server_name`, `listen`, `http` (monitoring) and, unless
/// disabled, a `jetstream { store_dir ... }` block. Everything else (accounts, auth, TLS,
/// clustering, ...) goes in as raw config text, which may use `{dir}` for the server's own
/// directory (e.g. for cert or creds files written there) and is kept verbatim across restarts.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `server_name`; default `ferry-<directory>`. Must be unique among servers that see each
    /// other with JetStream (clusters, leafnodes).
    pub name: Option<String>,
    /// Enable JetStream (default true).
    pub jetstream: bool,
    /// JetStream domain (`jetstream { domain: ... }`).
    pub jetstream_domain: Option<String>,
    /// Raw lines placed inside the `jetstream { }` block (e.g. `max_memory_store: 64MB`). A second
    /// top-level `jetstream` block would replace ours and lose `store_dir`, hence this field.
    pub jetstream_config: String,
    /// Accept leafnode connections (see [`NatsServer::leafnode_url`]).
    pub leafnode_listen: bool,
    /// Connect as a leafnode to these `nats-leaf://` URLs.
    pub leaf_remotes: Vec<String>,
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
            leafnode_listen: false,
            leaf_remotes: Vec::new(),
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

    pub fn leafnode_listen(mut self) -> Self {
        self.leafnode_listen = true;
        self
    }

    pub fn leaf_remote(mut self, url: impl Into<String>) -> Self {
        self.leaf_remotes.push(url.into());
        self
    }
}

/// The ports a running server listens on.
#[derive(Debug, Clone, Copy)]
struct Ports {
    client: u16,
    monitor: u16,
    leafnode: Option<u16>,
}

/// A running (or stopped, restartable) nats-server child process. Killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    opts: ServerOptions,
    name: String,
    ports: Ports,
    config_path: PathBuf,
    log_path: PathBuf,
    bin: PathBuf,
    dir: WorkDir,
    /// Set once a panic message already carried the log tail, so Drop does not print it again.
    reported: bool,
}

impl std::fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsServer")
            .field("name", &self.name)
            .field("url", &self.url())
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl NatsServer {
    /// Starts a JetStream-enabled server with default options; see [`NatsServer::start_with`].
    pub fn start() -> NatsServer {
        Self::start_with(ServerOptions::default())
    }

    /// Starts a server and returns once its `/healthz` says ready (JetStream included); panics
    /// with the server's log tail when it does not come up (a missing nats-server binary included,
    /// with how to install it).
    ///
    /// Synchronous because it is a setup step; the waiting runs under `block_in_place` on the
    /// multi-threaded runtime, so it is fine to call from `#[tokio::test]` bodies.
    pub fn start_with(opts: ServerOptions) -> NatsServer {
        Self::try_start(opts).unwrap_or_else(|error| panic!("{error}"))
    }

    /// Like [`NatsServer::start_with`], returning the failure. Blocks for up to 20 seconds; from
    /// async code on a current-thread runtime call it through `spawn_blocking`.
    pub fn try_start(opts: ServerOptions) -> Result<NatsServer, ServerError> {
        let bin = nats_server_bin()?;
        let label = opts.name.clone().unwrap_or_else(|| "nats".to_string());
        let dir = WorkDir::new(&label)?;
        let name = opts.name.clone().unwrap_or_else(|| {
            dir.path()
                .file_name()
                .map_or_else(|| label.clone(), |n| n.to_string_lossy().into_owned())
        });
        let mut server = NatsServer {
            child: None,
            name,
            ports: Ports {
                client: 0,
                monitor: 0,
                leafnode: None,
            },
            config_path: dir.path().join("nats-server.conf"),
            log_path: dir.path().join("nats-server.log"),
            bin,
            opts,
            dir,
            reported: false,
        };
        server.write_config(None)?;
        server.spawn_and_wait(true)?;
        // Restarts reuse the ports: clients hold URLs with them.
        server.write_config(Some(server.ports))?;
        Ok(server)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.ports.client)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.ports.client
    }

    /// The HTTP monitoring port (`/varz`, `/jsz`, `/healthz`, ...).
    pub fn monitor_port(&self) -> u16 {
        self.ports.monitor
    }

    /// `127.0.0.1:MONITOR_PORT`, for [`crate::http_get`].
    pub fn monitor_addr(&self) -> String {
        format!("127.0.0.1:{}", self.ports.monitor)
    }

    /// The `nats-leaf://` URL other servers connect to, when it accepts leafnodes.
    pub fn leafnode_url(&self) -> Option<String> {
        self.ports
            .leafnode
            .map(|port| format!("nats-leaf://127.0.0.1:{port}"))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's directory (config, log and JetStream storage live here).
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

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }

    /// Stops the server gracefully (SIGTERM: JetStream flushes and closes its stores, clients see
    /// the connection drop), waits for it to exit, and falls back to SIGKILL after 10 s. No-op if
    /// it is not running. Use [`NatsServer::kill`] to simulate a crash.
    pub fn stop(&mut self) {
        self.terminate(libc::SIGTERM);
    }

    /// Kills the server with SIGKILL (a crash: nothing is flushed) and waits for it to exit.
    pub fn kill(&mut self) {
        self.terminate(libc::SIGKILL);
    }

    /// Starts the server again on the same ports with the same config and storage (stopping it
    /// first if it is still running), and waits until ready. Clients connected before reconnect by
    /// themselves. Panics if a port got taken meanwhile: the URLs the test holds must stay valid.
    pub fn restart(&mut self) {
        self.stop();
        note(&self.log_path, "restarting");
        if let Err(error) = self.spawn_and_wait(false) {
            self.reported = true;
            panic!("restart: {error}");
        }
    }

    fn terminate(&mut self, signal: libc::c_int) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let log_path = self.log_path.clone();
        crate::blocking(|| {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            signal_child(&child, signal);
            if wait_child_blocking(&mut child, STOP_TIMEOUT).is_none() {
                note(
                    &log_path,
                    "did not stop within 10s of SIGTERM, sending SIGKILL",
                );
                let _ = child.kill();
                let _ = child.wait();
            }
        });
    }

    /// Writes the config: ports the server picks (`-1`) on the first start, the ones it picked
    /// afterwards.
    fn write_config(&self, ports: Option<Ports>) -> std::io::Result<()> {
        let port = |picked: Option<u16>| picked.map_or_else(|| "-1".to_string(), |p| p.to_string());
        let dir = self.dir.path();
        let mut conf = String::from("# Generated by ferry-testkit (crates/ferry-testkit).\n");
        conf.push_str(&format!("server_name: {:?}\n", self.name));
        conf.push_str(&format!(
            "listen: \"127.0.0.1:{}\"\n",
            port(ports.map(|p| p.client))
        ));
        conf.push_str(&format!(
            "http: \"127.0.0.1:{}\"\n",
            port(ports.map(|p| p.monitor))
        ));
        conf.push_str(&format!(
            "ports_file_dir: {:?}\n",
            dir.display().to_string()
        ));
        conf.push_str("logtime: true\n");
        if self.opts.jetstream {
            conf.push_str("jetstream {\n");
            conf.push_str(&format!(
                "  store_dir: {:?}\n",
                self.store_dir().display().to_string()
            ));
            if let Some(domain) = &self.opts.jetstream_domain {
                conf.push_str(&format!("  domain: {domain:?}\n"));
            }
            conf.push_str(&self.expand(&self.opts.jetstream_config));
            conf.push_str("}\n");
        }
        let remotes: Vec<String> = self
            .opts
            .leaf_remotes
            .iter()
            .map(|url| format!("{{ url: {url:?} }}"))
            .collect();
        if self.opts.leafnode_listen || !remotes.is_empty() {
            conf.push_str("leafnodes {\n");
            if self.opts.leafnode_listen {
                conf.push_str(&format!(
                    "  listen: \"127.0.0.1:{}\"\n",
                    port(ports.and_then(|p| p.leafnode))
                ));
            }
            if !remotes.is_empty() {
                conf.push_str(&format!("  remotes: [{}]\n", remotes.join(", ")));
            }
            conf.push_str("}\n");
        }
        conf.push_str(&self.expand(&self.opts.config));
        std::fs::write(&self.config_path, conf)
    }

    fn expand(&self, raw: &str) -> String {
        raw.replace("{dir}", &self.dir.path().display().to_string())
    }

    /// Spawns the server with its log appended to the log file, learns its ports (when `learn`),
    /// then polls `/healthz` until 200, failing fast if the process exits.
    fn spawn_and_wait(&mut self, learn: bool) -> Result<(), ServerError> {
        let log_start = log_len(&self.log_path);
        let log: File = append_file(&self.log_path)?;
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|error| {
                std::io::Error::new(
                    error.kind(),
                    format!("running {}: {error}", self.bin.display()),
                )
            })?;
        let pid = child.id();
        self.child = Some(child);
        let outcome = crate::blocking(|| self.wait_ready(pid, log_start, learn));
        if let Err(reason) = outcome {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            return Err(ServerError::NotReady {
                name: self.name.clone(),
                reason,
                log: log_tail(&self.log_path, 40),
            });
        }
        Ok(())
    }

    fn wait_ready(&mut self, pid: u32, log_start: u64, learn: bool) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::from("no ports file yet");
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = read_log_from(&self.log_path, log_start).to_ascii_lowercase();
                    return Err(if log.contains("address already in use") {
                        format!(
                            "exited with {status}: a port it had before (client {}, monitor {}) \
                             is taken by another process now",
                            self.ports.client, self.ports.monitor
                        )
                    } else {
                        format!("exited during startup with {status}")
                    });
                }
            }
            let known = !learn || self.learn_ports(pid, log_start);
            if known {
                match http_get_blocking(&self.monitor_addr(), "/healthz") {
                    Ok((200, _)) => return Ok(()),
                    Ok((code, body)) => last = format!("/healthz answered {code}: {body}"),
                    Err(e) => last = format!("/healthz: {e}"),
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("not ready after {READY_TIMEOUT:?} (last: {last})"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Reads the ports the server picked: client and monitoring from its ports file (written once
    /// every listener is up), the leafnode port from its log. False until all are known.
    fn learn_ports(&mut self, pid: u32, log_start: u64) -> bool {
        let file = self.dir.path().join(format!(
            "{}_{pid}.ports",
            self.bin
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        ));
        let Some((client, monitor)) = std::fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|ports| Some((url_port(&ports["nats"])?, url_port(&ports["monitoring"])?)))
        else {
            return false;
        };
        let leafnode = if self.opts.leafnode_listen {
            let log = read_log_from(&self.log_path, log_start);
            match log
                .lines()
                .find_map(|line| line.split("Listening for leafnode connections on ").nth(1))
                .and_then(|addr| addr.trim().rsplit(':').next()?.parse().ok())
            {
                Some(port) => Some(port),
                None => return false,
            }
        } else {
            None
        };
        self.ports = Ports {
            client,
            monitor,
            leafnode,
        };
        true
    }
}

/// The port of the first URL in a ports-file list such as `["nats://127.0.0.1:4222"]`.
fn url_port(urls: &serde_json::Value) -> Option<u16> {
    urls.get(0)?.as_str()?.rsplit(':').next()?.parse().ok()
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL: fast, and storage is thrown away with the directory anyway.
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() && !self.reported {
            eprintln!(
                "--- nats-server {} (port {}) log tail ---\n{}",
                self.name,
                self.ports.client,
                log_tail(&self.log_path, 20)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_file_urls_give_their_port() {
        let ports: serde_json::Value = serde_json::json!({
            "nats": ["nats://127.0.0.1:34233"],
            "monitoring": ["http://127.0.0.1:33043"],
        });
        assert_eq!(url_port(&ports["nats"]), Some(34233));
        assert_eq!(url_port(&ports["monitoring"]), Some(33043));
        assert_eq!(url_port(&ports["leafnodes"]), None);
    }

    /// Starts real servers (a missing nats-server fails the test, naming how to install it).
    #[test]
    fn starts_leaf_linked_servers_that_restart_on_their_ports_and_clean_up() {
        let hub = NatsServer::try_start(
            ServerOptions::default()
                .name("testkit-hub")
                .jetstream_domain("hub")
                .leafnode_listen(),
        )
        .unwrap_or_else(|error| panic!("{error}"));
        let leaf_url = hub.leafnode_url().expect("hub accepts leafnodes");
        let mut leaf = NatsServer::try_start(
            ServerOptions::default()
                .name("testkit-leaf")
                .leaf_remote(leaf_url),
        )
        .unwrap_or_else(|error| panic!("{error}"));
        assert!(leaf.url().starts_with("nats://127.0.0.1:"));
        assert_ne!(hub.port(), leaf.port());
        let (status, _) = http_get_blocking(&hub.monitor_addr(), "/jsz").unwrap();
        assert_eq!(status, 200);
        assert!(leaf.store_dir().join("jetstream").exists());
        let url = leaf.url();
        leaf.restart();
        assert_eq!(leaf.url(), url);
        assert!(leaf
            .log()
            .contains("=== ferry test harness: restarting ==="));
        let dir = leaf.dir().to_path_buf();
        leaf.stop();
        assert!(!leaf.is_running());
        drop(leaf);
        assert!(!dir.exists());
    }
}
