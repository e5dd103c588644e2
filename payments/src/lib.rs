//! Payments service: charging orders (`/api/payments`).
//!
//! The service charges through a [`provider::PaymentProvider`]: the real Stripe Charges API
//! ([`provider::StripeProvider`]) when a secret key is configured, otherwise the offline
//! [`provider::SandboxProvider`], where Stripe's test tokens decide the outcome.
//!
//! Keeps a version-ordered replica of orders (`order:created` / `order:cancelled`),
//! serialises payments per order, accepts a charge only if the order is still open at
//! commit (refunding it otherwise), and publishes `payment:created` through the outbox.
//! See docs/decisions/0006-payments.md.

mod listeners;
mod orders;
mod payments;
pub mod provider;
mod routes;

use std::sync::Arc;

use axum::extract::FromRef;
use sqlx::migrate::Migrator;
use ticketing_shared::auth::JwtKeys;
use ticketing_shared::events::outbox::Outbox;
use ticketing_shared::events::{groups, schema, Handler, Subject};
use ticketing_shared::health::ReadyCheck;
use ticketing_shared::runtime::{Mounted, Runtime};
use ticketing_shared::store::{Migrations, Store};

use crate::provider::PaymentProvider;

pub const SERVICE: &str = "payments";

static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE,
    postgres: &POSTGRES,
};

#[derive(Clone, FromRef)]
pub struct AppState {
    pub store: Store,
    pub keys: JwtKeys,
    pub outbox: Outbox,
    pub provider: Arc<dyn PaymentProvider>,
}

/// Open the payments database, start its relay and listeners, and return its routes.
/// `provider` moves the money ([`provider::from_config`] picks Stripe or the sandbox).
pub async fn mount(rt: &Runtime, provider: Arc<dyn PaymentProvider>) -> anyhow::Result<Mounted> {
    let store = Store::open(&rt.location(SERVICE)?, &MIGRATIONS).await?;
    schema::install(&store).await?;
    let outbox = Outbox::new(store.clone(), rt.bus.clone());
    let state = AppState {
        store: store.clone(),
        keys: rt.keys.clone(),
        outbox: outbox.clone(),
        provider,
    };
    let mut tasks = vec![outbox.spawn(rt.shutdown.clone())];
    let handlers: [(Subject, Arc<dyn Handler>); 2] = [
        (
            Subject::OrderCreated,
            Arc::new(listeners::order_created::Listener(state.clone())),
        ),
        (
            Subject::OrderCancelled,
            Arc::new(listeners::order_cancelled::Listener(state.clone())),
        ),
    ];
    tasks.extend(rt.subscribe_all(groups::PAYMENTS, &store, handlers).await?);
    Ok(Mounted {
        name: SERVICE,
        router: routes::router().with_state(state),
        ready: vec![ReadyCheck::store("payments-db", &store)],
        tasks,
    })
}
