use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use ticketing_contracts::api::payments::CreatePayment;
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::idempotency::{self, IdempotencyKey};
use ticketing_kit::json::ApiJson;
use ticketing_kit::keyed::KeyRefusals;
use ticketing_kit::validate::{as_str, bounded, parse_id, Fields};
use ticketing_kit::{ApiError, ApiResult};

use super::PaymentBody;
use ticketing_contracts::OrderId;

use crate::pay::{self, PayError};
use crate::AppState;

fn parse_token(raw: &Value) -> Result<String, String> {
    let token = as_str("token", raw)?.trim();
    Ok(bounded("token", token, "Token is required", 255)?.to_owned())
}

/// Pay one of the caller's orders: charges its price (USD cents) with `token`.
///
/// Payments of one order are serialised (a second one while the first is in progress is
/// refused), and a charge is accepted only if the order is still open and unexpired when
/// the payment commits; otherwise the charge is refunded and the request refused.
#[utoipa::path(post, path = "/api/payments", tag = "payments", operation_id = "createPayment",
    request_body = CreatePayment, security(("session" = []), ("bearer" = [])),
    responses(
        (status = 201, description = "Paid; publishes `payment:created`", body = PaymentBody),
        (status = 400, description = "Missing token or orderId, a cancelled, expired or already paid order, a payment in progress, or the card was declined (the provider's reason)", body = ErrorBody),
        (status = 401, description = "Not signed in, or not the caller's order", body = ErrorBody),
        (status = 404, description = "Unknown order (an id that is not a UUIDv7 made in the last 10 s)", body = ErrorBody),
        (status = 502, description = "The payment provider answered with an error: try again", body = ErrorBody),
        (status = 503, description = "The payment provider is unavailable: nothing was charged, try again", body = ErrorBody),
        KeyRefusals,
        // After `KeyRefusals`, whose 409 it replaces in the document (one entry a status).
        (status = 409, description = "`Order is not known here yet; try again`: an order placed moments ago has not reached the payments service within 2 s (`Retry-After: 1`); or a request with the same `Idempotency-Key` is still in progress", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait (the order not known yet)"))),
    ),
    params(IdempotencyKey))]
pub async fn create(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<CreatePayment>,
) -> ApiResult<Response> {
    let mut fields = Fields::new();
    let token = fields.parse("token", body.token.as_ref(), parse_token);
    let order_id = fields.parse("orderId", body.order_id.as_ref(), |v| {
        parse_id("orderId", v)
    });
    let (token, order_id) = fields.finish((token, order_id))?;
    let order_id = OrderId::from(order_id);
    let keyed = key.scoped(&user.id, "POST /api/payments", &body);
    idempotency::once(&state.store, keyed.as_ref(), async || {
        let pay = async || pay::pay(&state, &user.id, &order_id, &token, keyed.as_ref()).await;
        let payment = match pay().await {
            // Placed moments ago, its `order:created` maybe still on the way: wait for
            // it a little (decision 0029), then pay.
            Err(PayError::UnknownOrder) => {
                let exists = || crate::orders::exists(state.store.reader(), &order_id);
                (state.arriving)
                    .wait_known(order_id.as_str(), "Order", exists)
                    .await?;
                pay().await?
            }
            other => other?,
        };
        Ok((StatusCode::CREATED, Json(PaymentBody::from(payment))).into_response())
    })
    .await
}

impl From<PayError> for ApiError {
    fn from(err: PayError) -> ApiError {
        match err {
            PayError::UnknownOrder => ApiError::NotFound,
            PayError::NotOwner => ApiError::NotAuthorized,
            PayError::Refused(message) => ApiError::bad_request(message),
            PayError::Declined(message) => ApiError::BadRequest(message),
            PayError::Unavailable => ApiError::Unavailable,
            PayError::ProviderFailed(err) => {
                tracing::error!(error = format!("{err:#}"), "payment provider error");
                ApiError::BadGateway
            }
            PayError::Internal(err) => ApiError::Internal(err),
        }
    }
}
