use axum::extract::State;
use axum::Json;
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::ApiResult;

use super::WebhookBody;
use crate::{endpoints, AppState};

/// The caller's endpoints, oldest first (without their secrets).
#[utoipa::path(get, path = "/api/webhooks", tag = "webhooks", operation_id = "listWebhooks",
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The caller's endpoints", body = [WebhookBody]),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
) -> ApiResult<Json<Vec<WebhookBody>>> {
    let list = endpoints::list_for(&state.store, &user.id).await?;
    Ok(Json(
        list.into_iter().map(|e| super::body_of(e, false)).collect(),
    ))
}
