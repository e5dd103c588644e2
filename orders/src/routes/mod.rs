mod cancel;
mod cancellation;
mod create;
mod list;
mod queue;
mod show;
mod waitlist;

use ticketing_kit::validate::is_valid_id;
use ticketing_kit::{ApiError, ApiResult};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use ticketing_contracts::api::orders::{OrderBody, OrderTicketBody};

use ticketing_contracts::{OrderId, UserId};

use crate::domain::Order;
use crate::orders;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list::list, create::create))
        .routes(routes!(show::show, cancel::cancel))
        .routes(routes!(cancellation::request, cancellation::show))
        .merge(waitlist::router())
        .merge(queue::router())
}

impl From<Order> for OrderBody {
    fn from(o: Order) -> Self {
        OrderBody {
            id: o.id.into(),
            user_id: o.user_id.into(),
            status: o.status,
            expires_at: o.deadline.expires_at.to_rfc3339(),
            version: o.version,
            ticket: OrderTicketBody {
                id: o.ticket.id.into(),
                title: o.ticket.title,
                price: o.ticket.price,
                version: o.ticket.version,
            },
            quantity: o.quantity,
            cancel_reason: o.cancel_reason,
        }
    }
}

/// The caller's order: 404 when unknown (or malformed), 401 when someone else's.
async fn own_order(state: &AppState, id: &str, user_id: &UserId) -> ApiResult<Order> {
    if !is_valid_id(id) {
        return Err(ApiError::NotFound);
    }
    let order = orders::find(&state.store, &OrderId::from(id))
        .await?
        .ok_or(ApiError::NotFound)?;
    if order.user_id != *user_id {
        return Err(ApiError::NotAuthorized);
    }
    Ok(order)
}
