//! Who is asking: the session cookie to forward to the API, and the CSRF token.

use axum::extract::FromRequestParts;
use http::header::COOKIE;
use http::request::Parts;

use crate::api::ApiClient;
use crate::csrf::CsrfToken;
use crate::error::PageError;
use ticketing_contracts::api::users::SessionUser;

/// The API's session cookie names: ours and the seed's (cookie-session 1.x).
const SESSION_COOKIES: [&str; 2] = ["session", "express:sess"];

/// The visitor of a page: their session (if any) and their CSRF token.
pub struct Visitor {
    /// `Cookie` header for the API: the session cookies only, nothing else the
    /// browser sent (the CSRF cookie stays here).
    session: Option<String>,
    pub csrf: String,
}

impl Visitor {
    /// A signed-out visitor with token `csrf`, for rendering pages in unit tests.
    #[cfg(test)]
    pub fn for_test(csrf: &str) -> Visitor {
        Visitor {
            session: None,
            csrf: csrf.to_owned(),
        }
    }

    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// The signed-in user, for pages that need one: else off to sign in, then back.
    pub async fn require_user(
        &self,
        api: &ApiClient,
        back_to: &str,
    ) -> Result<SessionUser, PageError> {
        api.current_user(self.session())
            .await?
            .ok_or_else(|| PageError::SignInRequired(back_to.to_owned()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Visitor {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let pairs: Vec<&str> = parts
            .headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .flat_map(|h| h.split(';'))
            .map(str::trim)
            .filter(|pair| {
                pair.split_once('=').is_some_and(|(name, value)| {
                    SESSION_COOKIES.contains(&name) && !value.is_empty()
                })
            })
            .collect();
        let csrf = parts
            .extensions
            .get::<CsrfToken>()
            .map(|t| t.value.clone())
            .ok_or(PageError::Internal("CSRF layer missing"))?;
        Ok(Visitor {
            session: (!pairs.is_empty()).then(|| pairs.join("; ")),
            csrf,
        })
    }
}
