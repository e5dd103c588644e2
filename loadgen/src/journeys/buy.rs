//! The buyer's journeys: reserve a listed ticket, then pay, abandon or cancel.

use std::time::Duration;

use goose::prelude::*;
use rand::Rng;
use ticketing_contracts::status::OrderStatus;

use super::journey;
use super::steps::{cancel, pay, reserve, show_order, wrong};

journey!(buy_and_pay, "buy", buy_and_pay_steps);

/// Buy and pay, with a card that succeeds.
async fn buy_and_pay_steps(user: &mut GooseUser) -> TransactionResult {
    let Some((_, order)) = reserve(user).await? else {
        return Ok(());
    };
    // A person takes a moment to type a card; the payments service learns about the
    // order by event meanwhile.
    let typing = Duration::from_millis(rand::thread_rng().gen_range(200..=800));
    tokio::time::sleep(typing).await;
    pay(user, &order).await
}

journey!(buy_and_abandon, "abandon", buy_and_abandon_steps);

/// Buy and abandon: look at the order, never pay (it expires).
async fn buy_and_abandon_steps(user: &mut GooseUser) -> TransactionResult {
    let Some((ticket_id, order)) = reserve(user).await? else {
        return Ok(());
    };
    let mut shown = show_order(user, &order.id).await?;
    if shown.body.as_ref().map(|o| &o.ticket.id) != Some(&ticket_id) {
        let what = format!("order {} does not hold {ticket_id}", order.id);
        return Err(wrong(user, &mut shown, what));
    }
    Ok(())
}

journey!(buy_and_cancel, "cancel", buy_and_cancel_steps);

/// Cancel, and see it cancelled.
async fn buy_and_cancel_steps(user: &mut GooseUser) -> TransactionResult {
    let Some((_, order)) = reserve(user).await? else {
        return Ok(());
    };
    cancel(user, &order.id).await?;
    let mut shown = show_order(user, &order.id).await?;
    let status = shown.body.as_ref().map(|o| o.status);
    if status != Some(OrderStatus::Cancelled) {
        let what = format!("cancelled order {} is {status:?}", order.id);
        return Err(wrong(user, &mut shown, what));
    }
    Ok(())
}
