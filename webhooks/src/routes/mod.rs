mod create;
mod delete;
mod deliveries;
mod list;
mod replay;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use ticketing_contracts::api::webhooks::{DeliveryBody, WebhookBody};
use ticketing_contracts::time::format_millis;
use ticketing_contracts::UserId;
use ticketing_kit::validate::is_valid_id;
use ticketing_kit::{ApiError, ApiResult};

use crate::endpoints::{self, Endpoint};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list::list, create::create))
        .routes(routes!(delete::delete))
        .routes(routes!(deliveries::deliveries))
        .routes(routes!(replay::replay))
}

/// An endpoint as the API shows it; the secret only in the answer to its creation.
fn body_of(e: Endpoint, with_secret: bool) -> WebhookBody {
    WebhookBody {
        id: e.id,
        url: e.url,
        events: e.events.iter().map(|s| s.as_str().to_owned()).collect(),
        secret: with_secret.then_some(e.secret),
        created_at: format_millis(e.created_at),
        disabled_at: e.disabled_at.map(format_millis),
    }
}

/// The caller's endpoint `id`: 404 for an unknown or malformed id, and for another
/// seller's (whose endpoints are none of the caller's business).
async fn own_endpoint(state: &AppState, user: &UserId, id: &str) -> ApiResult<Endpoint> {
    if !is_valid_id(id) {
        return Err(ApiError::NotFound);
    }
    endpoints::find_own(state.store.reader(), user, id)
        .await?
        .ok_or(ApiError::NotFound)
}
