pub mod expiration_complete;
pub mod payment_created;
pub mod ticket_created;
pub mod ticket_updated;

use ticketing_shared::events::replica::VersionCheck;
use ticketing_shared::events::{groups, inbox, Envelope, HandlerError};

use crate::tickets::{self, TicketCopy};
use crate::AppState;

/// Apply a ticket event to the replica, once, in version order. An early version waits
/// for its predecessor: the bus redelivers it later.
async fn apply_ticket(
    state: &AppState,
    event: &Envelope,
    copy: TicketCopy,
) -> Result<(), HandlerError> {
    let Some(mut tx) = inbox::begin(&state.store, groups::ORDERS, event).await? else {
        return Ok(());
    };
    match tickets::apply(&mut tx, &copy).await? {
        VersionCheck::Early => Err(HandlerError::Retry(format!(
            "{} v{} arrived before its predecessor",
            event.subject, copy.version
        ))),
        VersionCheck::Apply | VersionCheck::Stale => {
            tx.commit().await?;
            Ok(())
        }
    }
}
