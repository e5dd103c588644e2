//! The contract Ticketing keeps with its clients and between its services
//! (`../shared/spec/`): API bodies, event payloads and subjects, money, the time format
//! and the error body. Plain serde types: no database, bus or HTTP server here, so a
//! client (the web pages, a load generator) can depend on this crate alone.

pub mod api;
pub mod error;
pub mod events;
pub mod ids;
pub mod money;
pub mod status;
pub mod terms;
pub mod time;
pub mod webhook;

pub use error::{ErrorBody, ErrorItem};
pub use ids::{CancellationId, OrderId, PassId, PaymentId, TicketId, UserId};
pub use money::Cents;
pub use status::OrderStatus;
pub use terms::{RefundPolicy, RefundTerms, SaleTerms};
pub use time::Timestamp;
