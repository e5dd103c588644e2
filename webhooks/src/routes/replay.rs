use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use ticketing_contracts::api::webhooks::{ReplayAccepted, ReplayWebhook};
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::json::ApiJson;
use ticketing_kit::validate::Fields;
use ticketing_kit::ApiResult;

use super::own_endpoint;
use crate::{deliveries, AppState};

/// Send an endpoint's deliveries again from `fromSeq` on: in the same order, with the
/// same event ids (a receiver that deduplicates by `webhook-id` sees them as repeats).
#[utoipa::path(post, path = "/api/webhooks/{id}/replay", tag = "webhooks", operation_id = "replayWebhook",
    request_body = ReplayWebhook, security(("session" = []), ("bearer" = [])),
    params(("id" = String, Path, description = "Endpoint id")),
    responses(
        (status = 202, description = "Queued again", body = ReplayAccepted),
        (status = 400, description = "Missing or malformed fromSeq", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "Unknown, malformed, or another seller's endpoint", body = ErrorBody),
    ))]
pub async fn replay(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReplayWebhook>,
) -> ApiResult<(StatusCode, Json<ReplayAccepted>)> {
    let mut fields = Fields::new();
    let from_seq = fields.parse("fromSeq", body.from_seq.as_ref(), |v| {
        v.as_i64()
            .filter(|n| *n >= 0)
            .ok_or_else(|| "FromSeq must be a whole number".to_owned())
    });
    let from_seq = fields.finish(from_seq)?;
    let endpoint = own_endpoint(&state, &user.id, &id).await?;
    let queued = deliveries::replay(&state.store, &endpoint.id, from_seq).await?;
    state.wake.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(ReplayAccepted {
            queued: queued as i64,
        }),
    ))
}
