//! One message of the fleet, rendered on demand into a caller's buffer.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::*;

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
pub(crate) fn request_id_broker(request_id: &str) -> u8 {
    1 + (request_id.as_bytes()[0] & 1)
}

/// The content of one lifecycle event, borrowed for rendering.
pub(crate) struct LifecycleFields<'a> {
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
pub(crate) fn write_choria_lifecycle(out: &mut String, event: &LifecycleFields<'_>) {
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
pub(crate) fn write_legacy_lifecycle(out: &mut String, event: &LifecycleFields<'_>) {
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
pub(crate) fn write_lifecycle_tail(out: &mut String, event: &LifecycleFields<'_>) {
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
pub(crate) fn write_cloudevent(out: &mut String, event: &LifecycleFields<'_>) {
    let _ = write!(
        out,
        r#"{{"specversion":"1.0","id":"{}","source":"io.choria.lifecycle","type":"io.choria.lifecycle.v1.{}","subject":"{}","datacontenttype":"application/json","time":"{}","data":"#,
        Uuid(event.id),
        event.kind.as_str(),
        event.identity,
        Rfc3339::seconds(event.timestamp)
    );
    write_choria_lifecycle(out, event);
    out.push('}');
}
