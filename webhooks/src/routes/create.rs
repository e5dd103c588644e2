use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use ticketing_contracts::api::webhooks::{CreateWebhook, MAX_URL_CHARS};
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::json::ApiJson;
use ticketing_kit::validate::{as_str, Fields};
use ticketing_kit::ApiResult;

use super::WebhookBody;
use crate::{endpoints, AppState};

/// Register an endpoint for the caller's events: those of their listings, and of the
/// orders and payments on them, of the subjects named. The answer shows the signing
/// secret, once.
#[utoipa::path(post, path = "/api/webhooks", tag = "webhooks", operation_id = "createWebhook",
    request_body = CreateWebhook, security(("session" = []), ("bearer" = [])),
    responses(
        (status = 201, description = "Registered; `secret` is shown this once", body = WebhookBody),
        (status = 400, description = "A bad `url` (not http(s), too long, a private or loopback host) or `events` (empty, an unknown subject)", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> ApiResult<(StatusCode, Json<WebhookBody>)> {
    let allow_private = state.settings.allow_private;
    let mut fields = Fields::new();
    let url = fields.parse("url", body.url.as_ref(), |v| {
        endpoints::parse_url(as_str("url", v)?, allow_private, MAX_URL_CHARS)
    });
    let events = fields.parse("events", body.events.as_ref(), endpoints::parse_events);
    let (url, events) = fields.finish((url, events))?;
    if !allow_private {
        endpoints::refuse_internal_name(&url).await?;
    }
    let endpoint = endpoints::create(&state.store, &user.id, url, events).await?;
    Ok((StatusCode::CREATED, Json(super::body_of(endpoint, true))))
}
