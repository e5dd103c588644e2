mod create;
mod list;
mod show;
mod update;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use ticketing_contracts::api::tickets::{TicketBody, TicketInput};

use crate::domain::{Given, OnSaleAtInput, RefundInput, TermsInput};
use crate::tickets::Ticket;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list::list, create::create))
        .routes(routes!(show::show, update::update))
}

/// The terms fields of a body; `on_sale_at_null`: the body had `"onSaleAt": null`
/// (which `TicketInput` cannot tell from an absent key).
fn terms_input(body: &TicketInput, on_sale_at_null: bool) -> TermsInput {
    TermsInput {
        quantity: body.quantity.clone(),
        max_per_order: body.max_per_order.clone(),
        max_per_account: body.max_per_account.clone(),
        on_sale_at: match &body.on_sale_at {
            Some(raw) => OnSaleAtInput::Set(raw.clone()),
            None if on_sale_at_null => OnSaleAtInput::Clear,
            None => OnSaleAtInput::Keep,
        },
    }
}

/// The `eventAt` and `refundPolicy` of a body (`raw`, as sent: `null` must be told from
/// absent); `null` clears them on update only.
fn refund_input(raw: &serde_json::Value, update: bool) -> RefundInput {
    RefundInput {
        event_at: Given::of(raw.get("eventAt"), update),
        policy: Given::of(raw.get("refundPolicy"), update),
    }
}

impl RefundInput {
    /// Does the body say anything of the event time or the policy?
    pub fn given(&self) -> bool {
        !matches!((&self.event_at, &self.policy), (Given::Keep, Given::Keep))
    }
}

impl From<Ticket> for TicketBody {
    fn from(t: Ticket) -> Self {
        let (terms, available) = (t.sale_terms(), t.available());
        TicketBody {
            id: t.id.into(),
            title: t.title,
            price: t.price,
            user_id: t.user_id.into(),
            version: t.version,
            order_id: t.order_id.map(String::from),
            terms,
            refund: t.refund.to_contract(),
            available,
        }
    }
}
