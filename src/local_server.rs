//! A throwaway local `nats-server` for `ferry demo` and `ferry bench`.
//!
//! [`LocalServer::start`] runs the binary on free loopback ports with its JetStream storage in a
//! fresh temporary directory, returns once the server answers its `/healthz` monitoring endpoint
//! (which includes JetStream being ready), and kills the process and removes the directory on drop.
//! The binary is `$NATS_SERVER_BIN`, else `nats-server` on `PATH`, else the copy
//! `scripts/install-nats-server.sh` puts in `./.tools/nats/bin`.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a server may take to become healthy.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`LocalServer::stop`] waits for a graceful exit before killing.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Start attempts on fresh ports, in case another process takes a picked port first.
const START_ATTEMPTS: usize = 5;
/// Where `scripts/install-nats-server.sh` installs the pinned binary, relative to the repository.
const INSTALLED_BIN: &str = ".tools/nats/bin/nats-server";

/// Why a local server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LocalServerError {
    /// No nats-server binary was found.
    #[error(
        "nats-server not found ({0}); install it with `scripts/install-nats-server.sh` (nats-server \
         2.15.1 into .tools/nats) and put it on PATH or set NATS_SERVER_BIN to the path it prints"
    )]
    NotFound(String),
    /// Starting the process or preparing its directory failed.
    #[error("starting nats-server: {0}")]
    Io(#[from] std::io::Error),
    /// The process started but did not become healthy (or exited).
    #[error("nats-server {name} did not become ready: {reason}\n--- server log (tail) ---\n{log}")]
    NotReady {
        name: String,
        reason: String,
        log: String,
    },
}

