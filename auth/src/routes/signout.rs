use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::response::IntoResponse;
use axum::Json;
use ticketing_contracts::api::users::SignOut;
use ticketing_kit::auth::{cleared_session_cookie, CurrentUser};
use ticketing_kit::error::ErrorBody;
use ticketing_kit::{ApiError, ApiResult};

use crate::{sessions, AppState};

/// Sign out: the caller's session ends (its token is refused by every service within a
/// second) and the session cookie is expired. With `{"everywhere": true}`, every session
/// of the account ends. Always `{}`, signed in or not.
#[utoipa::path(post, path = "/api/users/signout", tag = "auth", operation_id = "signOut",
    request_body(content = Option<SignOut>, description = "Optional; `{\"everywhere\": true}` ends every session of the account"),
    security((), ("session" = []), ("bearer" = [])),
    responses((status = 200, description = "Signed out; clears the session cookie (`{}`)", body = Object,
        headers(("Set-Cookie" = String, description = "The `session` cookie, expired"))),
        (status = 400, description = "A body other than the object; field `everywhere`: not a boolean", body = ErrorBody)))]
pub async fn signout(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let everywhere = everywhere(&body)?;
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

/// Whether the body asks to end every session. The seed's client sends `{}` (others no
/// body at all, or `null`): each means this session only. Anything else must be the documented
/// object, so a mistyped `everywhere` is refused rather than quietly taken as `false`.
fn everywhere(body: &[u8]) -> Result<bool, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(false);
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::bad_request("Body must be a JSON object"))?;
    if value.is_null() {
        return Ok(false);
    }
    if !value.is_object() {
        return Err(ApiError::bad_request("Body must be a JSON object"));
    }
    serde_json::from_value::<SignOut>(value)
        .map(|b| b.everywhere)
        .map_err(|_| ApiError::field("everywhere", "Everywhere must be true or false"))
}

#[cfg(test)]
mod tests {
    use super::everywhere;

    #[test]
    fn the_body_is_optional_and_everywhere_a_boolean() {
        assert_eq!(everywhere(b"").ok(), Some(false));
        assert_eq!(everywhere(b"{}").ok(), Some(false));
        assert_eq!(everywhere(b"null").ok(), Some(false));
        assert_eq!(everywhere(br#"{"everywhere": false}"#).ok(), Some(false));
        assert_eq!(everywhere(br#"{"everywhere": true}"#).ok(), Some(true));
        for bad in [
            &br#"{"everywhere": {}}"#[..],
            b"[]",
            b"\"yes\"",
            b"{",
            br#"{"everywhere": 1}"#,
        ] {
            assert!(everywhere(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
