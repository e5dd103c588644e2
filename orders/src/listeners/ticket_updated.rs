//! `ticket:updated` → update the replica, strictly in version order.

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::TicketUpdated;
use ticketing_store::Tx;

use crate::tickets::{self, TicketCopy};

pub struct TicketUpdatedListener;

#[async_trait]
impl Listener for TicketUpdatedListener {
    type Event = TicketUpdated;

    async fn handle(&self, tx: &mut Tx, t: TicketUpdated) -> Result<(), HandlerError> {
        let copy = TicketCopy {
            id: t.id,
            title: t.title,
            price: t.price,
            version: t.version,
        };
        let check = tickets::apply(tx, &copy).await?;
        check.outcome(format_args!("ticket:updated v{}", copy.version))
    }
}
