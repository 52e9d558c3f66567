//! A soak under random faults (SPEC section 10): a steady stream of Choria events on core NATS in
//! east, an adapter storing them in east's FERRY_LIFECYCLE, and a replicator copying that stream
//! to west through a fault-injecting link, while faults hit at random: ferry SIGKILLed or stopped,
//! west restarted, east restarted, the link cut, taken down or slowed. At the end east must hold
//! every published event exactly once and west exactly what east holds.
//!
//! Core NATS is at-most-once, so events published while no ferry subscribes would be lost before
//! ferry could ever see them; the publisher therefore pauses around the faults that take the
//! subscription away (ferry restarts, east restarts) until ferry has everything it sent.
//!
//! CI runs 40 s of it; `FERRY_SOAK_SECONDS=600 cargo test --release --test soak -- --ignored`
//! runs the long one (`FERRY_SOAK_SEED` picks another fault schedule).

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    alive_event, assert_no_duplicate_stored, assert_same_set_per_subject, count_or_zero, js_client,
    msg_id, read_stream, try_metric, wait_until, Ferry, NatsServer, Proxy, ALIVE_SUBJECT,
};

const DEADLINE: Duration = Duration::from_secs(180);
/// Events per second the fleet sends.
const RATE: u64 = 400;

/// A small deterministic random source (xorshift), so a failing schedule can be replayed.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The simulated fleet: publishes distinct alive events at [`RATE`] until told to stop; can pause.
struct Fleet {
    sent: Arc<AtomicUsize>,
    paused: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Fleet {
    fn start(client: async_nats::Client) -> Fleet {
        let sent = Arc::new(AtomicUsize::new(0));
        let paused = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let task = {
            let (sent, paused, done) = (sent.clone(), paused.clone(), done.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                while !done.load(Ordering::SeqCst) {
                    tick.tick().await;
                    if paused.load(Ordering::SeqCst) {
                        continue;
                    }
                    let first = sent.load(Ordering::SeqCst);
                    for i in first..first + (RATE / 100) as usize {
                        if client
                            .publish(ALIVE_SUBJECT, alive_event(i).into())
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    if client.flush().await.is_ok() {
                        sent.store(first + (RATE / 100) as usize, Ordering::SeqCst);
                    }
                }
            })
        };
        Fleet {
            sent,
            paused,
            done,
            task,
        }
    }

    fn sent(&self) -> usize {
        self.sent.load(Ordering::SeqCst)
    }

    fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    async fn stop(self) -> usize {
        self.done.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        self.sent.load(Ordering::SeqCst)
    }
}

fn config(east: &str, west_link: &str) -> String {
    format!(
        r#"name: soak
state_dir: "{{state_dir}}"
monitor: {{ listen: "{{monitor}}" }}
connections:
  east: {{ servers: ["{east}"] }}
  west: {{ servers: ["{west_link}"] }}
adapters:
  - name: lifecycle
    kind: choria_lifecycle
    connection: east
    subjects: ["choria.lifecycle.event.>"]
    output: {{ stream: FERRY_LIFECYCLE, subject: "ferry.lifecycle.{{type}}.{{component}}", duplicate_window: 2m }}
replicators:
  - name: copy
    from: {{ connection: east, stream: FERRY_LIFECYCLE }}
    to: {{ connection: west, stream: DST, create: true, duplicate_window: 30m }}
    max_in_flight: 256
    limit: {{ rate: 600/s }}
"#
    )
}

/// Waits until ferry has received everything the (paused) fleet sent.
async fn wait_received(ferry: &Ferry, fleet: &Fleet, base: &AtomicUsize) {
    let want = fleet.sent();
    wait_until("ferry received everything sent", DEADLINE, || async {
        let received = try_metric(ferry, "ferry_adapter_received_total", &[]).await;
        received.is_some_and(|r| base.load(Ordering::SeqCst) + r as usize >= want)
    })
    .await;
}

/// Whether the adapter stored (or counted) all it received and holds nothing in memory or spool.
async fn adapter_drained(ferry: &Ferry) -> bool {
    let metric = |name: &'static str| try_metric(ferry, name, &[]);
    let (Some(received), Some(published), Some(duplicates), Some(queue), Some(spool)) = (
        metric("ferry_adapter_received_total").await,
        metric("ferry_adapter_published_total").await,
        metric("ferry_adapter_duplicates_total").await,
        metric("ferry_adapter_queue_messages").await,
        metric("ferry_adapter_spool_messages").await,
    ) else {
        return false;
    };
    published + duplicates >= received && queue == 0.0 && spool == 0.0
}

/// Events received by this ferry process, added to what earlier processes received, when it is
/// about to go away.
async fn bank_received(ferry: &Ferry, base: &AtomicUsize) {
    if let Some(received) = try_metric(ferry, "ferry_adapter_received_total", &[]).await {
        base.fetch_add(received as usize, Ordering::SeqCst);
    }
}

async fn soak(duration: Duration, seed: u64) {
    let mut east = NatsServer::start();
    let mut west = NatsServer::start();
    let west_addr = format!("127.0.0.1:{}", west.port())
        .parse()
        .expect("address");
    let link = Proxy::start(west_addr).await;
    let mut ferry = Ferry::start(&config(&east.url(), &link.url()));
    ferry.wait_ready().await;
    let (fleet_client, _) = js_client(&east.url()).await;
    let fleet = Fleet::start(fleet_client);
    // Received by ferry processes that have exited (the metric restarts with each process).
    let received_before = AtomicUsize::new(0);
    let mut dice = Dice(seed | 1);
    let started = Instant::now();
    let mut faults = Vec::new();
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(1500 + dice.below(3000))).await;
        let fault = dice.below(7);
        let at = started.elapsed().as_secs_f64();
        match fault {
            0 | 1 => {
                // A restart takes the subscription away: the fleet waits, ferry gets all it sent.
                fleet.pause();
                wait_received(&ferry, &fleet, &received_before).await;
                bank_received(&ferry, &received_before).await;
                if fault == 0 {
                    // Once the adapter's events are stored, SIGKILL loses nothing of them; the
                    // replicator is caught mid-copy by its rate limit.
                    wait_until("the adapter is drained", DEADLINE, || {
                        adapter_drained(&ferry)
                    })
                    .await;
                    faults.push(format!("{at:.1}s ferry SIGKILL"));
                    ferry.sigkill();
                } else {
                    faults.push(format!("{at:.1}s ferry SIGTERM"));
                    ferry.sigterm();
                }
                let status = ferry.wait_exit(Duration::from_secs(30)).await;
                assert!(fault == 0 || status.success(), "graceful stop exits 0");
                ferry.restart();
                ferry.wait_ready().await;
                fleet.resume();
            }
            2 => {
                faults.push(format!("{at:.1}s west restart"));
                west.stop();
                tokio::time::sleep(Duration::from_secs(2)).await;
                west.restart();
            }
            3 => {
                fleet.pause();
                wait_received(&ferry, &fleet, &received_before).await;
                faults.push(format!("{at:.1}s east restart"));
                east.stop();
                tokio::time::sleep(Duration::from_secs(2)).await;
                east.restart();
                ferry.wait_ready().await;
                fleet.resume();
            }
            4 => {
                faults.push(format!("{at:.1}s link cut 3s"));
                link.cut();
                tokio::time::sleep(Duration::from_secs(3)).await;
                link.up();
            }
            5 => {
                faults.push(format!("{at:.1}s link down 2s"));
                link.down();
                tokio::time::sleep(Duration::from_secs(2)).await;
                link.up();
            }
            _ => {
                faults.push(format!("{at:.1}s link 100 ms for 4s"));
                link.delay(Duration::from_millis(50));
                tokio::time::sleep(Duration::from_secs(4)).await;
                link.up();
            }
        }
    }
    let sent = fleet.stop().await;
    eprintln!("soak seed {seed}: {sent} events, faults: {faults:?}");
    assert!(sent > 0 && !faults.is_empty());

    // East holds every event exactly once.
    let (_, east_js) = js_client(&east.url()).await;
    let (_, west_js) = js_client(&west.url()).await;
    wait_until(
        &format!("east holds all {sent} events"),
        DEADLINE,
        || async { count_or_zero(&east_js, "FERRY_LIFECYCLE").await >= sent as u64 },
    )
    .await;
    let stored = read_stream(&east_js, "FERRY_LIFECYCLE").await;
    assert_eq!(stored.len(), sent, "events in east (faults: {faults:?})");
    let mut ids: Vec<String> = stored
        .iter()
        .map(|m| m.header("Nats-Msg-Id").unwrap_or_default().to_string())
        .collect();
    ids.sort();
    let mut want: Vec<String> = (0..sent)
        .map(|i| msg_id(ALIVE_SUBJECT, &alive_event(i)))
        .collect();
    want.sort();
    assert!(ids == want, "east holds exactly the events sent, once each");

    // West holds exactly what east holds.
    wait_until("west caught up", DEADLINE, || async {
        count_or_zero(&west_js, "DST").await >= sent as u64
    })
    .await;
    ferry.wait_ready().await;
    let copied = read_stream(&west_js, "DST").await;
    assert_same_set_per_subject(&stored, &copied);
    let sequences = assert_no_duplicate_stored(&copied);
    assert_eq!(sequences.len(), sent, "west: every east sequence once");
}

fn seed() -> u64 {
    std::env::var("FERRY_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2026)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_under_random_faults_reconciles_exactly() {
    soak(Duration::from_secs(40), seed()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: FERRY_SOAK_SECONDS (default 600) of random faults"]
async fn a_long_soak_under_random_faults_reconciles_exactly() {
    let seconds = std::env::var("FERRY_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    soak(Duration::from_secs(seconds), seed()).await;
}
