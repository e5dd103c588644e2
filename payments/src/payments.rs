//! The `payments` table and the per-order payment claim.

use std::sync::LazyLock;
use std::time::Duration;

use ticketing_bus::{outbox, Envelope};
use ticketing_contracts::events::{PaymentCreated, PaymentRefundFailed, PaymentRefunded};
use ticketing_contracts::ids::CancellationId;
use ticketing_contracts::time::now_millis;
use ticketing_contracts::{OrderId, PaymentId, UserId};
use ticketing_kit::idempotency;
use ticketing_store::{query, FromRow, On, OnUnique, Store, Tx};

use crate::orders::{Payable, PAYABLE_COLUMNS};

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

impl Payment {
    /// A new payment of `order_id` by charge `stripe_id`, not recorded yet.
    pub fn new(order_id: &OrderId, stripe_id: &str) -> Payment {
        Payment {
            id: PaymentId::generate(),
            order_id: order_id.to_owned(),
            stripe_id: stripe_id.to_owned(),
            refunded_at: None,
        }
    }
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

/// What [`record_if_payable`] found and did.
pub struct Accepting {
    /// The order as the statement read it, and its recorded charge; `None`: not in the
    /// replica.
    pub payable: Option<Payable>,
    /// The payment was recorded (the order open, unexpired and unpaid; with a key,
    /// the key's answer stored too).
    pub recorded: bool,
}

/// PostgreSQL: accept a charge in one statement (no transaction, one round trip): read
/// the order and its charge; if the order is open at `now`, unexpired and unpaid,
/// store `answer` for the request's key (`Keyed::json_row`, if keyed), and, unless the
/// key was answered meanwhile, record `payment` and enqueue its `payment:created`;
/// release the claim in any case. A payment recorded meanwhile is the unique index's
/// error ([`RecordError::AlreadyPaid`]): then nothing is written, the claim not released.
pub async fn record_if_payable(
    store: &Store,
    payment: &Payment,
    claim: &str,
    now: i64,
    answer: Option<serde_json::Value>,
) -> Result<Accepting, RecordError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH a AS MATERIALIZED (SELECT $1::jsonb AS r), \
             o AS MATERIALIZED ( \
               SELECT {PAYABLE_COLUMNS} FROM orders o, a WHERE o.id = a.r->>'orderId'), \
             payable AS MATERIALIZED ( \
               SELECT a.r FROM a, o WHERE o.status <> '{cancelled}' \
                 AND o.expires_at > (a.r->>'now')::bigint AND o.paid_by IS NULL), \
             answered AS ({answer} RETURNING 1), \
             paid AS ( \
               INSERT INTO payments (id, order_id, stripe_id, created_at) \
               SELECT r->>'id', r->>'orderId', r->>'stripeId', (r->>'now')::bigint \
               FROM payable WHERE NOT r ? 'answer' OR EXISTS (SELECT 1 FROM answered) \
               RETURNING id), \
             enqueued AS ({event} FROM payable WHERE EXISTS (SELECT 1 FROM paid) \
               RETURNING event_id), \
             released AS ( \
               DELETE FROM payment_attempts \
               WHERE order_id = (SELECT r->>'orderId' FROM a) \
                 AND claim = (SELECT r->>'claim' FROM a)) \
             SELECT o.*, EXISTS (SELECT 1 FROM enqueued) AS recorded FROM o",
            cancelled = ticketing_contracts::OrderStatus::Cancelled,
            answer =
                idempotency::record_from_json("r->'answer'", "FROM payable WHERE r ? 'answer'"),
            event = outbox::insert_from_json("(r->'event')"),
        )
    });
    let event = payment_created(payment);
    let mut json = serde_json::json!({
        "orderId": payment.order_id,
        "id": payment.id,
        "stripeId": payment.stripe_id,
        "claim": claim,
        "now": now,
        "event": outbox::json_row(&event)
            .ok_or_else(|| ticketing_store::Error::other("payment:created is not text"))?,
    });
    if let Some(answer) = answer {
        json["answer"] = answer;
    }
    let row = query(&SQL)
        .bind(json.to_string())
        .fetch_optional(store.writer())
        .await
        .on_unique(|| RecordError::AlreadyPaid)?;
    let Some(row) = row else {
        return Ok(Accepting {
            payable: None,
            recorded: false,
        });
    };
    let recorded: bool = row.get("recorded")?;
    if recorded {
        store.commit_signal().notify_one();
    }
    Ok(Accepting {
        payable: Some(Payable::from_row(&row)?),
        recorded,
    })
}

