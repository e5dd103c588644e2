//! Check-in service: QR passes and gates (`/api/passes`, `/api/checkin`).
//!
//! A pass per unit of a completed order (`order:completed`), its code signed with the
//! service's Ed25519 key so that gates verify it offline; a refund (`order:cancelled`)
//! revokes an order's passes, a reissue raises a pass's epoch and revokes its older
//! codes. Sellers register gate devices for their listings (a replica of listings'
//! owners); devices redeem scans online, upload offline batches, and follow a changes
//! feed (revocations, check-ins). Uniqueness is the database's: one check-in per pass,
//! one answer per (device, nonce). See docs/decisions/0033-checkin-and-passes.md.

mod changes;
pub mod code;
mod devices;
mod gate;
mod listeners;
mod listings;
mod passes;
pub mod retention;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use ticketing_bus::Consumers;
use ticketing_contracts::events::groups;
use ticketing_kit::arrival::Arrivals;
use ticketing_kit::auth::JwtKeys;
use ticketing_kit::runtime::{Mounted, Runtime};
use ticketing_store::{Migrations, Store};

use crate::code::Signer;

pub const SERVICE: &str = "checkin";

pub static MIGRATIONS: Migrations =
    ticketing_store::migrations!["0001_checkin.sql", "0002_listing_retention.sql"];

/// What only the check-in service is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The 32-byte Ed25519 seed codes are signed with; every process of the service must
    /// have the same. Without one the service keeps a generated key in its database.
    pub signing_key: Option<[u8; 32]>,
    /// How long after a listing's event its scans and changes feed are kept (passes and
    /// check-ins stay). Listings without an event time keep them.
    pub retention: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            signing_key: None,
            retention: retention::DEFAULT,
        }
    }
}

#[derive(Clone, FromRef)]
pub struct AppState {
    pub store: Store,
    pub keys: JwtKeys,
    pub signer: Arc<Signer>,
    /// Listings on their way to the replica, which a device's registration may wait for.
    pub arriving: Arrivals,
    /// How often a long poll of the changes feed looks at the table.
    pub poll: Duration,
}

/// Open the check-in database, start its relay and listeners, and return its routes.
pub async fn mount(rt: &Runtime, settings: &Settings) -> anyhow::Result<Mounted> {
    let mut service = rt.start_keyed(SERVICE, &MIGRATIONS).await?;
    let store = &service.store;
    changes::install(store).await?;
    let signer = Signer::load(store, settings.signing_key.as_ref()).await?;
    let state = AppState {
        store: store.clone(),
        keys: service.keys.clone(),
        signer: Arc::new(signer),
        arriving: Arrivals::new("ticket", store, "listings"),
        poll: changes::POLL,
    };
    let consumers = Consumers::new(groups::CHECKIN, store)
        .listen(listings::CreatedListener(state.arriving.clone()))
        .listen(listings::UpdatedListener(state.arriving.clone()))
        .listen(listeners::OrderCompletedListener)
        .listen(listeners::OrderCancelledListener);
    let pruner = retention::spawn(store.clone(), settings.retention, rt.shutdown.clone());
    service.tasks.push(pruner);
    service
        .mount(consumers, routes::router().with_state(state))
        .await
}
