//! The fleet: its nodes and what each sends at each tick.

use std::sync::Arc;

use crate::*;

/// The lifecycle event types Choria defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LifecycleType {
    Startup,
    Shutdown,
    Alive,
    Provisioned,
    Upgraded,
    Governor,
}

impl LifecycleType {
    /// Every type, in Choria's order.
    pub const ALL: [LifecycleType; 6] = [
        LifecycleType::Startup,
        LifecycleType::Shutdown,
        LifecycleType::Alive,
        LifecycleType::Provisioned,
        LifecycleType::Upgraded,
        LifecycleType::Governor,
    ];

    /// The name used in protocols and subjects (`startup`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleType::Startup => "startup",
            LifecycleType::Shutdown => "shutdown",
            LifecycleType::Alive => "alive",
            LifecycleType::Provisioned => "provisioned",
            LifecycleType::Upgraded => "upgraded",
            LifecycleType::Governor => "governor",
        }
    }

    /// Salt for event ids, so two types at the same tick get different ids.
    fn salt(self) -> u64 {
        self as u64 + 100
    }
}

/// How a node encodes its lifecycle events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LifecycleFormat {
    /// `{"protocol":"io.choria.lifecycle.v1.<type>",...}`: current Choria.
    Choria,
    /// A CloudEvent 1.0 whose `data` is the Choria-format event.
    CloudEvents,
    /// `{"protocol":"choria:lifecycle:<type>:1",...}` without an `id`: very old nodes.
    Legacy,
}

/// Which generation of Choria's transport protocol a node speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegistrationProtocol {
    /// `choria:transport:1` → base64 `choria:secure:request:1` → JSON string `choria:request:1`.
    V1,
    /// `io.choria.protocol.v2.transport` → base64 secure request → base64 request → base64 message.
    V2,
}

/// One simulated Choria server.
#[derive(Debug, Clone)]
pub struct Node {
    /// The node's identity (FQDN), e.g. `web0042.dc1.example.net`.
    pub identity: Arc<str>,
    /// Its role (`web`, `db`, ...), reflected in the identity, classes and facts.
    pub role: &'static str,
    /// Its data centre number (the `dcN` in the identity).
    pub dc: u32,
    /// How it encodes lifecycle events.
    pub lifecycle_format: LifecycleFormat,
    /// How it wraps registration requests.
    pub registration_protocol: RegistrationProtocol,
    /// Index into [`VERSIONS`] of the version it starts with.
    pub(crate) version: usize,
    /// Whether its first restart is an upgrade to the next version.
    pub(crate) upgrades: bool,
    /// Whether it is freshly provisioned (`provisioned` before its first startup).
    pub(crate) provisioned: bool,
    /// The tick of its first startup.
    pub(crate) startup_tick: u64,
    /// Ticks from the first startup to the first restart.
    pub(crate) first_restart: u64,
    /// Ticks between later restarts.
    pub(crate) restart_period: u64,
    /// Its registration phase (any value; taken modulo the interval).
    pub(crate) phase: u64,
}

impl Node {
    /// The boot the node is in at `tick`: `(k, boot tick)` with `k` = 0 for the first startup, or
    /// `None` before the node first started.
    pub(crate) fn boot(&self, tick: u64) -> Option<(u64, u64)> {
        let start = self.startup_tick;
        if tick < start {
            return None;
        }
        let first = start + self.first_restart;
        if tick < first {
            return Some((0, start));
        }
        let k = (tick - first) / self.restart_period;
        Some((k + 1, first + k * self.restart_period))
    }

    /// The Choria version the node runs in boot `k`.
    fn version_in_boot(&self, k: u64) -> &'static str {
        if self.upgrades && k >= 1 {
            VERSIONS[self.version + 1]
        } else {
            VERSIONS[self.version]
        }
    }
}

/// A simulated fleet of Choria servers. Deterministic: a seed always yields the same events.
#[derive(Debug, Clone)]
pub struct Fleet {
    seed: u64,
    epoch: i64,
    registration_interval: u64,
    nodes: Vec<Node>,
}

