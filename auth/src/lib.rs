//! Auth service: accounts and sessions (`/api/users/*`).

mod domain;
mod password;
mod routes;
mod users;

use axum::extract::FromRef;
use ticketing_kit::auth::JwtKeys;
use ticketing_kit::health::ReadyCheck;
use ticketing_kit::runtime::{Mounted, Runtime};
use ticketing_store::{Migrator, Store};

pub use password::Hasher;

pub const SERVICE: &str = "auth";

pub static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// What only the auth service is configured with.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Mark session cookies `Secure` (served over HTTPS).
    pub cookie_secure: bool,
}

#[derive(Clone, FromRef)]
pub struct AppState {
    pub store: Store,
    pub keys: JwtKeys,
    pub hasher: Hasher,
    pub cookie_secure: bool,
}

/// Open the auth database and return the service's routes.
pub async fn mount(rt: &Runtime, settings: &Settings) -> anyhow::Result<Mounted> {
    let store = Store::open(&rt.location(SERVICE)?, &MIGRATIONS).await?;
    let state = AppState {
        store: store.clone(),
        keys: rt.keys.clone(),
        hasher: Hasher::new(),
        cookie_secure: settings.cookie_secure,
    };
    Ok(Mounted {
        name: SERVICE,
        router: routes::router().with_state(state),
        ready: vec![ReadyCheck::store("auth-db", &store)],
        tasks: vec![],
    })
}
