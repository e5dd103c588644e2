//! Auth service: accounts and sessions (`/api/users/*`).

mod domain;
mod password;
mod routes;
mod users;

use axum::extract::FromRef;
use sqlx::migrate::Migrator;
use ticketing_shared::auth::JwtKeys;
use ticketing_shared::health::ReadyCheck;
use ticketing_shared::runtime::{Mounted, Runtime};
use ticketing_shared::store::{Migrations, Store};

pub use password::Hasher;

pub const SERVICE: &str = "auth";

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
    pub hasher: Hasher,
    pub cookie_secure: bool,
}

/// Open the auth database and return the service's routes.
pub async fn mount(rt: &Runtime) -> anyhow::Result<Mounted> {
    let store = Store::open(&rt.location(SERVICE)?, &MIGRATIONS).await?;
    let state = AppState {
        store: store.clone(),
        keys: rt.keys.clone(),
        hasher: Hasher::new(),
        cookie_secure: rt.cookie_secure,
    };
    Ok(Mounted {
        name: SERVICE,
        router: routes::router().with_state(state),
        ready: vec![ReadyCheck::store("auth-db", &store)],
        tasks: vec![],
    })
}
