//! A deterministic simulated Choria fleet: the traffic source of `ferry demo` and `ferry bench`.
//!
//! A [`Fleet`] of `n` nodes (identities like `web0042.dc1.example.net`) produces the messages a real
//! Choria fleet puts on core NATS, byte for byte in the shapes of the wire-format fixtures:
//!
//! * **lifecycle events** on `choria.lifecycle.event.<type>.<component>`, in Choria format
//!   (`io.choria.lifecycle.v1.<type>`), as CloudEvents 1.0 wrapping it, or in the legacy
//!   `choria:lifecycle:<type>:1` protocol, depending on the node's (simulated) Choria version;
//! * **registration** requests on `mcollective.broadcast.agent.registration`, in transport protocol
//!   v1 or v2, carrying an inventory document as Choria's registration plugin sends it.
//!
//! Time is counted in ticks of one simulated minute ([`TICK_SECONDS`]). Everything is a pure
//! function of the seed, the node index and the tick, so [`Fleet::events_for_tick`] needs no state
//! and the same seed always yields the same bytes:
//!
//! * every node starts once within the first [`STARTUP_SPREAD_TICKS`] ticks (a few freshly
//!   provisioned ones announce `provisioned` first) and restarts every one to ten simulated days
//!   (`shutdown`, then `startup` a tick later; some upgrade on their first restart and say
//!   `upgraded`);
//! * a running node sends `alive` every 30 simulated minutes. As in Choria, the event is built once
//!   per boot, so the node re-sends *the same bytes* each time: that is why a lifecycle stream's
//!   duplicate window must be shorter than 30 minutes (SPEC section 4);
//! * a running node registers every [`DEFAULT_REGISTRATION_INTERVAL_TICKS`] ticks, at its own phase;
//! * now and then a node's facts refresh runs under a governor (`governor` enter, then exit).
//!
//! Generating is cheap: an event is a handful of plain fields until [`SimEvent::write_payload`]
//! renders it with string formatting straight into a caller's buffer; no JSON trees are built. The
//! registration document, which v1 nests as a string inside a string, comes from per-role templates
//! escaped once, up front, so a message costs its copies and base64 passes, not repeated escaping.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The subjects Choria publishes lifecycle events on (`choria.lifecycle.event.<type>.<component>`).
pub const LIFECYCLE_SUBJECTS: &str = "choria.lifecycle.event.>";
/// The subject Choria servers in the default collective publish registration data on.
pub const REGISTRATION_SUBJECT: &str = "mcollective.broadcast.agent.registration";
/// Simulated seconds per tick.
pub const TICK_SECONDS: i64 = 60;
/// The simulated clock at tick 0 unless [`Fleet::with_epoch`] says otherwise:
/// 2026-01-01T00:00:00Z.
pub const DEFAULT_EPOCH: i64 = 1_767_225_600;
/// Ticks between two `alive` events of a running node (Choria: 30 minutes).
pub const ALIVE_INTERVAL_TICKS: u64 = 30;
/// Ticks between two registrations of a running node (Choria's default interval: 300 s).
pub const DEFAULT_REGISTRATION_INTERVAL_TICKS: u64 = 5;
/// The fleet's initial startups are spread over this many ticks.
pub const STARTUP_SPREAD_TICKS: u64 = 10;

/// The collective every simulated node belongs to.
const COLLECTIVE: &str = "mcollective";
/// Choria versions in the fleet, oldest first; an upgrade moves a node one step up.
const VERSIONS: [&str; 3] = ["0.28.0", "0.29.3", "0.29.4"];
/// Node roles and their weights in the fleet.
const ROLES: [(&str, u64); 8] = [
    ("web", 30),
    ("app", 20),
    ("k8s", 17),
    ("db", 10),
    ("cache", 8),
    ("lb", 5),
    ("mq", 5),
    ("build", 5),
];
/// Data centres the fleet is spread over (`dc1` ...).
const DATA_CENTRES: u64 = 3;
/// A governed facts refresh starts on a given node in a given tick with odds 1 in this.
const GOVERNOR_ODDS: u64 = 2_000;
/// The v2 signature field: Choria signs requests; ferry does not verify, so any bytes do.
const V2_SIGNATURE: &str = "bm90LWEtcmVhbC1zaWduYXR1cmU=";

// Salts that keep the pseudo-random decisions about one node independent of each other.
const SALT_ROLE: u64 = 1;
const SALT_DC: u64 = 2;
const SALT_FORMAT: u64 = 3;
const SALT_PROTOCOL: u64 = 4;
const SALT_VERSION: u64 = 5;
const SALT_UPGRADE: u64 = 6;
const SALT_PROVISIONED: u64 = 7;
const SALT_STARTUP: u64 = 8;
const SALT_RESTART: u64 = 9;
const SALT_FIRST_RESTART: u64 = 10;
const SALT_PHASE: u64 = 11;
const SALT_GOVERNOR: u64 = 12;
const SALT_EVENT_ID: u64 = 13;
const SALT_REQUEST_ID: u64 = 14;

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
    version: usize,
    /// Whether its first restart is an upgrade to the next version.
    upgrades: bool,
    /// Whether it is freshly provisioned (`provisioned` before its first startup).
    provisioned: bool,
    /// The tick of its first startup.
    startup_tick: u64,
    /// Ticks from the first startup to the first restart.
    first_restart: u64,
    /// Ticks between later restarts.
    restart_period: u64,
    /// Its registration phase (any value; taken modulo the interval).
    phase: u64,
}

