mod create;
mod list;
mod show;
mod update;

use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::tickets::Ticket;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list::list, create::create))
        .routes(routes!(show::show, update::update))
}

/// A ticket as the API shows it; `orderId` only while reserved.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketBody {
    pub id: String,
    pub title: String,
    /// Decimal with at most two places, e.g. `10.99`.
    #[schema(value_type = f64, example = 10.99)]
    pub price: ticketing_shared::money::Cents,
    pub user_id: String,
    pub version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
}

impl From<Ticket> for TicketBody {
    fn from(t: Ticket) -> Self {
        TicketBody {
            id: t.id,
            title: t.title,
            price: t.price,
            user_id: t.user_id,
            version: t.version,
            order_id: t.order_id,
        }
    }
}

/// Create and update body.
#[derive(serde::Deserialize, ToSchema)]
pub struct TicketInput {
    #[schema(value_type = String, example = "Concert")]
    pub title: Option<serde_json::Value>,
    /// A number or numeric string, > 0, at most 1,000,000, at most two decimals.
    #[schema(value_type = f64, example = 20)]
    pub price: Option<serde_json::Value>,
}
