//! Orders service: reservations of tickets (`/api/orders`).
//!
//! Keeps a newest-wins replica of tickets, guarantees at most one active order per
//! ticket in the database, and publishes `order:created` / `order:cancelled` through the
//! outbox, and `order:completed` when a payment completes an order. Reacts to
//! `expiration:complete` and `payment:created`; cancels paid orders for a refund with
//! `payments` (`order:cancel-requested` → `payment:refunded` or `payment:refund-failed`).

mod cancellations;
mod claim;
mod domain;
mod listeners;
mod orders;
mod pacer;
mod placer;
mod queue;
mod routes;
mod tickets;
mod turns;
mod waitlist;

use std::time::Duration;

use axum::extract::FromRef;
use ticketing_bus::Consumers;
use ticketing_contracts::events::{groups, TicketCreated};
use ticketing_contracts::Timestamp;
use ticketing_kit::arrival::Arrivals;
use ticketing_kit::auth::JwtKeys;
use ticketing_kit::replica::CopyListener;
use ticketing_kit::runtime::{Mounted, Runtime};
use ticketing_store::{Migrations, Store};

use crate::listeners::{
    ExpirationCompleteListener, PaymentCreatedListener, PaymentRefundFailedListener,
    PaymentRefundedListener, TicketUpdatedListener,
};
use crate::tickets::TicketCopy;

pub const SERVICE: &str = "orders";

pub static MIGRATIONS: Migrations = ticketing_store::migrations![
    "0001_orders.sql",
    "0002_cancel_reason.sql",
    "0003_reserved_until.sql",
    "0004_units.sql",
    "0005_waitlist.sql",
    "0006_queue.sql",
    "0007_cancellations.sql",
    "0008_live_admissions.sql",
    "0009_listing_keys.sql",
    "0010_lapsed_holds.sql"
];

/// What only the orders service is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long after placing it an order can be paid (`expiresAt`).
    pub order_ttl: Duration,
    /// How long past `expiresAt` the order still holds its ticket, so that a payment
    /// accepted just before the deadline completes it (see [`domain::Deadline`]). Taken
    /// when an order is placed; orders already placed keep the deadline on their row.
    pub payment_grace: Duration,
    /// How long a waiting list's head has to pay the units offered (the offer's
    /// `expiresAt`).
    pub waitlist_offer: Duration,
    /// Most admissions per second an on-sale queue gives (never more unused ones than
    /// free units).
    pub queue_admit_per_second: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            order_ttl: Duration::from_secs(15 * 60),
            payment_grace: DEFAULT_PAYMENT_GRACE,
            waitlist_offer: Duration::from_secs(600),
            queue_admit_per_second: 100,
        }
    }
}

/// The default of [`Settings::payment_grace`].
pub const DEFAULT_PAYMENT_GRACE: Duration = Duration::from_secs(2);

impl Settings {
    /// The admission rate of on-sale queues.
    pub fn queue_rate(&self) -> queue::Rate {
        queue::Rate(self.queue_admit_per_second)
    }

    /// A write at `now`: the deadlines of an order placed and of an offer made then.
    pub fn at(&self, now: Timestamp) -> domain::At {
        domain::At {
            now,
            order: domain::Deadline::new(now + self.order_ttl, self.payment_grace),
            offer: domain::Deadline::new(now + self.waitlist_offer, self.payment_grace),
        }
    }
}

#[derive(Clone, FromRef)]
pub struct AppState {
    pub store: Store,
    pub placer: placer::Placer,
    pub queued: queue::Queued,
    pub late_joins: queue::LateJoins,
    pub keys: JwtKeys,
    pub settings: Settings,
    /// Listings on their way to the replica, which an order may wait for.
    pub arriving: Arrivals,
}

/// Open the orders database, start its relay and listeners, and return its routes.
pub async fn mount(rt: &Runtime, settings: &Settings) -> anyhow::Result<Mounted> {
    let mut service = rt.start_keyed(SERVICE, &MIGRATIONS).await?;
    let pacer = pacer::spawn(
        service.store.clone(),
        settings.queue_rate(),
        rt.shutdown.clone(),
    );
    service.tasks.push(pacer);
    let store = &service.store;
    let state = AppState {
        store: store.clone(),
        placer: placer::Placer::new(store),
        queued: queue::Queued::default(),
        late_joins: queue::LateJoins::new(store),
        keys: service.keys.clone(),
        settings: settings.clone(),
        arriving: Arrivals::new("ticket", store, "tickets"),
    };
    let copies =
        CopyListener::<TicketCreated, TicketCopy>::announcing(state.arriving.clone(), |ticket| {
            ticket.id.as_str()
        });
    let consumers = Consumers::new(groups::ORDERS, store)
        .listen(copies)
        .listen(TicketUpdatedListener(settings.clone()))
        .listen(ExpirationCompleteListener(settings.clone()))
        .listen(PaymentCreatedListener)
        .listen(PaymentRefundedListener(settings.clone()))
        .listen(PaymentRefundFailedListener);
    service
        .mount(consumers, routes::router().with_state(state))
        .await
}
