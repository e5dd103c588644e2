//! Code every Ticketing service shares: the contract's error format, request parsing,
//! sessions, storage, health and telemetry, and the runtime a service is started with.

pub mod app;
pub mod auth;
pub mod error;
pub mod events;
pub mod health;
pub mod json;
pub mod money;
pub mod runtime;
pub mod store;
pub mod telemetry;
pub mod timefmt;
pub mod trace;
pub mod validate;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::{ApiError, ApiResult};