/// The nats-server binary to run: `$NATS_SERVER_BIN`, else `nats-server` on `PATH`, else
/// `./.tools/nats/bin/nats-server`.
pub fn nats_server_bin() -> Result<PathBuf, LocalServerError> {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN").filter(|value| !value.is_empty()) {
        let bin = PathBuf::from(bin);
        if bin.is_file() {
            return Ok(bin);
        }
        return Err(LocalServerError::NotFound(format!(
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
    Err(LocalServerError::NotFound(
        "not in NATS_SERVER_BIN, PATH or ./.tools/nats/bin".to_string(),
    ))
}

/// A running nats-server child process with its own temporary directory. Killed on drop.
#[derive(Debug)]
pub struct LocalServer {
    child: Child,
    name: String,
    port: u16,
    monitor_port: u16,
    leafnode_port: Option<u16>,
    dir: PathBuf,
}

/// What a [`LocalServer`] runs with beyond its ports and name.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Enable JetStream, with file storage in the server's temporary directory.
    pub jetstream: bool,
    /// The JetStream domain (requires `jetstream`).
    pub domain: Option<String>,
    /// Accept leafnode connections on a free port (see [`LocalServer::leafnode_url`]).
    pub leafnode_listen: bool,
    /// Connect as a leafnode to these `nats-leaf://` URLs.
    pub leaf_remotes: Vec<String>,
}

/// The server's config file: ports on loopback, the name, JetStream and leafnodes.
fn server_config(
    name: &str,
    port: u16,
    monitor_port: u16,
    leafnode_port: Option<u16>,
    options: &ServerOptions,
    dir: &Path,
) -> String {
    let mut config = format!(
        "server_name: {name:?}\nlisten: \"127.0.0.1:{port}\"\nhttp: \"127.0.0.1:{monitor_port}\"\n"
    );
    if options.jetstream {
        let store = dir.join("jetstream");
        config.push_str(&format!(
            "jetstream {{\n  store_dir: {:?}\n",
            store.display().to_string()
        ));
        if let Some(domain) = &options.domain {
            config.push_str(&format!("  domain: {domain:?}\n"));
        }
        config.push_str("}\n");
    }
    let remotes: Vec<String> = options
        .leaf_remotes
        .iter()
        .map(|url| format!("{{ url: {url:?} }}"))
        .collect();
    if leafnode_port.is_some() || !remotes.is_empty() {
        config.push_str("leafnodes {\n");
        if let Some(leaf) = leafnode_port {
            config.push_str(&format!("  listen: \"127.0.0.1:{leaf}\"\n"));
        }
        if !remotes.is_empty() {
            config.push_str(&format!("  remotes: [{}]\n", remotes.join(", ")));
        }
        config.push_str("}\n");
    }
    config
}

impl LocalServer {
    /// Starts a server named `name` on free loopback ports, with JetStream (file storage in a
    /// temporary directory) when `jetstream` is set, and waits until it is healthy.
    ///
    /// Blocks for up to 20 seconds; from async code call it through `spawn_blocking`.
    pub fn start(name: &str, jetstream: bool) -> Result<LocalServer, LocalServerError> {
        Self::start_with(
            name,
            &ServerOptions {
                jetstream,
                ..ServerOptions::default()
            },
        )
    }

    /// Like [`LocalServer::start`], with a JetStream domain and leafnode links as `options` says.
    pub fn start_with(
        name: &str,
        options: &ServerOptions,
    ) -> Result<LocalServer, LocalServerError> {
        let bin = nats_server_bin()?;
        let dir = unique_temp_dir(name)?;
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&bin, name, options, &dir) {
                Ok(server) => return Ok(server),
                Err(Attempt::PortInUse(error)) => last = Some(error),
                Err(Attempt::Failed(error)) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(error);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(last.unwrap_or_else(|| LocalServerError::NotReady {
            name: name.to_string(),
            reason: "no free port".to_string(),
            log: String::new(),
        }))
    }

    fn start_once(
        bin: &Path,
        name: &str,
        options: &ServerOptions,
        dir: &Path,
    ) -> Result<LocalServer, Attempt> {
        let failed = |e: std::io::Error| Attempt::Failed(e.into());
        let port = free_port().map_err(failed)?;
        let monitor_port = free_port().map_err(failed)?;
        let leafnode_port = if options.leafnode_listen {
            Some(free_port().map_err(failed)?)
        } else {
            None
        };
        let config_path = dir.join("nats-server.conf");
        std::fs::write(
            &config_path,
            server_config(name, port, monitor_port, leafnode_port, options, dir),
        )
        .map_err(failed)?;
        let log_path = dir.join("nats-server.log");
        let log = File::create(&log_path).map_err(failed)?;
        let mut command = Command::new(bin);
        command
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = command.spawn().map_err(|error| {
            Attempt::Failed(LocalServerError::Io(std::io::Error::new(
                error.kind(),
                format!("running {}: {error}", bin.display()),
            )))
        })?;
        let mut server = LocalServer {
            child,
            name: name.to_string(),
            port,
            monitor_port,
            leafnode_port,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = server.log_tail(40);
                // Keep the directory for the next attempt: `server` must not remove it on drop.
                server.dir = PathBuf::new();
                let error = LocalServerError::NotReady {
                    name: name.to_string(),
                    reason: format!("exited with {status}"),
                    log: log.clone(),
                };
                return Err(if log.contains("address already in use") {
                    Attempt::PortInUse(error)
                } else {
                    Attempt::Failed(error)
                });
            }
            if server.healthy() {
                return Ok(server);
            }
            if Instant::now() >= deadline {
                let error = LocalServerError::NotReady {
                    name: name.to_string(),
                    reason: format!("/healthz not OK within {READY_TIMEOUT:?}"),
                    log: server.log_tail(40),
                };
                server.dir = PathBuf::new();
                return Err(Attempt::Failed(error));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the client port accepts connections and `/healthz` answers 200.
    fn healthy(&self) -> bool {
        let client = SocketAddr::from(([127, 0, 0, 1], self.port));
        TcpStream::connect_timeout(&client, Duration::from_millis(200)).is_ok()
            && http_get(self.monitor_addr(), "/healthz", Duration::from_secs(1))
                .is_ok_and(|(status, _)| status == 200)
    }

    /// The server's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `nats-leaf://` URL other servers connect to, when it accepts leafnodes.
    pub fn leafnode_url(&self) -> Option<String> {
        self.leafnode_port
            .map(|port| format!("nats-leaf://127.0.0.1:{port}"))
    }

    /// The HTTP monitoring address (`/healthz`, `/varz`, `/jsz`, ...).
    pub fn monitor_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.monitor_port))
    }

    /// The server's temporary directory (JetStream storage, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.dir.join("nats-server.log"), lines)
    }

    /// Stops the server gracefully (SIGTERM), killing it if it has not exited within 10 seconds.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(&self.child, libc::SIGTERM);
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Why one start attempt failed.
enum Attempt {
    /// A picked port was taken: try again on others.
    PortInUse(LocalServerError),
    Failed(LocalServerError),
}

/// Sends `signal` to a child process.
pub fn signal(child: &Child, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child's.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// A loopback port that was free a moment ago (bind port 0, read it, close).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A new, empty directory under the system temp dir, named after `label`, this process and a
/// counter, so parallel runs never share one.
pub fn unique_temp_dir(label: &str) -> std::io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let label: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = std::env::temp_dir().join(format!(
        "ferry-{label}-{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A minimal blocking HTTP/1.1 GET: returns the status code and body.
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    parse_http_response(&response)
}

/// Splits a complete HTTP/1.x response (connection closed by the server) into status and body,
/// undoing chunked transfer encoding.
pub fn parse_http_response(response: &[u8]) -> std::io::Result<(u16, String)> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let text = String::from_utf8_lossy(response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| invalid("incomplete HTTP response"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("no HTTP status"))?;
    let chunked = head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    if !chunked {
        return Ok((status, body.to_string()));
    }
    let mut decoded = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| invalid("bad chunk size"))?;
        if size == 0 || after.len() < size {
            break;
        }
        decoded.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    Ok((status, decoded))
}

/// The last `lines` lines of a text file (empty if unreadable).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(parse_http_response(plain).unwrap(), (200, "ok".to_string()));
        let chunked =
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(
            parse_http_response(chunked).unwrap(),
            (503, "abcde".to_string())
        );
        assert!(parse_http_response(b"garbage").is_err());
    }

    #[test]
    fn temp_dirs_are_unique() {
        let a = unique_temp_dir("x/y").unwrap();
        let b = unique_temp_dir("x/y").unwrap();
        assert_ne!(a, b);
        assert!(a
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("ferry-x_y-"));
        std::fs::remove_dir_all(a).unwrap();
        std::fs::remove_dir_all(b).unwrap();
    }

    /// Starts a real server (a missing nats-server fails the test, naming how to install it).
    #[test]
    fn starts_a_healthy_server_and_cleans_up() {
        let mut server = LocalServer::start("local-test", true).expect("server starts");
        assert!(server.url().starts_with("nats://127.0.0.1:"));
        let (status, _) = http_get(server.monitor_addr(), "/jsz", Duration::from_secs(2)).unwrap();
        assert_eq!(status, 200);
        let dir = server.dir().to_path_buf();
        assert!(dir.join("jetstream").exists());
        server.stop();
        drop(server);
        assert!(!dir.exists());
    }
}
