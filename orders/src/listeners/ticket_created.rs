//! `ticket:created` → add the ticket to the replica (version 0).

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::TicketCreated;
use ticketing_store::Tx;

use crate::tickets::{self, TicketCopy};

pub struct TicketCreatedListener;

#[async_trait]
impl Listener for TicketCreatedListener {
    type Event = TicketCreated;

    async fn handle(&self, tx: &mut Tx, t: TicketCreated) -> Result<(), HandlerError> {
        let copy = TicketCopy {
            id: t.id,
            title: t.title,
            price: t.price,
            version: t.version,
        };
        let check = tickets::apply(tx, &copy).await?;
        check.outcome(format_args!("ticket:created v{}", copy.version))
    }
}
