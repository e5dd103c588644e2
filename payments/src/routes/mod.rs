mod create;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use ticketing_contracts::api::payments::PaymentBody;

use crate::payments::Payment;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create::create))
}

impl From<Payment> for PaymentBody {
    fn from(p: Payment) -> Self {
        PaymentBody {
            id: p.id,
            order_id: p.order_id,
            stripe_id: p.stripe_id,
        }
    }
}
