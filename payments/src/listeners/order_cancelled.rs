//! `order:cancelled` → mark the replica's order cancelled, newest wins (a
//! cancellation that arrives before its `order:created` waits for it: decision 0023); and if the
//! order was paid meanwhile — its payment accepted here before the cancellation was
//! known, its `payment:created` reaching the orders service too late — give the money
//! back: refund the charge, record it, publish `payment:refunded`.

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::OrderCancelled;
use ticketing_store::Tx;

use crate::provider::{refund_idempotency_key, ChargeError};
use crate::{orders, payments, AppState};

pub struct OrderCancelledListener(pub AppState);

#[async_trait]
impl Listener for OrderCancelledListener {
    type Event = OrderCancelled;
    /// The refund goes to the provider before the transaction records it.
    fn outside_effects(&self) -> bool {
        true
    }

    async fn prepare(&self, order: &OrderCancelled) -> Result<(), HandlerError> {
        let state = &self.0;
        let Some(payment) = payments::find_for_order(state.store.reader(), &order.id).await? else {
            return Ok(());
        };
        if payment.refunded_at.is_some() {
            return Ok(());
        }
        // Idempotent at the provider: a redelivery refunds nothing twice.
        let key = refund_idempotency_key(&payment.stripe_id);
        match state.provider.refund(&payment.stripe_id, None, &key).await {
            Ok(()) => {
                tracing::info!(order = %order.id, payment = %payment.id, charge = %payment.stripe_id, "refunded a payment that reached a cancelled order");
                Ok(())
            }
            // The buyer's money is at stake: keep trying for as long as it takes.
            Err(ChargeError::Unavailable(reason)) => Err(HandlerError::Retry(format!(
                "refund of {} pending: {reason}",
                payment.stripe_id
            ))),
            Err(err) => Err(HandlerError::Other(
                anyhow::Error::from(err).context(format!("refunding {}", payment.stripe_id)),
            )),
        }
    }

    async fn handle(&self, tx: &mut Tx, order: OrderCancelled) -> Result<(), HandlerError> {
        if !orders::apply_cancelled(tx, &order.id, order.version).await? {
            return Err(HandlerError::Retry(format!(
                "order:cancelled of {} arrived before its order:created",
                order.id
            )));
        }
        if let Some(payment) = payments::find_for_order(&mut *tx, &order.id).await? {
            payments::record_refund(tx, &payment).await?;
        }
        Ok(())
    }
}
