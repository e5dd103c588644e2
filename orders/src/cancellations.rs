//! Cancellations of paid orders for a refund (issue 32): the saga's first and last steps
//! on the orders side. A request writes the cancellation and its `order:cancel-requested`
//! in one transaction; `payment:refunded` (with the cancellation's id) cancels the order
//! and frees its units, `payment:refund-failed` leaves it paid.

use ticketing_bus::{outbox, Envelope};
use ticketing_contracts::api::orders::{CancellationBody, CancellationStatus};
use ticketing_contracts::events::OrderCancelRequested;
use ticketing_contracts::money::Cents;
use ticketing_contracts::{OrderId, OrderStatus, Timestamp, UserId};
use ticketing_store::{query, On, Store, Tx};

use crate::domain::Order;

pub use ticketing_contracts::ids::CancellationId;

/// A cancellation as its row holds it.
#[derive(Debug, Clone)]
pub struct Cancellation {
    pub id: CancellationId,
    pub order_id: OrderId,
    pub user_id: UserId,
    pub status: CancellationStatus,
    pub refund: Cents,
    pub fee: Cents,
    pub requested_at: Timestamp,
    pub refunded_at: Option<Timestamp>,
}

ticketing_kit::from_row!(|row| Cancellation {
    id,
    order_id,
    user_id,
    status: row.parse("status")?,
    refund: Cents::new(row.get("refund_cents")?),
    fee: Cents::new(row.get("fee_cents")?),
    requested_at: Timestamp::from_millis(row.get("requested_at")?),
    refunded_at: row
        .get::<Option<i64>>("refunded_at")?
        .map(Timestamp::from_millis),
});

const COLUMNS: &str =
    "id, order_id, user_id, status, refund_cents, fee_cents, requested_at, refunded_at";

impl Cancellation {
    /// The cancellation as it was accepted (`requested`, not refunded yet).
    pub fn into_requested(self) -> Cancellation {
        Cancellation {
            status: CancellationStatus::Requested,
            refunded_at: None,
            ..self
        }
    }
}

impl From<Cancellation> for CancellationBody {
    fn from(c: Cancellation) -> CancellationBody {
        CancellationBody {
            id: c.id.into(),
            order_id: c.order_id.into(),
            status: c.status,
            refund: c.refund,
            fee: c.fee,
            requested_at: c.requested_at.to_rfc3339(),
            refunded_at: c.refunded_at.map(Timestamp::to_rfc3339),
        }
    }
}

/// Why an order cannot be cancelled for a refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("Order is not paid")]
    NotPaid,
    /// Its listing has no refund policy.
    #[error("This ticket cannot be cancelled")]
    NoPolicy,
    /// Past the policy's cutoff (hours before the event).
    #[error("Cancellation closed {0} hours before the event")]
    Closed(i64),
}

/// What a cancellation of `order` at `now` gives back and keeps: the fee is the policy's
/// share of the total, rounded half up to the cent; the refund the rest.
pub fn quote(order: &Order, now: Timestamp) -> Result<(Cents, Cents), Refusal> {
    if order.status != OrderStatus::Complete {
        return Err(Refusal::NotPaid);
    }
    let refund = order.ticket.refund;
    let (Some(policy), Some(event_at)) = (refund.policy, refund.event_at) else {
        return Err(Refusal::NoPolicy);
    };
    let closes = event_at.as_millis() - policy.cutoff_hours * 3_600_000;
    if now.as_millis() >= closes {
        return Err(Refusal::Closed(policy.cutoff_hours));
    }
    let total = order.ticket.price.get() * order.quantity;
    let fee = policy.fee_percent.of(total);
    Ok((Cents::new(total - fee), Cents::new(fee)))
}

/// The cancellation of order `order_id`, if any.
pub async fn find_for_order<'a>(
    on: impl Into<On<'a>>,
    order_id: &OrderId,
) -> Result<Option<Cancellation>, ticketing_store::Error> {
    query(&format!(
        "SELECT {COLUMNS} FROM cancellations WHERE order_id = $1"
    ))
    .bind(order_id)
    .fetch_optional_as(on)
    .await
}

