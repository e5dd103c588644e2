//! `expiration:complete` → cancel the order unless it was paid; publish
//! `order:cancelled`.

use async_trait::async_trait;
use ticketing_shared::events::{
    groups, inbox, Envelope, ExpirationComplete, Handler, HandlerError,
};

use crate::{orders, AppState};

pub struct Listener(pub AppState);

#[async_trait]
impl Handler for Listener {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        let e: ExpirationComplete = event
            .decode()
            .map_err(|e| HandlerError::Poison(e.to_string()))?;
        let Some(mut tx) = inbox::begin(&self.0.store, groups::ORDERS, event).await? else {
            return Ok(());
        };
        let cancelled = orders::cancel(&mut tx, &e.order_id, None).await?;
        tx.commit().await?;
        if cancelled.is_some() {
            self.0.outbox.notify();
        }
        Ok(())
    }
}
