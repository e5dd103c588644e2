//! Events between services: the envelope that carries a contract's payload, the bus
//! (in-process or NATS JetStream), the transactional outbox, idempotent consumers
//! (the inbox and the [`listener`] shape every service's listeners share),
//! and dead letters. See docs/decisions/0003-events.md.
//!
//! The bus owns its tables (`tables`: outbox, inbox) and their queries. Its parts:
//! `bus.rs` the interface, `delivery.rs` the engine the backends hand what they receive
//! to, `listener.rs` a service's listeners as a handler (one transaction per event or
//! per backlog), `instrumented.rs` the relay's counted publishing; the backends
//! (`inprocess/`, `nats/`) are reached through [`InProcessBus`] and [`NatsBus`] only.

mod bus;
mod delivery;
pub mod envelope;
pub mod inbox;
mod inprocess;
mod instrumented;
pub mod listener;
mod nats;
pub mod outbox;
pub mod tables;
mod telemetry;
pub mod trace;

pub use bus::{
    ConsumerLag, DeadLetter, EventBus, Handler, HandlerError, RetryPolicy, SharedBus, Together,
    BATCH, RETENTION,
};
pub use envelope::Envelope;
pub use inprocess::InProcessBus;
pub use listener::{Consumers, Listener, Traced};
pub use nats::NatsBus;
pub use outbox::Outbox;
pub use telemetry::oldest_retries;
