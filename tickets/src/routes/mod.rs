mod create;
mod list;
mod show;
mod update;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use ticketing_contracts::api::tickets::{TicketBody, TicketInput};

use crate::tickets::Ticket;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list::list, create::create))
        .routes(routes!(show::show, update::update))
}

impl From<Ticket> for TicketBody {
    fn from(t: Ticket) -> Self {
        TicketBody {
            id: t.id.into(),
            title: t.title,
            price: t.price,
            user_id: t.user_id.into(),
            version: t.version,
            order_id: t.order_id.map(String::from),
            terms: Default::default(),
            available: None,
        }
    }
}
