//! `ferry run` as a child process, driven from outside exactly as an operator would: through its
//! command line, its config file and its HTTP monitor. `ferry demo` and `ferry bench` both use it,
//! so what they show and measure is the product's real surface, not an in-process shortcut.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::local_server;

/// How long ferry may take to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long ferry may take to exit after SIGTERM (its default shutdown_timeout is 10s).
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// One sample line of a Prometheus text exposition: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    pub labels: Vec<(&'a str, String)>,
    pub value: f64,
}

impl Sample<'_> {
    pub fn label(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|(key, _)| *key == name)
            .map_or("", |(_, value)| value.as_str())
    }
}

/// Parses one exposition line; `None` for comments, blank and malformed lines.
pub fn parse_sample(line: &str) -> Option<Sample<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut key_start = 0;
        let close;
        loop {
            // A key, `=`, a quoted value with `\` escapes, then `,` or `}`.
            let (index, c) = chars.next()?;
            match c {
                '}' => {
                    close = index;
                    break;
                }
                ',' | ' ' => key_start = index + 1,
                '=' => {
                    let key = body[key_start..index].trim();
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.push((key, value));
                }
                _ => {}
            }
        }
        rest = &body[close + 1..];
    }
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Sum of every sample of metric `name` whose labels include all of `labels`, in a Prometheus
/// text exposition (0 when there is none).
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter_map(parse_sample)
        .filter(|sample| sample.name == name)
        .filter(|sample| {
            labels
                .iter()
                .all(|(key, value)| sample.label(key) == *value)
        })
        .map(|sample| sample.value)
        .sum()
}

/// Peak resident memory of process `pid` (`VmHWM` in `/proc/<pid>/status`), while it runs.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A minimal async HTTP/1.1 GET against ferry's monitor.
pub async fn monitor_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        local_server::parse_http_response(&response)
    };
    Ok(tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| anyhow!("GET {path}: no answer within 5s"))??)
}

/// The `ferry run` child process. Killed on drop if still running.
pub struct FerryProcess {
    child: Child,
    log: PathBuf,
}

impl FerryProcess {
    pub fn spawn(config: &Path, log: &Path) -> anyhow::Result<FerryProcess> {
        let exe = std::env::current_exe().context("locating the ferry binary")?;
        let log_file = std::fs::File::create(log).context("creating ferry's log file")?;
        let child = Command::new(&exe)
            .arg("run")
            .arg("-c")
            .arg(config)
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("running {} run", exe.display()))?;
        Ok(FerryProcess {
            child,
            log: log.to_path_buf(),
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's peak resident memory so far.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        peak_rss_bytes(self.child.id())
    }

    pub fn log_tail(&self) -> String {
        local_server::tail(&self.log, 30)
    }

    /// Fails (with the log's tail) when ferry has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "ferry exited unexpectedly with {status}\n--- ferry log (tail) ---\n{}",
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&mut self, monitor: SocketAddr) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last: String;
        loop {
            self.check_running()?;
            match monitor_get(monitor, "/readyz").await {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => last = format!("{status} {}", body.trim()),
                Err(error) => last = error.to_string(),
            }
            if Instant::now() >= deadline {
                bail!(
                    "ferry was not ready within {READY_TIMEOUT:?} (last /readyz: {last})\n--- ferry log (tail) ---\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub async fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        local_server::signal(&self.child, libc::SIGTERM);
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "ferry did not exit within {EXIT_TIMEOUT:?} of SIGTERM\n--- ferry log (tail) ---\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for FerryProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The demo's temporary directory (config, ferry's state and log); removed on drop unless kept.
pub struct WorkDir {
    pub path: PathBuf,
    keep: std::cell::Cell<bool>,
}

impl WorkDir {
    pub fn new(label: &str) -> anyhow::Result<WorkDir> {
        let path =
            local_server::unique_temp_dir(label).context("creating a temporary directory")?;
        Ok(WorkDir {
            path,
            keep: std::cell::Cell::new(false),
        })
    }

    /// Keeps the directory for inspection.
    pub fn keep(&self) {
        self.keep.set(true);
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep.get() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_lines_are_parsed_with_escapes() {
        let sample = parse_sample(r#"m{a="x\"y",b="z\\w"} 1.5"#).unwrap();
        assert_eq!(sample.name, "m");
        assert_eq!(sample.label("a"), "x\"y");
        assert_eq!(sample.label("b"), "z\\w");
        assert_eq!(sample.label("c"), "");
        assert_eq!(sample.value, 1.5);
        let bare = parse_sample("m 3 1700000000").unwrap();
        assert!(bare.labels.is_empty());
        assert_eq!(bare.value, 3.0);
        assert!(parse_sample("# HELP m x").is_none());
        assert!(parse_sample("m{a=\"x\"").is_none());
        assert!(parse_sample("m{a=\"x\"} NaNx").is_none());
    }

    #[test]
    fn metric_sums_filter_by_labels() {
        let text = "# TYPE m counter\nm{pipeline=\"a\",reason=\"x\"} 2\nm{pipeline=\"a\",reason=\"y\"} 3\nm{pipeline=\"b\"} 7\nother 1\n";
        assert_eq!(metric_sum(text, "m", &[]), 12.0);
        assert_eq!(metric_sum(text, "m", &[("pipeline", "a")]), 5.0);
        assert_eq!(
            metric_sum(text, "m", &[("pipeline", "a"), ("reason", "y")]),
            3.0
        );
        assert_eq!(metric_sum(text, "missing", &[]), 0.0);
    }

    #[test]
    fn own_peak_rss_is_readable() {
        let rss = peak_rss_bytes(std::process::id()).expect("VmHWM of this process");
        assert!(rss > 1024 * 1024);
    }
}
