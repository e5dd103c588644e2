//! The `payments` table and the per-order payment claim.

use std::time::Duration;

use ticketing_bus::{outbox, Envelope};
use ticketing_contracts::events::{PaymentCreated, PaymentRefundFailed, PaymentRefunded};
use ticketing_contracts::ids::CancellationId;
use ticketing_contracts::time::now_millis;
use ticketing_contracts::{OrderId, PaymentId, UserId};
use ticketing_store::{query, On, OnUnique, Store, Tx};

/// A claim older than this is left over by a process that died mid-payment and may be
/// taken over. Longer than any charge can take (Stripe: 3 attempts of at most the HTTP
/// timeout, plus backoff), so a live claim is never stolen.
pub const STALE_CLAIM: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct Payment {
    pub id: PaymentId,
    pub order_id: OrderId,
    pub stripe_id: String,
    /// When the charge was given back, if it was.
    pub refunded_at: Option<i64>,
}

/// A payment with its refund, if any.
const SELECT: &str = "SELECT p.id, p.order_id, p.stripe_id, r.refunded_at \
    FROM payments p LEFT JOIN refunds r ON r.payment_id = p.id";

ticketing_kit::from_row!(|row| Payment {
    id,
    order_id,
    stripe_id,
    refunded_at,
});

/// The payment of `order_id`, in a transaction or outside one.
pub async fn find_for_order<'a>(
    on: impl Into<On<'a>>,
    order_id: &OrderId,
) -> Result<Option<Payment>, ticketing_store::Error> {
    query(&format!("{SELECT} WHERE p.order_id = $1"))
        .bind(order_id)
        .fetch_optional_as(on)
        .await
}

/// The payments of `user_id`'s orders (of one order with `order_id`), oldest first.
pub async fn list_for_buyer(
    store: &Store,
    user_id: &UserId,
    order_id: Option<&str>,
) -> Result<Vec<Payment>, ticketing_store::Error> {
    query(&format!(
        "{SELECT} JOIN orders o ON o.id = p.order_id \
         WHERE o.user_id = $1 AND ($2 = '' OR p.order_id = $2) ORDER BY p.id"
    ))
    .bind(user_id)
    .bind(order_id.unwrap_or(""))
    .fetch_all_as(store.reader())
    .await
}

