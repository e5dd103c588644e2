use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ticketing_contracts::api::orders::CreateOrder;
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::idempotency::IdempotencyKey;
use ticketing_kit::json::ApiJson;
use ticketing_kit::keyed::{self, KeyRefusals};
use ticketing_kit::validate::{parse_id, Fields};
use ticketing_kit::{ApiError, ApiResult};

use super::OrderBody;
use ticketing_contracts::{TicketId, Timestamp};

use crate::orders::{self, PlaceError};
use crate::AppState;

/// Reserve a ticket: the order holds it until `expiresAt` unless paid.
///
/// At most one active order per ticket is guaranteed by the database, also under
/// concurrent requests: the loser gets `Ticket is already reserved`.
#[utoipa::path(post, path = "/api/orders", tag = "orders", operation_id = "createOrder",
    request_body = CreateOrder, security(("session" = []), ("bearer" = [])),
    responses(
        (status = 201, description = "Created; publishes `order:created`", body = OrderBody,
            links(
                ("showOrder" = (operation_id = "showOrder", parameters(("orderId" = "$response.body#/id")))),
                ("cancelOrder" = (operation_id = "cancelOrder", parameters(("orderId" = "$response.body#/id")))),
                ("payOrder" = (operation_id = "createPayment", request_body = json!({"orderId": "$response.body#/id", "token": "tok_visa"}))),
            )),
        (status = 400, description = "Missing or malformed ticketId, or `Ticket is already reserved`", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "Unknown ticket", body = ErrorBody),
        KeyRefusals,
    ),
    params(IdempotencyKey))]
pub async fn create(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<CreateOrder>,
) -> ApiResult<Response> {
    let mut fields = Fields::new();
    let ticket_id = fields.parse("ticketId", body.ticket_id.as_ref(), |v| {
        parse_id("ticketId", v)
    });
    let ticket_id = TicketId::from(fields.finish(ticket_id)?);

    let now = Timestamp::now();
    let deadline = state.settings.deadline(now);
    let Some(keyed) = key.scoped(&user.id, "POST /api/orders", &body) else {
        let order = orders::place(
            &state.store,
            &state.placer,
            &ticket_id,
            &user.id,
            now,
            deadline,
        )
        .await?;
        return Ok((StatusCode::CREATED, Json(OrderBody::from(order))).into_response());
    };
    // With a key the order and its answer commit together: a transaction, not the placer.
    keyed::once_in_tx(
        &state.store,
        Some(&keyed),
        StatusCode::CREATED,
        async |tx| {
            let order = orders::place_in_tx(tx, &ticket_id, &user.id, now, deadline).await?;
            Ok(OrderBody::from(order))
        },
    )
    .await
}

impl From<PlaceError> for ApiError {
    fn from(err: PlaceError) -> ApiError {
        match err {
            PlaceError::UnknownTicket => ApiError::NotFound,
            PlaceError::Reserved => ApiError::bad_request("Ticket is already reserved"),
            PlaceError::Db(e) => e.into(),
        }
    }
}
