//! Refund: list a ticket with a refund policy, buy and pay it, cancel the order for a
//! refund and wait until the refund went through (issue 32).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use goose::prelude::*;
use serde_json::json;
use ticketing_contracts::api::orders::{CancellationBody, CancellationStatus};
use ticketing_contracts::api::tickets::{TicketBody, TicketInput};
use ticketing_contracts::money::Cents;
use ticketing_contracts::Timestamp;

use super::journey;
use super::steps::{call, create_ticket, pay, place_order, wrong, Reply, NONE};

journey!(refund, "refund", refund_steps);

/// The listing's price and the policy's fee: 10 % of 25.50 is 2.55.
const PRICE: &str = "25.50";
const FEE_PERCENT: i64 = 10;
/// How long a refund may take before the journey counts it as failed.
const REFUND_WITHIN: Duration = Duration::from_secs(10);

/// Cancellations answered 202, and those then seen `refunded`: a run's refunds must
/// equal its cancellations (issue 32).
static CANCELLATIONS: AtomicUsize = AtomicUsize::new(0);
static REFUNDS: AtomicUsize = AtomicUsize::new(0);

/// (cancellations accepted, refunds seen) so far, `None` when no journey cancelled.
pub fn tally() -> Option<(usize, usize)> {
    let cancellations = CANCELLATIONS.load(Ordering::Relaxed);
    (cancellations > 0).then(|| (cancellations, REFUNDS.load(Ordering::Relaxed)))
}

async fn refund_steps(user: &mut GooseUser) -> TransactionResult {
    let input = TicketInput {
        event_at: Some(json!(
            (Timestamp::now() + Duration::from_secs(30 * 86_400)).to_rfc3339()
        )),
        refund_policy: Some(json!({"cutoffHours": 48, "feePercent": FEE_PERCENT})),
        ..TicketInput::new(format!("Refundable {}", uuid::Uuid::new_v4()), PRICE)
    };
    let mut listed: Reply<TicketBody> = create_ticket(user, &input).await?;
    let Some(ticket) = listed.body.take() else {
        return Ok(());
    };
    if ticket.refund.refund_policy.is_none() {
        let what = format!("ticket {} lost its refund policy", ticket.id);
        return Err(wrong(user, &mut listed, what));
    }
    // Nobody else sees it before it is bought: it is the buyer's own listing.
    let Some(order) = place_order(user, &ticket.id).await? else {
        return Ok(());
    };
    pay(user, &order).await?;
    let path = format!("/api/orders/{}/cancellation", order.id);
    let name = "/api/orders/{orderId}/cancellation";
    // Completion reaches the orders service by event: "not paid" until it has.
    let deadline = Instant::now() + REFUND_WITHIN;
    let mut requested = loop {
        let reply: Reply<CancellationBody> = call(
            user,
            GooseMethod::Post,
            (&path, name),
            NONE,
            &[(400, "Order is not paid")],
        )
        .await?;
        if reply.body.is_some() || Instant::now() >= deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let Some(cancellation) = requested.body.take() else {
        let what = format!("order {} never became cancellable", order.id);
        return Err(wrong(user, &mut requested, what));
    };
    CANCELLATIONS.fetch_add(1, Ordering::Relaxed);
    let total = Cents::parse_price(&json!(PRICE)).map_or(0, Cents::get);
    if cancellation.refund.get() + cancellation.fee.get() != total
        || cancellation.fee.get() != total * FEE_PERCENT / 100
    {
        let what = format!(
            "cancellation of {}: refund {} and fee {} of {PRICE}",
            order.id, cancellation.refund, cancellation.fee
        );
        return Err(wrong(user, &mut requested, what));
    }
    loop {
        let mut shown: Reply<CancellationBody> =
            call(user, GooseMethod::Get, (&path, name), NONE, &[]).await?;
        let status = shown.body.as_ref().map(|c| c.status);
        match status {
            Some(CancellationStatus::Refunded) => {
                REFUNDS.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Some(CancellationStatus::Requested) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => {
                let what = format!("cancellation of {} is {other:?}", order.id);
                return Err(wrong(user, &mut shown, what));
            }
        }
    }
}
