use axum::extract::State;
use axum::Json;
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::ApiResult;

use super::OrderBody;
use crate::{orders, AppState};

/// The caller's orders, oldest first, each with its ticket.
#[utoipa::path(get, path = "/api/orders", tag = "orders", operation_id = "listOrders",
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The caller's orders", body = [OrderBody]),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
) -> ApiResult<Json<Vec<OrderBody>>> {
    let orders = orders::list_for_user(&state.store, &user.id).await?;
    Ok(Json(orders.into_iter().map(OrderBody::from).collect()))
}