impl Node {
    /// The boot the node is in at `tick`: `(k, boot tick)` with `k` = 0 for the first startup, or
    /// `None` before the node first started.
    fn boot(&self, tick: u64) -> Option<(u64, u64)> {
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

/// The governor part of a `governor` lifecycle event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Governor {
    /// The governor's name.
    pub name: &'static str,
    /// The governed run's sequence number.
    pub sequence: u64,
    /// `enter`, `exit`, ...
    pub event_type: &'static str,
}

/// One message the fleet sends: its subject and payload are rendered on demand.
#[derive(Debug, Clone)]
pub enum SimEvent {
    /// A lifecycle event.
    Lifecycle {
        /// The node's identity.
        identity: Arc<str>,
        kind: LifecycleType,
        /// `server`, `provision_mode_server`, `facts`, `CLI`, ...
        component: &'static str,
        format: LifecycleFormat,
        /// The event id (rendered as a UUID; legacy events have none).
        id: u128,
        /// Unix seconds.
        timestamp: i64,
        /// The node's version (`startup`, `alive`) or the old one (`upgraded`); empty when absent.
        version: &'static str,
        /// The version after an upgrade; empty unless `upgraded`.
        new_version: &'static str,
        /// Present for `governor` events.
        governor: Option<Governor>,
    },
    /// A registration request carrying an inventory document.
    Registration {
        /// The node's identity (the sender).
        identity: Arc<str>,
        protocol: RegistrationProtocol,
        role: &'static str,
        dc: u32,
        /// The Choria version the node runs.
        version: &'static str,
        /// The request id (32 hex digits).
        request_id: u128,
        /// Unix seconds.
        time: i64,
        /// Seconds since the node's boot.
        uptime: i64,
        /// Registrations sent in this boot so far, this one included.
        requests: u64,
    },
}

impl SimEvent {
    /// The subject the event is published on.
    pub fn subject(&self) -> String {
        match self {
            SimEvent::Lifecycle {
                kind, component, ..
            } => lifecycle_subject(*kind, component),
            SimEvent::Registration { .. } => REGISTRATION_SUBJECT.to_string(),
        }
    }

    /// The sending node's identity.
    pub fn sender(&self) -> &str {
        match self {
            SimEvent::Lifecycle { identity, .. } | SimEvent::Registration { identity, .. } => {
                identity
            }
        }
    }

    /// Whether this is a lifecycle event.
    pub fn is_lifecycle(&self) -> bool {
        matches!(self, SimEvent::Lifecycle { .. })
    }

    /// The wire payload.
    pub fn payload(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_payload(&mut out);
        out
    }

    /// Appends the wire payload to `out` (reuse one buffer to generate without allocating).
    pub fn write_payload(&self, out: &mut Vec<u8>) {
        match self {
            SimEvent::Lifecycle {
                identity,
                kind,
                component,
                format,
                id,
                timestamp,
                version,
                new_version,
                governor,
            } => {
                let mut text = String::with_capacity(512);
                let event = LifecycleFields {
                    kind: *kind,
                    id: *id,
                    identity,
                    component,
                    timestamp: *timestamp,
                    version,
                    new_version,
                    governor: governor.as_ref(),
                };
                match format {
                    LifecycleFormat::Choria => write_choria_lifecycle(&mut text, &event),
                    LifecycleFormat::CloudEvents => write_cloudevent(&mut text, &event),
                    LifecycleFormat::Legacy => write_legacy_lifecycle(&mut text, &event),
                }
                out.extend_from_slice(text.as_bytes());
            }
            SimEvent::Registration {
                identity,
                protocol,
                role,
                dc,
                version,
                request_id,
                time,
                uptime,
                requests,
            } => {
                let inventory = Inventory {
                    identity,
                    role,
                    dc: *dc,
                    version,
                    time: *time,
                    uptime: *uptime,
                    requests: *requests,
                };
                let request_id = format!("{request_id:032x}");
                let broker = format!(
                    "nats://broker{}.dc{dc}.example.net:4222",
                    request_id_broker(&request_id)
                );
                let envelope = RequestEnvelope {
                    sender: identity,
                    request_id: &request_id,
                    collective: COLLECTIVE,
                    agent: "registration",
                    ttl: 60,
                    time: *time,
                    broker: &broker,
                };
                let wire = match protocol {
                    RegistrationProtocol::V1 => {
                        build_v1(&envelope, 2_048, |out, level| inventory.write(out, level))
                    }
                    RegistrationProtocol::V2 => {
                        let mut document = String::with_capacity(1_536);
                        inventory.write(&mut document, 0);
                        registration_v2(document.as_bytes(), &envelope)
                    }
                };
                out.extend_from_slice(wire.as_bytes());
            }
        }
    }
}

/// Which of a data centre's two brokers a request went through.
fn request_id_broker(request_id: &str) -> u8 {
    1 + (request_id.as_bytes()[0] & 1)
}

/// The content of one lifecycle event, borrowed for rendering.
struct LifecycleFields<'a> {
    kind: LifecycleType,
    id: u128,
    identity: &'a str,
    component: &'a str,
    timestamp: i64,
    version: &'a str,
    new_version: &'a str,
    governor: Option<&'a Governor>,
}

