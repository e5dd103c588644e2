//! `order:cancelled` → release the ticket, but only if that order still holds it (a
//! newer order may already have taken it); publish `ticket:updated`.

use async_trait::async_trait;
use ticketing_shared::events::{groups, inbox, Envelope, Handler, HandlerError, OrderCancelled};

use crate::{tickets, AppState};

pub struct Listener(pub AppState);

#[async_trait]
impl Handler for Listener {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        let order: OrderCancelled = event
            .decode()
            .map_err(|e| HandlerError::Poison(e.to_string()))?;
        let Some(mut tx) = inbox::begin(&self.0.store, groups::TICKETS, event).await? else {
            return Ok(());
        };
        let released = tickets::release(&mut tx, &order.ticket.id, &order.id).await?;
        tx.commit().await?;
        if released.is_some() {
            self.0.outbox.notify();
        }
        Ok(())
    }
}
