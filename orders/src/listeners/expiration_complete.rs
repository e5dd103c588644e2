//! `expiration:complete` → cancel the order unless it was paid; publish
//! `order:cancelled`. The expiration service fires at the order's `reservedUntil`
//! (`expiresAt` plus the payment grace), so a payment accepted just before the deadline
//! has already completed the order by then.

use std::time::Duration;

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::api::orders::CancelReason;
use ticketing_contracts::events::ExpirationComplete;
use ticketing_contracts::Timestamp;
use ticketing_store::Tx;

use crate::orders;

/// An expiration a little early (the clocks of two machines) is still taken: waiting
/// for the last milliseconds would only delay the cancel by a redelivery.
const CLOCK_SKEW: Duration = Duration::from_millis(250);

/// Holds the service's settings: an expired order's units are offered to the waiting
/// list, for the offer window configured.
pub struct ExpirationCompleteListener(pub crate::Settings);

#[async_trait]
impl Listener for ExpirationCompleteListener {
    type Event = ExpirationComplete;

    async fn handle(&self, tx: &mut Tx, e: ExpirationComplete) -> Result<(), HandlerError> {
        let Some(deadline) = orders::open_deadline(tx, &e.order_id).await? else {
            // Paid, already cancelled, or unknown: nothing to expire.
            return Ok(());
        };
        // The row's deadline, not the event's timing: the expiration service only knows
        // `reservedUntil` from `order:created`, and an older producer's event lacked it.
        if deadline.holds_at(Timestamp::now() + CLOCK_SKEW) {
            // Fired far too early (a job scheduled at `expiresAt` from an event without
            // `reservedUntil`, or a clock far off): the order still holds its ticket;
            // come back later.
            return Err(HandlerError::Retry(format!(
                "order {} is reserved until {}",
                e.order_id, deadline.reserved_until
            )));
        }
        let offer = self.0.at(Timestamp::now()).offer;
        orders::cancel(tx, &e.order_id, CancelReason::Expired, None, offer).await?;
        Ok(())
    }
}
