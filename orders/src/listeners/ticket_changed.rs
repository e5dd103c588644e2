//! `ticket:created` and `ticket:updated` → keep the ticket in the replica. Both carry
//! the whole ticket, so one listener serves them: the newest version wins, whatever
//! the order in which they arrive (decision 0023).

use std::marker::PhantomData;

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener, Traced};
use ticketing_contracts::events::Event;
use ticketing_store::Tx;

use crate::tickets::{self, TicketCopy};

/// The listener of ticket event `E` (`TicketCreated` or `TicketUpdated`).
pub struct TicketChangedListener<E>(PhantomData<fn(E)>);

impl<E> Default for TicketChangedListener<E> {
    fn default() -> Self {
        TicketChangedListener(PhantomData)
    }
}

#[async_trait]
impl<E> Listener for TicketChangedListener<E>
where
    E: Event + Into<TicketCopy> + Send + 'static,
{
    type Event = E;

    async fn handle(&self, tx: &mut Tx, ticket: E) -> Result<(), HandlerError> {
        Ok(tickets::apply_all(tx, &[ticket.into()]).await?)
    }

    fn batches(&self) -> bool {
        true
    }

    async fn handle_all(&self, tx: &mut Tx, events: Vec<Traced<E>>) -> Result<(), HandlerError> {
        let copies: Vec<TicketCopy> = events.into_iter().map(|t| t.event.into()).collect();
        Ok(tickets::apply_all(tx, &copies).await?)
    }
}
