//! Expiration service: fires `expiration:complete` when an order's reservation runs out.
//!
//! The heart of it is a [`DelayQueue`]: one pending job per order, due at the order's
//! `reservedUntil`. Two implementations share the contract:
//! - [`RedisDelayQueue`] (distributed mode, `REDIS_URL`): a sorted set claimed atomically
//!   by a Lua script, so several replicas never fire one job twice;
//! - [`SqlDelayQueue`] over the service's [`Store`](ticketing_store::Store)
//!   (embedded mode on SQLite, or PostgreSQL): durable, so a restart loses no expiry.
//!
//! Delivery is at-least-once: a claim is a lease ([`QueueOptions::lease`]); a job claimed
//! but not [`complete`](DelayQueue::complete)d before the lease ends (the claimer crashed
//! between claiming and enqueueing the event) is claimed again. Consumers of
//! `expiration:complete` are idempotent (orders ignores an order already cancelled or
//! complete), which makes the rare repeat harmless. See docs/decisions/0005-expiration-queue.md.

mod listeners;
mod queue;
mod redis_queue;
mod service;
mod sql_queue;

use ticketing_store::Migrations;

pub use queue::{DelayQueue, DueJob, QueueOptions};
pub use redis_queue::RedisDelayQueue;
pub use service::{expiration_event, mount, Settings, FINISHED_ORDERS, FINISHED_ORDERS_KEEP};
pub use sql_queue::SqlDelayQueue;

pub const SERVICE: &str = "expiration";

/// The `expiration_jobs` and `finished_orders` tables, for [`Store::open`](ticketing_store::Store::open).
pub static MIGRATIONS: Migrations = ticketing_store::migrations![
    "0001_expiration_jobs.sql",
    "0002_finished_orders.sql",
    "0003_finished_orders_by_time.sql"
];
