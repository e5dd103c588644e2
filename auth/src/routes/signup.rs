use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::json::ApiJson;
use ticketing_kit::validate::Fields;
use ticketing_kit::ApiResult;

use super::{Credentials, UserBody};
use crate::domain::{Email, NewPassword};
use crate::{users, AppState};

/// Create an account and sign it in.
#[utoipa::path(post, path = "/api/users/signup", tag = "auth", request_body = Credentials,
    responses(
        (status = 201, description = "Signed up; sets the session cookie", body = UserBody),
        (status = 400, description = "Invalid e-mail or password, or e-mail in use", body = ErrorBody),
    ))]
pub async fn signup(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<impl IntoResponse> {
    let mut fields = Fields::new();
    let email = fields.parse("email", body.email.as_ref(), Email::parse);
    let password = fields.parse("password", body.password.as_ref(), NewPassword::parse);
    let (email, password) = fields.finish((email, password))?;

    let hash = state.hasher.hash(password.into_inner()).await?;
    let user = users::insert(&state.store, &email, &hash).await?;
    let (token, _) = state.keys.issue(&user.id, &user.email)?;
    Ok((
        StatusCode::CREATED,
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
