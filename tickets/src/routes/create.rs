use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::idempotency::IdempotencyKey;
use ticketing_kit::json::ApiJson;
use ticketing_kit::keyed::{self, KeyRefusals};
use ticketing_kit::validate::Fields;
use ticketing_kit::ApiResult;

use super::{terms_input, TicketBody, TicketInput};
use crate::domain::{parse_price, Current, Title};
use crate::{tickets, AppState};

/// List a ticket for sale: one unit the seed's way, or `quantity` units with their
/// caps and on-sale time (any of the terms given counts the listing).
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
            `onSaleAt` (`On-sale time must be an ISO-8601 date and time`)", body = ErrorBody),
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
    let (title, price, terms) = fields.finish((title, price, terms))?;

    let keyed = key.scoped(&user.id, "POST /api/tickets", &body);
    keyed::once_in_tx(
        &state.store,
        keyed.as_ref(),
        StatusCode::CREATED,
        async |tx| {
            Ok(TicketBody::from(
                tickets::create(tx, &title, price, &user.id, terms.as_ref()).await?,
            ))
        },
    )
    .await
}
