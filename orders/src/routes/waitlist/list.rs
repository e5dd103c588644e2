use axum::extract::State;
use axum::Json;
use ticketing_contracts::api::waitlist::WaitlistEntryBody;
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::ApiResult;

use crate::{waitlist, AppState};

/// The caller's waiting-list entries, oldest first.
#[utoipa::path(get, path = "/api/waitlist", tag = "waitlist", operation_id = "listWaitlist",
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The caller's entries", body = [WaitlistEntryBody]),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
) -> ApiResult<Json<Vec<WaitlistEntryBody>>> {
    let entries = waitlist::list_for_user(&state.store, &user.id).await?;
    Ok(Json(entries.into_iter().map(Into::into).collect()))
}