/// Record that `payment`'s charge was given back and enqueue `payment:refunded`; `false`
/// when it already was.
pub async fn record_refund(tx: &mut Tx, payment: &Payment) -> Result<bool, ticketing_store::Error> {
    let inserted = query(
        "INSERT INTO refunds (payment_id, refunded_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(&payment.id)
    .bind(now_millis())
    .execute(&mut *tx)
    .await?;
    if inserted == 0 {
        return Ok(false);
    }
    let event = Envelope::new(&PaymentRefunded {
        id: payment.id.clone(),
        order_id: payment.order_id.clone(),
        stripe_id: payment.stripe_id.clone(),
        amount_cents: None,
        cancellation_id: None,
    });
    outbox::enqueue(tx, &event).await?;
    Ok(true)
}

/// Record that `refund_cents` of `payment`'s charge went back for cancellation
/// `cancellation` and enqueue `payment:refunded` (with both); `false` when the payment
/// was already refunded. The record makes a later `order:cancelled` refund nothing more.
pub async fn record_cancellation_refund(
    tx: &mut Tx,
    payment: &Payment,
    cancellation: &CancellationId,
    refund_cents: i64,
) -> Result<bool, ticketing_store::Error> {
    let inserted = query(
        "INSERT INTO refunds (payment_id, refunded_at, amount_cents, cancellation_id) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(&payment.id)
    .bind(now_millis())
    .bind(refund_cents)
    .bind(cancellation)
    .execute(&mut *tx)
    .await?;
    if inserted == 0 {
        return Ok(false);
    }
    let event = Envelope::new(&PaymentRefunded {
        id: payment.id.clone(),
        order_id: payment.order_id.clone(),
        stripe_id: payment.stripe_id.clone(),
        amount_cents: Some(refund_cents),
        cancellation_id: Some(cancellation.clone()),
    });
    outbox::enqueue(tx, &event).await?;
    Ok(true)
}

/// Record that the provider refused cancellation `cancellation`'s refund for good and
/// enqueue `payment:refund-failed`; `false` when it was recorded before.
pub async fn record_refund_failure(
    tx: &mut Tx,
    cancellation: &CancellationId,
    order_id: &OrderId,
    reason: &str,
) -> Result<bool, ticketing_store::Error> {
    let inserted = query(
        "INSERT INTO refund_failures (cancellation_id, order_id, reason, failed_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(cancellation)
    .bind(order_id)
    .bind(reason)
    .bind(now_millis())
    .execute(&mut *tx)
    .await?;
    if inserted == 0 {
        return Ok(false);
    }
    let event = Envelope::new(&PaymentRefundFailed {
        cancellation_id: cancellation.clone(),
        order_id: order_id.clone(),
        reason: reason.to_owned(),
    });
    outbox::enqueue(tx, &event).await?;
    Ok(true)
}

/// Take the order's payment claim. `false` when another payment of the order is in
/// progress (a live claim of another claimant: a repeat of a keyed request takes its
/// own first try's over).
pub async fn claim<'a>(
    on: impl Into<On<'a>>,
    order_id: &OrderId,
    claim: &str,
) -> Result<bool, ticketing_store::Error> {
    let now = now_millis();
    let taken = query(
        "INSERT INTO payment_attempts (order_id, claim, started_at) VALUES ($1, $2, $3) \
         ON CONFLICT (order_id) DO UPDATE SET claim = excluded.claim, started_at = excluded.started_at \
         WHERE payment_attempts.started_at < $4 OR payment_attempts.claim = $2",
    )
    .bind(order_id)
    .bind(claim)
    .bind(now)
    .bind(now - STALE_CLAIM.as_millis() as i64)
    .execute(on)
    .await?;
    Ok(taken == 1)
}

/// Give the claim up (only if it is still ours).
pub async fn release(
    tx: &mut Tx,
    order_id: &OrderId,
    claim: &str,
) -> Result<(), ticketing_store::Error> {
    query("DELETE FROM payment_attempts WHERE order_id = $1 AND claim = $2")
        .bind(order_id)
        .bind(claim)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Give the claim up in a transaction of its own.
pub async fn release_now(
    store: &Store,
    order_id: &OrderId,
    claim: &str,
) -> Result<(), ticketing_store::Error> {
    let mut tx = store.begin().await?;
    release(&mut tx, order_id, claim).await?;
    tx.commit().await
}

/// Why a payment was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The order already has a payment (the unique index decided).
    #[error("order already paid")]
    AlreadyPaid,
    #[error(transparent)]
    Db(#[from] ticketing_store::Error),
}

/// Record the payment of `order_id` by charge `stripe_id` and enqueue `payment:created`.
pub async fn record(
    tx: &mut Tx,
    order_id: &OrderId,
    stripe_id: &str,
) -> Result<Payment, RecordError> {
    let payment = Payment {
        id: PaymentId::generate(),
        order_id: order_id.to_owned(),
        stripe_id: stripe_id.to_owned(),
        refunded_at: None,
    };
    query("INSERT INTO payments (id, order_id, stripe_id, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&payment.id)
        .bind(&payment.order_id)
        .bind(&payment.stripe_id)
        .bind(now_millis())
        .execute(&mut *tx)
        .await
        .on_unique(|| RecordError::AlreadyPaid)?;
    let event = Envelope::new(&PaymentCreated {
        id: payment.id.clone(),
        order_id: payment.order_id.clone(),
        stripe_id: payment.stripe_id.clone(),
    });
    outbox::enqueue(tx, &event).await?;
    Ok(payment)
}
