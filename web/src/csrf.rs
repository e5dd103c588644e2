//! Cross-site request forgery protection for every state-changing form post, in three
//! layers: the session cookie is `SameSite=Lax` (set by the API), every form carries a
//! token that must equal the visitor's `csrf` cookie (`SameSite=Strict`, `HttpOnly`; a
//! cross-site page can neither read it nor make the browser send it), and a post whose
//! `Origin` (or, without one, `Referer`) names another host is refused outright.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::header::{COOKIE, HOST, ORIGIN, REFERER, SET_COOKIE};
use http::{HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::PageError;
use crate::Settings;

pub const COOKIE_NAME: &str = "csrf";
/// Form posts are a few fields; anything larger is not one of ours.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The visitor's token, put in every form.
#[derive(Debug, Clone)]
pub struct CsrfToken {
    pub value: String,
    /// Minted for this request: the browser had none, so nothing it posts can match.
    fresh: bool,
}

/// Gives every request a token: the visitor's cookie, or a new one set on the response.
pub async fn ensure_token(
    State(settings): State<Settings>,
    mut req: Request,
    next: Next,
) -> Response {
    let existing = cookie(req.headers(), COOKIE_NAME).filter(|t| is_well_formed(t));
    let token = match existing {
        Some(value) => CsrfToken {
            value: value.to_owned(),
            fresh: false,
        },
        None => CsrfToken {
            value: URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()),
            fresh: true,
        },
    };
    req.extensions_mut().insert(token.clone());
    let mut response = next.run(req).await;
    if token.fresh {
        let cookie = format!(
            "{COOKIE_NAME}={}; Path=/; HttpOnly; SameSite=Strict{}",
            token.value,
            if settings.cookie_secure {
                "; Secure"
            } else {
                ""
            }
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
    response
}

fn is_well_formed(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The value of cookie `name` among the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// A form post that passed the CSRF checks, decoded into `T`.
pub struct CsrfForm<T>(pub T);

#[derive(Deserialize)]
struct TokenField {
    #[serde(default)]
    csrf: String,
}

impl<S, T> FromRequest<S> for CsrfForm<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = PageError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !same_origin(req.headers()) {
            tracing::info!("form post refused: cross-origin");
            return Err(PageError::Forbidden);
        }
        let expected = req
            .extensions()
            .get::<CsrfToken>()
            .filter(|t| !t.fresh)
            .map(|t| t.value.clone());
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|_| PageError::BadForm)?;
        if body.len() > MAX_FORM_BYTES {
            return Err(PageError::BadForm);
        }
        let submitted = serde_urlencoded::from_bytes::<TokenField>(&body)
            .map_err(|_| PageError::BadForm)?
            .csrf;
        match expected {
            Some(expected) if constant_time_eq(expected.as_bytes(), submitted.as_bytes()) => {}
            _ => {
                tracing::info!("form post refused: missing or wrong CSRF token");
                return Err(PageError::Forbidden);
            }
        }
        serde_urlencoded::from_bytes::<T>(&body)
            .map(CsrfForm)
            .map_err(|_| PageError::BadForm)
    }
}

/// A post's `Origin`, or without one its `Referer`, must name the host it was sent to.
/// Neither header (privacy tools strip them) leaves the decision to the token.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return true;
    };
    let source = headers
        .get(ORIGIN)
        .or_else(|| headers.get(REFERER))
        .and_then(|h| h.to_str().ok());
    match source {
        None => true,
        // Sandboxed frames and some redirects send `Origin: null`.
        Some(source) => url::Url::parse(source)
            .map(|url| same_authority(&url, host))
            .unwrap_or(false),
    }
}

/// `url`'s host and port are the `Host` header's (a port left out is the scheme's).
fn same_authority(url: &url::Url, host_header: &str) -> bool {
    let Ok(authority) = host_header.parse::<http::uri::Authority>() else {
        return false;
    };
    let Some(port) = url.port_or_known_default() else {
        return false;
    };
    url.host_str()
        .is_some_and(|h| h.eq_ignore_ascii_case(authority.host()))
        && authority.port_u16().unwrap_or(port) == port
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn origin_must_match_host() {
        assert!(same_origin(&headers(&[
            ("host", "localhost:3000"),
            ("origin", "http://localhost:3000")
        ])));
        assert!(same_origin(&headers(&[
            ("host", "shop.test"),
            ("origin", "https://shop.test")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "localhost:3000"),
            ("origin", "http://evil.test")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "localhost:3000"),
            ("origin", "null")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "localhost:3000"),
            ("referer", "http://evil.test/x")
        ])));
        assert!(same_origin(&headers(&[
            ("host", "localhost:3000"),
            ("referer", "http://localhost:3000/auth/signin")
        ])));
        assert!(same_origin(&headers(&[("host", "localhost:3000")])));
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let map = headers(&[("cookie", "xcsrf=1; csrf=abc; session=s")]);
        assert_eq!(cookie(&map, "csrf"), Some("abc"));
        assert_eq!(cookie(&map, "session"), Some("s"));
        assert_eq!(cookie(&map, "nope"), None);
    }
}
