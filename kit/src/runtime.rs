//! What a service is started with, and what it hands back to the `ticketing` binary.

use std::collections::HashMap;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;

use ticketing_bus::tables as event_tables;
use ticketing_bus::{Consumers, Outbox, SharedBus};
use ticketing_store::{DatabaseConfig, DbLocation, Migrations, Store};

use crate::auth::JwtKeys;
use crate::health::ReadyCheck;

/// Settings and shared handles every service gets. A setting only one service uses
/// (the order TTL, the cookie's `Secure` flag) is that service's own `Settings`.
#[derive(Clone)]
pub struct Runtime {
    pub database: DatabaseConfig,
    /// Per-service database URLs that replace the derived ones (`service` → URL).
    pub database_overrides: HashMap<String, String>,
    pub keys: JwtKeys,
    /// The event bus: JetStream in distributed mode, the in-process bus (its log in the
    /// data directory) in embedded mode.
    pub bus: SharedBus,
    /// Cancelled when the process shuts down; background workers stop on it.
    pub shutdown: CancellationToken,
}

impl Runtime {
    pub fn location(&self, service: &str) -> anyhow::Result<DbLocation> {
        match self.database_overrides.get(service) {
            Some(url) => Ok(DbLocation::from_url(url)),
            None => self.database.location(service),
        }
    }

    /// Open (creating and migrating) `service`'s database, with the outbox and inbox
    /// tables every service keeps.
    pub async fn open_store(
        &self,
        service: &str,
        migrations: &Migrations,
    ) -> anyhow::Result<Store> {
        let store = Store::open(&self.location(service)?, migrations).await?;
        event_tables::install(&store).await?;
        crate::telemetry::spawn_outbox_sampler(service, &store, self.shutdown.clone());
        Ok(store)
    }

    /// The relay of `store`'s outbox to the bus, started; its task is pushed to `tasks`.
    /// Let `store`'s service take `Idempotency-Key`s: their table, and its pruning.
    pub async fn keep_idempotency_keys(
        &self,
        store: &Store,
        tasks: &mut Vec<JoinHandle<()>>,
    ) -> anyhow::Result<()> {
        crate::idempotency::install(store).await?;
        tasks.push(crate::idempotency::spawn_pruner(
            store.clone(),
            self.shutdown.clone(),
        ));
        Ok(())
    }

    pub fn start_outbox(&self, store: &Store, tasks: &mut Vec<JoinHandle<()>>) -> Outbox {
        let outbox = Outbox::new(store.clone(), self.bus.clone());
        tasks.push(outbox.spawn(self.shutdown.clone()));
        outbox
    }

    /// Subscribe a service's listeners; their tasks end at shutdown.
    pub async fn start_consumers(
        &self,
        consumers: Consumers,
    ) -> anyhow::Result<Vec<JoinHandle<()>>> {
        crate::telemetry::install_recorder();
        consumers.start(&self.bus, &self.shutdown).await
    }
}

/// A started service: its routes (with their OpenAPI description), what its readiness
/// depends on, and its background workers.
pub struct Mounted {
    pub name: &'static str,
    pub router: OpenApiRouter,
    pub ready: Vec<ReadyCheck>,
    pub tasks: Vec<JoinHandle<()>>,
}