/// The event in Choria format, keys in Choria's order (as in the fixtures).
fn write_choria_lifecycle(out: &mut String, event: &LifecycleFields<'_>) {
    let _ = write!(
        out,
        r#"{{"protocol":"io.choria.lifecycle.v1.{}","id":"{}","identity":"{}","component":"{}","timestamp":{}"#,
        event.kind.as_str(),
        Uuid(event.id),
        event.identity,
        event.component,
        event.timestamp
    );
    write_lifecycle_tail(out, event);
}

/// The legacy protocol: no id, protocol `choria:lifecycle:<type>:1`.
fn write_legacy_lifecycle(out: &mut String, event: &LifecycleFields<'_>) {
    let _ = write!(
        out,
        r#"{{"protocol":"choria:lifecycle:{}:1","identity":"{}","component":"{}","timestamp":{}"#,
        event.kind.as_str(),
        event.identity,
        event.component,
        event.timestamp
    );
    write_lifecycle_tail(out, event);
}

/// The type-specific fields and the closing brace.
fn write_lifecycle_tail(out: &mut String, event: &LifecycleFields<'_>) {
    if !event.version.is_empty() {
        let _ = write!(out, r#","version":"{}""#, event.version);
    }
    if !event.new_version.is_empty() {
        let _ = write!(out, r#","new_version":"{}""#, event.new_version);
    }
    if let Some(governor) = event.governor {
        let _ = write!(
            out,
            r#","governor":"{}","sequence":{},"event_type":"{}""#,
            governor.name, governor.sequence, governor.event_type
        );
    }
    out.push('}');
}

/// A CloudEvent 1.0 (structured mode) wrapping the Choria-format event, as Choria emits it.
fn write_cloudevent(out: &mut String, event: &LifecycleFields<'_>) {
    let _ = write!(
        out,
        r#"{{"specversion":"1.0","id":"{}","source":"io.choria.lifecycle","type":"io.choria.lifecycle.v1.{}","subject":"{}","datacontenttype":"application/json","time":"{}","data":"#,
        Uuid(event.id),
        event.kind.as_str(),
        event.identity,
        Rfc3339(event.timestamp)
    );
    write_choria_lifecycle(out, event);
    out.push('}');
}

/// The envelope of a registration request: who sent it, when, and through which broker.
#[derive(Debug, Clone, Copy)]
pub struct RequestEnvelope<'a> {
    /// The sending node's identity.
    pub sender: &'a str,
    /// The request id (32 hex digits in Choria).
    pub request_id: &'a str,
    pub collective: &'a str,
    pub agent: &'a str,
    /// Seconds the request stays valid.
    pub ttl: u32,
    /// Unix seconds (v2 carries nanoseconds: this times 10^9).
    pub time: i64,
    /// The broker URL recorded in v1's `seen-by` header.
    pub broker: &'a str,
}

/// A registration request in transport protocol v1: `choria:transport:1` whose base64 `data` holds
/// `choria:secure:request:1`, whose `message` is `choria:request:1` as a JSON string, whose
/// `message` is `payload` as a JSON string.
pub fn registration_v1(payload: &str, envelope: &RequestEnvelope<'_>) -> String {
    build_v1(envelope, payload.len(), |out, level| {
        push_escaped(out, payload, level)
    })
}

/// [`registration_v1`] with the payload written by `payload(out, level)`, escaped to `level`:
/// the request's JSON is a string inside the secure request, and the payload a string inside that.
fn build_v1(
    envelope: &RequestEnvelope<'_>,
    size_hint: usize,
    payload: impl FnOnce(&mut String, usize),
) -> String {
    let mut secure = String::with_capacity(size_hint + size_hint / 2 + 768);
    secure.push_str(r#"{"protocol":"choria:secure:request:1","message":""#);
    push_escaped(
        &mut secure,
        r#"{"protocol":"choria:request:1","message":""#,
        1,
    );
    payload(&mut secure, 2);
    let mut tail = String::with_capacity(320);
    let _ = write!(
        tail,
        r#"","envelope":{{"requestid":"{}","senderid":"{}","callerid":"choria={}","collective":"{}","agent":"{}","ttl":{},"time":{},"filter":{{"fact":[],"cf_class":[],"agent":[],"identity":[],"compound":[]}}}}}}"#,
        envelope.request_id,
        envelope.sender,
        envelope.sender,
        envelope.collective,
        envelope.agent,
        envelope.ttl,
        envelope.time
    );
    push_escaped(&mut secure, &tail, 1);
    secure.push_str(r#"","signature":"insecure","pubcert":"insecure"}"#);

    let mut transport = String::with_capacity(secure.len() * 4 / 3 + 256);
    transport.push_str(r#"{"protocol":"choria:transport:1","data":""#);
    STANDARD.encode_string(&secure, &mut transport);
    let _ = write!(
        transport,
        r#"","headers":{{"reply-to":"dev.null","mc_sender":"{}","seen-by":[["{}","{}","{}"]]}}}}"#,
        envelope.sender, envelope.broker, envelope.sender, envelope.broker
    );
    transport
}

/// A registration request in transport protocol v2: `io.choria.protocol.v2.transport` whose base64
/// `data` holds the secure request, whose base64 `request` holds the request, whose base64
/// `message` is `payload`.
pub fn registration_v2(payload: &[u8], envelope: &RequestEnvelope<'_>) -> String {
    let mut request = String::with_capacity(payload.len() * 4 / 3 + 384);
    request.push_str(r#"{"protocol":"io.choria.protocol.v2.request","message":""#);
    STANDARD.encode_string(payload, &mut request);
    let _ = write!(
        request,
        r#"","id":"{}","sender":"{}","caller":"choria={}","collective":"{}","agent":"{}","ttl":{},"time":{}}}"#,
        envelope.request_id,
        envelope.sender,
        envelope.sender,
        envelope.collective,
        envelope.agent,
        envelope.ttl,
        i128::from(envelope.time) * 1_000_000_000
    );

    let mut secure = String::with_capacity(request.len() * 4 / 3 + 160);
    secure.push_str(r#"{"protocol":"io.choria.protocol.v2.secure_request","request":""#);
    STANDARD.encode_string(&request, &mut secure);
    let _ = write!(secure, r#"","signature":"{V2_SIGNATURE}","caller":""}}"#);

    let mut transport = String::with_capacity(secure.len() * 4 / 3 + 160);
    transport.push_str(r#"{"protocol":"io.choria.protocol.v2.transport","data":""#);
    STANDARD.encode_string(&secure, &mut transport);
    let _ = write!(
        transport,
        r#"","headers":{{"reply":"dev.null","sender":"{}"}}}}"#,
        envelope.sender
    );
    transport
}

/// The inventory registration document Choria's `inventory_content` registration plugin sends (Go's
/// JSON encoder: `<`, `>` and `&` escaped as `\u003c` ...), with `$name$` marking the values that
/// vary per node or per message. `$agents$` and `$role$` are filled once per role; the rest are
/// [`Hole`]s filled per message.
const INVENTORY: &str = r#"{"protocol":"choria:registration:inventorycontent:1","content":{"agents":[$agents$],"classes":["role::$role$","profile::base","profile::dc$dc$"],"facts":{"os":{"family":"Debian","release":{"major":"12"}},"networking":{"fqdn":"$identity$","domain":"dc$dc$.example.net"},"role":"$role$","datacentre":"dc$dc$","processors":{"count":8}},"status":{"identity":"$identity$","uptime":$uptime$,"connected_server":"nats://broker1.dc$dc$.example.net:4222","last_message":$last_message$,"provisioning_mode":false,"stats":{"total":$total$,"valid":$total$,"invalid":0,"passed":$passed$,"filtered":$filtered$,"replies":$passed$,"ttlexpired":0,"events":$events$},"certificate_expires":"2027-01-01T00:00:00Z","token_expires":"0001-01-01T00:00:00Z"},"collectives":["mcollective"],"build_info":{"version":"$version$","sha":"0badc0de"},"machines":[]}}"#;

/// One agent in the inventory's `agents` list.
const AGENT: &str = r#"{"license":"Apache-2.0","author":"ops \u003cops@example.net\u003e","timeout":2,"name":"$name$","version":"$version$","url":"https://example.net","description":"$description$","provider":"golang"}"#;

/// How deeply a document is nested in JSON strings: v1 carries the registration payload as a string
/// inside a string, so it is escaped twice.
const MAX_LEVEL: usize = 2;

/// A value that varies per message. Every value is plain ASCII letters, digits, dots and dashes, so
/// escaping leaves it unchanged: a template escaped once serves every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hole {
    Identity,
    Dc,
    Version,
    Uptime,
    LastMessage,
    Total,
    Passed,
    Filtered,
    Events,
}

/// A piece of a template: literal text (already escaped to the template's level) or a hole.
#[derive(Debug, Clone)]
enum Segment {
    Text(String),
    Hole(Hole),
}

/// The inventory template of `role`, split into segments, escaped to `level`.
fn inventory_template(role: &str, level: usize) -> Vec<Segment> {
    let agents: Vec<String> = [
        (
            "rpcutil",
            "General helpful actions that expose stats and internals to SimpleRPC clients",
        ),
        ("choria_util", "Choria Utilities"),
        ("scout", "Choria Scout Agent Management API"),
        (role_agent(role), "Manages the role's service"),
    ]
    .iter()
    .map(|(name, description)| {
        AGENT
            .replace("$name$", name)
            .replace("$description$", description)
    })
    .collect();
    let document = INVENTORY
        .replace("$agents$", &agents.join(","))
        .replace("$role$", role);
    document
        .split('$')
        .enumerate()
        .filter(|(_, piece)| !piece.is_empty())
        .map(|(index, piece)| {
            if index % 2 == 0 {
                let mut text = String::new();
                push_escaped(&mut text, piece, level);
                return Segment::Text(text);
            }
            Segment::Hole(match piece {
                "identity" => Hole::Identity,
                "dc" => Hole::Dc,
                "version" => Hole::Version,
                "uptime" => Hole::Uptime,
                "last_message" => Hole::LastMessage,
                "total" => Hole::Total,
                "passed" => Hole::Passed,
                "filtered" => Hole::Filtered,
                "events" => Hole::Events,
                other => unreachable!("unknown inventory hole {other}"),
            })
        })
        .collect()
}

/// The templates of every role in [`ROLES`] at every level, built on first use.
fn cached_template(role: &str, level: usize) -> Option<&'static [Segment]> {
    static TEMPLATES: OnceLock<Vec<[Vec<Segment>; MAX_LEVEL + 1]>> = OnceLock::new();
    let templates = TEMPLATES.get_or_init(|| {
        ROLES
            .iter()
            .map(|(role, _)| std::array::from_fn(|level| inventory_template(role, level)))
            .collect()
    });
    let index = ROLES.iter().position(|(name, _)| *name == role)?;
    templates[index].get(level).map(Vec::as_slice)
}

/// One registration's per-message values.
struct Inventory<'a> {
    identity: &'a str,
    role: &'a str,
    dc: u32,
    version: &'a str,
    time: i64,
    uptime: i64,
    requests: u64,
}

impl Inventory<'_> {
    /// Appends the document escaped to `level` (0: raw JSON).
    fn write(&self, out: &mut String, level: usize) {
        if let Some(segments) = cached_template(self.role, level) {
            self.fill(out, segments);
        } else {
            // A role outside the fleet's set: build its template on the spot.
            self.fill(out, &inventory_template(self.role, level));
        }
    }

    fn fill(&self, out: &mut String, segments: &[Segment]) {
        for segment in segments {
            match segment {
                Segment::Text(text) => out.push_str(text),
                Segment::Hole(hole) => {
                    let _ = match hole {
                        Hole::Identity => write_safe(out, self.identity),
                        Hole::Version => write_safe(out, self.version),
                        Hole::Dc => write!(out, "{}", self.dc),
                        Hole::Uptime => write!(out, "{}", self.uptime),
                        Hole::LastMessage => write!(out, "{}", self.time - 30),
                        Hole::Total => write!(out, "{}", self.requests * 3),
                        Hole::Passed => write!(out, "{}", self.requests * 2),
                        Hole::Filtered => write!(out, "{}", self.requests),
                        Hole::Events => write!(out, "{}", self.requests + 1),
                    };
                }
            }
        }
    }
}

/// Appends a hole's text value; anything that escaping would change is replaced by `_`, so the
/// pre-escaped templates stay exact whatever a caller puts in a [`SimEvent`].
fn write_safe(out: &mut String, value: &str) -> std::fmt::Result {
    if value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
    {
        out.push_str(value);
    } else {
        out.extend(value.chars().map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':') {
                c
            } else {
                '_'
            }
        }));
    }
    Ok(())
}

/// The agent that manages a role's main service.
fn role_agent(role: &str) -> &'static str {
    match role {
        "web" | "lb" => "nginx",
        "db" => "postgresql",
        "cache" => "redis",
        "mq" => "rabbitmq",
        "k8s" => "kubelet",
        "build" => "jenkins",
        _ => "service",
    }
}

