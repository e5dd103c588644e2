//! `order:created` → add the order to the replica (version 0).

use async_trait::async_trait;
use ticketing_shared::events::{groups, inbox, Envelope, Handler, HandlerError, OrderCreated};
use ticketing_shared::timefmt::parse_millis;

use crate::orders::{self, OrderCopy};
use crate::AppState;

pub struct Listener(pub AppState);

#[async_trait]
impl Handler for Listener {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        let o: OrderCreated = event
            .decode()
            .map_err(|e| HandlerError::Poison(e.to_string()))?;
        let expires_at = parse_millis(&o.expires_at).ok_or_else(|| {
            HandlerError::Poison(format!("unreadable expiresAt {:?}", o.expires_at))
        })?;
        let Some(mut tx) = inbox::begin(&self.0.store, groups::PAYMENTS, event).await? else {
            return Ok(());
        };
        let copy = OrderCopy {
            id: o.id,
            user_id: o.user_id,
            status: o.status,
            price: o.ticket.price,
            expires_at,
            version: o.version,
        };
        let check = orders::apply_created(&mut tx, &copy).await?;
        super::early(check, "order:created")?;
        tx.commit().await?;
        Ok(())
    }
}
