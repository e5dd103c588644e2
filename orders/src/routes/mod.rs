mod cancel;
mod create;
mod list;
mod show;

use serde::Serialize;
use ticketing_shared::money::Cents;
use ticketing_shared::timefmt::format_millis;
use ticketing_shared::validate::is_valid_id;
use ticketing_shared::{ApiError, ApiResult};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::orders::{self, Order};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list::list, create::create))
        .routes(routes!(show::show, cancel::cancel))
}

#[derive(Serialize, ToSchema)]
pub struct OrderTicketBody {
    pub id: String,
    pub title: String,
    #[schema(value_type = f64, example = 10.99)]
    pub price: Cents,
    pub version: i64,
}

/// An order with its ticket.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderBody {
    pub id: String,
    pub user_id: String,
    /// `created`, `cancelled`, `awaiting:payment` or `complete`.
    pub status: String,
    /// ISO-8601 UTC with milliseconds.
    pub expires_at: String,
    pub version: i64,
    pub ticket: OrderTicketBody,
}

impl From<Order> for OrderBody {
    fn from(o: Order) -> Self {
        OrderBody {
            id: o.id,
            user_id: o.user_id,
            status: o.status,
            expires_at: format_millis(o.expires_at),
            version: o.version,
            ticket: OrderTicketBody {
                id: o.ticket.id,
                title: o.ticket.title,
                price: o.ticket.price,
                version: o.ticket.version,
            },
        }
    }
}

/// The caller's order: 404 when unknown (or malformed), 401 when someone else's.
async fn own_order(state: &AppState, id: &str, user_id: &str) -> ApiResult<Order> {
    if !is_valid_id(id) {
        return Err(ApiError::NotFound);
    }
    let order = orders::find(&state.store, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if order.user_id != user_id {
        return Err(ApiError::NotAuthorized);
    }
    Ok(order)
}