/// Cancel `order` for `refund` (keeping `fee`): the cancellation and its
/// `order:cancel-requested` commit together. One per order: the unique key on
/// `order_id` decides between concurrent requests, and every one of them answers with
/// the row that won. `None` when the order is no longer complete at the write.
pub async fn request(
    store: &Store,
    order: &Order,
    refund: Cents,
    fee: Cents,
) -> Result<Option<Cancellation>, ticketing_store::Error> {
    let cancellation = Cancellation {
        id: CancellationId::generate(),
        order_id: order.id.clone(),
        user_id: order.user_id.clone(),
        status: CancellationStatus::Requested,
        refund,
        fee,
        requested_at: Timestamp::now(),
        refunded_at: None,
    };
    let mut tx = store.begin().await?;
    let inserted = query(
        "INSERT INTO cancellations \
           (id, order_id, user_id, status, refund_cents, fee_cents, requested_at) \
         SELECT $1, $2, $3, $4, $5, $6, $7 \
         WHERE EXISTS (SELECT 1 FROM orders WHERE id = $2 AND status = $8) \
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(&cancellation.id)
    .bind(&cancellation.order_id)
    .bind(&cancellation.user_id)
    .bind(cancellation.status.as_str())
    .bind(refund.get())
    .bind(fee.get())
    .bind(cancellation.requested_at.as_millis())
    .bind(OrderStatus::Complete.as_str())
    .execute(&mut tx)
    .await?;
    if inserted == 0 {
        // Another request won (committed before this statement read, or waited for), or
        // the order is not complete any more.
        let won = find_for_order(&mut tx, &order.id).await?;
        tx.rollback().await?;
        return Ok(won);
    }
    let event = Envelope::new(&OrderCancelRequested {
        id: cancellation.id.clone(),
        order_id: cancellation.order_id.clone(),
        user_id: cancellation.user_id.clone(),
        refund_cents: refund.get(),
        fee_cents: fee.get(),
    });
    outbox::enqueue(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(Some(cancellation))
}

/// Cancellation `id`'s refund went through at `at`: `refunded`. Its order, when this
/// changed it (not when a redelivery finds it done); an error for an unknown one.
pub async fn refunded(
    tx: &mut Tx,
    id: &CancellationId,
    at: Timestamp,
) -> Result<Option<OrderId>, Unknown> {
    let row = query(
        "UPDATE cancellations SET status = 'refunded', refunded_at = $2 \
         WHERE id = $1 AND status = 'requested' RETURNING order_id",
    )
    .bind(id)
    .bind(at.as_millis())
    .fetch_optional(&mut *tx)
    .await?;
    match row {
        Some(row) => Ok(Some(row.get("order_id")?)),
        None => settled(tx, id).await.map(|_| None),
    }
}

/// Cancellation `id`'s refund was refused for good (`reason`): `failed`, the order stays
/// paid. `false` when it was no longer `requested`.
pub async fn failed(tx: &mut Tx, id: &CancellationId, reason: &str) -> Result<bool, Unknown> {
    let changed = query(
        "UPDATE cancellations SET status = 'failed', failure = $2 \
         WHERE id = $1 AND status = 'requested'",
    )
    .bind(id)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    if changed == 1 {
        return Ok(true);
    }
    settled(tx, id).await.map(|_| false)
}

/// A cancellation the update did not find `requested`: settled before, or unknown.
async fn settled(tx: &mut Tx, id: &CancellationId) -> Result<(), Unknown> {
    let known = query("SELECT 1 AS one FROM cancellations WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
    if known {
        Ok(())
    } else {
        Err(Unknown::Cancellation(id.clone()))
    }
}

/// A payments event naming a cancellation this service never made, or a store failure.
#[derive(Debug, thiserror::Error)]
pub enum Unknown {
    #[error("unknown cancellation {0}")]
    Cancellation(CancellationId),
    #[error(transparent)]
    Db(#[from] ticketing_store::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Deadline;
    use crate::tickets::{Refund, TicketCopy};
    use ticketing_contracts::terms::Percent;
    use ticketing_contracts::RefundPolicy;

    fn order(status: OrderStatus, refund: Refund) -> Order {
        let now = Timestamp::from_millis(0);
        Order {
            id: OrderId::from("o"),
            user_id: UserId::from("u"),
            status,
            deadline: Deadline::new(now, std::time::Duration::ZERO),
            version: 1,
            ticket: TicketCopy {
                id: "t".into(),
                title: "T".into(),
                price: Cents::new(1999),
                version: 0,
                terms: crate::tickets::Terms {
                    counted: true,
                    quantity: 10,
                    per_order: 10,
                    per_account: 10,
                    on_sale_at: None,
                },
                refund,
            },
            quantity: 3,
            cancel_reason: None,
        }
    }

    #[test]
    fn quotes_refund_and_fee_until_the_cutoff() {
        let policy = Refund {
            event_at: Some(Timestamp::from_millis(100 * 3_600_000)),
            policy: Some(RefundPolicy {
                cutoff_hours: 48,
                fee_percent: Percent::parse(&serde_json::json!(12.5)).unwrap(),
            }),
        };
        let paid = order(OrderStatus::Complete, policy);
        // 3 × 19.99 = 59.97; 12.5 % of it is 7.49625: 7.50.
        let before = Timestamp::from_millis(52 * 3_600_000 - 1);
        assert_eq!(
            quote(&paid, before),
            Ok((Cents::new(5247), Cents::new(750)))
        );
        let at = Timestamp::from_millis(52 * 3_600_000);
        assert_eq!(quote(&paid, at), Err(Refusal::Closed(48)));
        assert_eq!(
            Refusal::Closed(48).to_string(),
            "Cancellation closed 48 hours before the event"
        );
        assert_eq!(
            quote(&order(OrderStatus::Created, policy), before),
            Err(Refusal::NotPaid)
        );
        assert_eq!(
            quote(&order(OrderStatus::Complete, Refund::default()), before),
            Err(Refusal::NoPolicy)
        );
    }
}
