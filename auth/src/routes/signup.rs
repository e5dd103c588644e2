use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use ticketing_kit::client::ClientIp;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::json::ApiJson;
use ticketing_kit::ApiResult;

use super::{checked_credentials, signed_in, Credentials, Throttled, UserBody};
use crate::domain::NewPassword;
use crate::limits::Route;
use crate::{users, AppState};

/// Create an account and sign it in.
#[utoipa::path(post, path = "/api/users/signup", tag = "auth", operation_id = "signUp",
    request_body = ticketing_contracts::api::users::SignUpSchema,
    responses(
        (status = 201, description = "Signed up; sets the session cookie", body = UserBody,
            headers(("Set-Cookie" = String, description = "`session=<base64 of {\"jwt\": ...}>; Path=/; HttpOnly; SameSite=Lax`"))),
        (status = 400, description = "A field is invalid (`field` names it), or `Email in use`", body = ErrorBody),
        Throttled,
    ))]
pub async fn signup(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<impl IntoResponse> {
    let (email, password) =
        checked_credentials(&state, client, Route::SignUp, &body, NewPassword::parse).await?;
    let hash = state.hasher.hash(password.into_inner()).await?;
    let user = users::insert(&state.store, &email, &hash).await?;
    Ok((StatusCode::CREATED, signed_in(&state, user).await?))
}
