use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::response::IntoResponse;
use axum::Json;
use ticketing_kit::auth::cleared_session_cookie;

use crate::AppState;

/// Sign out: the session cookie is expired.
#[utoipa::path(post, path = "/api/users/signout", tag = "auth", operation_id = "signOut",
    responses((status = 200, description = "Signed out; clears the session cookie (`{}`)", body = Object,
        headers(("Set-Cookie" = String, description = "The `session` cookie, expired")))))]
pub async fn signout(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(SET_COOKIE, cleared_session_cookie(state.cookie_secure))],
        Json(serde_json::json!({})),
    )
}
