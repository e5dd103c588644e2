//! Browse (the first page of the list) and view (the list, then one ticket of it).

use goose::prelude::*;
use rand::seq::SliceRandom;
use ticketing_contracts::api::tickets::TicketBody;

use super::journey;
use super::steps::{call, list, wrong, Reply, NONE};

journey!(browse, "browse", browse_steps);

async fn browse_steps(user: &mut GooseUser) -> TransactionResult {
    list(user, 50).await?;
    Ok(())
}

journey!(view_ticket, "view", view_ticket_steps);

async fn view_ticket_steps(user: &mut GooseUser) -> TransactionResult {
    let tickets = list(user, 50).await?;
    let Some(ticket) = tickets.choose(&mut rand::thread_rng()) else {
        return Ok(());
    };
    let path = format!("/api/tickets/{}", ticket.id);
    let mut reply: Reply<TicketBody> = call(
        user,
        GooseMethod::Get,
        (&path, "/api/tickets/{id}"),
        NONE,
        &[],
    )
    .await?;
    if reply.body.as_ref().map(|t| &t.id) != Some(&ticket.id) {
        let what = format!("ticket {} answered with another", ticket.id);
        return Err(wrong(user, &mut reply, what));
    }
    Ok(())
}
