//! `order:cancel-requested` → refund the cancellation's share of the order's charge at
//! the provider (before the transaction: an effect outside the database), then record it
//! and publish `payment:refunded` (with `amountCents` and `cancellationId`) in one
//! transaction; or, when the provider refuses for good, record the refusal and publish
//! `payment:refund-failed`.
//!
//! Exactly once: the provider's idempotency key is the cancellation's id, so a process
//! killed between the refund and its commit refunds nothing more when the event comes
//! back, and the redelivery records it. An unreachable provider is retried by the bus,
//! with backoff, for as long as it takes.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::OrderCancelRequested;
use ticketing_contracts::ids::CancellationId;
use ticketing_contracts::money::Cents;
use ticketing_store::Tx;

use crate::provider::{cancellation_refund_key, ChargeError};
use crate::{orders, payments, AppState};

/// What the provider answered a cancellation's refund, from `prepare` to `handle` (both
/// run in this process, one after the other, for one delivery).
#[derive(Debug, Clone)]
enum Outcome {
    Refunded,
    Refused(String),
}

pub struct OrderCancelRequestedListener {
    state: AppState,
    outcomes: Mutex<HashMap<CancellationId, Outcome>>,
}

impl OrderCancelRequestedListener {
    pub fn new(state: AppState) -> OrderCancelRequestedListener {
        OrderCancelRequestedListener {
            state,
            outcomes: Mutex::default(),
        }
    }

    fn remember(&self, id: &CancellationId, outcome: Outcome) {
        self.outcomes
            .lock()
            .expect("outcomes lock")
            .insert(id.clone(), outcome);
    }

    /// Refund at the provider, or say why not.
    async fn refund(&self, e: &OrderCancelRequested) -> Result<Outcome, HandlerError> {
        let store = &self.state.store;
        let Some(payment) = payments::find_for_order(store.reader(), &e.order_id).await? else {
            return Ok(Outcome::Refused("the order has no payment".into()));
        };
        if payment.refunded_at.is_some() {
            // Recorded by an earlier delivery: `handle` finds it so.
            return Ok(Outcome::Refunded);
        }
        let charged = orders::find(store.reader(), &e.order_id)
            .await?
            .map(|o| o.price);
        if e.refund_cents < 0 || charged.is_some_and(|c| e.refund_cents > c.get()) {
            return Ok(Outcome::Refused(format!(
                "a refund of {} cents exceeds the charge",
                e.refund_cents
            )));
        }
        if e.refund_cents == 0 {
            // A fee of 100 %: nothing goes back, the provider is not asked.
            return Ok(Outcome::Refunded);
        }
        let key = cancellation_refund_key(e.id.as_str());
        let amount = Some(Cents::new(e.refund_cents));
        match self
            .state
            .provider
            .refund(&payment.stripe_id, amount, &key)
            .await
        {
            Ok(()) => {
                pause_if_testing(&e.id).await;
                Ok(Outcome::Refunded)
            }
            // The buyer's money is at stake: the bus redelivers, with backoff, until the
            // provider answers.
            Err(ChargeError::Unavailable(reason)) => Err(HandlerError::Retry(format!(
                "refund of cancellation {} pending: {reason}",
                e.id
            ))),
            Err(ChargeError::Declined { message, .. }) => Ok(Outcome::Refused(message)),
            Err(ChargeError::Other(err)) => Ok(Outcome::Refused(format!("{err:#}"))),
        }
    }
}

#[async_trait]
impl Listener for OrderCancelRequestedListener {
    type Event = OrderCancelRequested;

    fn outside_effects(&self) -> bool {
        true
    }

    async fn prepare(&self, e: &OrderCancelRequested) -> Result<(), HandlerError> {
        let outcome = self.refund(e).await?;
        self.remember(&e.id, outcome);
        Ok(())
    }

    async fn handle(&self, tx: &mut Tx, e: OrderCancelRequested) -> Result<(), HandlerError> {
        let outcome = self.outcomes.lock().expect("outcomes lock").remove(&e.id);
        let payment = payments::find_for_order(&mut *tx, &e.order_id).await?;
        match (payment, outcome) {
            (Some(payment), _) if payment.refunded_at.is_some() => Ok(()),
            (Some(payment), Some(Outcome::Refunded)) => {
                payments::record_cancellation_refund(tx, &payment, &e.id, e.refund_cents).await?;
                Ok(())
            }
            (_, Some(Outcome::Refused(reason))) => {
                tracing::warn!(cancellation = %e.id, order = %e.order_id, %reason, "refund refused");
                metrics::counter!("ticketing_refunds_refused_total").increment(1);
                payments::record_refund_failure(tx, &e.id, &e.order_id, &reason).await?;
                Ok(())
            }
            (None, Some(Outcome::Refunded)) => Err(HandlerError::Poison(format!(
                "order {} has no payment",
                e.order_id
            ))),
            (_, None) => Err(HandlerError::Retry(format!(
                "the refund of cancellation {} was not prepared here",
                e.id
            ))),
        }
    }
}

/// Test only (proof of exactly-once refunds): with `TICKETING_TEST_PAUSE_AFTER_REFUND`
/// naming a directory, the first refund of each cancellation — made at the provider,
/// not yet recorded — leaves a file named after the cancellation there (holding the
/// process id) and hangs, so that a test can kill the process at exactly that point.
/// Unset in every deployment.
async fn pause_if_testing(id: &CancellationId) {
    static DIR: LazyLock<Option<std::path::PathBuf>> = LazyLock::new(|| {
        std::env::var_os("TICKETING_TEST_PAUSE_AFTER_REFUND").map(std::path::PathBuf::from)
    });
    let Some(dir) = DIR.as_ref() else { return };
    let marker = dir.join(id.as_str());
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&marker)
    {
        // Which process to kill, when several handle the subject.
        let _ = std::io::Write::write_all(&mut file, std::process::id().to_string().as_bytes());
        tracing::warn!(cancellation = %id, "test pause after the refund: waiting to be killed");
        std::future::pending::<()>().await;
    }
}
