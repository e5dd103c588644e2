//! `ticket:updated` → update the replica, strictly in version order.

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener, Traced};
use ticketing_contracts::events::TicketUpdated;
use ticketing_store::Tx;

use crate::tickets::{self, TicketCopy};

pub struct TicketUpdatedListener;

#[async_trait]
impl Listener for TicketUpdatedListener {
    type Event = TicketUpdated;

    async fn handle(&self, tx: &mut Tx, t: TicketUpdated) -> Result<(), HandlerError> {
        tickets::apply_events(tx, &[TicketCopy::from(t)], "ticket:updated").await
    }

    fn batches(&self) -> bool {
        true
    }

    async fn handle_all(
        &self,
        tx: &mut Tx,
        events: Vec<Traced<TicketUpdated>>,
    ) -> Result<(), HandlerError> {
        let copies: Vec<TicketCopy> = events.into_iter().map(|t| t.event.into()).collect();
        tickets::apply_events(tx, &copies, "ticket:updated").await
    }
}
