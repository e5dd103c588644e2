//! Contention: everyone races for the same few tickets; a winner lets go at once so the
//! race goes on. The database lets one racer at a time hold a ticket (the audit checks
//! that no ticket ends with two).

use goose::prelude::*;
use rand::seq::SliceRandom;

use super::steps::{cancel, place_order};
use super::{hot, journey};

journey!(contend, "contention", contend_steps);

async fn contend_steps(user: &mut GooseUser) -> TransactionResult {
    let Some(ticket_id) = hot().choose(&mut rand::thread_rng()).cloned() else {
        return Ok(());
    };
    if let Some(order) = place_order(user, &ticket_id).await? {
        cancel(user, &order.id).await?;
    }
    Ok(())
}
