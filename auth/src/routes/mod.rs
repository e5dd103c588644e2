mod current_user;
mod password;
mod signin;
mod signout;
mod signup;

use std::net::IpAddr;

use axum::http::header::SET_COOKIE;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use ticketing_kit::error::ErrorBody;
use ticketing_kit::validate::Fields;
use ticketing_kit::ApiResult;

pub use ticketing_contracts::api::users::{Credentials, UserBody};

use crate::domain::Email;
use crate::limits::Route;
use crate::sessions;
use crate::users::User;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup::signup))
        .routes(routes!(signin::signin))
        .routes(routes!(signout::signout))
        .routes(routes!(current_user::current_user))
        .routes(routes!(password::change_password))
}

/// The credentials of a sign-up or sign-in, parsed, once the rate limits allow the try
/// (the address's before parsing, the account's after).
async fn checked_credentials<P>(
    state: &AppState,
    client: Option<IpAddr>,
    route: Route,
    body: &Credentials,
    password: fn(&Value) -> Result<P, String>,
) -> ApiResult<(Email, P)> {
    state.limits.check_address(client, route).await?;
    let mut fields = Fields::new();
    let email = fields.parse("email", body.email.as_ref(), Email::parse);
    let password = fields.parse("password", body.password.as_ref(), password);
    let (email, password) = fields.finish((email, password))?;
    state.limits.check_account(&email, route).await?;
    Ok((email, password))
}

/// The answer that signs `user` in: a new session (recorded), its cookie, and the user.
async fn signed_in(state: &AppState, user: User) -> ApiResult<impl IntoResponse> {
    let (token, claims) = state.keys.issue(user.id.as_str(), &user.email)?;
    sessions::start(&state.store, &claims).await?;
    Ok(session_answer(state, &token, user))
}

/// The session cookie carrying `token`, and `user`.
fn session_answer(state: &AppState, token: &str, user: User) -> impl IntoResponse {
    (
        [(
            SET_COOKIE,
            state.keys.session_cookie(token, state.cookie_secure),
        )],
        Json(UserBody {
            id: user.id.into(),
            email: user.email,
        }),
    )
}

/// The refusals sign-up, sign-in and a password change share, for the API document.
#[derive(utoipa::IntoResponses)]
#[expect(dead_code, reason = "describes responses; never built")]
enum Throttled {
    /// Too many attempts from this address or on this account
    #[response(status = 429,
        headers(("Retry-After" = u64, description = "Seconds until an attempt is allowed again")))]
    TooMany(ErrorBody),
    /// Every password-hashing slot stayed busy
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait")))]
    Busy(ErrorBody),
}
