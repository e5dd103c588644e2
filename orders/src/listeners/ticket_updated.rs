//! `ticket:updated` → the replica keeps the newest version (as `CopyListener` does); a
//! ticket listed as one unit that gets a quantity starts counting its accounts' shares;
//! units the seller added go to the waiting list at once.

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener, Traced};
use ticketing_contracts::events::TicketUpdated;
use ticketing_contracts::Timestamp;
use ticketing_kit::replica::{apply_all, CopyOf};
use ticketing_store::Tx;

use crate::tickets::{self, TicketCopy};
use crate::{claim, orders};

/// Holds the service's settings: the offer window of the units offered.
pub struct TicketUpdatedListener(pub crate::Settings);

#[async_trait]
impl Listener for TicketUpdatedListener {
    type Event = TicketUpdated;

    fn batches(&self) -> bool {
        true
    }

    async fn handle(&self, tx: &mut Tx, event: TicketUpdated) -> Result<(), HandlerError> {
        self.apply(tx, vec![TicketCopy::copy_of(event)?]).await
    }

    async fn handle_all(
        &self,
        tx: &mut Tx,
        events: Vec<Traced<TicketUpdated>>,
    ) -> Result<(), HandlerError> {
        let copies = events
            .into_iter()
            .map(|t| TicketCopy::copy_of(t.event))
            .collect::<Result<Vec<_>, _>>()?;
        self.apply(tx, copies).await
    }
}

impl TicketUpdatedListener {
    async fn apply(&self, tx: &mut Tx, copies: Vec<TicketCopy>) -> Result<(), HandlerError> {
        // Listings listed as one unit that get a quantity: their accounts' shares are
        // counted from now on.
        let mut uncounted = Vec::new();
        for copy in copies.iter().filter(|c| c.terms.counted) {
            if tickets::find(&mut *tx, &copy.id)
                .await?
                .is_some_and(|stored| !stored.terms.counted)
            {
                uncounted.push(copy.id.clone());
            }
        }
        apply_all(tx, &copies).await?;
        for id in &uncounted {
            if tickets::find(&mut *tx, id)
                .await?
                .is_some_and(|stored| stored.terms.counted)
            {
                claim::recount_accounts(tx, id).await?;
            }
        }
        // A listing with more units (or fewer held) than its line's head waits for: offer.
        // A listing without a line costs one index lookup.
        let offer = self.0.at(Timestamp::now()).offer;
        for copy in copies.iter().filter(|c| c.terms.counted) {
            orders::offer_freed(tx, &copy.id, offer).await?;
        }
        Ok(())
    }
}
