use axum::extract::{Path, State};
use axum::Json;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::validate::is_valid_id;
use ticketing_kit::{ApiError, ApiResult};

use super::TicketBody;
use ticketing_contracts::TicketId;

use crate::{tickets, AppState};

/// One ticket, reserved or not.
#[utoipa::path(get, path = "/api/tickets/{id}", tag = "tickets", operation_id = "showTicket",
    params(("id" = String, Path, description = "Ticket id")),
    responses(
        (status = 200, description = "The ticket", body = TicketBody),
        (status = 404, description = "Unknown or malformed id", body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<TicketBody>> {
    if !is_valid_id(&id) {
        return Err(ApiError::NotFound);
    }
    let ticket = tickets::find(&state.store, &TicketId::from(id))
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(ticket.into()))
}
