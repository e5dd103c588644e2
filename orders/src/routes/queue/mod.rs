//! `/api/queue/{ticketId}`: join a listing's on-sale queue and see where you stand.

mod join;
mod show;

use ticketing_contracts::api::queue::{QueueBody, QueuePlace, QueueStatus};
use ticketing_contracts::{TicketId, Timestamp, UserId};
use ticketing_kit::validate::is_valid_id;
use ticketing_kit::ApiError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::claim::Refused;
use crate::orders::PlaceError;
use crate::queue::{self, JoinRefused, Place};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show::show, join::join))
}

impl From<Place> for QueueBody {
    fn from(p: Place) -> Self {
        QueueBody {
            status: p.status,
            position: p.position,
            eta_seconds: p.eta_seconds,
            opens_at: p.opens_at.to_rfc3339(),
            admitted_until: p.admitted_until.map(Timestamp::to_rfc3339),
        }
    }
}

impl From<Place> for QueuePlace {
    fn from(p: Place) -> Self {
        QueuePlace {
            position: p.position,
            eta_seconds: p.eta_seconds,
        }
    }
}

impl From<JoinRefused> for ApiError {
    fn from(refused: JoinRefused) -> ApiError {
        match refused {
            JoinRefused::Unknown => ApiError::NotFound,
            JoinRefused::NoQueue => ApiError::bad_request("This ticket is on sale without a queue"),
            JoinRefused::TooEarly => ApiError::bad_request(super::create::NOT_ON_SALE),
        }
    }
}

/// The listing a path names: a malformed id is as unknown as any other.
fn listing(id: String) -> Result<TicketId, ApiError> {
    if !is_valid_id(&id) {
        return Err(ApiError::NotFound);
    }
    Ok(TicketId::from(id))
}

/// The answer to an order the queue holds back: the caller joins (or stays in) it.
pub(super) async fn queued(state: &AppState, ticket: &TicketId, user: &UserId) -> ApiError {
    state.queued.note(ticket);
    let now = Timestamp::now();
    match queue::join(
        &state.store,
        &state.queued,
        &state.late_joins,
        ticket,
        user,
        now,
        state.settings.queue_rate(),
    )
    .await
    {
        Ok(Ok(place)) => held_back(place),
        Ok(Err(refused)) => refused.into(),
        Err(e) => e.into(),
    }
}

/// The answer to an order the queue holds back at `place`: where it stands (429), or,
/// every unit taken, the refusal an order without a queue gets (not a 429 to poll on).
pub(super) fn held_back(place: Place) -> ApiError {
    if place.status == QueueStatus::SoldOut {
        return PlaceError::Refused(Refused::SoldOut).into();
    }
    ApiError::InQueue(place.into())
}
