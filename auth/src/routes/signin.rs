use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::response::IntoResponse;
use axum::Json;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::json::ApiJson;
use ticketing_kit::validate::Fields;
use ticketing_kit::{ApiError, ApiResult};

use super::{Credentials, UserBody};
use crate::domain::{Email, OfferedPassword};
use crate::{users, AppState};

/// Sign in with e-mail and password.
///
/// An unknown e-mail and a wrong password get the same answer, in the same time.
#[utoipa::path(post, path = "/api/users/signin", tag = "auth", request_body = Credentials,
    responses(
        (status = 200, description = "Signed in; sets the session cookie", body = UserBody),
        (status = 400, description = "Malformed input or invalid credentials", body = ErrorBody),
    ))]
pub async fn signin(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<impl IntoResponse> {
    let mut fields = Fields::new();
    let email = fields.parse("email", body.email.as_ref(), Email::parse);
    let password = fields.parse("password", body.password.as_ref(), OfferedPassword::parse);
    let (email, password) = fields.finish((email, password))?;

    let user = users::find_by_email(&state.store, &email).await?;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    if !state.hasher.verify(password.into_inner(), stored).await? {
        return Err(ApiError::bad_request("Invalid credentials"));
    }
    let user = user.ok_or_else(|| ApiError::bad_request("Invalid credentials"))?;
    let (token, _) = state.keys.issue(&user.id, &user.email)?;
    Ok((
        [(
            SET_COOKIE,
            state.keys.session_cookie(&token, state.cookie_secure),
        )],
        Json(UserBody {
            id: user.id,
            email: user.email,
        }),
    ))
}
