use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use ticketing_contracts::time::format_millis;
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::{ApiError, ApiResult};

use super::{own_endpoint, DeliveryBody};
use crate::{deliveries, AppState};

/// An endpoint's deliveries in queueing order, 100 a page: the next page starts after
/// the last `seq` seen (`cursor`).
#[utoipa::path(get, path = "/api/webhooks/{id}/deliveries", tag = "webhooks", operation_id = "listWebhookDeliveries",
    security(("session" = []), ("bearer" = [])),
    params(
        ("id" = String, Path, description = "Endpoint id"),
        ("cursor" = Option<i64>, Query, minimum = 0, description = "Only deliveries after this `seq`"),
    ),
    responses(
        (status = 200, description = "A page of deliveries, oldest first", body = [DeliveryBody]),
        (status = 400, description = "Malformed cursor", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "Unknown, malformed, or another seller's endpoint", body = ErrorBody),
    ))]
pub async fn deliveries(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Vec<DeliveryBody>>> {
    let cursor = match query.get("cursor").map(|c| c.trim()) {
        None | Some("") => 0,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|c| *c >= 0)
            .ok_or_else(|| ApiError::field("cursor", "Cursor must be a whole number"))?,
    };
    let endpoint = own_endpoint(&state, &user.id, &id).await?;
    let page = deliveries::list(&state.store, &endpoint.id, cursor).await?;
    Ok(Json(
        page.into_iter()
            .map(|d| DeliveryBody {
                seq: d.seq,
                event_id: d.event_id,
                subject: d.subject,
                status: d.status,
                attempts: d.attempts,
                delivered_at: d.delivered_at.map(format_millis),
            })
            .collect(),
    ))
}