impl Fleet {
    /// A fleet of `nodes` servers drawn from `seed`.
    pub fn new(nodes: usize, seed: u64) -> Fleet {
        // Identities are numbered per role and data centre: web0001.dc1 ... web0042.dc1.
        let mut counters = vec![0u32; ROLES.len() * DATA_CENTRES as usize];
        let total_weight: u64 = ROLES.iter().map(|(_, weight)| weight).sum();
        let nodes = (0..nodes as u64)
            .map(|index| {
                let draw = |salt| hash(seed, index, salt, 0);
                let mut pick = draw(SALT_ROLE) % total_weight;
                let mut role = 0;
                while pick >= ROLES[role].1 {
                    pick -= ROLES[role].1;
                    role += 1;
                }
                let dc = draw(SALT_DC) % DATA_CENTRES;
                let counter = &mut counters[role * DATA_CENTRES as usize + dc as usize];
                *counter += 1;
                let (role, dc) = (ROLES[role].0, dc as u32 + 1);
                let identity: Arc<str> = format!("{role}{:04}.dc{dc}.example.net", *counter).into();

                let lifecycle_format = match draw(SALT_FORMAT) % 100 {
                    0..=79 => LifecycleFormat::Choria,
                    80..=94 => LifecycleFormat::CloudEvents,
                    _ => LifecycleFormat::Legacy,
                };
                let registration_protocol = if draw(SALT_PROTOCOL) % 100 < 70 {
                    RegistrationProtocol::V1
                } else {
                    RegistrationProtocol::V2
                };
                let version = match draw(SALT_VERSION) % 10 {
                    0 => 0,
                    1..=3 => 1,
                    _ => 2,
                };
                let restart_period = 1_440 + draw(SALT_RESTART) % 12_960;
                Node {
                    identity,
                    role,
                    dc,
                    lifecycle_format,
                    registration_protocol,
                    version,
                    upgrades: version + 1 < VERSIONS.len() && draw(SALT_UPGRADE) % 2 == 0,
                    provisioned: draw(SALT_PROVISIONED) % 100 < 3,
                    startup_tick: draw(SALT_STARTUP) % STARTUP_SPREAD_TICKS,
                    first_restart: 20 + draw(SALT_FIRST_RESTART) % restart_period,
                    restart_period,
                    phase: draw(SALT_PHASE),
                }
            })
            .collect();
        Fleet {
            seed,
            epoch: DEFAULT_EPOCH,
            registration_interval: DEFAULT_REGISTRATION_INTERVAL_TICKS,
            nodes,
        }
    }

    /// Sets the simulated Unix time (seconds) of tick 0, e.g. to now for a live demo.
    pub fn with_epoch(mut self, unix_seconds: i64) -> Fleet {
        self.epoch = unix_seconds;
        self
    }

    /// Sets the ticks between two registrations of a node (at least 1).
    pub fn with_registration_interval(mut self, ticks: u64) -> Fleet {
        self.registration_interval = ticks.max(1);
        self
    }

    /// The seed the fleet was drawn from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the fleet has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The nodes, by index.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The simulated Unix time (seconds) at `tick`.
    pub fn time_at(&self, tick: u64) -> i64 {
        self.epoch + tick as i64 * TICK_SECONDS
    }

    /// The subject a server's lifecycle event of `kind` arrives on
    /// (`choria.lifecycle.event.<type>.server`); see [`lifecycle_subject`] for other components.
    pub fn lifecycle_subject(&self, kind: LifecycleType) -> String {
        lifecycle_subject(kind, "server")
    }

