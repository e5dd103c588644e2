pub mod order_cancelled;
pub mod order_created;

use ticketing_shared::events::replica::VersionCheck;
use ticketing_shared::events::HandlerError;

/// An early version waits for its predecessor: the bus redelivers it later.
fn early(check: VersionCheck, what: &str) -> Result<(), HandlerError> {
    match check {
        VersionCheck::Early => Err(HandlerError::Retry(format!(
            "{what} arrived before its predecessor"
        ))),
        VersionCheck::Apply | VersionCheck::Stale => Ok(()),
    }
}
