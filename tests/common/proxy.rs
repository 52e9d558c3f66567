//! A fault-injecting TCP proxy to put between ferry and a nats-server: pass traffic, add latency,
//! cut the link (connections stay open but nothing moves, as when a route fails), or take it down
//! (every connection reset, new ones refused until it comes back).
//!
//! Latency is applied per chunk with its own due time, so a slow link still carries as much data
//! as a fast one: what a 200 ms link costs is round trips, not bandwidth.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What the link does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Traffic flows, each direction delayed by this much (zero for none).
    Up { delay: Duration },
    /// Connections stay open, nothing is forwarded (TCP holds the data back) until it is up.
    Cut,
    /// Connections are reset and new ones refused until it is up.
    Down,
}

pub struct Proxy {
    addr: SocketAddr,
    link: watch::Sender<Link>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream` (e.g. `127.0.0.1:4222`).
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (link, link_rx) = watch::channel(Link::Up {
            delay: Duration::ZERO,
        });
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let connections = connections.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    if *link_rx.borrow() == Link::Down {
                        drop(client);
                        continue;
                    }
                    let link = link_rx.clone();
                    let handle = tokio::spawn(serve(client, upstream, link));
                    let mut all = connections.lock().unwrap_or_else(|e| e.into_inner());
                    all.retain(|h| !h.is_finished());
                    all.push(handle);
                }
            })
        };
        Proxy {
            addr,
            link,
            connections,
            accept,
        }
    }

    /// `nats://127.0.0.1:<port>` of the proxy.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    pub fn set(&self, link: Link) {
        if link == Link::Down {
            for handle in self
                .connections
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..)
            {
                handle.abort();
            }
        }
        self.link.send_replace(link);
    }

    pub fn up(&self) {
        self.set(Link::Up {
            delay: Duration::ZERO,
        });
    }

    pub fn delay(&self, one_way: Duration) {
        self.set(Link::Up { delay: one_way });
    }

    pub fn cut(&self) {
        self.set(Link::Cut);
    }

    pub fn down(&self) {
        self.set(Link::Down);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for handle in self
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            handle.abort();
        }
    }
}

/// One proxied connection: a reader and a delayed writer per direction.
async fn serve(client: TcpStream, upstream: SocketAddr, mut link: watch::Receiver<Link>) {
    // While cut, even the connection to the server waits.
    if link
        .wait_for(|l| matches!(l, Link::Up { .. }))
        .await
        .is_err()
    {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, link.clone());
    let down = pump(server_read, client_write, link);
    // Either side closing ends both.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: watch::Receiver<Link>,
) {
    let (queue, mut due) = mpsc::channel::<(Instant, Vec<u8>)>(1024);
    let reader = {
        let mut link = link.clone();
        async move {
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                // Cut: stop reading, so TCP holds everything back on the sender's side.
                let delay = match link.wait_for(|l| matches!(l, Link::Up { .. })).await {
                    Ok(state) => match *state {
                        Link::Up { delay } => delay,
                        _ => return,
                    },
                    Err(_) => return,
                };
                let n = match from.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if queue
                    .send((Instant::now() + delay, buffer[..n].to_vec()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    };
    let writer = {
        let mut link = link;
        async move {
            while let Some((at, chunk)) = due.recv().await {
                tokio::time::sleep_until(at).await;
                if link
                    .wait_for(|l| matches!(l, Link::Up { .. }))
                    .await
                    .is_err()
                {
                    return;
                }
                if to.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        }
    };
    tokio::select! {
        _ = reader => {}
        _ = writer => {}
    }
}
