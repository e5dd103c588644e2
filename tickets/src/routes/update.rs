use axum::extract::{Path, State};
use axum::Json;
use serde_json::Value;
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::json::ApiJson;
use ticketing_kit::validate::{is_valid_id, Fields};
use ticketing_kit::{ApiError, ApiResult};

use super::{refund_input, terms_input, TicketBody, TicketInput};
use ticketing_contracts::TicketId;

use crate::domain::{parse_price, Current, Title};
use crate::{tickets, AppState};
use ticketing_contracts::Timestamp;

/// Change a ticket's title and price, and its sale terms when any is given (owner
/// only; a ticket listed the seed's way not while reserved).
///
/// Terms not given are kept (the seed's client sends only title and price); caps not
/// given are clamped to a new quantity; `"onSaleAt": null` puts the listing on sale
/// now. Terms given to a ticket listed the seed's way count it, with quantity 1 unless
/// given. `eventAt` and `refundPolicy` likewise: absent kept, `null` removed (a policy
/// needs an event time).
#[utoipa::path(put, path = "/api/tickets/{id}", tag = "tickets", operation_id = "updateTicket",
    request_body = TicketInput, security(("session" = []), ("bearer" = [])),
    params(("id" = String, Path, description = "Ticket id")),
    responses(
        (status = 200, description = "Updated (version + 1); publishes `ticket:updated`", body = TicketBody),
        (status = 400, description = "Invalid input, every failing field named (`field`; the \
            messages of `createTicket`, and `quantity`: `Cannot lower quantity below {held}` \
            when orders hold more units; `eventAt`, `refundPolicy`), or `Cannot edit a reserved ticket`", body = ErrorBody),
        (status = 401, description = "Not signed in, or not the owner", body = ErrorBody),
        (status = 404, description = "Unknown or malformed id", body = ErrorBody),
    ))]
pub async fn update(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    Path(id): Path<String>,
    ApiJson(raw): ApiJson<Value>,
) -> ApiResult<Json<TicketBody>> {
    // Read as a plain value first: `TicketInput` reads `"onSaleAt": null` as absent.
    let on_sale_at_null = raw.get("onSaleAt").is_some_and(Value::is_null);
    let refund = refund_input(&raw, true);
    let body: TicketInput =
        serde_json::from_value(raw).map_err(|_| ApiError::bad_request("Malformed JSON body."))?;
    let id = is_valid_id(&id).then(|| TicketId::from(id));
    let terms = terms_input(&body, on_sale_at_null);
    // New terms are checked against the listing's (kept ones, units held), a new policy
    // against its event time.
    let listing = match &id {
        Some(id) if terms.given() || refund.given() => tickets::find(&state.store, id).await?,
        _ => None,
    };
    let current = listing
        .as_ref()
        .map(|t| Current {
            terms: t.terms,
            held: t.held,
        })
        .unwrap_or_default();

    let mut fields = Fields::new();
    let title = fields.parse("title", body.title.as_ref(), Title::parse);
    let price = fields.parse("price", body.price.as_ref(), parse_price);
    // `None` when not given: the listing keeps its terms.
    let terms = terms.resolve(&mut fields, current);
    // `None` when not given: the listing keeps its event time and policy.
    let refund = match refund.given() {
        false => Some(None),
        true => refund
            .resolve(
                &mut fields,
                listing.map(|t| t.refund).unwrap_or_default(),
                Timestamp::now(),
            )
            .map(Some),
    };
    let (title, price, terms, refund) = fields.finish((title, price, terms, refund))?;
    let id = id.ok_or(ApiError::NotFound)?;

    let mut tx = state.store.begin().await?;
    if let Some(ticket) = tickets::update(
        &mut tx,
        &id,
        &user.id,
        &title,
        price,
        terms.as_ref(),
        refund,
    )
    .await?
    {
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
        Some(t) if t.user_id != user.id => Err(ApiError::NotAuthorized),
        // Orders took units after the input was checked.
        Some(t) if terms.is_some_and(|terms| t.held > terms.quantity()) => Err(ApiError::field(
            "quantity",
            format!("Cannot lower quantity below {}", t.held),
        )),
        Some(_) => Err(ApiError::NotAuthorized),
    }
}
