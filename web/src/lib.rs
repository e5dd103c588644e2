//! Ticketing's web client: the seed's pages (its Next.js `client/`) rendered on the
//! server. Every piece of data comes through the public HTTP API, as the seed's client
//! gets it: the visitor's session cookie is forwarded and the API's `Set-Cookie` headers
//! relayed back. Pages work without JavaScript (plain forms, post-redirect-get); the
//! scripts only enhance (the order countdown, Stripe's card field).

pub mod api;
mod assets;
mod cards;
mod csrf;
mod error;
mod format;
mod forwarded;
mod headers;
mod layout;
mod pages;
mod session;
pub mod trace;

use std::sync::Arc;

use axum::extract::Path;
use axum::middleware;
use axum::routing::get;
use axum::Router;
use http::HeaderValue;

pub use crate::api::{ApiClient, InProcessSlot};

/// How the pages are served.
pub struct WebConfig {
    pub api: ApiClient,
    /// Mark the CSRF cookie `Secure` (as the API marks the session cookie).
    pub cookie_secure: bool,
    /// Stripe publishable key (`pk_...`): Stripe.js collects the card. Without it the
    /// payment form is the sandbox's card form.
    pub stripe_publishable_key: Option<String>,
    /// How the pages' API calls join the page request's trace; `None`: they do not.
    pub tracing: Option<Arc<dyn trace::Propagation>>,
}

/// What every handler can reach.
#[derive(Clone)]
pub(crate) struct Settings(Arc<SettingsInner>);

pub(crate) struct SettingsInner {
    pub api: ApiClient,
    pub cookie_secure: bool,
    pub stripe_key: Option<String>,
    pub csp: HeaderValue,
    pub tracing: Option<Arc<dyn trace::Propagation>>,
}

impl std::ops::Deref for Settings {
    type Target = SettingsInner;
    fn deref(&self) -> &SettingsInner {
        &self.0
    }
}

/// The pages, with a fallback that answers every other path with the 404 page: merge it
/// after the API's routes, which keep `/api/*`.
pub fn router(config: WebConfig) -> Router {
    let stripe_key = config
        .stripe_publishable_key
        .filter(|k| !k.trim().is_empty());
    let settings = Settings(Arc::new(SettingsInner {
        api: config.api.traced(config.tracing.clone()),
        tracing: config.tracing,
        cookie_secure: config.cookie_secure,
        csp: headers::content_security_policy(stripe_key.is_some()),
        stripe_key,
    }));
    // Pages get a CSRF token; assets and the 404 page need none.
    pages::routes()
        .layer(middleware::from_fn_with_state(
            settings.clone(),
            csrf::ensure_token,
        ))
        .layer(middleware::from_fn_with_state(
            settings.clone(),
            trace::link_redirects,
        ))
        .route(
            "/assets/{name}",
            get(|Path(name): Path<String>| async move {
                assets::response(&name).ok_or(error::PageError::NotFound)
            }),
        )
        .fallback(|| async { error::PageError::NotFound })
        .layer(middleware::from_fn_with_state(
            settings.clone(),
            headers::security_headers,
        ))
        .layer(middleware::from_fn(forwarded::remember))
        .with_state(settings)
}
