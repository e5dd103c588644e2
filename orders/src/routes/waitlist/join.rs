use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use ticketing_contracts::api::waitlist::{JoinWaitlist, WaitlistEntryBody};
use ticketing_contracts::{TicketId, Timestamp};
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::json::ApiJson;
use ticketing_kit::validate::{parse_id, Fields};
use ticketing_kit::{ApiError, ApiResult};

use crate::domain::Units;
use crate::waitlist::{self, JoinRefused};
use crate::{tickets, AppState};

/// Join the waiting list of a listing that has not the units free: when they come free,
/// in join order, they are offered to you as an order to pay (`waitlist:offered`).
#[utoipa::path(post, path = "/api/waitlist", tag = "waitlist", operation_id = "joinWaitlist",
    request_body = JoinWaitlist, security(("session" = []), ("bearer" = [])),
    responses(
        (status = 201, description = "In line", body = WaitlistEntryBody),
        (status = 400, description = "Missing or malformed ticketId; `Tickets are available` (order them instead); `Already on the waiting list`; field `quantity`: `Quantity must be a whole number from 1 to N`", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "Unknown ticket", body = ErrorBody),
    ))]
pub async fn join(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    ApiJson(body): ApiJson<JoinWaitlist>,
) -> ApiResult<(StatusCode, Json<WaitlistEntryBody>)> {
    let mut fields = Fields::new();
    let ticket_id = fields.parse("ticketId", body.ticket_id.as_ref(), |v| {
        parse_id("ticketId", v)
    });
    let ticket_id = TicketId::from(fields.finish(ticket_id)?);
    let units = Units::parse(body.quantity.as_ref());

    let mut tx = state.store.begin().await?;
    let listing = tickets::find(&mut tx, &ticket_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let units = units.within(listing.terms.per_order).ok_or_else(|| {
        ApiError::field(
            "quantity",
            format!(
                "Quantity must be a whole number from 1 to {}",
                listing.terms.per_order
            ),
        )
    })?;
    let entry = waitlist::join(&mut tx, &ticket_id, &user.id, units, Timestamp::now())
        .await?
        .map_err(|refused| match refused {
            JoinRefused::Available => ApiError::bad_request("Tickets are available"),
            JoinRefused::AlreadyIn => ApiError::bad_request("Already on the waiting list"),
        })?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(entry.into())))
}
