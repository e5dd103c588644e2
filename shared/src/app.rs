//! Assemble started services into one HTTP application: their routes, the OpenAPI
//! document, health, metrics, the 404 fallback and the body limit.

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::OpenApi;

use crate::error::not_found;
use crate::health::{self, ReadyCheck};
use crate::json::MAX_BODY_BYTES;
use crate::runtime::Mounted;
use crate::telemetry;

/// The HTTP application serving `services`, plus `extra` routes (the web pages).
pub fn compose(services: &mut [Mounted], extra: Router, extra_ready: Vec<ReadyCheck>) -> Router {
    let mut api = utoipa_axum::router::OpenApiRouter::with_openapi(base_document());
    let mut ready = extra_ready;
    for service in services.iter_mut() {
        let router = std::mem::take(&mut service.router);
        api = api.merge(router);
        ready.append(&mut service.ready);
    }
    let (router, doc) = api.split_for_parts();
    router
        .route("/api/openapi.json", get(move || async move { Json(doc) }))
        .nest("/api", Router::new().fallback(not_found))
        .merge(extra)
        .merge(health::router(ready))
        .merge(telemetry::metrics_router())
        .layer(axum::middleware::from_fn(telemetry::track_http))
        .layer(axum::middleware::from_fn(crate::trace::trace_http))
        // Bodies above the limit are refused by `ApiJson` with 413 in the error format.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

fn base_document() -> OpenApi {
    let mut doc = OpenApi::default();
    doc.info.title = "Ticketing".into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description =
        Some("Event-driven ticket marketplace: auth, tickets, orders, payments.".into());
    doc
}
