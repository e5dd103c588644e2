use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;
use ticketing_shared::auth::RequireUser;
use ticketing_shared::error::ErrorBody;
use ticketing_shared::json::ApiJson;
use ticketing_shared::timefmt::now_millis;
use ticketing_shared::validate::{as_str, parse_id, Fields};
use ticketing_shared::{ApiError, ApiResult};
use utoipa::ToSchema;

use super::PaymentBody;
use crate::orders::{self, OrderCopy};
use crate::payments::{self, RecordError};
use crate::provider::{
    idempotency_key, refund_idempotency_key, Charge, ChargeError, ChargeRequest,
};
use crate::AppState;

pub const CANCELLED: &str = "Cannot pay for a cancelled order";
pub const EXPIRED: &str = "Order has expired";
pub const ALREADY_PAID: &str = "Order is already paid";
pub const IN_PROGRESS: &str = "A payment for this order is already in progress";

#[derive(serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatePayment {
    /// The card source: a Stripe token (`tok_...`).
    #[schema(value_type = String)]
    pub token: Option<Value>,
    #[schema(value_type = String)]
    pub order_id: Option<Value>,
}

fn parse_token(raw: &Value) -> Result<String, String> {
    let token = as_str("token", raw)?.trim();
    if token.is_empty() {
        return Err("Token is required".into());
    }
    if token.len() > 255 {
        return Err("Token must be at most 255 characters".into());
    }
    Ok(token.to_owned())
}

