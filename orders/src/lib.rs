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

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use sqlx::migrate::Migrator;
use ticketing_shared::auth::JwtKeys;
use ticketing_shared::events::outbox::Outbox;
use ticketing_shared::events::{groups, schema, Handler, Subject};
use ticketing_shared::health::ReadyCheck;
use ticketing_shared::runtime::{Mounted, Runtime};
use ticketing_shared::store::{Migrations, Store};

pub const SERVICE: &str = "orders";

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
    pub order_ttl: Duration,
}

/// Open the orders database, start its relay and listeners, and return its routes.
pub async fn mount(rt: &Runtime) -> anyhow::Result<Mounted> {
    let store = Store::open(&rt.location(SERVICE)?, &MIGRATIONS).await?;
    schema::install(&store).await?;
    let outbox = Outbox::new(store.clone(), rt.bus.clone());
    let state = AppState {
        store: store.clone(),
        keys: rt.keys.clone(),
        outbox: outbox.clone(),
        order_ttl: rt.order_ttl,
    };
    let mut tasks = vec![outbox.spawn(rt.shutdown.clone())];
    let handlers: [(Subject, Arc<dyn Handler>); 4] = [
        (
            Subject::TicketCreated,
            Arc::new(listeners::ticket_created::Listener(state.clone())),
        ),
        (
            Subject::TicketUpdated,
            Arc::new(listeners::ticket_updated::Listener(state.clone())),
        ),
        (
            Subject::ExpirationComplete,
            Arc::new(listeners::expiration_complete::Listener(state.clone())),
        ),
        (
            Subject::PaymentCreated,
            Arc::new(listeners::payment_created::Listener(state.clone())),
        ),
    ];
    tasks.extend(rt.subscribe_all(groups::ORDERS, &store, handlers).await?);
    Ok(Mounted {
        name: SERVICE,
        router: routes::router().with_state(state),
        ready: vec![ReadyCheck::store("orders-db", &store)],
        tasks,
    })
}
