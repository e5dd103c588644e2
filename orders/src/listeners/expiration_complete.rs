//! `expiration:complete` → cancel the order unless it was paid; publish
//! `order:cancelled`. Waits out a short grace after `expiresAt` so that a payment
//! accepted just before the deadline completes the order instead.

use async_trait::async_trait;
use ticketing_shared::events::{
    groups, inbox, Envelope, ExpirationComplete, Handler, HandlerError,
};

use ticketing_shared::timefmt::now_millis;

use crate::domain::PAYMENT_SETTLE_GRACE_MS;
use crate::{orders, AppState};

pub struct Listener(pub AppState);

#[async_trait]
impl Handler for Listener {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        let e: ExpirationComplete = event
            .decode()
            .map_err(|e| HandlerError::Poison(e.to_string()))?;
        let Some(mut tx) = inbox::begin(&self.0.store, groups::ORDERS, event).await? else {
            return Ok(());
        };
        let Some(expires_at) = orders::open_expiry(&mut tx, &e.order_id).await? else {
            // Paid, already cancelled, or unknown: nothing to expire.
            tx.commit().await?;
            return Ok(());
        };
        if now_millis() < expires_at + PAYMENT_SETTLE_GRACE_MS {
            return Err(HandlerError::Retry(format!(
                "order {} is within its payment grace",
                e.order_id
            )));
        }
        let cancelled = orders::cancel(&mut tx, &e.order_id, None).await?;
        tx.commit().await?;
        if cancelled.is_some() {
            self.0.outbox.notify();
        }
        Ok(())
    }
}
