//! Replicators (SPEC section 5): copy a JetStream stream from one NATS deployment to another.

pub mod advisories;
pub mod heartbeat;
pub mod limits;
pub mod sampler;