/// Appends `value` as a JSON string (quoted) the way Go's `encoding/json` writes it.
#[cfg(test)]
fn push_json_string(out: &mut String, value: &str) {
    out.push('"');
    escape_into(out, value);
    out.push('"');
}

/// Appends `text` escaped `level` times as JSON string content (0: unchanged).
fn push_escaped(out: &mut String, text: &str, level: usize) {
    match level {
        0 => out.push_str(text),
        1 => escape_into(out, text),
        _ => {
            let mut once = String::with_capacity(text.len() + text.len() / 4);
            escape_into(&mut once, text);
            push_escaped(out, &once, level - 1);
        }
    }
}

/// Appends `value` as JSON string content (without quotes) the way Go's `encoding/json` writes
/// it: `"`, `\` and control characters escaped, and `<`, `>`, `&`, U+2028, U+2029 as `\u` escapes.
///
/// Scans bytes rather than characters: every byte that needs escaping is ASCII or the lead byte of
/// U+2028/U+2029, so the slices copied in between always end on character boundaries.
fn escape_into(out: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    /// Bytes that may need escaping: `"`, `\\`, `<`, `>`, `&`, controls, and 0xE2 (U+2028/9).
    const SPECIAL: [bool; 256] = {
        let mut table = [false; 256];
        let mut byte = 0;
        while byte < 0x20 {
            table[byte] = true;
            byte += 1;
        }
        table[b'"' as usize] = true;
        table[b'\\' as usize] = true;
        table[b'<' as usize] = true;
        table[b'>' as usize] = true;
        table[b'&' as usize] = true;
        table[0xe2] = true;
        table
    };
    let bytes = value.as_bytes();
    out.reserve(bytes.len() + bytes.len() / 8);
    let mut start = 0;
    let mut index = 0;
    while let Some(offset) = bytes[index..].iter().position(|&b| SPECIAL[usize::from(b)]) {
        index += offset;
        let byte = bytes[index];
        let (escape, width): (&str, usize) = match byte {
            b'"' => ("\\\"", 1),
            b'\\' => ("\\\\", 1),
            b'\n' => ("\\n", 1),
            b'\r' => ("\\r", 1),
            b'\t' => ("\\t", 1),
            b'<' => ("\\u003c", 1),
            b'>' => ("\\u003e", 1),
            b'&' => ("\\u0026", 1),
            0x00..=0x1f => ("", 1),
            _ => match (bytes.get(index + 1), bytes.get(index + 2)) {
                (Some(0x80), Some(0xa8)) => ("\\u2028", 3),
                (Some(0x80), Some(0xa9)) => ("\\u2029", 3),
                // Another character starting with 0xE2: not escaped.
                _ => {
                    index += 1;
                    continue;
                }
            },
        };
        out.push_str(&value[start..index]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        } else {
            out.push_str(escape);
        }
        index += width;
        start = index;
    }
    out.push_str(&value[start..]);
}

