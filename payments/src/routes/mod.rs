mod create;
mod list;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use ticketing_contracts::api::payments::{PaymentBody, PaymentStatus};
use ticketing_contracts::time::format_millis;

use crate::payments::Payment;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create::create, list::list))
}

impl From<Payment> for PaymentBody {
    fn from(p: Payment) -> Self {
        PaymentBody {
            id: p.id.into(),
            order_id: p.order_id.into(),
            stripe_id: p.stripe_id,
            status: if p.refunded_at.is_some() {
                PaymentStatus::Refunded
            } else {
                PaymentStatus::Succeeded
            },
            refunded_at: p.refunded_at.map(format_millis),
        }
    }
}
