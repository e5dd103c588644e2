//! Auth service: accounts and sessions (`/api/users/*`).
//!
//! Keeps a row per session (`sessions`) and publishes `session:revoked` through its
//! outbox when sessions end early (sign-out, a password change); like every service it
//! refuses the revoked sessions it heard of (`ticketing_kit::sessions`).

mod domain;
mod limits;
mod password;
mod routes;
mod sessions;
mod users;

use std::time::Duration;

use axum::extract::FromRef;
use ticketing_bus::Consumers;
use ticketing_contracts::events::groups;
use ticketing_kit::auth::JwtKeys;
use ticketing_kit::client::TrustedProxies;
use ticketing_kit::health::ReadyCheck;
use ticketing_kit::rate_limit::SharedLimits;
use ticketing_kit::runtime::{Mounted, Runtime};
use ticketing_store::retention::spawn_table_pruner;
use ticketing_store::{Migrations, Store};

pub use limits::{
    LimitSettings, Limits, SharedSettings, DEFAULT_PER_ACCOUNT_PER_MINUTE,
    DEFAULT_PER_ADDRESS_PER_MINUTE,
};
pub use password::{HashSettings, Hasher};

pub const SERVICE: &str = "auth";

pub static MIGRATIONS: Migrations =
    ticketing_store::migrations!["0001_users.sql", "0002_sessions.sql"];

/// What only the auth service is configured with.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Mark session cookies `Secure` (served over HTTPS).
    pub cookie_secure: bool,
    /// Rate limits of sign-in and sign-up.
    pub limits: LimitSettings,
    /// The global cap on password hashing.
    pub hashing: HashSettings,
}

#[derive(Clone, FromRef)]
pub struct AppState {
    pub store: Store,
    pub keys: JwtKeys,
    pub hasher: Hasher,
    pub cookie_secure: bool,
    pub limits: Limits,
    pub trusted_proxies: TrustedProxies,
}

/// Open the auth database and return the service's routes.
pub async fn mount(rt: &Runtime, settings: &Settings) -> anyhow::Result<Mounted> {
    let store = rt.open_store(SERVICE, &MIGRATIONS).await?;
    let mut tasks = Vec::new();
    rt.start_outbox(&store, &mut tasks);
    let (keys, revoked) = rt.watch_revoked_sessions(&store, &mut tasks).await?;
    tasks.push(spawn_table_pruner(
        store.clone(),
        "sessions",
        "expires_at",
        "sid",
        sessions::KEEP_AFTER_EXPIRY,
        rt.shutdown.clone(),
    ));
    let shared = match &settings.limits.shared {
        Some(shared) => {
            Some(SharedLimits::connect(&shared.redis_url, &shared.prefix, &rt.shutdown).await?)
        }
        None => None,
    };
    let limits = Limits::new(&settings.limits, shared.as_ref());
    let state = AppState {
        store: store.clone(),
        keys,
        hasher: Hasher::new(&settings.hashing),
        cookie_secure: settings.cookie_secure,
        limits: limits.clone(),
        trusted_proxies: settings.limits.trusted_proxies.clone(),
    };
    let shutdown = rt.shutdown.clone();
    let pruning = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => limits.prune(),
            }
        }
    });
    tasks.push(pruning);
    let consumers = Consumers::new(groups::AUTH, &store).listen(revoked);
    tasks.extend(rt.start_consumers(consumers).await?);
    Ok(Mounted {
        name: SERVICE,
        router: routes::router().with_state(state),
        ready: vec![ReadyCheck::store("auth-db", &store)],
        tasks,
    })
}
