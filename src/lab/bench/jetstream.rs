//! The bench's own plumbing: servers, clients, filling and watching streams, and running ferry.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use async_nats::jetstream::{self, stream::Config as StreamConfig};
use bytes::Bytes;

use super::Progress;
use crate::lab::{spawn_ferry, EXIT_TIMEOUT, READY_TIMEOUT};
use ferry_testkit::{http_get, FerryChild, Metrics, NatsServer, ServerOptions, WorkDir};

/// A run gives up when what it waits for has not moved for this long.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How often completion is polled; small against the seconds a run takes.
pub const POLL: Duration = Duration::from_millis(10);

/// Starts a local nats-server (blocking work, so off the async threads).
pub async fn start_server(name: &str, options: ServerOptions) -> anyhow::Result<NatsServer> {
    let options = options.name(name);
    tokio::task::spawn_blocking(move || NatsServer::try_start(options))
        .await
        .context("starting nats-server")?
        .map_err(anyhow::Error::from)
}

/// A client and its JetStream context (acks may take long while a server is busy).
pub async fn connect(url: &str) -> anyhow::Result<(async_nats::Client, jetstream::Context)> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let mut js = jetstream::new(client.clone());
    js.set_timeout(Duration::from_secs(30));
    Ok((client, js))
}

/// Creates a stream, replacing any earlier one of that name.
pub async fn fresh_stream(js: &jetstream::Context, config: StreamConfig) -> anyhow::Result<()> {
    let name = config.name.clone();
    let _ = js.delete_stream(&name).await;
    js.create_stream(config)
        .await
        .map_err(|e| anyhow!("creating stream {name}: {e}"))?;
    Ok(())
}

/// Messages in `stream` now (0 when it does not exist yet).
pub async fn stream_messages(js: &jetstream::Context, stream: &str) -> u64 {
    match js.get_stream(stream).await {
        Ok(mut handle) => handle.info().await.map_or(0, |info| info.state.messages),
        Err(_) => 0,
    }
}

/// A message a baseline publishes, with or without headers.
pub struct Outgoing {
    pub subject: String,
    pub headers: Option<async_nats::HeaderMap>,
    pub payload: Bytes,
}

impl Outgoing {
    pub fn bare(subject: String, payload: Bytes) -> Outgoing {
        Outgoing {
            subject,
            headers: None,
            payload,
        }
    }
}

/// Publishes `messages` to JetStream with up to `window` acks outstanding and waits for all of
/// them: the fastest a single client stores messages, and the adapter's baseline.
pub async fn publish_pipelined(
    js: &jetstream::Context,
    messages: impl IntoIterator<Item = Outgoing>,
    window: usize,
    progress: &Progress,
    label: &str,
    total: u64,
) -> anyhow::Result<()> {
    let mut acks = VecDeque::with_capacity(window);
    let mut sent = 0u64;
    for message in messages {
        if acks.len() >= window {
            let ack: jetstream::context::PublishAckFuture =
                acks.pop_front().expect("non-empty window");
            ack.await.map_err(|e| anyhow!("publish ack: {e}"))?;
        }
        let ack = match message.headers {
            Some(headers) => {
                js.publish_with_headers(message.subject, headers, message.payload)
                    .await
            }
            None => js.publish(message.subject, message.payload).await,
        }
        .map_err(|e| anyhow!("publish: {e}"))?;
        acks.push_back(ack);
        sent += 1;
        if sent.is_multiple_of(4096) {
            progress.update(label, sent, total);
        }
    }
    for ack in acks {
        ack.await.map_err(|e| anyhow!("publish ack: {e}"))?;
    }
    Ok(())
}

/// Watches a count on its way to `want`: done once reached, an error naming `what` when it has not
/// moved for [`STALL_TIMEOUT`].
pub struct Waiter {
    what: String,
    want: u64,
    last: u64,
    moved: Instant,
}

impl Waiter {
    pub fn new(what: &str, want: u64) -> Waiter {
        Waiter {
            what: what.to_string(),
            want,
            last: 0,
            moved: Instant::now(),
        }
    }

    /// Takes the latest count: `Some(now)` once it reached `want`, `None` to look again after
    /// [`Waiter::pause`].
    pub fn check(&mut self, count: u64, progress: &Progress) -> anyhow::Result<Option<Instant>> {
        if count >= self.want {
            return Ok(Some(Instant::now()));
        }
        if count != self.last {
            self.last = count;
            self.moved = Instant::now();
        }
        if self.moved.elapsed() > STALL_TIMEOUT {
            bail!(
                "{}: stuck at {count} of {} for {STALL_TIMEOUT:?}",
                self.what,
                self.want
            );
        }
        progress.update(&self.what, count, self.want);
        Ok(None)
    }

    pub async fn pause(&self) {
        tokio::time::sleep(POLL).await;
    }
}

/// `ferry run` on a config the bench wrote, in its own work directory.
pub struct FerryRun {
    pub process: FerryChild,
    pub monitor: SocketAddr,
    _work: WorkDir,
}

impl FerryRun {
    /// Writes the config (`{state_dir}` and `{monitor}` filled in) and starts ferry; does not wait.
    pub fn spawn(label: &str, config_template: &str) -> anyhow::Result<FerryRun> {
        let work = WorkDir::new(label)?;
        let port = ferry_testkit::free_port()?;
        let monitor = SocketAddr::from(([127, 0, 0, 1], port));
        let config = config_template
            .replace(
                "{state_dir}",
                &work.path().join("state").display().to_string(),
            )
            .replace("{monitor}", &monitor.to_string());
        let config_path = work.path().join("ferry.yaml");
        std::fs::write(&config_path, config).context("writing the bench config")?;
        let process = spawn_ferry(&config_path, &work.path().join("ferry.log"))?;
        Ok(FerryRun {
            process,
            monitor,
            _work: work,
        })
    }

    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        Ok(self
            .process
            .wait_ready(&self.monitor.to_string(), READY_TIMEOUT)
            .await?)
    }

    /// User + system CPU time ferry's process has used so far.
    pub fn cpu(&self) -> Option<Duration> {
        self.process.pid().and_then(super::cpu::process_cpu)
    }

    /// ferry's `/metrics` text.
    pub async fn scrape(&mut self) -> anyhow::Result<String> {
        self.process.check_running()?;
        let (status, body) = http_get(&self.monitor.to_string(), "/metrics").await?;
        if status != 200 {
            bail!("ferry's /metrics answered {status}");
        }
        Ok(body)
    }

    /// The sum of metric `name` with `labels`.
    pub async fn metric(&mut self, name: &str, labels: &[(&str, &str)]) -> anyhow::Result<u64> {
        let text = self.scrape().await?;
        let exposition = Metrics::parse(&text).context("reading ferry's /metrics answer")?;
        Ok(exposition.sum(name, labels).max(0.0) as u64)
    }

    /// Reads the peak memory, then stops ferry gracefully; fails when it does not exit 0.
    pub async fn finish(mut self) -> anyhow::Result<Option<u64>> {
        let rss = self.process.peak_rss_bytes();
        let status = self.process.terminate(EXIT_TIMEOUT).await?;
        if !status.success() {
            bail!(
                "ferry exited with {status}\n--- ferry log (tail) ---\n{}",
                self.process.log_tail()
            );
        }
        Ok(rss)
    }
}
