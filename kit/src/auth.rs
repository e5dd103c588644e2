//! Sessions: HS256 JWTs carried in the seed-compatible `session` cookie (base64 of
//! `{"jwt": "<token>"}`) or in `Authorization: Bearer`.
//!
//! A bad, expired, foreign or `alg: none` token means "anonymous", never an error; so
//! does a token whose session was revoked (its `sid` in the service's
//! [`Revoked`] set, kept by [`crate::sessions`]).

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
use crate::sessions::Revoked;
use ticketing_contracts::time::now_millis;

/// The cookie we set (cookie-session 2.x's name).
pub const SESSION_COOKIE: &str = "session";
/// The seed's cookie name (cookie-session 1.x), accepted on input.
pub const LEGACY_SESSION_COOKIE: &str = "express:sess";

/// The token's claims, as the seed's services read them, plus `exp` and `sid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Claims {
    pub id: UserId,
    pub email: String,
    pub iat: i64,
    pub exp: i64,
    /// The session this token belongs to (random, 128 bits): what sign-out revokes.
    /// Absent from tokens issued before sessions could be revoked; they live until `exp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

impl Claims {
    /// When the token expires, in milliseconds since the epoch.
    pub fn expires_at_millis(&self) -> i64 {
        self.exp.saturating_mul(1000)
    }
}

struct KeysInner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

/// Signing and verification keys, with the session lifetime, and the sessions revoked
/// (a service's own set, [`JwtKeys::with_revoked`]; none: nothing is revoked).
#[derive(Clone)]
pub struct JwtKeys {
    inner: Arc<KeysInner>,
    revoked: Option<Revoked>,
}

impl JwtKeys {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        // Pinned to HS256: a token naming any other algorithm (or none) is refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp"]);
        JwtKeys {
            inner: Arc::new(KeysInner {
                encoding: EncodingKey::from_secret(secret),
                decoding: DecodingKey::from_secret(secret),
                validation,
                ttl,
            }),
            revoked: None,
        }
    }

    /// The same keys, refusing the sessions of `revoked`.
    pub fn with_revoked(&self, revoked: Revoked) -> JwtKeys {
        JwtKeys {
            inner: self.inner.clone(),
            revoked: Some(revoked),
        }
    }

    /// The sessions these keys refuse, if they are given any.
    pub fn revoked(&self) -> Option<&Revoked> {
        self.revoked.as_ref()
    }

    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// Sign a session token for a user, for a new session (a random `sid`).
    pub fn issue(&self, id: &str, email: &str) -> anyhow::Result<(String, Claims)> {
        let iat = now_millis() / 1000;
        let claims = Claims {
            id: id.into(),
            email: email.to_owned(),
            iat,
            exp: iat + self.inner.ttl.as_secs() as i64,
            sid: Some(crate::sessions::new_session_id()),
        };
        let token = self.sign(&claims)?;
        Ok((token, claims))
    }

    /// Sign `claims` as they are.
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &self.inner.encoding,
        )?)
    }

    /// The claims of a valid token of a session not revoked; `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let claims =
            jsonwebtoken::decode::<Claims>(token, &self.inner.decoding, &self.inner.validation)
                .ok()?
                .claims;
        match (&self.revoked, &claims.sid) {
            (Some(revoked), Some(sid)) if revoked.contains(sid) => None,
            _ => Some(claims),
        }
    }

    /// The session cookie carrying `token`.
    pub fn session_cookie(&self, token: &str, secure: bool) -> HeaderValue {
        let value = STANDARD.encode(serde_json::json!({ "jwt": token }).to_string());
        let cookie = format!(
            "{SESSION_COOKIE}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{}",
            self.inner.ttl.as_secs(),
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
            sid: None,
        };
        let token = k.sign(&claims).unwrap();
        assert_eq!(k.verify(&token), None);
    }

    #[test]
    fn revoked_sessions_are_strangers_and_tokens_without_sid_live_on() {
        let revoked = Revoked::default();
        let k = keys().with_revoked(revoked.clone());
        let (a, a_claims) = k.issue("u1", "a@b.co").unwrap();
        let (b, _) = k.issue("u1", "a@b.co").unwrap();
        assert!(a_claims.sid.as_ref().is_some_and(|s| s.len() >= 22));
        revoked.insert(a_claims.sid.clone().unwrap(), a_claims.expires_at_millis());
        assert_eq!(k.verify(&a), None);
        assert!(k.verify(&b).is_some());
        // Keys without the set (another service's) still take it.
        assert!(keys().verify(&a).is_some());
        let old = Claims {
            sid: None,
            ..a_claims
        };
        assert!(k.verify(&k.sign(&old).unwrap()).is_some());
    }
}
