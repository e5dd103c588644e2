mod create;

use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::payments::Payment;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create::create))
}

/// A payment of an order.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentBody {
    pub id: String,
    pub order_id: String,
    /// The provider's id of the charge (`ch_...`).
    pub stripe_id: String,
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
