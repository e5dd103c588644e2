use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use ticketing_contracts::api::checkin::PassBody;
use ticketing_contracts::{OrderId, PassId};
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::validate::is_valid_id;
use ticketing_kit::{ApiError, ApiResult};

use crate::passes::{self, ReissueError};
use crate::AppState;

/// The caller's passes of one of their orders, by unit: none until the order is paid
/// (and for a moment after, while the passes are issued).
#[utoipa::path(get, path = "/api/passes", tag = "checkin", operation_id = "listPasses",
    security(("session" = []), ("bearer" = [])),
    params(("orderId" = String, Query, description = "The order")),
    responses(
        (status = 200, description = "The order's passes", body = [PassBody]),
        (status = 400, description = "No or a malformed `orderId`", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Vec<PassBody>>> {
    let order = query
        .get("orderId")
        .map(|o| o.trim())
        .filter(|o| is_valid_id(o))
        .ok_or_else(|| ApiError::field("orderId", "OrderId must be an order's id"))?;
    let list =
        passes::of_order(&state.store, &state.signer, &OrderId::from(order), &user.id).await?;
    Ok(Json(list))
}

/// A new code for one of the caller's passes: its epoch rises, every older code is
/// revoked (gates learn it from the changes feed).
#[utoipa::path(post, path = "/api/passes/{id}/reissue", tag = "checkin", operation_id = "reissuePass",
    security(("session" = []), ("bearer" = [])),
    params(("id" = String, Path, description = "Pass id")),
    responses(
        (status = 200, description = "The pass with its new code", body = PassBody),
        (status = 400, description = "The pass is revoked or checked in", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "Unknown, malformed, or another buyer's", body = ErrorBody),
    ))]
pub async fn reissue(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    Path(id): Path<String>,
) -> ApiResult<Json<PassBody>> {
    if !is_valid_id(&id) {
        return Err(ApiError::NotFound);
    }
    match passes::reissue(&state.store, &state.signer, &PassId::from(id), &user.id).await {
        Ok(pass) => Ok(Json(pass)),
        Err(ReissueError::NotFound) => Err(ApiError::NotFound),
        Err(ReissueError::Revoked) => Err(ApiError::bad_request("This pass is revoked")),
        Err(ReissueError::CheckedIn) => Err(ApiError::bad_request("This pass has been checked in")),
        Err(ReissueError::Db(err)) => Err(err.into()),
    }
}
