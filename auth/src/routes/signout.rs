use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::response::IntoResponse;
use axum::Json;
use ticketing_contracts::api::users::SignOut;
use ticketing_kit::auth::{cleared_session_cookie, CurrentUser};
use ticketing_kit::ApiResult;

use crate::{sessions, AppState};

/// Sign out: the caller's session ends (its token is refused by every service within a
/// second) and the session cookie is expired. With `{"everywhere": true}`, every session
/// of the account ends. Always `{}`, signed in or not.
#[utoipa::path(post, path = "/api/users/signout", tag = "auth", operation_id = "signOut",
    request_body(content = Option<SignOut>, description = "Optional; `{\"everywhere\": true}` ends every session of the account"),
    security((), ("session" = []), ("bearer" = [])),
    responses((status = 200, description = "Signed out; clears the session cookie (`{}`)", body = Object,
        headers(("Set-Cookie" = String, description = "The `session` cookie, expired")))))]
pub async fn signout(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    // The seed's client sends no body (or `{}`): anything unreadable means "this session".
    let everywhere = serde_json::from_slice::<SignOut>(&body).is_ok_and(|b| b.everywhere);
    if let Some(claims) = user {
        let mut tx = state.store.begin().await?;
        let mut ended = sessions::end_one(&mut tx, &claims).await?;
        if everywhere {
            ended.extend(sessions::end_all(&mut tx, &claims.id, claims.sid.as_deref()).await?);
        }
        sessions::announce(&mut tx, &claims.id, &ended).await?;
        tx.commit().await?;
        sessions::refuse_here(&state.keys, ended);
    }
    Ok((
        [(SET_COOKIE, cleared_session_cookie(state.cookie_secure))],
        Json(serde_json::json!({})),
    ))
}