    /// The subject registration requests arrive on.
    pub fn registration_subject(&self) -> &'static str {
        REGISTRATION_SUBJECT
    }

    /// Roughly how many events an average tick yields once the fleet is up (for pacing).
    pub fn events_per_tick_estimate(&self) -> f64 {
        let nodes = self.nodes.len() as f64;
        nodes / self.registration_interval as f64 + nodes / ALIVE_INTERVAL_TICKS as f64
    }

    /// Every event the fleet sends during `tick`, in sending order.
    pub fn events_for_tick(&self, tick: u64) -> Vec<SimEvent> {
        let mut events = Vec::with_capacity(self.events_per_tick_estimate() as usize + 16);
        self.extend_events_for_tick(tick, &mut events);
        events
    }

    /// Appends every event of `tick` to `events` (reuses the caller's allocation).
    pub fn extend_events_for_tick(&self, tick: u64, events: &mut Vec<SimEvent>) {
        for index in 0..self.nodes.len() {
            self.node_events(index, tick, events);
        }
    }

    /// The events node `index` sends during `tick`.
    fn node_events(&self, index: usize, tick: u64, events: &mut Vec<SimEvent>) {
        let node = &self.nodes[index];
        let Some((k, boot)) = node.boot(tick) else {
            return;
        };
        if tick == boot {
            if k == 0 && node.provisioned {
                events.push(self.lifecycle(index, LifecycleType::Provisioned, tick));
            }
            if k == 1 && node.upgrades {
                events.push(self.lifecycle(index, LifecycleType::Upgraded, tick));
            }
            events.push(self.lifecycle(index, LifecycleType::Startup, tick));
        } else if (tick - boot).is_multiple_of(ALIVE_INTERVAL_TICKS) {
            events.push(self.lifecycle(index, LifecycleType::Alive, tick));
        }
        if (tick - boot) % self.registration_interval == node.phase % self.registration_interval {
            events.push(self.registration(index, tick));
        }
        if tick > boot && self.governed(index, tick - 1) {
            events.push(self.governor(index, tick, "exit"));
        }
        if self.governed(index, tick) {
            events.push(self.governor(index, tick, "enter"));
        }
        // The tick before a restart's boot is the node's last: it says goodbye.
        if let Some((next_k, next_boot)) = node.boot(tick + 1) {
            if next_boot == tick + 1 && next_k >= 1 {
                events.push(self.lifecycle(index, LifecycleType::Shutdown, tick));
            }
        }
    }

    /// Whether a governed facts refresh starts on node `index` at `tick`.
    fn governed(&self, index: usize, tick: u64) -> bool {
        hash(self.seed, index as u64, SALT_GOVERNOR, tick).is_multiple_of(GOVERNOR_ODDS)
    }

    /// The governor event of node `index` at `tick` (`enter` or `exit`).
    fn governor(&self, index: usize, tick: u64, event_type: &'static str) -> SimEvent {
        let node = &self.nodes[index];
        // Most governed runs are the scheduled facts refresh; some are an operator's CLI.
        let component = if hash(self.seed, index as u64, SALT_GOVERNOR + 1, tick).is_multiple_of(4)
        {
            "CLI"
        } else {
            "facts"
        };
        let started = if event_type == "exit" { tick - 1 } else { tick };
        SimEvent::Lifecycle {
            identity: node.identity.clone(),
            kind: LifecycleType::Governor,
            component,
            // Tools always speak the current protocol, whatever the server's own format.
            format: LifecycleFormat::Choria,
            id: self.event_id(
                index,
                tick,
                LifecycleType::Governor.salt() + event_type.len() as u64,
            ),
            timestamp: self.time_at(tick),
            version: "",
            new_version: "",
            governor: Some(Governor {
                name: "FACTS",
                sequence: started,
                event_type,
            }),
        }
    }

    /// Lifecycle event `kind` of node `index` as sent at `tick` (the node's server component).
    ///
    /// An `alive` event is built once per boot, as Choria does: every `alive` of one boot has the
    /// boot's id and timestamp, so the bytes repeat.
    pub fn lifecycle(&self, index: usize, kind: LifecycleType, tick: u64) -> SimEvent {
        let node = &self.nodes[index];
        let (k, boot) = node.boot(tick).unwrap_or((0, tick));
        let built = if kind == LifecycleType::Alive {
            boot
        } else {
            tick
        };
        let version = node.version_in_boot(k);
        let (component, version, new_version) = match kind {
            LifecycleType::Provisioned => ("provision_mode_server", "", ""),
            LifecycleType::Shutdown => ("server", "", ""),
            LifecycleType::Upgraded => ("server", VERSIONS[node.version], version),
            _ => ("server", version, ""),
        };
        SimEvent::Lifecycle {
            identity: node.identity.clone(),
            kind,
            component,
            format: node.lifecycle_format,
            id: self.event_id(index, built, kind.salt()),
            timestamp: self.time_at(built),
            version,
            new_version,
            governor: None,
        }
    }

    /// The registration request node `index` sends at `tick`.
    pub fn registration(&self, index: usize, tick: u64) -> SimEvent {
        let node = &self.nodes[index];
        let (k, boot) = node.boot(tick).unwrap_or((0, tick));
        let requests = (tick - boot) / self.registration_interval + 1;
        SimEvent::Registration {
            identity: node.identity.clone(),
            protocol: node.registration_protocol,
            role: node.role,
            dc: node.dc,
            version: node.version_in_boot(k),
            request_id: hash128(self.seed, index as u64, SALT_REQUEST_ID, tick),
            time: self.time_at(tick),
            uptime: (tick - boot) as i64 * TICK_SECONDS,
            requests,
        }
    }

    /// A deterministic event id.
    fn event_id(&self, index: usize, tick: u64, salt: u64) -> u128 {
        hash128(self.seed, index as u64, SALT_EVENT_ID ^ (salt << 8), tick)
    }
}

/// The subject Choria publishes a lifecycle event on: `choria.lifecycle.event.<type>.<component>`.
pub fn lifecycle_subject(kind: LifecycleType, component: &str) -> String {
    format!("choria.lifecycle.event.{}.{component}", kind.as_str())
}
