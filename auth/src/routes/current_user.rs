use axum::Json;
use ticketing_contracts::api::users::{CurrentUserBody, SessionUser};
use ticketing_kit::auth::CurrentUser;

/// Who is signed in (`null` when nobody, or when the session is invalid or expired).
#[utoipa::path(get, path = "/api/users/currentuser", tag = "auth", operation_id = "currentUser",
    security((), ("session" = []), ("bearer" = [])),
    responses((status = 200, description = "The current user, or null when there is no valid session", body = CurrentUserBody)))]
pub async fn current_user(CurrentUser(user): CurrentUser) -> Json<CurrentUserBody> {
    Json(CurrentUserBody {
        current_user: user.map(|c| SessionUser {
            id: c.id.into(),
            email: c.email,
            iat: c.iat,
        }),
    })
}
