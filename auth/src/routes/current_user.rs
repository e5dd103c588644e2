use axum::Json;
use serde::Serialize;
use ticketing_shared::auth::CurrentUser;
use utoipa::ToSchema;

/// The signed-in user as the token describes it.
#[derive(Serialize, ToSchema)]
pub struct SessionUser {
    pub id: String,
    pub email: String,
    pub iat: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrentUserBody {
    pub current_user: Option<SessionUser>,
}

/// Who is signed in (`null` when nobody, or when the session is invalid or expired).
#[utoipa::path(get, path = "/api/users/currentuser", tag = "auth",
    responses((status = 200, description = "The current user or null", body = CurrentUserBody)))]
pub async fn current_user(CurrentUser(user): CurrentUser) -> Json<CurrentUserBody> {
    Json(CurrentUserBody {
        current_user: user.map(|c| SessionUser {
            id: c.id,
            email: c.email,
            iat: c.iat,
        }),
    })
}
