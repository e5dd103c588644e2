//! Assemble started services into one HTTP application: their routes, the OpenAPI
//! document, health, metrics, the 404 fallback, the body limit and load shedding.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::Semaphore;
use utoipa::openapi::OpenApi;

use crate::error::{not_found, ApiError};
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
    let (router, mut doc) = api.split_for_parts();
    complete_document(&mut doc);
    let doc = document_json(&doc);
    let router = router
        .route("/api/openapi.json", get(move || async move { Json(doc) }))
        .nest("/api", Router::new().fallback(not_found))
        .merge(extra);
    // Health and metrics stay outside the limit: they must answer most when busy.
    shed_load(router, MAX_IN_FLIGHT)
        .merge(health::router(ready))
        .merge(telemetry::metrics_router())
        .layer(axum::middleware::from_fn(telemetry::track_http))
        .layer(axum::middleware::from_fn(crate::trace::trace_http))
        // Bodies above the limit are refused by `ApiJson` with 413 in the error format.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Requests handled at once; more are refused at once with 503 and `Retry-After`.
///
/// Without a bound, a client sending faster than the databases commit makes requests
/// queue in memory without end (an open-loop benchmark took the process past 2 GB):
/// refusing early keeps memory flat and latency of the admitted requests bounded, and
/// tells clients (and load balancers) to come back.
pub const MAX_IN_FLIGHT: usize = 1024;

/// Refuse requests beyond `max` in flight with 503 in the error format.
pub fn shed_load(router: Router, max: usize) -> Router {
    let permits = Arc::new(Semaphore::new(max));
    router.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let permits = permits.clone();
            async move {
                let Ok(_permit) = permits.try_acquire_owned() else {
                    metrics::counter!("http_requests_shed_total").increment(1);
                    let mut response = ApiError::Unavailable.into_response();
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                    return response;
                };
                next.run(request).await
            }
        },
    ))
}

fn base_document() -> OpenApi {
    use utoipa::openapi::security::{
        ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
    };
    let mut doc = OpenApi::default();
    doc.info.title = "Ticketing".into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description =
        Some("Event-driven ticket marketplace: auth, tickets, orders, payments.".into());
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "session",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            "session",
            "Set by sign-up and sign-in: base64 of `{\"jwt\": \"<token>\"}` (the seed's              `express:sess` is accepted too)",
        ))),
    );
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some("The session's HS256 token, for API clients"))
                .build(),
        ),
    );
    components.add_security_scheme(
        "device",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "Authorization",
            "A gate device's token, shown once when its seller registered it: \
             `Authorization: Device <token>`",
        ))),
    );
    doc
}

/// The document as served. utoipa 5 writes a link's fields in snake case
/// (`operation_id`, `request_body`); OpenAPI names them `operationId`, `requestBody`,
/// `operationRef`, and tools ignore links spelled otherwise.
fn document_json(doc: &OpenApi) -> serde_json::Value {
    let mut json = serde_json::to_value(doc).expect("the OpenAPI document serialises");
    fix_link_keys(&mut json);
    json
}

fn fix_link_keys(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(links)) = map.get_mut("links") {
                for link in links.values_mut() {
                    if let serde_json::Value::Object(link) = link {
                        for (from, to) in [
                            ("operation_id", "operationId"),
                            ("operation_ref", "operationRef"),
                            ("request_body", "requestBody"),
                        ] {
                            if let Some(v) = link.remove(from) {
                                link.insert(to.to_owned(), v);
                            }
                        }
                    }
                }
            }
            for v in map.values_mut() {
                fix_link_keys(v);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(fix_link_keys),
        _ => {}
    }
}

/// The answers every operation may give whatever it does, added where a route does not
/// describe them itself: 503 when the process sheds load, 500 for the unexpected, and
/// for operations with a body 413 (over 1 MiB) and 415 (not JSON) — all in the error
/// format.
fn complete_document(doc: &mut OpenApi) {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

    let error = |description: &str, retry_after: bool| {
        let mut response = ResponseBuilder::new().description(description).content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        );
        if retry_after {
            response = response.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::Integer))
                    .description(Some("Seconds to wait before retrying"))
                    .build(),
            );
        }
        response.build()
    };
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let has_body = operation.request_body.is_some();
            let responses = &mut operation.responses.responses;
            let mut add = |status: &str, response: utoipa::openapi::Response| {
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| response.into());
            };
            if has_body {
                add("413", error("Request body larger than 1 MiB", false));
                add("415", error("The body is not JSON (`Content-Type`)", false));
            }
            add(
                "500",
                error("Something went wrong (`Something went wrong.`)", false),
            );
            add(
                "503",
                error("The process is at capacity; retry after a moment", true),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tokio::sync::Notify;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn requests_beyond_the_limit_are_refused_with_503() {
        let release = Arc::new(Notify::new());
        let slow = {
            let release = release.clone();
            get(move || async move {
                release.notified().await;
                "done"
            })
        };
        let app = shed_load(Router::new().route("/slow", slow), 1);
        let request = || Request::get("/slow").body(Body::empty()).unwrap();

        let first = tokio::spawn(app.clone().oneshot(request()));
        // Let the first request take the only slot.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let refused = app.clone().oneshot(request()).await.unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()["retry-after"], "1");
        let body = axum::body::to_bytes(refused.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["errors"][0]["message"], "Service unavailable.");

        release.notify_one();
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        // The slot is free again.
        let again = tokio::spawn(app.clone().oneshot(request()));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        release.notify_one();
        assert_eq!(again.await.unwrap().unwrap().status(), StatusCode::OK);
    }
}
