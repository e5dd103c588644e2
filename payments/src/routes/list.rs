use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::Json;
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::validate::is_valid_id;
use ticketing_kit::{ApiError, ApiResult};

use super::PaymentBody;
use crate::{payments, AppState};

/// The caller's payments, oldest first, each with its refund if the charge was given
/// back (a payment that reached an order already cancelled is refunded automatically).
#[utoipa::path(get, path = "/api/payments", tag = "payments", operation_id = "listPayments",
    security(("session" = []), ("bearer" = [])),
    params(("orderId" = Option<String>, Query, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "Only the payments of this order")),
    responses(
        (status = 200, description = "The caller's payments", body = [PaymentBody]),
        (status = 400, description = "Malformed orderId", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Vec<PaymentBody>>> {
    let order_id = query.get("orderId").map(String::as_str);
    if order_id.is_some_and(|id| !is_valid_id(id)) {
        return Err(ApiError::field("orderId", "Order id must be a valid id"));
    }
    let payments = payments::list_for_buyer(&state.store, &user.id, order_id).await?;
    Ok(Json(payments.into_iter().map(PaymentBody::from).collect()))
}
