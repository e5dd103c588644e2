//! Sessions: HS256 JWTs carried in the seed-compatible `session` cookie (base64 of
//! `{"jwt": "<token>"}`) or in `Authorization: Bearer`.
//!
//! A bad, expired, foreign or `alg: none` token means "anonymous", never an error.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use ticketing_contracts::UserId;
use utoipa::ToSchema;

use crate::error::ApiError;
use ticketing_contracts::time::now_millis;

/// The cookie we set (cookie-session 2.x's name).
pub const SESSION_COOKIE: &str = "session";
/// The seed's cookie name (cookie-session 1.x), accepted on input.
pub const LEGACY_SESSION_COOKIE: &str = "express:sess";

/// The token's claims, as the seed's services read them, plus `exp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Claims {
    pub id: UserId,
    pub email: String,
    pub iat: i64,
    pub exp: i64,
}

struct KeysInner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

/// Signing and verification keys, with the session lifetime.
#[derive(Clone)]
pub struct JwtKeys(Arc<KeysInner>);

impl JwtKeys {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        // Pinned to HS256: a token naming any other algorithm (or none) is refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp"]);
        JwtKeys(Arc::new(KeysInner {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }))
    }

    pub fn ttl(&self) -> Duration {
        self.0.ttl
    }

    /// Sign a session token for a user.
    pub fn issue(&self, id: &str, email: &str) -> anyhow::Result<(String, Claims)> {
        let iat = now_millis() / 1000;
        let claims = Claims {
            id: id.into(),
            email: email.to_owned(),
            iat,
            exp: iat + self.0.ttl.as_secs() as i64,
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.0.encoding)?;
        Ok((token, claims))
    }

    /// The claims of a valid token; `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.0.decoding, &self.0.validation)
            .ok()
            .map(|data| data.claims)
    }

    /// The session cookie carrying `token`.
    pub fn session_cookie(&self, token: &str, secure: bool) -> HeaderValue {
        let value = STANDARD.encode(serde_json::json!({ "jwt": token }).to_string());
        let cookie = format!(
            "{SESSION_COOKIE}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{}",
            self.0.ttl.as_secs(),
            if secure { "; Secure" } else { "" }
        );
        HeaderValue::from_str(&cookie).expect("cookie is ASCII")
    }
}

/// An expired cookie that makes the browser drop the session.
pub fn cleared_session_cookie(secure: bool) -> HeaderValue {
    let cookie = format!(
        "{SESSION_COOKIE}=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&cookie).expect("cookie is ASCII")
}

/// The raw token a request carries, from the bearer header or either session cookie.
pub fn token_from_parts(parts: &Parts) -> Option<String> {
    if let Some(auth) = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(token) = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
        {
            return Some(token.trim().to_owned());
        }
    }
    for header in parts.headers.get_all(COOKIE) {
        let Ok(header) = header.to_str() else {
            continue;
        };
        for pair in header.split(';') {
            let Some((name, value)) = pair.trim().split_once('=') else {
                continue;
            };
            if name == SESSION_COOKIE || name == LEGACY_SESSION_COOKIE {
                if let Some(token) = token_from_cookie_value(value) {
                    return Some(token);
                }
            }
        }
    }
    None
}

fn token_from_cookie_value(value: &str) -> Option<String> {
    let decoded = STANDARD.decode(value.trim_matches('"')).ok()?;
    #[derive(Deserialize)]
    struct Session {
        jwt: String,
    }
    serde_json::from_slice::<Session>(&decoded)
        .ok()
        .map(|s| s.jwt)
}

/// The signed-in user, if any.
pub struct CurrentUser(pub Option<Claims>);

/// The signed-in user; 401 `User not authorized.` otherwise.
pub struct RequireUser(pub Claims);

impl<S> FromRequestParts<S> for CurrentUser
where
    JwtKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let keys = JwtKeys::from_ref(state);
        Ok(CurrentUser(
            token_from_parts(parts).and_then(|token| keys.verify(&token)),
        ))
    }
}

impl<S> FromRequestParts<S> for RequireUser
where
    JwtKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let CurrentUser(user) = CurrentUser::from_request_parts(parts, state)
            .await
            .unwrap_or(CurrentUser(None));
        user.map(RequireUser).ok_or(ApiError::NotAuthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(b"test-key", Duration::from_secs(3600))
    }

    #[test]
    fn issued_tokens_verify() {
        let (token, claims) = keys().issue("u1", "a@b.co").unwrap();
        assert_eq!(keys().verify(&token), Some(claims));
    }

    #[test]
    fn foreign_key_and_alg_none_are_strangers() {
        let (token, _) = keys().issue("u1", "a@b.co").unwrap();
        let other = JwtKeys::new(b"other", Duration::from_secs(3600));
        assert_eq!(other.verify(&token), None);

        let header = STANDARD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let payload = STANDARD.encode(r#"{"id":"u1","email":"a@b.co","iat":1,"exp":99999999999}"#);
        let unsigned = format!(
            "{}.{}.",
            header.trim_end_matches('='),
            payload.trim_end_matches('=')
        );
        assert_eq!(keys().verify(&unsigned), None);
    }

    #[test]
    fn expired_tokens_are_strangers() {
        let k = keys();
        let claims = Claims {
            id: "u1".into(),
            email: "a@b.co".into(),
            iat: 1,
            exp: 2,
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &k.0.encoding).unwrap();
        assert_eq!(k.verify(&token), None);
    }
}
