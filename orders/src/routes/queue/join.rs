use axum::extract::{Path, State};
use axum::Json;
use ticketing_contracts::api::queue::QueueBody;
use ticketing_contracts::Timestamp;
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::ApiResult;

use crate::queue::{self, JoinRefused};
use crate::AppState;

/// Join a listing's on-sale queue (again: the same place). Before the sale everyone is
/// drawn in random order at `onSaleAt`; later joins queue behind them in arrival order.
#[utoipa::path(post, path = "/api/queue/{ticketId}", tag = "queue", operation_id = "joinQueue",
    security(("session" = []), ("bearer" = [])),
    params(("ticketId" = String, Path, description = "Ticket id")),
    responses(
        (status = 200, description = "In the queue", body = QueueBody),
        (status = 400, description = "`Not on sale yet` (more than 30 minutes before the sale); the ticket has no queue", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "Unknown ticket", body = ErrorBody),
        (status = 409, description = "A ticket listed moments ago, not known here yet: try again (`Retry-After`)", body = ErrorBody),
    ))]
pub async fn join(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    Path(ticket_id): Path<String>,
) -> ApiResult<Json<QueueBody>> {
    let ticket = super::listing(ticket_id)?;
    let rate = state.settings.queue_rate();
    state.queued.note(&ticket);
    let join = || {
        queue::join(
            &state.store,
            &state.queued,
            &state.late_joins,
            &ticket,
            &user.id,
            Timestamp::now(),
            rate,
        )
    };
    let place = match join().await? {
        // Listed moments ago, its `ticket:created` maybe still on the way: wait for it a
        // little, as an order does (decision 0029).
        Err(JoinRefused::Unknown) => {
            let exists = || crate::tickets::exists(state.store.reader(), &ticket);
            (state.arriving)
                .wait_known(ticket.as_str(), "Ticket", exists)
                .await?;
            join().await??
        }
        joined => joined?,
    };
    Ok(Json(place.into()))
}
