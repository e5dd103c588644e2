use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ticketing_contracts::api::orders::CreateOrder;
use ticketing_contracts::api::queue::QueuePlace;
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::idempotency::{self, IdempotencyKey};
use ticketing_kit::json::ApiJson;
use ticketing_kit::keyed::{self, KeyRefusals};
use ticketing_kit::validate::{parse_id, Fields};
use ticketing_kit::{ApiError, ApiResult};

use super::OrderBody;
use ticketing_contracts::{TicketId, Timestamp};
use ticketing_store::Tx;

use crate::claim::Refused;
use crate::domain::{At, Order, Units};
use crate::orders::{self, PlaceError};
use crate::queue::{self, Held};
use crate::AppState;

/// Reserve a ticket (`quantity` units of a listing): the order holds them until
/// `expiresAt` unless paid.
///
/// The database guarantees, also under concurrent requests, that a listing's live orders
/// never hold more than its units (a ticket listed as one: the loser gets `Ticket is
/// already reserved`) and an account never more than `maxPerAccount`.
#[utoipa::path(post, path = "/api/orders", tag = "orders", operation_id = "createOrder",
    request_body = CreateOrder, security(("session" = []), ("bearer" = [])),
    responses(
        (status = 201, description = "Created; publishes `order:created`", body = OrderBody,
            links(
                ("showOrder" = (operation_id = "showOrder", parameters(("orderId" = "$response.body#/id")))),
                ("cancelOrder" = (operation_id = "cancelOrder", parameters(("orderId" = "$response.body#/id")))),
                ("payOrder" = (operation_id = "createPayment", request_body = json!({"orderId": "$response.body#/id", "token": "tok_visa"}))),
            )),
        (status = 400, description = "Missing or malformed ticketId; `Ticket is already reserved` (one unit), `Ticket is sold out`; field `quantity`: `Quantity must be a whole number from 1 to N` (the listing's maxPerOrder), `Only N left`, `At most N per account`", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "Unknown ticket (an id that is not a UUIDv7 made in the last 10 s)", body = ErrorBody),
        (status = 429, description = "The listing's on-sale queue has not admitted the caller: joined it; `Retry-After` and the place in `queue` (`You are in the queue (position N)`)", body = ErrorBody),
        KeyRefusals,
        // After `KeyRefusals`, whose 409 it replaces in the document (one entry a status).
        (status = 409, description = "`Ticket is not known here yet; try again`: a ticket listed moments ago has not reached the orders service within 2 s (`Retry-After: 1`); or a request with the same `Idempotency-Key` is still in progress", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait (the ticket not known yet)"))),
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
    let units = Units::parse(body.quantity.as_ref());

    let keyed = key.scoped(&user.id, "POST /api/orders", &body);
    let at = state.settings.at(Timestamp::now());
    if state.queued.may_hold(&ticket_id) {
        let rate = state.settings.queue_rate();
        let held = queue::precheck(
            &state.store,
            &state.queued,
            &ticket_id,
            &user.id,
            at.now,
            rate,
        )
        .await?;
        // Held back, perhaps after this very request placed its order (a keyed retry: its
        // admission spent, its account maybe back in line since): its answer, not a place.
        if let (Some(Held::Queued(_)), Some(keyed)) = (&held, &keyed) {
            if let Some(answer) = keyed.answer(&state.store).await? {
                return Ok(answer);
            }
        }
        match held {
            // In line already: the answer from the same read.
            Some(Held::Queued(Some(place))) => return Err(super::queue::held_back(place)),
            Some(Held::Queued(None)) => {
                return Err(super::queue::queued(&state, &ticket_id, &user.id).await)
            }
            Some(Held::TooEarly) => return Err(ApiError::bad_request(NOT_ON_SALE)),
            None => {}
        }
    }
    let place = async |at: At| match &keyed {
        None => orders::place(&state.store, &state.placer, &ticket_id, &user.id, units, at)
            .await
            .map(created)
            .map_err(ApiError::from),
        // With a key the order and its answer commit together: the placer stores the
        // answer in its statement; a transaction stores it before the claim, which
        // locks the listing's row.
        Some(keyed) => {
            idempotency::once(&state.store, Some(keyed), async || {
                let answer = |order: &Order| {
                    keyed.json_row(StatusCode::CREATED, &OrderBody::from(order.clone()))
                };
                let batched = orders::place_batched(
                    &state.placer,
                    &ticket_id,
                    &user.id,
                    units,
                    at,
                    Some(&answer),
                );
                if let Some(order) = batched.await {
                    return Ok(created(order));
                }
                let write = async |tx: &mut Tx| {
                    let unclaimed =
                        orders::insert_in_tx(tx, &ticket_id, &user.id, units, at).await?;
                    Ok((OrderBody::from(unclaimed.order().clone()), unclaimed))
                };
                // The turn (dropped after the commit) and not the order: answered already.
                let claim = async |tx: &mut Tx, unclaimed| {
                    let (_, turn) = orders::claim_in_tx(tx, unclaimed).await?;
                    Ok(turn)
                };
                keyed::in_tx_then(&state.store, Some(keyed), StatusCode::CREATED, write, claim)
                    .await
            })
            .await
        }
    };
    let placed = match place(at).await {
        // Listed moments ago, its `ticket:created` maybe still on the way: wait for it a
        // little (decision 0029), then place. (A new order's only unknown is its ticket.)
        Err(ApiError::NotFound) => {
            let exists = || crate::tickets::exists(state.store.reader(), &ticket_id);
            (state.arriving)
                .wait_known(ticket_id.as_str(), "Ticket", exists)
                .await?;
            place(state.settings.at(Timestamp::now())).await
        }
        other => other,
    };
    match placed {
        // Not admitted: the order joins the queue for the caller (the seed's client
        // carries nothing) and says where it stands.
        Err(ApiError::InQueue(_)) => Err(super::queue::queued(&state, &ticket_id, &user.id).await),
        other => other,
    }
}

fn created(order: Order) -> Response {
    (StatusCode::CREATED, Json(OrderBody::from(order))).into_response()
}

/// A listing whose queue opens later (30 minutes before its sale).
pub const NOT_ON_SALE: &str = "Not on sale yet";

impl From<PlaceError> for ApiError {
    fn from(err: PlaceError) -> ApiError {
        match err {
            PlaceError::UnknownTicket => ApiError::NotFound,
            PlaceError::PerOrder(max) => ApiError::field(
                "quantity",
                format!("Quantity must be a whole number from 1 to {max}"),
            ),
            PlaceError::Refused(Refused::Reserved) => {
                ApiError::bad_request("Ticket is already reserved")
            }
            PlaceError::Refused(Refused::SoldOut) => ApiError::bad_request("Ticket is sold out"),
            PlaceError::Refused(Refused::OnlyLeft(n)) => {
                ApiError::field("quantity", format!("Only {n} left"))
            }
            PlaceError::Refused(Refused::PerAccount(n)) => {
                ApiError::field("quantity", format!("At most {n} per account"))
            }
            PlaceError::NotOnSale => ApiError::bad_request(NOT_ON_SALE),
            PlaceError::Queued => ApiError::InQueue(QueuePlace {
                position: None,
                eta_seconds: None,
            }),
            PlaceError::Db(e) => e.into(),
        }
    }
}
