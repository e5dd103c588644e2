//! Tickets service: listings and their reservation state (`/api/tickets`).
//!
//! Publishes `ticket:created` / `ticket:updated` through the outbox; reserves and
//! releases tickets on `order:created` / `order:cancelled`.
//!
//! A listing may have several units (issue 30: `quantity`, caps per order and per
//! account, an on-sale time; `domain::Terms`). Every order's units are counted once in
//! `ticket_holds` and `tickets.held` (`tickets::hold`, `tickets::unhold`); a listing
//! without a quantity is also reserved by its order (`order_id`) as the seed's tickets
//! are, while a counted one changes nothing else and publishes nothing per order.

mod domain;
mod list_cache;
mod listeners;
mod routes;
mod tickets;

use std::sync::Arc;

use axum::extract::FromRef;
use ticketing_bus::Consumers;
use ticketing_contracts::events::groups;
use ticketing_kit::auth::JwtKeys;
use ticketing_kit::runtime::{Mounted, Runtime};
use ticketing_store::{Migrations, Store};

use crate::list_cache::ListCache;
use crate::listeners::{OrderCancelledListener, OrderCreatedListener};

pub const SERVICE: &str = "tickets";

/// The memory of cancelled orders is kept as long as an inbox mark: an `order:created`
/// can only arrive (late, or again) while the bus still holds it. Cancellations are now
/// remembered on the ticket's row (`last_order_id`, migration 0003); the table holds
/// those from before it, and is empty once they are pruned.
pub const CANCELLED_ORDERS_KEEP: std::time::Duration = ticketing_bus::inbox::KEEP;

/// The retention of `cancelled_orders` (table, time column, key).
pub const CANCELLED_ORDERS: (&str, &str, &str) = ("cancelled_orders", "cancelled_at", "order_id");

/// The retention of the released rows of `ticket_holds` (table, time column, key): a
/// released row stops a late `order:created` from holding units again, so it is kept
/// as long as `cancelled_orders`. Rows still held have no `released_at` and stay.
pub const RELEASED_HOLDS: (&str, &str, &str) = ("ticket_holds", "released_at", "order_id");

fn spawn_pruners(store: &Store, rt: &Runtime) -> Vec<tokio::task::JoinHandle<()>> {
    [CANCELLED_ORDERS, RELEASED_HOLDS]
        .into_iter()
        .map(|(table, column, key)| {
            ticketing_store::retention::spawn_table_pruner(
                store.clone(),
                table,
                column,
                key,
                CANCELLED_ORDERS_KEEP,
                rt.shutdown.clone(),
            )
        })
        .collect()
}

pub static MIGRATIONS: Migrations = ticketing_store::migrations![
    "0001_tickets.sql",
    "0002_cancelled_at.sql",
    "0003_last_order.sql",
    "0004_sale_terms.sql",
    "0005_refund_policy.sql"
];

#[derive(Clone, FromRef)]
pub struct AppState {
    pub store: Store,
    pub keys: JwtKeys,
    pub list_cache: Arc<ListCache>,
}

/// Open the tickets database, start its relay and listeners, and return its routes.
pub async fn mount(rt: &Runtime) -> anyhow::Result<Mounted> {
    let mut service = rt.start_keyed(SERVICE, &MIGRATIONS).await?;
    let state = AppState {
        store: service.store.clone(),
        keys: service.keys.clone(),
        list_cache: Arc::default(),
    };
    let consumers = Consumers::new(groups::TICKETS, &service.store)
        .listen(OrderCreatedListener)
        .listen(OrderCancelledListener);
    service.tasks.extend(spawn_pruners(&service.store, rt));
    service
        .mount(consumers, routes::router().with_state(state))
        .await
}
