use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ticketing_contracts::Timestamp;
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::idempotency::IdempotencyKey;
use ticketing_kit::json::ApiJson;
use ticketing_kit::keyed::{self, KeyRefusals};
use ticketing_kit::validate::Fields;
use ticketing_kit::ApiResult;

use super::{refund_input, terms_input, TicketBody, TicketInput};
use crate::domain::{parse_price, Current, Refund, Title};
use crate::{tickets, AppState};

/// List a ticket for sale: one unit the seed's way, or `quantity` units with their
/// caps and on-sale time (any of the terms given counts the listing); with `eventAt`,
/// optionally a `refundPolicy` under which buyers may cancel paid orders.
#[utoipa::path(post, path = "/api/tickets", tag = "tickets", operation_id = "createTicket",
    request_body = TicketInput, security(("session" = []), ("bearer" = [])),
    responses(
        (status = 201, description = "Created (version 0); publishes `ticket:created`", body = TicketBody,
            links(
                ("showTicket" = (operation_id = "showTicket", parameters(("id" = "$response.body#/id")))),
                ("updateTicket" = (operation_id = "updateTicket", parameters(("id" = "$response.body#/id")))),
                ("orderTicket" = (operation_id = "createOrder", request_body = json!({"ticketId": "$response.body#/id"}))),
            )),
        (status = 400, description = "Invalid input, every failing field named (`field`): \
            `title`, `price`; `quantity` (`Quantity must be a whole number from 1 to 100000`), \
            `maxPerOrder` (`Max per order must be a whole number from 1 to {quantity}`), \
            `maxPerAccount` (`Max per account must be a whole number from {maxPerOrder} to {quantity}`), \
            `onSaleAt` (`On-sale time must be an ISO-8601 date and time`), \
            `eventAt` (`Event time must be an ISO-8601 date and time`, `Event time must be in the future`), \
            `refundPolicy` (`A refund policy needs the event's time (eventAt)`, \
            `Cutoff hours must be a whole number from 0 to 8760`, \
            `Fee percent must be a number from 0 to 100 with at most 2 decimals`)", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        KeyRefusals,
    ),
    params(IdempotencyKey))]
pub async fn create(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<TicketInput>,
) -> ApiResult<Response> {
    let mut fields = Fields::new();
    let title = fields.parse("title", body.title.as_ref(), Title::parse);
    let price = fields.parse("price", body.price.as_ref(), parse_price);
    // Nothing to keep on a new listing: absent terms take their defaults.
    let terms = terms_input(&body, false).resolve(&mut fields, Current::default());
    let refund = refund_input(&raw_refund(&body), false).resolve(
        &mut fields,
        Refund::default(),
        Timestamp::now(),
    );
    let (title, price, terms, refund) = fields.finish((title, price, terms, refund))?;

    let keyed = key.scoped(&user.id, "POST /api/tickets", &body);
    keyed::once_in_tx(
        &state.store,
        keyed.as_ref(),
        StatusCode::CREATED,
        async |tx| {
            Ok(TicketBody::from(
                tickets::create(tx, &title, price, &user.id, terms.as_ref(), refund).await?,
            ))
        },
    )
    .await
}

/// The body's `eventAt` and `refundPolicy` as JSON (a new listing: `null` is absent).
fn raw_refund(body: &TicketInput) -> serde_json::Value {
    let mut raw = serde_json::Map::new();
    if let Some(at) = &body.event_at {
        raw.insert("eventAt".into(), at.clone());
    }
    if let Some(policy) = &body.refund_policy {
        raw.insert("refundPolicy".into(), policy.clone());
    }
    raw.into()
}
