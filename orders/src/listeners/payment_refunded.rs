//! `payment:refunded` of a cancellation (it names one) → the cancellation is `refunded`,
//! the order `cancelled` (`refunded`), its units free and offered to the waiting list;
//! publishes `order:cancelled`. A late payment's refund (no cancellation) concerns an
//! order already cancelled: nothing to do.

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::PaymentRefunded;
use ticketing_contracts::Timestamp;
use ticketing_store::Tx;

use crate::cancellations::{self, Unknown};
use crate::orders;

/// Holds the service's settings: the offer window of the units freed.
pub struct PaymentRefundedListener(pub crate::Settings);

#[async_trait]
impl Listener for PaymentRefundedListener {
    type Event = PaymentRefunded;

    async fn handle(&self, tx: &mut Tx, e: PaymentRefunded) -> Result<(), HandlerError> {
        let Some(cancellation) = e.cancellation_id else {
            return Ok(());
        };
        let now = Timestamp::now();
        let Some(order) = cancellations::refunded(tx, &cancellation, now)
            .await
            .map_err(poison)?
        else {
            return Ok(());
        };
        if !orders::cancel_paid(tx, &order, self.0.at(now).offer).await? {
            tracing::warn!(%order, %cancellation, "refunded a cancellation whose order was not complete");
        }
        Ok(())
    }
}

/// An event naming a cancellation this service never made cannot succeed later.
pub(super) fn poison(err: Unknown) -> HandlerError {
    match err {
        Unknown::Db(e) => e.into(),
        unknown => HandlerError::Poison(unknown.to_string()),
    }
}
