use axum::extract::{Path, State};
use axum::Json;
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::ApiResult;

use super::{own_order, OrderBody};
use crate::AppState;

/// One of the caller's orders.
#[utoipa::path(get, path = "/api/orders/{orderId}", tag = "orders", operation_id = "showOrder",
    security(("session" = []), ("bearer" = [])),
    params(("orderId" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order with its ticket", body = OrderBody),
        (status = 401, description = "Not signed in, or not the caller's order", body = ErrorBody),
        (status = 404, description = "Unknown or malformed id", body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    Path(order_id): Path<String>,
) -> ApiResult<Json<OrderBody>> {
    Ok(Json(own_order(&state, &order_id, &user.id).await?.into()))
}