fn payment_created(payment: &Payment) -> Envelope {
    Envelope::new(&PaymentCreated {
        id: payment.id.clone(),
        order_id: payment.order_id.clone(),
        stripe_id: payment.stripe_id.clone(),
    })
}

/// Record the payment of `order_id` by charge `stripe_id` and enqueue `payment:created`.
pub async fn record(
    tx: &mut Tx,
    order_id: &OrderId,
    stripe_id: &str,
) -> Result<Payment, RecordError> {
    let payment = Payment::new(order_id, stripe_id);
    query("INSERT INTO payments (id, order_id, stripe_id, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&payment.id)
        .bind(&payment.order_id)
        .bind(&payment.stripe_id)
        .bind(now_millis())
        .execute(&mut *tx)
        .await
        .on_unique(|| RecordError::AlreadyPaid)?;
    outbox::enqueue(tx, &payment_created(&payment)).await?;
    Ok(payment)
}

#[cfg(test)]
mod tests {
    use ticketing_contracts::time::now_millis;
    use ticketing_contracts::OrderId;
    use ticketing_kit::testing::{TestBackend, TestEnv};
    use ticketing_store::{query, Store};

    use super::{claim, record_if_payable, Payment};

    async fn count(store: &Store, sql: &str) -> i64 {
        query(sql).scalar(store.reader()).await.unwrap()
    }

    /// PostgreSQL: the statement that accepts a charge records it only for an order
    /// open, unexpired and unpaid at its `now`, stores a keyed request's answer with it,
    /// records nothing when that key was answered meanwhile, and releases the claim
    /// whatever it decided.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_charge_is_accepted_for_a_payable_order_only() {
        let env = TestEnv::new(TestBackend::Postgres);
        let store = env
            .runtime
            .open_store(crate::SERVICE, &crate::MIGRATIONS)
            .await
            .unwrap();
        ticketing_kit::idempotency::install(&store).await.unwrap();
        let now = now_millis();
        for (id, status, expires_at) in [
            ("open", "created", now + 60_000),
            ("keyed", "created", now + 60_000),
            ("gone", "cancelled", now + 60_000),
            ("late", "created", now),
        ] {
            query(
                "INSERT INTO orders (id, user_id, status, price_cents, expires_at, version) \
                 VALUES ($1, 'u', $2, 100, $3, 0)",
            )
            .bind(id)
            .bind(status)
            .bind(expires_at)
            .execute(store.writer())
            .await
            .unwrap();
        }
        let answer = |key: &str| {
            serde_json::json!({"scope": "s", "key": key, "request": "{}", "status": 201,
                "response": "{}", "createdAt": now})
        };
        let accept = async |order: &str, charge: &str, answer: Option<serde_json::Value>| {
            let order = OrderId::from(order);
            assert!(claim(store.writer(), &order, "c").await.unwrap());
            let payment = Payment::new(&order, charge);
            let accepting = record_if_payable(&store, &payment, "c", now, answer)
                .await
                .unwrap();
            let claims = count(&store, "SELECT count(*) FROM payment_attempts").await;
            assert_eq!(claims, 0, "the claim is released");
            accepting
        };

        for order in ["gone", "late"] {
            let refused = accept(order, "ch_0", None).await;
            assert!(!refused.recorded && refused.payable.is_some(), "{order}");
        }
        assert!(accept("none", "ch_0", None).await.payable.is_none());

        let paid = accept("open", "ch_1", Some(answer("k1"))).await;
        assert!(paid.recorded);
        let again = accept("open", "ch_2", None).await;
        assert!(!again.recorded);
        assert_eq!(again.payable.unwrap().paid_by.as_deref(), Some("ch_1"));

        // The key answered first (a repeat of the request): nothing recorded.
        let answered = accept("keyed", "ch_3", Some(answer("k1"))).await;
        assert!(!answered.recorded);

        assert_eq!(count(&store, "SELECT count(*) FROM payments").await, 1);
        assert_eq!(count(&store, "SELECT count(*) FROM outbox").await, 1);
        assert_eq!(
            count(&store, "SELECT count(*) FROM idempotency_keys").await,
            1
        );
    }
}
