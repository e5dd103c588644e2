use axum::extract::State;
use axum::response::IntoResponse;
use ticketing_kit::client::ClientIp;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::json::ApiJson;
use ticketing_kit::{ApiError, ApiResult};

use super::{checked_credentials, signed_in, Credentials, Throttled, UserBody};
use crate::domain::OfferedPassword;
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
        Throttled,
    ))]
pub async fn signin(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<impl IntoResponse> {
    let (email, password) =
        checked_credentials(&state, client, Route::SignIn, &body, OfferedPassword::parse).await?;
    let user = users::find_by_email(&state.store, &email).await?;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    if !state.hasher.verify(password.into_inner(), stored).await? {
        return Err(ApiError::bad_request("Invalid credentials"));
    }
    let user = user.ok_or_else(|| ApiError::bad_request("Invalid credentials"))?;
    signed_in(&state, user).await
}
