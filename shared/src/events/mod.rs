//! Events between services: typed contracts, the envelope that carries them, the bus
//! (in-process or NATS JetStream), the transactional outbox, idempotent consumers and
//! version-ordered replicas. See docs/decisions/0003-events.md.

pub mod bus;
pub mod contracts;
pub mod envelope;

pub use bus::{EventBus, Handler, HandlerError, SharedBus};
pub use contracts::*;
pub use envelope::Envelope;
