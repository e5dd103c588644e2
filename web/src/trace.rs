//! One trace per click. A page request is traced by the process serving it; every API
//! call the page makes carries that trace (`traceparent`/`tracestate`, in a client span
//! of its own), over HTTP or in-process alike. A form post ends in a 303; the page the
//! browser then loads is a new request, so it is linked to the post's trace through a
//! short-lived cookie.
//!
//! The pages depend on the contracts alone: how contexts are made and spans exported is
//! the host's ([`Propagation`], given in [`WebConfig`](crate::WebConfig)).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::header::SET_COOKIE;
use http::{HeaderValue, Method};

use crate::Settings;

/// The trace of the post a redirect answered, for the page it redirects to.
pub const LINK_COOKIE: &str = "trace-link";

/// Trace propagation, as the host process does it.
pub trait Propagation: Send + Sync + 'static {
    /// A client span for one API call of the page request in progress, and the
    /// context the call carries.
    fn call(&self, method: &Method, route: &str) -> CallContext;
    /// The `traceparent` of the page request in progress, when its spans are exported
    /// (nothing to link to otherwise).
    fn current(&self) -> Option<String>;
    /// Mark the page request in progress as following from the span `traceparent`
    /// names.
    fn link(&self, traceparent: &str);
}

/// What one API call carries.
pub struct CallContext {
    /// The client span: the call runs in it.
    pub span: tracing::Span,
    pub traceparent: String,
    pub tracestate: Option<String>,
}

/// The route of an API path, for a span's name: no query, ids as `{id}` (span names
/// must not grow with the data).
pub fn route_of(path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    path.split('/')
        .map(|segment| if is_id(segment) { "{id}" } else { segment })
        .collect::<Vec<_>>()
        .join("/")
}

/// UUIDs and the seed's 24-hex ids; route words have letters past `f`.
fn is_id(segment: &str) -> bool {
    segment.len() >= 8 && segment.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// Links a page to the trace of the post that redirected to it, and hands the trace of
/// a redirecting request to the next page.
pub(crate) async fn link_redirects(
    State(settings): State<Settings>,
    req: Request,
    next: Next,
) -> Response {
    let Some(tracing) = settings.tracing.clone() else {
        return next.run(req).await;
    };
    let linked = crate::csrf::cookie(req.headers(), LINK_COOKIE).is_some_and(|traceparent| {
        tracing.link(traceparent);
        true
    });
    let mut response = next.run(req).await;
    let cookie = if response.status().is_redirection() {
        tracing.current().map(|traceparent| {
            format!(
                "{LINK_COOKIE}={traceparent}; Path=/; Max-Age=60; HttpOnly; SameSite=Lax{}",
                if settings.cookie_secure {
                    "; Secure"
                } else {
                    ""
                }
            )
        })
    } else {
        linked.then(|| format!("{LINK_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"))
    };
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::route_of;

    #[test]
    fn routes_name_ids_by_their_place() {
        assert_eq!(route_of("/api/orders"), "/api/orders");
        assert_eq!(
            route_of("/api/orders/0192f3a4-5b6c-7d8e-9f00-112233445566"),
            "/api/orders/{id}"
        );
        assert_eq!(route_of("/api/tickets?limit=20&cursor=abc"), "/api/tickets");
        assert_eq!(
            route_of("/api/queue/5f8d0d55b54764421b7156c5"),
            "/api/queue/{id}"
        );
        assert_eq!(route_of("/api/users/currentuser"), "/api/users/currentuser");
    }
}
