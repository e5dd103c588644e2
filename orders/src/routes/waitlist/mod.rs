//! `/api/waitlist`: join a sold-out listing's line, see where you stand, leave it.

mod join;
mod leave;
mod list;
mod show;

use ticketing_contracts::api::waitlist::WaitlistEntryBody;
use ticketing_contracts::UserId;
use ticketing_kit::validate::is_valid_id;
use ticketing_kit::{ApiError, ApiResult};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::waitlist::{self, Entry};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list::list, join::join))
        .routes(routes!(show::show, leave::leave))
}

impl From<Entry> for WaitlistEntryBody {
    fn from(e: Entry) -> Self {
        WaitlistEntryBody {
            id: e.id,
            ticket_id: e.ticket_id.into(),
            quantity: e.quantity,
            status: e.status,
            position: e.position,
            joined_at: e.joined_at.to_rfc3339(),
            order_id: e.order_id.map(String::from),
            offer_expires_at: e.offer_expires_at.map(|at| at.to_rfc3339()),
        }
    }
}

/// The caller's entry: 404 when unknown (or malformed), 401 when someone else's.
async fn own_entry(state: &AppState, id: &str, user_id: &UserId) -> ApiResult<Entry> {
    if !is_valid_id(id) {
        return Err(ApiError::NotFound);
    }
    let entry = waitlist::find(&state.store, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if entry.user_id != *user_id {
        return Err(ApiError::NotAuthorized);
    }
    Ok(entry)
}
