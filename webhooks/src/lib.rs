//! Webhooks service: signed outbound deliveries (`/api/webhooks`).
//!
//! A seller registers endpoints (a URL and the subjects it wants); the service consumes
//! every subject, keeps replicas of listings (their owner) and orders (their listing),
//! and queues a delivery per (endpoint, event) in the same transaction as the inbox mark
//! of the event. Workers send them signed the Standard Webhooks way, one key (order,
//! else listing) strictly in sequence per endpoint, other keys in parallel, retrying with
//! backoff until the endpoint answers 2xx. See docs/decisions/0031-outbound-webhooks.md.

mod deliveries;
mod endpoints;
mod intake;
mod public_dns;
mod routes;
mod tables;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use ticketing_bus::Consumers;
use ticketing_contracts::api::webhooks::SUBJECTS;
use ticketing_contracts::events::groups;
use ticketing_kit::auth::JwtKeys;
use ticketing_kit::health::ReadyCheck;
use ticketing_kit::runtime::{Mounted, Runtime};
use ticketing_store::{Migrations, Store};
use tokio::sync::Notify;

pub const SERVICE: &str = "webhooks";

pub static MIGRATIONS: Migrations = ticketing_store::migrations!["0001_webhooks.sql"];

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Accept endpoints on loopback and private addresses (tests, a local receiver).
    pub allow_private: bool,
    /// One attempt's limit, connection to answer.
    pub timeout: Duration,
    /// The first retry's pause; doubled for each further one up to `backoff_max`, with
    /// jitter.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How long a delivery is retried before it is dead.
    pub give_up_after: Duration,
    /// How long delivered (and dead) deliveries are kept.
    pub retention: Duration,
    /// Keys of one endpoint sent at once, at most.
    pub per_endpoint: usize,
    /// Deliveries in flight in this process, at most.
    pub max_in_flight: usize,
    /// How often a worker looks for due deliveries when nothing woke it.
    pub poll: Duration,
    /// Run delivery workers in this process.
    pub deliver: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allow_private: false,
            timeout: Duration::from_secs(10),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(600),
            give_up_after: Duration::from_secs(72 * 3600),
            retention: Duration::from_secs(7 * 24 * 3600),
            per_endpoint: 8,
            max_in_flight: 256,
            poll: Duration::from_millis(250),
            deliver: true,
        }
    }
}

impl Settings {
    /// How long a claimed delivery stays with its worker: its attempt's timeout and a
    /// margin. A worker that dies lets it lapse and another takes it over.
    pub fn lease(&self) -> Duration {
        self.timeout + Duration::from_secs(5)
    }
}

#[derive(Clone, FromRef)]
pub struct AppState {
    pub store: Store,
    pub keys: JwtKeys,
    pub settings: Arc<Settings>,
    /// Wakes this process's delivery worker (a commit queued or requeued deliveries).
    pub wake: Arc<Notify>,
}

/// Open the webhooks database, subscribe to every subject, start the delivery worker
/// and return the routes.
pub async fn mount(rt: &Runtime, settings: &Settings) -> anyhow::Result<Mounted> {
    let store = rt.open_store(SERVICE, &MIGRATIONS).await?;
    tables::install(&store).await?;
    let mut tasks = Vec::new();
    // Its API refuses revoked sessions as every other service's does.
    let (keys, revoked) = rt.watch_revoked_sessions(&store, &mut tasks).await?;
    let state = AppState {
        store: store.clone(),
        keys,
        settings: Arc::new(settings.clone()),
        wake: Arc::new(Notify::new()),
    };
    // The intake is no listener of the usual shape (it needs each event's id, not just
    // its payload): it subscribes to each subject itself; the consumers bring the
    // revocation listener, the inbox pruner and the metrics recorder.
    tasks.extend(
        rt.start_consumers(Consumers::new(groups::WEBHOOKS, &store).listen(revoked))
            .await?,
    );
    for subject in SUBJECTS {
        let handler = Arc::new(intake::Intake::new(store.clone(), state.wake.clone()));
        tasks.push(
            rt.bus
                .subscribe(groups::WEBHOOKS, subject, handler, rt.shutdown.clone())
                .await?,
        );
    }
    if settings.deliver {
        // SQLite's one writer runs queueing and promotion one after the other: nothing
        // is missed there.
        if store.backend() == ticketing_store::Backend::Postgres {
            tasks.push(deliveries::spawn_promoter(
                store.clone(),
                rt.shutdown.clone(),
            ));
        }
        tasks.push(worker::spawn(
            store.clone(),
            state.settings.clone(),
            state.wake.clone(),
            rt.shutdown.clone(),
        )?);
    }
    tasks.push(deliveries::spawn_pruner(
        store.clone(),
        settings.retention,
        rt.shutdown.clone(),
    ));
    tasks.push(worker::spawn_sampler(store.clone(), rt.shutdown.clone()));
    Ok(Mounted {
        name: SERVICE,
        router: routes::router().with_state(state),
        ready: vec![ReadyCheck::store(format!("{SERVICE}-db"), &store)],
        tasks,
    })
}
