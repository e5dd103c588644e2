//! `ticket:created` → add the ticket to the replica (version 0).

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener, Traced};
use ticketing_contracts::events::TicketCreated;
use ticketing_store::Tx;

use crate::tickets::{self, TicketCopy};

pub struct TicketCreatedListener;

#[async_trait]
impl Listener for TicketCreatedListener {
    type Event = TicketCreated;

    async fn handle(&self, tx: &mut Tx, t: TicketCreated) -> Result<(), HandlerError> {
        tickets::apply_events(tx, &[TicketCopy::from(t)], "ticket:created").await
    }

    fn batches(&self) -> bool {
        true
    }

    async fn handle_all(
        &self,
        tx: &mut Tx,
        events: Vec<Traced<TicketCreated>>,
    ) -> Result<(), HandlerError> {
        let copies: Vec<TicketCopy> = events.into_iter().map(|t| t.event.into()).collect();
        tickets::apply_events(tx, &copies, "ticket:created").await
    }
}
