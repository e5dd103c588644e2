use axum::extract::{Path, State};
use axum::Json;
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::json::ApiJson;
use ticketing_kit::validate::{is_valid_id, Fields};
use ticketing_kit::{ApiError, ApiResult};

use super::{TicketBody, TicketInput};
use ticketing_contracts::TicketId;

use crate::domain::{parse_price, Title};
use crate::{tickets, AppState};

/// Change a ticket's title and price (owner only, not while reserved).
#[utoipa::path(put, path = "/api/tickets/{id}", tag = "tickets", operation_id = "updateTicket",
    request_body = TicketInput, security(("session" = []), ("bearer" = [])),
    params(("id" = String, Path, description = "Ticket id")),
    responses(
        (status = 200, description = "Updated (version + 1); publishes `ticket:updated`", body = TicketBody),
        (status = 400, description = "Invalid input (`field` names each), or `Cannot edit a reserved ticket`", body = ErrorBody),
        (status = 401, description = "Not signed in, or not the owner", body = ErrorBody),
        (status = 404, description = "Unknown or malformed id", body = ErrorBody),
    ))]
pub async fn update(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TicketInput>,
) -> ApiResult<Json<TicketBody>> {
    let mut fields = Fields::new();
    let title = fields.parse("title", body.title.as_ref(), Title::parse);
    let price = fields.parse("price", body.price.as_ref(), parse_price);
    let (title, price) = fields.finish((title, price))?;
    if !is_valid_id(&id) {
        return Err(ApiError::NotFound);
    }
    let id = TicketId::from(id);

    let mut tx = state.store.begin().await?;
    if let Some(ticket) = tickets::update(&mut tx, &id, &user.id, &title, price).await? {
        tx.commit().await?;
        return Ok(Json(ticket.into()));
    }
    drop(tx);
    // The conditional write refused: say why, in the contract's order.
    match tickets::find(&state.store, &id).await? {
        None => Err(ApiError::NotFound),
        Some(t) if t.order_id.is_some() => {
            Err(ApiError::bad_request("Cannot edit a reserved ticket"))
        }
        Some(_) => Err(ApiError::NotAuthorized),
    }
}
