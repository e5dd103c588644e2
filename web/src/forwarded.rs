//! Who the visitor is, to the API: the pages call the API for the visitor, and the API
//! limits attempts per client address (docs/decisions/0014, 0030), so each call says
//! whom it is made for.
//!
//! Over HTTP (`--target web`) a call carries `X-Forwarded-For`: the chain the page
//! request came with, plus the address it came from — what a proxy appends — so an API
//! that trusts the web process's address (`--trusted-proxies`) finds the visitor there.
//! In-process (`--target all`) the call is handed the page request's connection
//! address and chain as they are: the API judges them exactly as if the visitor had
//! called it directly.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The page request being answered: its connection's address and its
/// `X-Forwarded-For`.
#[derive(Debug, Clone, Default)]
pub struct Visitor {
    pub peer: Option<SocketAddr>,
    pub forwarded_for: Option<String>,
}

tokio::task_local! {
    static VISITOR: Visitor;
}

/// Middleware: remember the page request's visitor while it is answered.
pub async fn remember(request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let chain: Vec<&str> = request
        .headers()
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let visitor = Visitor {
        peer,
        forwarded_for: (!chain.is_empty()).then(|| chain.join(", ")),
    };
    VISITOR.scope(visitor, next.run(request)).await
}

/// The visitor of the page being answered (none outside a page request).
pub fn visitor() -> Visitor {
    VISITOR.try_with(Visitor::clone).unwrap_or_default()
}

impl Visitor {
    /// `X-Forwarded-For` for a call over HTTP: the chain, then the visitor's address.
    pub fn forwarded_for_http(&self) -> Option<HeaderValue> {
        let peer = self.peer.map(|p| p.ip().to_string());
        let value = match (&self.forwarded_for, peer) {
            (Some(chain), Some(peer)) => format!("{chain}, {peer}"),
            (Some(chain), None) => chain.clone(),
            (None, Some(peer)) => peer,
            (None, None) => return None,
        };
        HeaderValue::from_str(&value).ok()
    }

    /// `X-Forwarded-For` for an in-process call: the chain as it came.
    pub fn forwarded_for_in_process(&self) -> Option<HeaderValue> {
        self.forwarded_for
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_http_the_visitor_is_appended_to_the_chain() {
        let visitor = Visitor {
            peer: Some("10.0.0.7:5000".parse().unwrap()),
            forwarded_for: Some("203.0.113.9".into()),
        };
        assert_eq!(
            visitor.forwarded_for_http().unwrap(),
            "203.0.113.9, 10.0.0.7"
        );
        assert_eq!(visitor.forwarded_for_in_process().unwrap(), "203.0.113.9");
        let direct = Visitor {
            peer: Some("[2001:db8::1]:443".parse().unwrap()),
            forwarded_for: None,
        };
        assert_eq!(direct.forwarded_for_http().unwrap(), "2001:db8::1");
        assert!(direct.forwarded_for_in_process().is_none());
        assert!(Visitor::default().forwarded_for_http().is_none());
    }
}
