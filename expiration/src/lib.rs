//! Expiration service: fires `expiration:complete` when an order's reservation runs out.
//!
//! The heart of it is a [`DelayQueue`]: one pending job per order, due at the order's
//! `expiresAt`. Two implementations share the contract:
//! - [`RedisDelayQueue`] (distributed mode, `REDIS_URL`): a sorted set claimed atomically
//!   by a Lua script, so several replicas never fire one job twice;
//! - [`SqlDelayQueue`] over the service's [`Store`](ticketing_shared::store::Store)
//!   (embedded mode on SQLite, or PostgreSQL): durable, so a restart loses no expiry.
//!
//! Delivery is at-least-once: a claim is a lease ([`QueueOptions::lease`]); a job claimed
//! but not [`complete`](DelayQueue::complete)d before the lease ends (the claimer crashed
//! between claiming and enqueueing the event) is claimed again. Consumers of
//! `expiration:complete` are idempotent (orders ignores an order already cancelled or
//! complete), which makes the rare repeat harmless. See docs/decisions/0005-expiration-queue.md.

mod queue;
mod redis_queue;
mod service;
mod sql_queue;

use sqlx::migrate::Migrator;
use ticketing_shared::store::Migrations;

pub use queue::{now_millis, DelayQueue, DueJob, QueueOptions};
pub use redis_queue::RedisDelayQueue;
pub use service::{expiration_event, mount, Settings};
pub use sql_queue::SqlDelayQueue;

pub const SERVICE: &str = "expiration";

static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

/// The `expiration_jobs` and `finished_orders` tables, for [`Store::open`](ticketing_shared::store::Store::open).
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE,
    postgres: &POSTGRES,
};
