//! `GET /healthz` (the process is alive) and `GET /readyz` (every store and bus it
//! depends on answers; 503 otherwise).

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use futures::future::BoxFuture;
use serde_json::json;

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
