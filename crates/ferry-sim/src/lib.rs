//! A deterministic simulated Choria fleet: the traffic source of `ferry demo` and `ferry bench`.
//!
//! A [`Fleet`] of `n` nodes (identities like `web0042.dc1.example.net`) produces the messages a real
//! Choria fleet puts on core NATS, byte for byte in the shapes of the wire-format fixtures:
//!
//! * **lifecycle events** on `choria.lifecycle.event.<type>.<component>`, in Choria format
//!   (`io.choria.lifecycle.v1.<type>`), as CloudEvents 1.0 wrapping it, or in the legacy
//!   `choria:lifecycle:<type>:1` protocol, depending on the node's (simulated) Choria version;
//! * **registration** requests on `mcollective.broadcast.agent.registration`, in transport protocol
//!   v1 or v2, carrying an inventory document as Choria's registration plugin sends it;
//! * RPC **replies** ([`reply_v1`], [`reply_v2`]) for tests of reply adapters: built on demand,
//!   not part of a fleet's timeline.
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

mod event;
mod fleet;
mod ids;
mod registration;
mod reply;
#[cfg(test)]
mod tests;

pub use event::*;
pub use fleet::*;
pub use ids::*;
pub use registration::*;
pub use reply::*;

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
pub(crate) const COLLECTIVE: &str = "mcollective";
/// Choria versions in the fleet, oldest first; an upgrade moves a node one step up.
pub(crate) const VERSIONS: [&str; 3] = ["0.28.0", "0.29.3", "0.29.4"];
/// Node roles and their weights in the fleet.
pub(crate) const ROLES: [(&str, u64); 8] = [
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
pub(crate) const DATA_CENTRES: u64 = 3;
/// A governed facts refresh starts on a given node in a given tick with odds 1 in this.
pub(crate) const GOVERNOR_ODDS: u64 = 2_000;
/// The v2 signature field: Choria signs requests; ferry does not verify, so any bytes do.
pub(crate) const V2_SIGNATURE: &str = "bm90LWEtcmVhbC1zaWduYXR1cmU=";

// Salts that keep the pseudo-random decisions about one node independent of each other.
pub(crate) const SALT_ROLE: u64 = 1;
pub(crate) const SALT_DC: u64 = 2;
pub(crate) const SALT_FORMAT: u64 = 3;
pub(crate) const SALT_PROTOCOL: u64 = 4;
pub(crate) const SALT_VERSION: u64 = 5;
pub(crate) const SALT_UPGRADE: u64 = 6;
pub(crate) const SALT_PROVISIONED: u64 = 7;
pub(crate) const SALT_STARTUP: u64 = 8;
pub(crate) const SALT_RESTART: u64 = 9;
pub(crate) const SALT_FIRST_RESTART: u64 = 10;
pub(crate) const SALT_PHASE: u64 = 11;
pub(crate) const SALT_GOVERNOR: u64 = 12;
pub(crate) const SALT_EVENT_ID: u64 = 13;
pub(crate) const SALT_REQUEST_ID: u64 = 14;
