//! Security headers on every response of the pages.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use http::HeaderValue;

use crate::Settings;

/// Our scripts and styles only, never inline; with Stripe configured, Stripe.js and the
/// frames and API it needs (it must be loaded from Stripe, and only the payment page
/// does).
pub fn content_security_policy(stripe: bool) -> HeaderValue {
    let (script, frame, connect) = if stripe {
        (
            "'self' https://js.stripe.com",
            "https://js.stripe.com https://hooks.stripe.com",
            "'self' https://api.stripe.com",
        )
    } else {
        ("'self'", "'none'", "'self'")
    };
    let policy = format!(
        "default-src 'none'; script-src {script}; style-src 'self'; img-src 'self' data:; \
         font-src 'self'; connect-src {connect}; frame-src {frame}; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    HeaderValue::from_str(&policy).expect("policy is ASCII")
}

pub async fn security_headers(
    State(settings): State<Settings>,
    req: Request,
    next: Next,
) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, settings.csp.clone());
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    // Pages show a user's own data and carry their CSRF token: never cached.
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
