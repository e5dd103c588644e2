//! `/api/orders/{orderId}/cancellation`: a buyer cancels a paid order for a refund under
//! its listing's policy (issue 32), and follows it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use ticketing_contracts::api::orders::CancellationBody;
use ticketing_contracts::Timestamp;
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::{ApiError, ApiResult};

use super::own_order;
use crate::cancellations::{self, Refusal};
use crate::AppState;

/// Cancel one of the caller's paid orders for a refund: the total less the policy's fee.
///
/// Answered at once (202, `status: requested`); the refund follows, and `GET` shows
/// `status` turn `refunded` (the order `cancelled` with `cancelReason: "refunded"`, its
/// units free again) or `failed` (the provider refused; the order stays paid). One
/// cancellation per order: a repeated request, also a concurrent or a later one,
/// answers with the same body.
#[utoipa::path(post, path = "/api/orders/{orderId}/cancellation", tag = "orders",
    operation_id = "cancelForRefund",
    security(("session" = []), ("bearer" = [])),
    params(("orderId" = String, Path, description = "Order id")),
    responses(
        (status = 202, description = "Requested (or already was); publishes `order:cancel-requested`", body = CancellationBody,
            links(("showCancellation" = (operation_id = "showCancellation", parameters(("orderId" = "$response.body#/orderId")))))),
        (status = 400, description = "`Order is not paid`; `This ticket cannot be cancelled` (its listing has no refund policy)", body = ErrorBody),
        (status = 401, description = "Not signed in, or not the caller's order", body = ErrorBody),
        (status = 403, description = "`Cancellation closed N hours before the event` (N: the policy's `cutoffHours`)", body = ErrorBody),
        (status = 404, description = "Unknown or malformed id", body = ErrorBody),
    ))]
pub async fn request(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    Path(order_id): Path<String>,
) -> ApiResult<(StatusCode, Json<CancellationBody>)> {
    let order = own_order(&state, &order_id, &user.id).await?;
    // The request as accepted, whatever has happened since: every repeat, however late,
    // gets the same body; `GET` says where it stands.
    let accepted = |c: cancellations::Cancellation| -> (StatusCode, Json<CancellationBody>) {
        (StatusCode::ACCEPTED, Json(c.into_requested().into()))
    };
    if let Some(made) = cancellations::find_for_order(state.store.reader(), &order.id).await? {
        return Ok(accepted(made));
    }
    let (refund, fee) = cancellations::quote(&order, Timestamp::now())?;
    match cancellations::request(&state.store, &order, refund, fee).await? {
        Some(made) => Ok(accepted(made)),
        // Complete when read, not at the write, and nobody cancelled it for a refund.
        None => Err(Refusal::NotPaid.into()),
    }
}

/// The cancellation of one of the caller's orders.
#[utoipa::path(get, path = "/api/orders/{orderId}/cancellation", tag = "orders",
    operation_id = "showCancellation",
    security(("session" = []), ("bearer" = [])),
    params(("orderId" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "The cancellation", body = CancellationBody),
        (status = 401, description = "Not signed in, or not the caller's order", body = ErrorBody),
        (status = 404, description = "Unknown or malformed id, or the order has no cancellation", body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    Path(order_id): Path<String>,
) -> ApiResult<Json<CancellationBody>> {
    let order = own_order(&state, &order_id, &user.id).await?;
    let made = cancellations::find_for_order(state.store.reader(), &order.id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(made.into()))
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        match refusal {
            Refusal::NotPaid | Refusal::NoPolicy => ApiError::bad_request(refusal.to_string()),
            Refusal::Closed(_) => ApiError::Forbidden(refusal.to_string()),
        }
    }
}
