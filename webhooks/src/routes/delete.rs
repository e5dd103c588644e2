use axum::extract::{Path, State};
use axum::http::StatusCode;
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::validate::is_valid_id;
use ticketing_kit::{ApiError, ApiResult};

use crate::{endpoints, AppState};

/// Remove an endpoint and its deliveries: nothing more is sent to it.
#[utoipa::path(delete, path = "/api/webhooks/{id}", tag = "webhooks", operation_id = "deleteWebhook",
    security(("session" = []), ("bearer" = [])),
    params(("id" = String, Path, description = "Endpoint id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "Unknown, malformed, or another seller's", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if !is_valid_id(&id) || !endpoints::delete(&state.store, &user.id, &id).await? {
        return Err(ApiError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT)
}
