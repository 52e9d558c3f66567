//! The one boundary between ferry and the JetStream server.
//!
//! - [`answer`]: every answer the server gives (publish acks, pull statuses, API error codes)
//!   sorted into what a pipeline acts on, in one place;
//! - [`ack_inbox`]: publishes with their acks collected on one wildcard inbox;
//! - [`publish`]: one publish awaiting its ack, for heartbeats and reliable advisories;
//! - [`streams`]: look up and create streams (adapters, replicators, the election bucket);
//! - [`wire_headers`]: header blocks in the wire format, read and written without the client's map;
//! - [`Error`]: one error type with a kind to act on, for everything above.

pub mod ack_inbox;
pub mod answer;
mod error;
pub mod publish;
pub mod streams;
pub mod wire_headers;

pub use error::{Error, StreamError, StreamErrorKind};
pub use publish::{publish_acked, PublishError, PublishErrorKind};
