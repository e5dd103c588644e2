//! `ticket:updated` → update the replica, strictly in version order.

use async_trait::async_trait;
use ticketing_shared::events::{Envelope, Handler, HandlerError, TicketUpdated};

use crate::tickets::TicketCopy;
use crate::AppState;

pub struct Listener(pub AppState);

#[async_trait]
impl Handler for Listener {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        let t: TicketUpdated = event
            .decode()
            .map_err(|e| HandlerError::Poison(e.to_string()))?;
        let copy = TicketCopy {
            id: t.id,
            title: t.title,
            price: t.price,
            version: t.version,
        };
        super::apply_ticket(&self.0, event, copy).await
    }
}
