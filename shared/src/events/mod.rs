//! Events between services: typed contracts, the envelope that carries them, the bus
//! (in-process or NATS JetStream), the transactional outbox, idempotent consumers and
//! version-ordered replicas. See docs/decisions/0003-events.md.

pub mod bus;
pub mod contracts;
pub mod envelope;
pub mod inbox;
pub mod inprocess;
pub mod nats;
pub mod outbox;
pub mod replica;
pub mod schema;

pub use bus::{DeadLetter, EventBus, Handler, HandlerError, RetryPolicy, SharedBus};
pub use contracts::*;
pub use envelope::Envelope;
pub use inprocess::InProcessBus;
pub use nats::NatsBus;
pub use outbox::Outbox;
