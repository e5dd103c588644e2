use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use ticketing_kit::client::ClientIp;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::json::ApiJson;
use ticketing_kit::validate::Fields;
use ticketing_kit::ApiResult;

use super::{Credentials, UserBody};
use crate::domain::{Email, NewPassword};
use crate::limits::Route;
use crate::{users, AppState};

/// Create an account and sign it in.
#[utoipa::path(post, path = "/api/users/signup", tag = "auth", operation_id = "signUp",
    request_body = ticketing_contracts::api::users::SignUpSchema,
    responses(
        (status = 201, description = "Signed up; sets the session cookie", body = UserBody,
            headers(("Set-Cookie" = String, description = "`session=<base64 of {\"jwt\": ...}>; Path=/; HttpOnly; SameSite=Lax`"))),
        (status = 400, description = "A field is invalid (`field` names it), or `Email in use`", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address or on this account", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until an attempt is allowed again"))),
        (status = 503, description = "Every password-hashing slot stayed busy", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub async fn signup(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<impl IntoResponse> {
    state.limits.check_address(client, Route::SignUp)?;
    let mut fields = Fields::new();
    let email = fields.parse("email", body.email.as_ref(), Email::parse);
    let password = fields.parse("password", body.password.as_ref(), NewPassword::parse);
    let (email, password) = fields.finish((email, password))?;
    state.limits.check_account(&email, Route::SignUp)?;

    let hash = state.hasher.hash(password.into_inner()).await?;
    let user = users::insert(&state.store, &email, &hash).await?;
    let (token, _) = state.keys.issue(user.id.as_str(), &user.email)?;
    Ok((
        StatusCode::CREATED,
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
