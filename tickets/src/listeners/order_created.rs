//! `order:created` → the ticket is held by that order; publish `ticket:updated`.

use async_trait::async_trait;
use ticketing_shared::events::{groups, inbox, Envelope, Handler, HandlerError, OrderCreated};

use crate::{tickets, AppState};

pub struct Listener(pub AppState);

#[async_trait]
impl Handler for Listener {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        let order: OrderCreated = event
            .decode()
            .map_err(|e| HandlerError::Poison(e.to_string()))?;
        let Some(mut tx) = inbox::begin(&self.0.store, groups::TICKETS, event).await? else {
            return Ok(());
        };
        if tickets::reserve(&mut tx, &order.ticket.id, &order.id)
            .await?
            .is_none()
            && !tickets::exists(&mut tx, &order.ticket.id).await?
        {
            return Err(HandlerError::Poison(format!(
                "unknown ticket {}",
                order.ticket.id
            )));
        }
        tx.commit().await?;
        self.0.outbox.notify();
        Ok(())
    }
}
