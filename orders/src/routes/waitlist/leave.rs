use axum::extract::{Path, State};
use axum::http::StatusCode;
use ticketing_contracts::api::orders::CancelReason;
use ticketing_contracts::api::waitlist::WaitlistStatus;
use ticketing_contracts::Timestamp;
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::ApiResult;

use super::own_entry;
use crate::{orders, waitlist, AppState};

/// Leave the line, or decline the offer: its units go to the next in line.
#[utoipa::path(delete, path = "/api/waitlist/{entryId}", tag = "waitlist", operation_id = "leaveWaitlist",
    security(("session" = []), ("bearer" = [])),
    params(("entryId" = String, Path, description = "Entry id")),
    responses(
        (status = 204, description = "Left (or no longer in line); an offer's order is cancelled"),
        (status = 401, description = "Not signed in, or not the caller's entry", body = ErrorBody),
        (status = 404, description = "Unknown or malformed id", body = ErrorBody),
    ))]
pub async fn leave(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    Path(entry_id): Path<String>,
) -> ApiResult<StatusCode> {
    own_entry(&state, &entry_id, &user.id).await?;
    let mut tx = state.store.begin().await?;
    let Some(entry) = waitlist::leave(&mut tx, &entry_id, &user.id).await? else {
        return Ok(StatusCode::NO_CONTENT);
    };
    if let (WaitlistStatus::Offered, Some(order)) = (entry.status, &entry.order_id) {
        let offer = state.settings.at(Timestamp::now()).offer;
        let reason = CancelReason::CancelledByBuyer;
        orders::cancel(&mut tx, order, reason, Some(&user.id), offer).await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
