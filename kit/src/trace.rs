//! The HTTP side of trace propagation: a request continues its caller's W3C trace
//! context (or starts one), and the response names the server span.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use ticketing_bus::trace::TraceContext;

/// Continue the caller's trace (or start one) for the request, and answer with the
/// `traceparent` of the server span.
pub async fn trace_http(req: Request, next: Next) -> Response {
    let context = request_context(&req);
    let traceparent = context.traceparent();
    let mut response = context.scope(next.run(req)).await;
    if let Ok(value) = HeaderValue::from_str(&traceparent) {
        response.headers_mut().insert("traceparent", value);
    }
    response
}

fn request_context(req: &Request) -> TraceContext {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    header("traceparent")
        .and_then(|tp| TraceContext::parse(tp, header("tracestate")))
        .map(|parent| parent.child())
        .unwrap_or_else(TraceContext::root)
}
