//! Events between services: the envelope that carries a contract's payload, the bus
//! (in-process or NATS JetStream), the transactional outbox, idempotent consumers
//! (the inbox and the [`listener`] shape every service's listeners share),
//! version-ordered replicas and dead letters. See docs/decisions/0003-events.md.

pub mod bus;
pub mod envelope;
pub mod inbox;
pub mod inprocess;
pub mod listener;
pub mod nats;
pub mod outbox;
pub mod replica;
pub mod telemetry;
pub mod trace;

pub use bus::{ConsumerLag, DeadLetter, EventBus, Handler, HandlerError, RetryPolicy, SharedBus};
pub use envelope::Envelope;
pub use inprocess::InProcessBus;
pub use listener::{Consumers, Listener, Traced};
pub use nats::NatsBus;
pub use outbox::Outbox;
