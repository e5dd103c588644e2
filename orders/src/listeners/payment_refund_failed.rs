//! `payment:refund-failed` → the cancellation is `failed`; the order stays complete (the
//! buyer keeps the ticket, the seller the money) and an operator looks at the metric.

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::PaymentRefundFailed;
use ticketing_store::Tx;

use super::payment_refunded::poison;
use crate::cancellations;

pub struct PaymentRefundFailedListener;

#[async_trait]
impl Listener for PaymentRefundFailedListener {
    type Event = PaymentRefundFailed;

    async fn handle(&self, tx: &mut Tx, e: PaymentRefundFailed) -> Result<(), HandlerError> {
        if cancellations::failed(tx, &e.cancellation_id, &e.reason)
            .await
            .map_err(poison)?
        {
            tracing::warn!(
                cancellation = %e.cancellation_id, order = %e.order_id, reason = %e.reason,
                "a cancellation's refund was refused"
            );
            metrics::counter!("ticketing_refunds_failed_total").increment(1);
        }
        Ok(())
    }
}
