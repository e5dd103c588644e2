use axum::extract::State;
use axum::response::IntoResponse;
use serde_json::Value;
use ticketing_contracts::api::users::ChangePassword;
use ticketing_kit::auth::RequireUser;
use ticketing_kit::client::ClientIp;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::json::ApiJson;
use ticketing_kit::validate::Fields;
use ticketing_kit::{ApiError, ApiResult};

use super::{session_answer, Throttled, UserBody};
use crate::domain::{Email, NewPassword, OfferedPassword};
use crate::limits::Route;
use crate::{sessions, users, AppState};

/// Change the password: every other session of the account ends, and the caller gets a
/// new session (a new cookie; the token it came with ends too).
#[utoipa::path(put, path = "/api/users/password", tag = "auth", operation_id = "changePassword",
    request_body = ChangePassword,
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Changed; sets a new session cookie", body = UserBody,
            headers(("Set-Cookie" = String, description = "`session=<base64 of {\"jwt\": ...}>; Path=/; HttpOnly; SameSite=Lax`"))),
        (status = 400, description = "`newPassword` is not 8 to 128 characters, or `currentPassword` is wrong (`Invalid credentials`)", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        Throttled,
    ))]
pub async fn change_password(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    RequireUser(claims): RequireUser,
    ApiJson(body): ApiJson<ChangePassword>,
) -> ApiResult<impl IntoResponse> {
    state.limits.check_address(client, Route::Password).await?;
    let mut fields = Fields::new();
    let current = fields.parse(
        "currentPassword",
        body.current_password.as_ref(),
        OfferedPassword::parse,
    );
    let new = fields.parse(
        "newPassword",
        body.new_password.as_ref(),
        NewPassword::parse,
    );
    let (current, new) = fields.finish((current, new))?;
    if let Ok(email) = Email::parse(&Value::String(claims.email.clone())) {
        state.limits.check_account(&email, Route::Password).await?;
    }

    let user = users::find_by_id(&state.store, &claims.id)
        .await?
        .ok_or(ApiError::NotAuthorized)?;
    let stored = Some(user.password_hash.clone());
    if !state.hasher.verify(current.into_inner(), stored).await? {
        return Err(ApiError::field("currentPassword", "Invalid credentials"));
    }
    let hash = state.hasher.hash(new.into_inner()).await?;

    let (token, new_claims) = state.keys.issue(user.id.as_str(), &user.email)?;
    let mut tx = state.store.begin().await?;
    users::set_password(&mut tx, &user.id, &hash).await?;
    sessions::start_in(&mut tx, &new_claims).await?;
    let mut ended = sessions::end_one(&mut tx, &claims).await?;
    ended.extend(sessions::end_all(&mut tx, &user.id, new_claims.sid.as_deref()).await?);
    sessions::announce(&mut tx, &user.id, &ended).await?;
    tx.commit().await?;
    sessions::refuse_here(&state.keys, ended);
    Ok(session_answer(&state, &token, user))
}
