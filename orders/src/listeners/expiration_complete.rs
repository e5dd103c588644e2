//! `expiration:complete` → cancel the order unless it was paid; publish
//! `order:cancelled`. Waits out a short grace after `expiresAt` so that a payment
//! accepted just before the deadline completes the order instead.

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::ExpirationComplete;
use ticketing_contracts::time::now_millis;
use ticketing_store::Tx;

use crate::domain::PAYMENT_SETTLE_GRACE_MS;
use crate::orders;

pub struct ExpirationCompleteListener;

#[async_trait]
impl Listener for ExpirationCompleteListener {
    type Event = ExpirationComplete;

    async fn handle(&self, tx: &mut Tx, e: ExpirationComplete) -> Result<(), HandlerError> {
        let Some(expires_at) = orders::open_expiry(tx, &e.order_id).await? else {
            // Paid, already cancelled, or unknown: nothing to expire.
            return Ok(());
        };
        if now_millis() < expires_at + PAYMENT_SETTLE_GRACE_MS {
            return Err(HandlerError::Retry(format!(
                "order {} is within its payment grace",
                e.order_id
            )));
        }
        orders::cancel(tx, &e.order_id, None).await?;
        Ok(())
    }
}
