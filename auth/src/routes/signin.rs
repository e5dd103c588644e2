use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::response::IntoResponse;
use axum::Json;
use ticketing_kit::client::ClientIp;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::json::ApiJson;
use ticketing_kit::validate::Fields;
use ticketing_kit::{ApiError, ApiResult};

use super::{Credentials, UserBody};
use crate::domain::{Email, OfferedPassword};
use crate::limits::Route;
use crate::{users, AppState};

/// Sign in with e-mail and password.
///
/// An unknown e-mail and a wrong password get the same answer, in the same time.
#[utoipa::path(post, path = "/api/users/signin", tag = "auth", operation_id = "signIn",
    request_body = Credentials,
    responses(
        (status = 200, description = "Signed in; sets the session cookie", body = UserBody,
            headers(("Set-Cookie" = String, description = "`session=<base64 of {\"jwt\": ...}>; Path=/; HttpOnly; SameSite=Lax`"))),
        (status = 400, description = "A field is malformed (`field` names it), or `Invalid credentials` (an unknown e-mail and a wrong password alike)", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address or on this account", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until an attempt is allowed again"))),
        (status = 503, description = "Every password-hashing slot stayed busy", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub async fn signin(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<impl IntoResponse> {
    state.limits.check_address(client, Route::SignIn)?;
    let mut fields = Fields::new();
    let email = fields.parse("email", body.email.as_ref(), Email::parse);
    let password = fields.parse("password", body.password.as_ref(), OfferedPassword::parse);
    let (email, password) = fields.finish((email, password))?;
    state.limits.check_account(&email, Route::SignIn)?;

    let user = users::find_by_email(&state.store, &email).await?;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    if !state.hasher.verify(password.into_inner(), stored).await? {
        return Err(ApiError::bad_request("Invalid credentials"));
    }
    let user = user.ok_or_else(|| ApiError::bad_request("Invalid credentials"))?;
    let (token, _) = state.keys.issue(user.id.as_str(), &user.email)?;
    Ok((
        [(
            SET_COOKIE,
            state.keys.session_cookie(&token, state.cookie_secure),
        )],
        Json(UserBody {
            id: user.id.into(),
            email: user.email,
        }),
    ))
}
