//! `expiration:complete` → cancel the order unless it was paid; publish
//! `order:cancelled`. The expiration service fires at the order's `reservedUntil`
//! (`expiresAt` plus the payment grace), so a payment accepted just before the deadline
//! has already completed the order by then.

use std::time::Duration;

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::api::orders::CancelReason;
use ticketing_contracts::events::ExpirationComplete;
use ticketing_contracts::time::now_millis;
use ticketing_store::Tx;

use crate::orders;

/// An expiration a little early (the clocks of two machines) is still taken: waiting
/// for the last milliseconds would only delay the cancel by a redelivery.
const CLOCK_SKEW_MS: i64 = 250;

pub struct ExpirationCompleteListener {
    pub grace: Duration,
}

#[async_trait]
impl Listener for ExpirationCompleteListener {
    type Event = ExpirationComplete;

    async fn handle(&self, tx: &mut Tx, e: ExpirationComplete) -> Result<(), HandlerError> {
        let Some(expires_at) = orders::open_expiry(tx, &e.order_id).await? else {
            // Paid, already cancelled, or unknown: nothing to expire.
            return Ok(());
        };
        let reserved_until = expires_at + self.grace.as_millis() as i64;
        if now_millis() + CLOCK_SKEW_MS < reserved_until {
            // Fired far too early (a job scheduled by an older producer's deadline, or
            // a clock far off): the order still holds its ticket; come back later.
            return Err(HandlerError::Retry(format!(
                "order {} is reserved until {reserved_until}",
                e.order_id
            )));
        }
        orders::cancel(tx, &e.order_id, CancelReason::Expired, None).await?;
        Ok(())
    }
}
