use axum::extract::{Path, State};
use axum::Json;
use ticketing_contracts::api::queue::QueueBody;
use ticketing_contracts::Timestamp;
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::{ApiError, ApiResult};

use crate::{queue, AppState};

/// Where the caller stands in a listing's on-sale queue.
#[utoipa::path(get, path = "/api/queue/{ticketId}", tag = "queue", operation_id = "showQueue",
    security(("session" = []), ("bearer" = [])),
    params(("ticketId" = String, Path, description = "Ticket id")),
    responses(
        (status = 200, description = "The caller's place", body = QueueBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "Unknown ticket, or the caller is not in its queue", body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    Path(ticket_id): Path<String>,
) -> ApiResult<Json<QueueBody>> {
    let ticket = super::listing(ticket_id)?;
    let rate = state.settings.queue_rate();
    queue::place_of(
        &state.store,
        &state.queued,
        &ticket,
        &user.id,
        Timestamp::now(),
        rate,
    )
    .await?
    .map(|place| Json(place.into()))
    .ok_or(ApiError::NotFound)
}