/// Formats 128 bits as a version-4-looking UUID.
struct Uuid(u128);

impl std::fmt::Display for Uuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (v >> 96) as u32,
            (v >> 80) as u16,
            (v >> 64) as u16,
            (v >> 48) as u16,
            v & 0xffff_ffff_ffff
        )
    }
}

/// Formats Unix seconds as RFC 3339 UTC (`2026-01-01T00:00:00Z`), without a date library.
struct Rfc3339(i64);

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let days = self.0.div_euclid(86_400);
        let seconds = self.0.rem_euclid(86_400);
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            seconds / 3_600,
            seconds % 3_600 / 60,
            seconds % 60
        )
    }
}

/// SplitMix64's finaliser: a fast, well-mixed 64-bit permutation.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A pseudo-random value decided by (seed, node, purpose, tick).
fn hash(seed: u64, node: u64, salt: u64, tick: u64) -> u64 {
    mix(mix(mix(seed ^ mix(node)) ^ salt) ^ tick)
}

/// 128 pseudo-random bits decided by (seed, node, purpose, tick).
fn hash128(seed: u64, node: u64, salt: u64, tick: u64) -> u128 {
    let high = hash(seed, node, salt, tick);
    let low = mix(high ^ 0x5851_f42d_4c95_7f2d);
    (u128::from(high) << 64) | u128::from(low)
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::path::PathBuf;

    use choria_lifecycle::LifecycleDecoder;
    use choria_registration::RegistrationDecoder;
    use ferry_adapter::{Decoder, Input, Payload};
    use serde_json::Value;

    use super::*;

    fn fixture(name: &str) -> String {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
            .trim_end()
            .to_string()
    }

    fn uuid(text: &str) -> u128 {
        u128::from_str_radix(&text.replace('-', ""), 16).expect("uuid")
    }

    fn lifecycle_event(
        kind: LifecycleType,
        format: LifecycleFormat,
        fields: (&str, &'static str, i64, &'static str, &'static str),
        id: &str,
        governor: Option<Governor>,
    ) -> SimEvent {
        let (identity, component, timestamp, version, new_version) = fields;
        SimEvent::Lifecycle {
            identity: identity.into(),
            kind,
            component,
            format,
            id: uuid(id),
            timestamp,
            version,
            new_version,
            governor,
        }
    }

    /// The renderers reproduce the lifecycle fixtures byte for byte.
    #[test]
    fn lifecycle_rendering_matches_the_fixtures() {
        use LifecycleFormat as F;
        use LifecycleType as T;
        let facts = |sequence, event_type| {
            Some(Governor {
                name: "FACTS",
                sequence,
                event_type,
            })
        };
        let db3 = "db3.fra.acme.test";
        let new17 = "new-17.ams.acme.test";
        let cases = [
            (
                "lifecycle/startup-server.choria.json",
                T::Startup,
                F::Choria,
                (db3, "server", 1767225600, "0.29.4", ""),
                "4b0e6a52-6f0e-4c1e-9d7a-2f4f3c0b9a11",
                None,
            ),
            (
                "lifecycle/startup-server.cloudevent.json",
                T::Startup,
                F::CloudEvents,
                (db3, "server", 1767225600, "0.29.4", ""),
                "4b0e6a52-6f0e-4c1e-9d7a-2f4f3c0b9a11",
                None,
            ),
            (
                "lifecycle/shutdown-server.cloudevent.json",
                T::Shutdown,
                F::CloudEvents,
                (db3, "server", 1767229200, "", ""),
                "9a7d1c3e-2b4f-4e8a-b1c2-d3e4f5a6b7c8",
                None,
            ),
            (
                "lifecycle/alive-server.cloudevent.json",
                T::Alive,
                F::CloudEvents,
                (
                    "edge-0042.sjc.acme.test",
                    "server",
                    1767225000,
                    "0.29.4",
                    "",
                ),
                "c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f",
                None,
            ),
            (
                "lifecycle/provisioned-provision_mode_server.cloudevent.json",
                T::Provisioned,
                F::CloudEvents,
                (new17, "provision_mode_server", 1767225700, "", ""),
                "0d1e2f3a-4b5c-4d6e-8f7a-9b0c1d2e3f4a",
                None,
            ),
            (
                "lifecycle/upgraded-provision_mode_server.cloudevent.json",
                T::Upgraded,
                F::CloudEvents,
                (
                    new17,
                    "provision_mode_server",
                    1767225650,
                    "0.28.0",
                    "0.29.4",
                ),
                "7b8c9d0e-1f2a-4b3c-a4d5-e6f7a8b9c0d1",
                None,
            ),
            (
                "lifecycle/governor-cli.choria.json",
                T::Governor,
                F::Choria,
                ("web9.lhr.acme.test", "CLI", 1767225860, "", ""),
                "6a7b8c9d-0e1f-4a2b-93c4-d5e6f7a8b9c0",
                facts(7, "timeouts"),
            ),
            (
                "lifecycle/startup-legacy.json",
                T::Startup,
                F::Legacy,
                ("old1.acme.test", "server", 1546257701, "0.99.0", ""),
                "0",
                None,
            ),
        ];
        for (name, kind, format, fields, id, governor) in cases {
            let event = lifecycle_event(kind, format, fields, id, governor);
            let payload = String::from_utf8(event.payload()).unwrap();
            assert_eq!(payload, fixture(name), "{name}");
        }
    }

    /// The envelope builders reproduce the registration fixtures byte for byte.
    #[test]
    fn registration_envelopes_match_the_fixtures() {
        let expected: Value =
            serde_json::from_str(&fixture("registration/v1-inventory.expected.json")).unwrap();
        let payload = expected["data"].as_str().unwrap();
        let envelope = RequestEnvelope {
            sender: "web4.cdg.acme.test",
            request_id: "9f3c2a1b0e7d4c6b8a5f4e3d2c1b0a99",
            collective: "mcollective",
            agent: "registration",
            ttl: 60,
            time: 1_767_225_600,
            broker: "nats://broker2.acme.test:4222",
        };
        assert_eq!(
            registration_v1(payload, &envelope),
            fixture("registration/v1-inventory.wire.json")
        );
        assert_eq!(
            registration_v2(payload.as_bytes(), &envelope),
            fixture("registration/v2-inventory.wire.json")
        );
        let filecontent: Value =
            serde_json::from_str(&fixture("registration/v1-filecontent.expected.json")).unwrap();
        assert_eq!(
            registration_v1(filecontent["data"].as_str().unwrap(), &envelope),
            fixture("registration/v1-filecontent.wire.json")
        );
    }

    #[test]
    fn go_style_json_strings() {
        let input = "a\"b\\c\n<&>\u{1}\u{1f}\u{2028}\u{2029}é€\u{2020}\u{e2}";
        let mut out = String::new();
        push_json_string(&mut out, input);
        let escaped = r#""a\"b\\c\n\u003c\u0026\u003e\u0001\u001f\u2028\u2029"#;
        assert_eq!(out, format!("{escaped}é€\u{2020}\u{e2}\""));
        assert_eq!(serde_json::from_str::<String>(&out).unwrap(), input);
    }

    /// The pre-escaped templates give exactly what escaping the rendered document gives.
    #[test]
    fn escaped_templates_equal_escaping_the_document() {
        let roles = ROLES.iter().map(|(role, _)| *role).chain(["other"]);
        for role in roles {
            let inventory = Inventory {
                identity: "web0001.dc1.example.net",
                role,
                dc: 1,
                version: "0.29.4",
                time: DEFAULT_EPOCH,
                uptime: 300,
                requests: 2,
            };
            let mut raw = String::new();
            inventory.write(&mut raw, 0);
            let document: Value = serde_json::from_str(&raw).expect("inventory is JSON");
            assert_eq!(
                document["content"]["status"]["identity"],
                inventory.identity
            );
            assert_eq!(
                document["content"]["status"]["last_message"],
                DEFAULT_EPOCH - 30
            );
            assert_eq!(
                document["content"]["agents"][0]["author"],
                "ops <ops@example.net>"
            );
            assert!(
                raw.contains(r"ops \u003cops@example.net\u003e"),
                "Go escaping"
            );
            for level in 1..=MAX_LEVEL {
                let mut fast = String::new();
                inventory.write(&mut fast, level);
                let mut slow = String::new();
                push_escaped(&mut slow, &raw, level);
                assert_eq!(fast, slow, "{role} level {level}");
            }
        }
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(Rfc3339(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Rfc3339(DEFAULT_EPOCH).to_string(), "2026-01-01T00:00:00Z");
        assert_eq!(Rfc3339(1_767_225_000).to_string(), "2025-12-31T23:50:00Z");
        assert_eq!(Rfc3339(951_782_400).to_string(), "2000-02-29T00:00:00Z");
        assert_eq!(Rfc3339(-1).to_string(), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let render = |fleet: &Fleet| -> Vec<(String, Vec<u8>)> {
            (0..40)
                .flat_map(|tick| fleet.events_for_tick(tick))
                .map(|event| (event.subject(), event.payload()))
                .collect()
        };
        let a = render(&Fleet::new(50, 7));
        assert_eq!(a, render(&Fleet::new(50, 7)));
        assert_ne!(a, render(&Fleet::new(50, 8)));
    }

    #[test]
    fn identities_are_unique_and_varied() {
        let fleet = Fleet::new(5_000, 1);
        let identities: HashSet<&str> = fleet.nodes().iter().map(|n| &*n.identity).collect();
        assert_eq!(identities.len(), 5_000);
        let roles: HashSet<&str> = fleet.nodes().iter().map(|n| n.role).collect();
        assert_eq!(roles.len(), ROLES.len());
        let sample = &fleet.nodes()[0].identity;
        let parts: Vec<&str> = sample.split('.').collect();
        assert_eq!(parts.len(), 4, "{sample}");
        assert!(
            parts[1].starts_with("dc") && parts[2..] == ["example", "net"],
            "{sample}"
        );
        let formats: HashSet<LifecycleFormat> =
            fleet.nodes().iter().map(|n| n.lifecycle_format).collect();
        assert_eq!(formats.len(), 3);
    }

    /// Every event of a simulated day decodes with the real decoders, yielding the subject
    /// fields and sender the adapter needs.
    #[test]
    fn every_generated_payload_decodes() {
        let fleet = Fleet::new(300, 42);
        let lifecycle = LifecycleDecoder::new(false, Default::default());
        let registration = RegistrationDecoder;
        let mut kinds: HashMap<&str, usize> = HashMap::new();
        let mut protocols = HashSet::new();
        let mut buffer = Vec::new();
        // The first hour, plus the restart of a node that upgrades on it.
        let mut ticks: Vec<u64> = (0..60).collect();
        let upgrading = fleet
            .nodes()
            .iter()
            .find(|node| node.upgrades)
            .expect("an upgrade");
        let restart = upgrading.startup_tick + upgrading.first_restart;
        ticks.extend([restart - 1, restart]);
        for tick in ticks {
            for event in fleet.events_for_tick(tick) {
                buffer.clear();
                event.write_payload(&mut buffer);
                let subject = event.subject();
                let input = Input::new(&subject, &buffer);
                match &event {
                    SimEvent::Lifecycle {
                        kind, component, ..
                    } => {
                        let decoded = lifecycle.decode(&input).unwrap_or_else(|e| {
                            panic!("{subject}: {e}: {}", String::from_utf8_lossy(&buffer))
                        });
                        assert_eq!(decoded.field("type"), Some(kind.as_str()));
                        assert_eq!(decoded.field("component"), Some(*component));
                        assert_eq!(decoded.sender.as_deref(), Some(event.sender()));
                        assert_eq!(subject, lifecycle_subject(*kind, component));
                        *kinds.entry(kind.as_str()).or_default() += 1;
                    }
                    SimEvent::Registration { protocol, time, .. } => {
                        assert_eq!(subject, REGISTRATION_SUBJECT);
                        let decoded = registration.decode(&input).unwrap_or_else(|e| {
                            panic!("{e}: {}", String::from_utf8_lossy(&buffer))
                        });
                        assert_eq!(decoded.sender.as_deref(), Some(event.sender()));
                        assert_eq!(decoded.field("agent"), Some("registration"));
                        assert_eq!(decoded.field("collective"), Some("mcollective"));
                        let Payload::Replaced(stored) = &decoded.payload else {
                            panic!("registration output must be replaced")
                        };
                        let stored: Value = serde_json::from_slice(stored).unwrap();
                        assert_eq!(stored["sender"], event.sender());
                        assert_eq!(stored["time"], Rfc3339(*time).to_string());
                        let data: Value =
                            serde_json::from_str(stored["data"].as_str().unwrap()).unwrap();
                        assert_eq!(data["content"]["status"]["identity"], event.sender());
                        assert_eq!(data["protocol"], "choria:registration:inventorycontent:1");
                        protocols.insert(*protocol);
                    }
                }
            }
        }
        for kind in LifecycleType::ALL {
            assert!(
                kinds.get(kind.as_str()).copied().unwrap_or(0) > 0,
                "no {kind:?} in {kinds:?}"
            );
        }
        assert_eq!(protocols.len(), 2);
    }

    #[test]
    fn every_node_starts_once_then_stays_up() {
        let fleet = Fleet::new(1_000, 3);
        let mut startups: HashMap<String, u64> = HashMap::new();
        for tick in 0..STARTUP_SPREAD_TICKS + 5 {
            for event in fleet.events_for_tick(tick) {
                if let SimEvent::Lifecycle {
                    kind: LifecycleType::Startup,
                    ..
                } = event
                {
                    *startups.entry(event.sender().to_string()).or_default() += 1;
                }
            }
        }
        assert_eq!(startups.len(), 1_000);
        assert!(startups.values().all(|count| *count == 1));
    }

    /// Alive events repeat the same bytes within one boot, 30 ticks apart, as Choria's do.
    #[test]
    fn alive_events_repeat_their_bytes_within_a_boot() {
        let fleet = Fleet::new(20, 9);
        let node = &fleet.nodes()[0];
        let (_, boot) = node.boot(STARTUP_SPREAD_TICKS).unwrap();
        let first = fleet.lifecycle(0, LifecycleType::Alive, boot + ALIVE_INTERVAL_TICKS);
        let second = fleet.lifecycle(0, LifecycleType::Alive, boot + 2 * ALIVE_INTERVAL_TICKS);
        assert_eq!(first.payload(), second.payload());
        let events = fleet.events_for_tick(boot + ALIVE_INTERVAL_TICKS);
        assert!(events.iter().any(|event| matches!(
            event,
            SimEvent::Lifecycle { kind: LifecycleType::Alive, identity, .. } if **identity == *node.identity
        )));
    }

    #[test]
    fn registrations_are_unique_and_periodic() {
        let fleet = Fleet::new(200, 11);
        let mut payloads = HashSet::new();
        let mut count = 0;
        for tick in
            STARTUP_SPREAD_TICKS..STARTUP_SPREAD_TICKS + 10 * DEFAULT_REGISTRATION_INTERVAL_TICKS
        {
            for event in fleet.events_for_tick(tick) {
                if !event.is_lifecycle() {
                    count += 1;
                    assert!(payloads.insert(event.payload()), "repeated registration");
                }
            }
        }
        // Ten intervals: ten registrations per node, give or take restarts.
        assert!((1_900..=2_100).contains(&count), "{count}");
    }

    #[test]
    fn restarts_say_shutdown_then_startup() {
        let fleet = Fleet::new(50, 5);
        let node = &fleet.nodes()[0];
        let restart = node.startup_tick + node.first_restart;
        let before = fleet.events_for_tick(restart - 1);
        let after = fleet.events_for_tick(restart);
        let mine = |events: &[SimEvent], wanted: LifecycleType| {
            events.iter().any(|event| {
                matches!(event, SimEvent::Lifecycle { kind, .. } if *kind == wanted)
                    && event.sender() == &*node.identity
            })
        };
        assert!(mine(&before, LifecycleType::Shutdown));
        assert!(mine(&after, LifecycleType::Startup));
        assert_eq!(mine(&after, LifecycleType::Upgraded), node.upgrades);
    }
}
