use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::Json;
use ticketing_contracts::api::checkin::ConflictBody;
use ticketing_contracts::TicketId;
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::validate::is_valid_id;
use ticketing_kit::{ApiError, ApiResult};

use crate::{gate, listings, AppState};

/// Scans of a listing's passes that showed an admitting code after (by scan time)
/// another scan had checked the pass in: the same list whatever order the scans were
/// uploaded in.
#[utoipa::path(get, path = "/api/checkin/conflicts", tag = "checkin", operation_id = "listConflicts",
    security(("session" = []), ("bearer" = [])),
    params(("ticketId" = String, Query, description = "The listing")),
    responses(
        (status = 200, description = "By pass, then scan time", body = [ConflictBody]),
        (status = 400, description = "No or a malformed `ticketId`", body = ErrorBody),
        (status = 401, description = "Not signed in, or not the listing's seller", body = ErrorBody),
    ))]
pub async fn conflicts(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Vec<ConflictBody>>> {
    let ticket = query
        .get("ticketId")
        .map(|t| t.trim())
        .filter(|t| is_valid_id(t))
        .map(TicketId::from)
        .ok_or_else(|| ApiError::field("ticketId", "TicketId must be a ticket's id"))?;
    let owners = listings::owners(state.store.reader(), std::slice::from_ref(&ticket)).await?;
    if !owners.iter().any(|(_, owner)| owner == &user.id) {
        return Err(ApiError::NotAuthorized);
    }
    Ok(Json(gate::conflicts(&state.store, &ticket).await?))
}
