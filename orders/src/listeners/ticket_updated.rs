//! `ticket:updated` → update the replica, strictly in version order.

use async_trait::async_trait;
use ticketing_shared::events::{groups, inbox, Envelope, Handler, HandlerError, TicketUpdated};

use crate::tickets::{self, TicketCopy};
use crate::AppState;

pub struct Listener(pub AppState);

#[async_trait]
impl Handler for Listener {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        let t: TicketUpdated = event
            .decode()
            .map_err(|e| HandlerError::Poison(e.to_string()))?;
        let Some(mut tx) = inbox::begin(&self.0.store, groups::ORDERS, event).await? else {
            return Ok(());
        };
        let copy = TicketCopy {
            id: t.id,
            title: t.title,
            price: t.price,
            version: t.version,
        };
        let check = tickets::apply(&mut tx, &copy).await?;
        super::early(check, "ticket:updated")?;
        tx.commit().await?;
        Ok(())
    }
}
