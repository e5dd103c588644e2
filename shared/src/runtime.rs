//! What a service is started with, and what it hands back to the `ticketing` binary.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::JwtKeys;
use crate::events::{inbox, Handler, SharedBus, Subject};
use crate::health::ReadyCheck;
use crate::store::{DatabaseConfig, DbLocation, Store};

/// Settings and shared handles every service gets.
#[derive(Clone)]
pub struct Runtime {
    pub database: DatabaseConfig,
    /// Per-service database URLs that replace the derived ones (`service` → URL).
    pub database_overrides: HashMap<String, String>,
    pub keys: JwtKeys,
    /// Mark session cookies `Secure`.
    pub cookie_secure: bool,
    /// How long an order reserves its ticket.
    pub order_ttl: Duration,
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
}

/// A started service: its routes (with their OpenAPI description), what its readiness
/// depends on, and its background workers.
pub struct Mounted {
    pub name: &'static str,
    pub router: OpenApiRouter,
    pub ready: Vec<ReadyCheck>,
    pub tasks: Vec<JoinHandle<()>>,
}

impl Runtime {
    /// Subscribe a service's listeners as its consumer group, and keep the inbox in
    /// `store` (where the listeners mark what they handled) pruned; the returned tasks
    /// end at shutdown.
    pub async fn subscribe_all(
        &self,
        group: &str,
        store: &Store,
        handlers: impl IntoIterator<Item = (Subject, Arc<dyn Handler>)>,
    ) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let mut tasks = Vec::new();
        for (subject, handler) in handlers {
            tasks.push(
                self.bus
                    .subscribe(group, subject, handler, self.shutdown.clone())
                    .await?,
            );
        }
        tasks.push(inbox::spawn_pruner(store.clone(), self.shutdown.clone()));
        Ok(tasks)
    }
}