/// Pay one of the caller's orders: charges its price (USD cents) with `token`.
///
/// Payments of one order are serialised (a second one while the first is in progress is
/// refused), and a charge is accepted only if the order is still open and unexpired when
/// the payment commits; otherwise the charge is refunded and the request refused.
#[utoipa::path(post, path = "/api/payments", tag = "payments", request_body = CreatePayment,
    responses(
        (status = 201, description = "Paid; publishes `payment:created`", body = PaymentBody),
        (status = 400, description = "Missing token or orderId, a cancelled, expired or already paid order, a payment in progress, or the card was declined (the provider's reason)", body = ErrorBody),
        (status = 401, description = "Not signed in, or not the caller's order", body = ErrorBody),
        (status = 404, description = "Unknown order", body = ErrorBody),
        (status = 503, description = "The payment provider is unavailable: nothing was charged, try again", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    ApiJson(body): ApiJson<CreatePayment>,
) -> ApiResult<(StatusCode, Json<PaymentBody>)> {
    let mut fields = Fields::new();
    let token = fields.parse("token", body.token.as_ref(), parse_token);
    let order_id = fields.parse("orderId", body.order_id.as_ref(), |v| {
        parse_id("orderId", v)
    });
    let (token, order_id) = fields.finish((token, order_id))?;

    let claim = uuid::Uuid::new_v4().simple().to_string();
    let order = claim_order(&state, &order_id, &user.id, &claim).await?;

    let request = ChargeRequest::usd(order.price, &token, idempotency_key(&order.id, &token))
        .with_description(format!("Order {}", order.id));
    let charge = match state.provider.charge(&request).await {
        Ok(charge) => charge,
        Err(err) => {
            release_quietly(&state, &order.id, &claim).await;
            return Err(match err {
                // The order stays payable: the claim is released.
                ChargeError::Declined { message, .. } => ApiError::bad_request(message),
                ChargeError::Unavailable(reason) => {
                    tracing::warn!(order = %order.id, %reason, "payment provider unavailable");
                    ApiError::Unavailable
                }
                ChargeError::Other(e) => ApiError::Internal(e.context("charging the card")),
            });
        }
    };

    match accept(&state, &order.id, &claim, &charge).await {
        Ok(Accepted::Paid(payment)) => {
            state.outbox.notify();
            Ok((StatusCode::CREATED, Json(payment.into())))
        }
        Ok(Accepted::Refused { message, refund }) => {
            if refund {
                refund_charge(&state, &order.id, &charge).await?;
            }
            Err(ApiError::bad_request(message))
        }
        Err(e) => {
            // The charge stands but was not recorded: a retry with the same token gets
            // the same charge back (same idempotency key) and records it then.
            release_quietly(&state, &order.id, &claim).await;
            Err(ApiError::Internal(
                anyhow::Error::from(e).context(format!("recording charge {}", charge.id)),
            ))
        }
    }
}

/// The checks before charging, in the contract's order, then the order's payment claim,
/// all in one transaction.
async fn claim_order(
    state: &AppState,
    order_id: &str,
    user_id: &str,
    claim: &str,
) -> ApiResult<OrderCopy> {
    let mut tx = state.store.begin().await?;
    let order = orders::find(&mut tx, order_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if order.user_id != user_id {
        return Err(ApiError::NotAuthorized);
    }
    if let Some(message) = closed(&order) {
        return Err(ApiError::bad_request(message));
    }
    if payments::find_for_order(&mut tx, order_id).await?.is_some() {
        return Err(ApiError::bad_request(ALREADY_PAID));
    }
    if !payments::claim(&mut tx, order_id, claim).await? {
        return Err(ApiError::bad_request(IN_PROGRESS));
    }
    // A payment committed between the look above and the claim.
    if payments::find_for_order(&mut tx, order_id).await?.is_some() {
        return Err(ApiError::bad_request(ALREADY_PAID));
    }
    tx.commit().await?;
    Ok(order)
}

/// Why an order can no longer be paid, if so.
fn closed(order: &OrderCopy) -> Option<&'static str> {
    if order.is_cancelled() {
        Some(CANCELLED)
    } else if order.is_expired(now_millis()) {
        Some(EXPIRED)
    } else {
        None
    }
}

enum Accepted {
    Paid(payments::Payment),
    /// Not accepted; `refund` when the charge must be given back.
    Refused {
        message: &'static str,
        refund: bool,
    },
}

/// Accept the charge only if the order is still open and unexpired now, at commit: the
/// payment, its event and the claim's release commit together.
async fn accept(
    state: &AppState,
    order_id: &str,
    claim: &str,
    charge: &Charge,
) -> Result<Accepted, sqlx::Error> {
    let mut tx = state.store.begin().await?;
    let refused = match orders::find(&mut tx, order_id).await? {
        None => Some(CANCELLED),
        Some(order) => closed(&order),
    };
    if let Some(message) = refused {
        payments::release(&mut tx, order_id, claim).await?;
        tx.commit().await?;
        return Ok(Accepted::Refused {
            message,
            refund: true,
        });
    }
    if let Some(existing) = payments::find_for_order(&mut tx, order_id).await? {
        payments::release(&mut tx, order_id, claim).await?;
        tx.commit().await?;
        return Ok(Accepted::Refused {
            message: ALREADY_PAID,
            refund: existing.stripe_id != charge.id,
        });
    }
    match payments::record(&mut tx, order_id, &charge.id).await {
        Ok(payment) => {
            payments::release(&mut tx, order_id, claim).await?;
            tx.commit().await?;
            Ok(Accepted::Paid(payment))
        }
        // The unique index, the final guarantee (not reached while claims serialise).
        Err(RecordError::AlreadyPaid) => {
            drop(tx);
            payments::release_now(&state.store, order_id, claim).await?;
            Ok(Accepted::Refused {
                message: ALREADY_PAID,
                refund: true,
            })
        }
        Err(RecordError::Db(e)) => Err(e),
    }
}

/// Give back a charge that was not accepted. If the provider cannot be reached the
/// request fails with 503: retrying it (same token) gets the same charge back and
/// refunds it then (same refund idempotency key).
async fn refund_charge(state: &AppState, order_id: &str, charge: &Charge) -> ApiResult<()> {
    match state
        .provider
        .refund(&charge.id, &refund_idempotency_key(&charge.id))
        .await
    {
        Ok(()) => {
            tracing::info!(order = %order_id, charge = %charge.id, "refunded a charge the order could no longer accept");
            Ok(())
        }
        Err(ChargeError::Unavailable(reason)) => {
            tracing::error!(order = %order_id, charge = %charge.id, %reason, "refund pending: provider unavailable");
            Err(ApiError::Unavailable)
        }
        Err(e) => Err(ApiError::Internal(
            anyhow::Error::from(e).context(format!("refunding charge {}", charge.id)),
        )),
    }
}

async fn release_quietly(state: &AppState, order_id: &str, claim: &str) {
    if let Err(e) = payments::release_now(&state.store, order_id, claim).await {
        tracing::warn!(order = %order_id, error = %e, "could not release a payment claim; it goes stale");
    }
}
