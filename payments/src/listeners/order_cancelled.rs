//! `order:cancelled` → mark the replica's order cancelled, strictly in version order (a
//! cancellation that arrives before its `order:created` is retried later).

use async_trait::async_trait;
use ticketing_shared::events::{groups, inbox, Envelope, Handler, HandlerError, OrderCancelled};

use crate::{orders, AppState};

pub struct Listener(pub AppState);

#[async_trait]
impl Handler for Listener {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        let o: OrderCancelled = event
            .decode()
            .map_err(|e| HandlerError::Poison(e.to_string()))?;
        let Some(mut tx) = inbox::begin(&self.0.store, groups::PAYMENTS, event).await? else {
            return Ok(());
        };
        let check = orders::apply_cancelled(&mut tx, &o.id, o.version).await?;
        super::early(check, "order:cancelled")?;
        tx.commit().await?;
        Ok(())
    }
}
