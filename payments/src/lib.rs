//! Payments service: charging orders (`/api/payments`).
//!
//! The service charges through a [`provider::PaymentProvider`]: the real Stripe Charges API
//! ([`provider::StripeProvider`]) when a secret key is configured, otherwise the offline
//! [`provider::SandboxProvider`], where Stripe's test tokens decide the outcome.
//!
//! Keeps a newest-wins replica of orders (`order:created` / `order:cancelled`),
//! serialises payments per order, accepts a charge only if the order is still open at
//! commit (refunding it otherwise), and publishes `payment:created` through the outbox.
//! Refunds buyers' cancellations (`order:cancel-requested` → `payment:refunded` or
//! `payment:refund-failed`).
//! See docs/decisions/0006-payments.md.

mod listeners;
mod orders;
mod pay;
mod payments;
pub mod provider;
mod routes;

use std::sync::Arc;

use axum::extract::FromRef;
use ticketing_bus::Consumers;
use ticketing_contracts::events::{groups, OrderCreated};
use ticketing_kit::arrival::Arrivals;
use ticketing_kit::auth::JwtKeys;
use ticketing_kit::replica::CopyListener;
use ticketing_kit::runtime::{Mounted, Runtime};
use ticketing_store::{Migrations, Store};

use crate::listeners::{OrderCancelRequestedListener, OrderCancelledListener};
use crate::orders::OrderCopy;
use crate::provider::PaymentProvider;

pub const SERVICE: &str = "payments";

pub static MIGRATIONS: Migrations = ticketing_store::migrations![
    "0001_payments.sql",
    "0002_refunds.sql",
    "0003_cancellation_refunds.sql"
];

#[derive(Clone, FromRef)]
pub struct AppState {
    pub store: Store,
    pub keys: JwtKeys,
    pub provider: Arc<dyn PaymentProvider>,
    /// Orders on their way to the replica, which a payment may wait for.
    pub arriving: Arrivals,
}

/// Open the payments database, start its relay and listeners, and return its routes.
/// `provider` moves the money ([`provider::from_config`] picks Stripe or the sandbox).
pub async fn mount(rt: &Runtime, provider: Arc<dyn PaymentProvider>) -> anyhow::Result<Mounted> {
    let service = rt.start_keyed(SERVICE, &MIGRATIONS).await?;
    let state = AppState {
        store: service.store.clone(),
        keys: service.keys.clone(),
        provider,
        arriving: Arrivals::new("order", &service.store, "orders"),
    };
    let copies =
        CopyListener::<OrderCreated, OrderCopy>::announcing(state.arriving.clone(), |order| {
            order.id.as_str()
        });
    let consumers = Consumers::new(groups::PAYMENTS, &service.store)
        .listen(copies)
        .listen(OrderCancelledListener(state.clone()))
        .listen(OrderCancelRequestedListener::new(state.clone()));
    service
        .mount(consumers, routes::router().with_state(state))
        .await
}
