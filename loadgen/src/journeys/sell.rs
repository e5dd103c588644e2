//! Sell: list a ticket, then change its price.

use goose::prelude::*;
use rand::Rng;
use ticketing_contracts::api::tickets::{TicketBody, TicketInput};

use super::journey;
use super::steps::{call, create_ticket, wrong, Reply};

journey!(sell, "sell", sell_steps);

async fn sell_steps(user: &mut GooseUser) -> TransactionResult {
    let price = rand::thread_rng().gen_range(1..=500);
    let title = format!("Load ticket {}", uuid::Uuid::new_v4());
    let input = TicketInput::new(title.clone(), format!("{price}.50"));
    let mut reply = create_ticket(user, &input).await?;
    let Some(ticket) = reply.body.take() else {
        return Ok(());
    };
    if ticket.version != 0 || ticket.title != title {
        let what = format!("new ticket {} at version {}", ticket.id, ticket.version);
        return Err(wrong(user, &mut reply, what));
    }
    let input = TicketInput::new(title, format!("{}", price + 1));
    let path = format!("/api/tickets/{}", ticket.id);
    let _: Reply<TicketBody> = call(
        user,
        GooseMethod::Put,
        (&path, "/api/tickets/{id}"),
        Some(&input),
        // A buyer may have reserved it in between.
        &[(400, "Cannot edit a reserved ticket")],
    )
    .await?;
    Ok(())
}
