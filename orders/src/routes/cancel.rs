use axum::extract::{Path, State};
use axum::http::StatusCode;
use ticketing_contracts::api::orders::CancelReason;
use ticketing_contracts::{OrderStatus, Timestamp};
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::{ApiError, ApiResult};

use super::own_order;
use crate::{orders, AppState};

/// Cancel one of the caller's orders; its ticket is released.
#[utoipa::path(delete, path = "/api/orders/{orderId}", tag = "orders", operation_id = "cancelOrder",
    security(("session" = []), ("bearer" = [])),
    params(("orderId" = String, Path, description = "Order id")),
    responses(
        (status = 204, description = "Cancelled (or already was); publishes `order:cancelled`"),
        (status = 400, description = "`Cannot cancel a completed order`", body = ErrorBody),
        (status = 401, description = "Not signed in, or not the caller's order", body = ErrorBody),
        (status = 404, description = "Unknown or malformed id", body = ErrorBody),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    Path(order_id): Path<String>,
) -> ApiResult<StatusCode> {
    let order_id = own_order(&state, &order_id, &user.id).await?.id;
    let mut tx = state.store.begin().await?;
    if orders::cancel(
        &mut tx,
        &order_id,
        CancelReason::CancelledByBuyer,
        Some(&user.id),
        state.settings.at(Timestamp::now()).offer,
    )
    .await?
    .is_some()
    {
        tx.commit().await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    // Not open any more: decided by the state the write saw.
    match orders::status_of(&mut tx, &order_id).await? {
        Some(OrderStatus::Complete) => {
            Err(ApiError::bad_request("Cannot cancel a completed order"))
        }
        _ => Ok(StatusCode::NO_CONTENT),
    }
}
