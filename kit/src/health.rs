//! `GET /healthz` (the process is alive) and `GET /readyz` (every store and bus it
//! depends on answers, and the process is not stopping; 503 otherwise).
//!
//! A process listens only once its stores and bus are open (the `ticketing` binary binds
//! after starting its services), so before that it refuses connections — which a
//! gateway retries on another replica whatever the method — and `/readyz` never answers
//! 200 early. On SIGTERM it answers 503 first ([`ReadyCheck::serving`]), before it stops
//! accepting.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use futures::future::BoxFuture;
use serde_json::json;

use tokio_util::sync::CancellationToken;

use ticketing_bus::SharedBus;
use ticketing_store::Store;

type CheckFn = dyn Fn() -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync;

/// One dependency a process needs to serve.
#[derive(Clone)]
pub struct ReadyCheck {
    name: String,
    check: Arc<CheckFn>,
}

impl ReadyCheck {
    pub fn new<F, Fut>(name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        ReadyCheck {
            name: name.into(),
            check: Arc::new(move || Box::pin(check())),
        }
    }

    pub fn bus(name: impl Into<String>, bus: &SharedBus) -> Self {
        let bus = bus.clone();
        Self::new(name, move || {
            let bus = bus.clone();
            async move { bus.ping().await }
        })
    }

    /// Ready until `stopping` is cancelled: a process told to stop reports itself
    /// unavailable at once, while it still serves, so that load balancers stop sending
    /// it requests before it stops accepting connections.
    pub fn serving(stopping: &CancellationToken) -> Self {
        let stopping = stopping.clone();
        Self::new("serving", move || {
            let stopping = stopping.is_cancelled();
            async move {
                anyhow::ensure!(!stopping, "shutting down");
                Ok(())
            }
        })
    }

    pub fn store(name: impl Into<String>, store: &Store) -> Self {
        let store = store.clone();
        Self::new(name, move || {
            let store = store.clone();
            async move { store.ping().await }
        })
    }
}

pub fn router(checks: Vec<ReadyCheck>) -> Router {
    let checks = Arc::new(checks);
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route(
            "/readyz",
            get(move || {
                let checks = checks.clone();
                async move { readiness(&checks).await }
            }),
        )
}

async fn readiness(checks: &[ReadyCheck]) -> impl IntoResponse {
    let results = futures::future::join_all(checks.iter().map(|c| async move {
        let outcome = tokio::time::timeout(Duration::from_secs(2), (c.check)()).await;
        let ok = matches!(outcome, Ok(Ok(())));
        if !ok {
            tracing::warn!(check = %c.name, "readiness check failed");
        }
        (c.name.clone(), ok)
    }))
    .await;
    let all_ok = results.iter().all(|(_, ok)| *ok);
    let body: serde_json::Map<String, serde_json::Value> = results
        .into_iter()
        .map(|(name, ok)| (name, json!(if ok { "ok" } else { "unavailable" })))
        .collect();
    let status = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"status": if all_ok { "ok" } else { "unavailable" }, "checks": body})),
    )
}
