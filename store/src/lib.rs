//! Storage for a service: one implementation that runs on SQLite (embedded mode, a file
//! per service) and PostgreSQL (distributed mode, a database per service).
//!
//! Queries and migrations are written once in the dialect both accept (`$1`
//! placeholders, `RETURNING`, `ON CONFLICT`, integer timestamps, `BIGINT`/`TEXT`
//! columns). See docs/decisions/0002-storage.md. The engines' wings are `sqlite/` and
//! `postgres.rs`; everything a service uses is re-exported here.

mod config;
mod conflict;
mod engine;
mod error;
mod metrics;
mod migrations;
mod postgres;
mod query;
pub mod retention;
mod sqlite;
mod store;
mod tx;
pub mod upkeep;
mod value;

pub use config::{
    set_postgres_max_connections, set_sqlite_gathered_log, set_sqlite_synchronous, Backend,
    DatabaseConfig, DbLocation, Synchronous, DEFAULT_POSTGRES_MAX_CONNECTIONS,
};
pub use conflict::OnUnique;
pub use error::Error;
pub use migrations::Migrations;
pub use query::{query, Decode, FromRow, On, Query, Row};
pub use store::Store;
pub use tx::Tx;
pub use value::Value;
