use axum::extract::{Path, State};
use axum::Json;
use ticketing_contracts::api::waitlist::WaitlistEntryBody;
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::ApiResult;

use super::own_entry;
use crate::AppState;

/// One of the caller's entries: its place in line, or its offer.
#[utoipa::path(get, path = "/api/waitlist/{entryId}", tag = "waitlist", operation_id = "showWaitlistEntry",
    security(("session" = []), ("bearer" = [])),
    params(("entryId" = String, Path, description = "Entry id")),
    responses(
        (status = 200, description = "The entry", body = WaitlistEntryBody),
        (status = 401, description = "Not signed in, or not the caller's entry", body = ErrorBody),
        (status = 404, description = "Unknown or malformed id", body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    Path(entry_id): Path<String>,
) -> ApiResult<Json<WaitlistEntryBody>> {
    Ok(Json(own_entry(&state, &entry_id, &user.id).await?.into()))
}
