//! Orders service: reservations of tickets (`/api/orders`).
//!
//! Keeps a version-ordered replica of tickets, guarantees at most one active order per
//! ticket in the database, and publishes `order:created` / `order:cancelled` through the
//! outbox. Reacts to `expiration:complete` and `payment:created`.

mod domain;
mod listeners;
mod orders;
mod routes;
mod tickets;

use std::time::Duration;

use axum::extract::FromRef;
use ticketing_bus::{Consumers, Outbox};
use ticketing_contracts::events::groups;
use ticketing_kit::auth::JwtKeys;
use ticketing_kit::health::ReadyCheck;
use ticketing_kit::runtime::{Mounted, Runtime};
use ticketing_store::{Migrator, Store};

use crate::listeners::{
    ExpirationCompleteListener, PaymentCreatedListener, TicketCreatedListener,
    TicketUpdatedListener,
};

pub const SERVICE: &str = "orders";

pub static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// What only the orders service is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long an order reserves its ticket.
    pub order_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            order_ttl: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Clone, FromRef)]
pub struct AppState {
    pub store: Store,
    pub keys: JwtKeys,
    pub outbox: Outbox,
    pub order_ttl: Duration,
}

/// Open the orders database, start its relay and listeners, and return its routes.
pub async fn mount(rt: &Runtime, settings: &Settings) -> anyhow::Result<Mounted> {
    let store = rt.open_store(SERVICE, &MIGRATIONS).await?;
    let mut tasks = Vec::new();
    let outbox = rt.start_outbox(&store, &mut tasks);
    let state = AppState {
        store: store.clone(),
        keys: rt.keys.clone(),
        outbox: outbox.clone(),
        order_ttl: settings.order_ttl,
    };
    let consumers = Consumers::new(groups::ORDERS, &store)
        .with_outbox(&outbox)
        .listen(TicketCreatedListener)
        .listen(TicketUpdatedListener)
        .listen(ExpirationCompleteListener)
        .listen(PaymentCreatedListener);
    tasks.extend(rt.start_consumers(consumers).await?);
    Ok(Mounted {
        name: SERVICE,
        router: routes::router().with_state(state),
        ready: vec![ReadyCheck::store("orders-db", &store)],
        tasks,
    })
}
