//! Tickets service: listings and their reservation state (`/api/tickets`).
//!
//! Publishes `ticket:created` / `ticket:updated` through the outbox; reserves and
//! releases tickets on `order:created` / `order:cancelled`.

mod domain;
mod listeners;
mod routes;
mod tickets;

use std::sync::Arc;

use axum::extract::FromRef;
use sqlx::migrate::Migrator;
use ticketing_shared::auth::JwtKeys;
use ticketing_shared::events::outbox::Outbox;
use ticketing_shared::events::{groups, schema, Handler, Subject};
use ticketing_shared::health::ReadyCheck;
use ticketing_shared::runtime::{Mounted, Runtime};
use ticketing_shared::store::{Migrations, Store};

pub const SERVICE: &str = "tickets";

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
}

/// Open the tickets database, start its relay and listeners, and return its routes.
pub async fn mount(rt: &Runtime) -> anyhow::Result<Mounted> {
    let store = Store::open(&rt.location(SERVICE)?, &MIGRATIONS).await?;
    schema::install(&store).await?;
    let outbox = Outbox::new(store.clone(), rt.bus.clone());
    let state = AppState {
        store: store.clone(),
        keys: rt.keys.clone(),
        outbox: outbox.clone(),
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
    tasks.extend(rt.subscribe_all(groups::TICKETS, &store, handlers).await?);
    Ok(Mounted {
        name: SERVICE,
        router: routes::router().with_state(state),
        ready: vec![ReadyCheck::store("tickets-db", &store)],
        tasks,
    })
}
