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
use crate::sessions::RevokedListener;

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
    /// tables every service keeps, and start its upkeep ([`ticketing_store::upkeep`]).
    pub async fn open_store(
        &self,
        service: &str,
        migrations: &Migrations,
    ) -> anyhow::Result<Store> {
        let store = Store::open(&self.location(service)?, migrations).await?;
        event_tables::install(&store).await?;
        crate::telemetry::spawn_outbox_sampler(service, &store, self.shutdown.clone());
        ticketing_store::upkeep::spawn(&store, self.shutdown.clone());
        Ok(store)
    }

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

    /// The relay of `store`'s outbox to the bus, started; its task is pushed to `tasks`.
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

    /// Start a service that takes writes with `Idempotency-Key`s (orders, tickets,
    /// payments): its store opened ([`Runtime::open_store`]), the relay of its outbox
    /// and the pruning of its keys started. [`Starting::mount`] finishes it.
    pub async fn start_keyed(
        &self,
        service: &'static str,
        migrations: &Migrations,
    ) -> anyhow::Result<Starting<'_>> {
        let store = self.open_store(service, migrations).await?;
        let mut tasks = Vec::new();
        self.start_outbox(&store, &mut tasks);
        self.keep_idempotency_keys(&store, &mut tasks).await?;
        let (keys, revoked) = self.watch_revoked_sessions(&store, &mut tasks).await?;
        Ok(Starting {
            rt: self,
            name: service,
            store,
            keys,
            revoked,
            tasks,
        })
    }

    /// Keep `store`'s service's revoked sessions ([`crate::sessions::watch`]): the keys
    /// that refuse them, and the listener of `session:revoked` to subscribe.
    pub async fn watch_revoked_sessions(
        &self,
        store: &Store,
        tasks: &mut Vec<JoinHandle<()>>,
    ) -> anyhow::Result<(JwtKeys, RevokedListener)> {
        crate::sessions::watch(store, &self.keys, &self.shutdown, tasks).await
    }
}

/// A service being started ([`Runtime::start_keyed`]): its store, and the background
/// tasks started so far (push its own).
pub struct Starting<'rt> {
    rt: &'rt Runtime,
    name: &'static str,
    pub store: Store,
    /// The runtime's keys, refusing the sessions revoked ([`crate::sessions`]).
    pub keys: JwtKeys,
    revoked: RevokedListener,
    pub tasks: Vec<JoinHandle<()>>,
}

impl Starting<'_> {
    /// Subscribe the service's listeners (and the one of `session:revoked`) and hand it
    /// over with its routes; it is ready while its store answers (`<service>-db`).
    pub async fn mount(
        mut self,
        consumers: Consumers,
        router: OpenApiRouter,
    ) -> anyhow::Result<Mounted> {
        let consumers = consumers.listen(self.revoked);
        self.tasks.extend(self.rt.start_consumers(consumers).await?);
        Ok(Mounted {
            name: self.name,
            router,
            ready: vec![ReadyCheck::store(format!("{}-db", self.name), &self.store)],
            tasks: self.tasks,
        })
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
