//! The service kit: what turns a service's domain into an HTTP service of the system —
//! the contract's errors as responses, request parsing and validation, sessions (JWT),
//! health, metrics and trace propagation, the runtime a service is started with, and the
//! composition of started services into one application.

pub mod app;
pub mod arrival;
pub mod auth;
pub mod client;
pub mod error;
pub mod health;
pub mod idempotency;
pub mod json;
pub mod keyed;
pub mod rate_limit;
pub mod replica;
mod row;
pub mod runtime;
pub mod sessions;
pub mod telemetry;
pub mod trace;
pub mod validate;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::{ApiError, ApiResult};

// The paths `from_row!` expands to, whatever the calling crate names the store.
#[doc(hidden)]
pub use ticketing_store as __store;
