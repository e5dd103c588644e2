//! `payment:created` → mark the order complete, unless it was cancelled meanwhile.

use async_trait::async_trait;
use ticketing_shared::events::{groups, inbox, Envelope, Handler, HandlerError, PaymentCreated};

use crate::{orders, AppState};

pub struct Listener(pub AppState);

#[async_trait]
impl Handler for Listener {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        let p: PaymentCreated = event
            .decode()
            .map_err(|e| HandlerError::Poison(e.to_string()))?;
        let Some(mut tx) = inbox::begin(&self.0.store, groups::ORDERS, event).await? else {
            return Ok(());
        };
        if !orders::complete(&mut tx, &p.order_id).await? {
            match orders::status_of(&mut tx, &p.order_id).await? {
                None => {
                    return Err(HandlerError::Poison(format!(
                        "unknown order {}",
                        p.order_id
                    )))
                }
                Some(status) => tracing::warn!(
                    order = %p.order_id, payment = %p.id, %status,
                    "payment for an order that is no longer open"
                ),
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
