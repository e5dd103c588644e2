//! Paying an order: claim it (one payment at a time per order), charge the card, accept
//! the charge only if the order can still take it when the payment commits, and give the
//! money back otherwise. See docs/decisions/0006-payments.md.

use axum::http::StatusCode;
use ticketing_contracts::api::payments::PaymentBody;
use ticketing_contracts::time::now_millis;
use ticketing_kit::idempotency::Keyed;

use crate::orders::{self, OrderCopy, Payable};
use crate::payments::{self, Payment, RecordError};
use crate::provider::{
    idempotency_key, refund_idempotency_key, Charge, ChargeError, ChargeRequest,
};
use crate::AppState;
use ticketing_contracts::{OrderId, UserId};
use ticketing_store::Backend;

pub const CANCELLED: &str = "Cannot pay for a cancelled order";
pub const EXPIRED: &str = "Order has expired";
pub const ALREADY_PAID: &str = "Order is already paid";
pub const IN_PROGRESS: &str = "A payment for this order is already in progress";

/// Why a payment did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    #[error("unknown order")]
    UnknownOrder,
    #[error("not the buyer's order")]
    NotOwner,
    /// A rule of the contract refused it (cancelled, expired, paid, in progress).
    #[error("{0}")]
    Refused(&'static str),
    /// The card was declined; the provider's reason. The order stays payable.
    #[error("{0}")]
    Declined(String),
    /// The provider could not be reached: nothing was charged (or a refund is pending),
    /// the same request may be retried.
    #[error("payment provider unavailable")]
    Unavailable,
    /// The provider answered with an error that is not a decline (an unknown answer, a
    /// server error): the same request may be retried (same idempotency key).
    #[error("payment provider failed")]
    ProviderFailed(#[source] anyhow::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<ticketing_store::Error> for PayError {
    fn from(err: ticketing_store::Error) -> Self {
        PayError::Internal(err.into())
    }
}

/// Pay `order_id` for `user_id` with the card `token`; with `keyed` (an
/// `Idempotency-Key`), the answer is stored with the payment.
///
/// A repeat of a keyed request takes over the claim of its first try (a process killed
/// mid-payment leaves it for [`STALE_CLAIM`](crate::payments::STALE_CLAIM) otherwise):
/// it is the same request, its charge the same at the provider (same idempotency key),
/// and whichever try records the payment first, the other finds that charge recorded
/// and refunds nothing.
pub async fn pay(
    state: &AppState,
    user_id: &UserId,
    order_id: &OrderId,
    token: &str,
    keyed: Option<&Keyed>,
) -> Result<Payment, PayError> {
    let claim = match keyed {
        Some(keyed) => keyed.claimant(),
        None => uuid::Uuid::new_v4().simple().to_string(),
    };
    let order = claim_order(state, order_id, user_id, &claim).await?;

    let request = ChargeRequest::usd(
        order.price,
        token,
        idempotency_key(order.id.as_str(), token),
    )
    .with_description(format!("Order {}", order.id));
    let charge = match state.provider.charge(&request).await {
        Ok(charge) => charge,
        Err(err) => {
            release_quietly(state, &order.id, &claim).await;
            return Err(match err {
                // The order stays payable: the claim is released.
                ChargeError::Declined { message, .. } => PayError::Declined(message),
                ChargeError::Unavailable(reason) => {
                    tracing::warn!(order = %order.id, %reason, "payment provider unavailable");
                    PayError::Unavailable
                }
                ChargeError::Other(e) => PayError::ProviderFailed(e.context("charging the card")),
            });
        }
    };

    match accept(state, &order.id, &claim, &charge, keyed).await {
        Ok(Accepted::Paid(payment)) => Ok(payment),
        Ok(Accepted::Refused { message, refund }) => {
            if refund {
                refund_charge(state, &order.id, &charge).await?;
            }
            Err(PayError::Refused(message))
        }
        Err(e) => {
            // The charge stands but was not recorded: a retry with the same token gets
            // the same charge back (same idempotency key) and records it then.
            release_quietly(state, &order.id, &claim).await;
            Err(PayError::Internal(
                anyhow::Error::from(e).context(format!("recording charge {}", charge.id)),
            ))
        }
    }
}

/// The checks before charging, in the contract's order, then the order's payment claim.
/// Three statements, no transaction: the claim decides who charges, and [`accept`]
/// decides again at its commit whatever happened between.
async fn claim_order(
    state: &AppState,
    order_id: &OrderId,
    user_id: &UserId,
    claim: &str,
) -> Result<OrderCopy, PayError> {
    let Payable { order, paid_by } = orders::find_payable(state.store.reader(), order_id)
        .await?
        .ok_or(PayError::UnknownOrder)?;
    if order.user_id != *user_id {
        return Err(PayError::NotOwner);
    }
    if let Some(message) = closed(&order, now_millis()) {
        return Err(PayError::Refused(message));
    }
    if paid_by.is_some() {
        return Err(PayError::Refused(ALREADY_PAID));
    }
    if !payments::claim(state.store.writer(), order_id, claim).await? {
        return Err(PayError::Refused(IN_PROGRESS));
    }
    // A payment committed between the look above and the claim (a statement of its own:
    // PostgreSQL reads each anew).
    if payments::find_for_order(state.store.reader(), order_id)
        .await?
        .is_some()
    {
        release_quietly(state, order_id, claim).await;
        return Err(PayError::Refused(ALREADY_PAID));
    }
    Ok(order)
}

/// Why an order can no longer be paid at `now`, if so.
fn closed(order: &OrderCopy, now: i64) -> Option<&'static str> {
    if order.is_cancelled() {
        Some(CANCELLED)
    } else if order.is_expired(now) {
        Some(EXPIRED)
    } else {
        None
    }
}

enum Accepted {
    Paid(Payment),
    /// Not accepted; `refund` when the charge must be given back.
    Refused {
        message: &'static str,
        refund: bool,
    },
}

/// Why `charge` cannot be accepted for the order as found at `now` (`None`: not in the
/// replica, so cancelled), if so.
fn refusal(payable: Option<&Payable>, charge: &Charge, now: i64) -> Option<Accepted> {
    let message = match payable {
        None => Some(CANCELLED),
        Some(payable) => closed(&payable.order, now),
    };
    if let Some(message) = message {
        return Some(Accepted::Refused {
            message,
            refund: true,
        });
    }
    let paid_by = payable.and_then(|p| p.paid_by.as_deref())?;
    Some(Accepted::Refused {
        message: ALREADY_PAID,
        refund: paid_by != charge.id,
    })
}

/// Accept the charge only if the order is still open and unexpired now, at commit: the
/// payment, its event and the claim's release commit together. On PostgreSQL one
/// statement decides and writes (`payments::record_if_payable`); on SQLite a
/// transaction (its one writer serializes them anyway).
async fn accept(
    state: &AppState,
    order_id: &OrderId,
    claim: &str,
    charge: &Charge,
    keyed: Option<&Keyed>,
) -> Result<Accepted, ticketing_store::Error> {
    let now = now_millis();
    if state.store.backend() == Backend::Postgres {
        return accept_in_statement(state, order_id, claim, charge, keyed, now).await;
    }
    let mut tx = state.store.begin().await?;
    let payable = orders::find_payable(&mut tx, order_id).await?;
    if let Some(refused) = refusal(payable.as_ref(), charge, now) {
        payments::release(&mut tx, order_id, claim).await?;
        tx.commit().await?;
        return Ok(refused);
    }
    match payments::record(&mut tx, order_id, &charge.id).await {
        Ok(payment) => {
            if let Some(keyed) = keyed {
                let body = PaymentBody::from(payment.clone());
                if !keyed.record(&mut tx, StatusCode::CREATED, &body).await? {
                    // A repeat of this request answered first, with this very charge.
                    drop(tx);
                    payments::release_now(&state.store, order_id, claim).await?;
                    return Ok(Accepted::Refused {
                        message: ALREADY_PAID,
                        refund: false,
                    });
                }
            }
            payments::release(&mut tx, order_id, claim).await?;
            tx.commit().await?;
            Ok(Accepted::Paid(payment))
        }
        Err(RecordError::AlreadyPaid) => {
            drop(tx);
            already_paid(state, order_id, claim, charge).await
        }
        Err(RecordError::Db(e)) => Err(e),
    }
}

/// [`accept`] on PostgreSQL: `payments::record_if_payable` decides and writes in one
/// statement; the refusal is read off the order as that statement found it.
async fn accept_in_statement(
    state: &AppState,
    order_id: &OrderId,
    claim: &str,
    charge: &Charge,
    keyed: Option<&Keyed>,
    now: i64,
) -> Result<Accepted, ticketing_store::Error> {
    let payment = Payment::new(order_id, &charge.id);
    let answer = match keyed {
        None => None,
        Some(keyed) => Some(
            keyed
                .json_row(StatusCode::CREATED, &PaymentBody::from(payment.clone()))
                .ok_or_else(|| ticketing_store::Error::other("the answer does not serialize"))?,
        ),
    };
    match payments::record_if_payable(&state.store, &payment, claim, now, answer).await {
        Ok(accepting) if accepting.recorded => Ok(Accepted::Paid(payment)),
        // Not recorded with the order payable: a repeat of this request answered first,
        // with this very charge.
        Ok(accepting) => Ok(refusal(accepting.payable.as_ref(), charge, now).unwrap_or(
            Accepted::Refused {
                message: ALREADY_PAID,
                refund: false,
            },
        )),
        Err(RecordError::AlreadyPaid) => already_paid(state, order_id, claim, charge).await,
        Err(RecordError::Db(e)) => Err(e),
    }
}

/// The unique index, the final guarantee: reached by a repeat of a keyed request racing
/// its first try (the same charge: nothing to give back), or a payment whose claim went
/// stale. Nothing was written: release the claim.
async fn already_paid(
    state: &AppState,
    order_id: &OrderId,
    claim: &str,
    charge: &Charge,
) -> Result<Accepted, ticketing_store::Error> {
    payments::release_now(&state.store, order_id, claim).await?;
    let recorded = payments::find_for_order(state.store.reader(), order_id).await?;
    Ok(Accepted::Refused {
        message: ALREADY_PAID,
        refund: recorded.is_none_or(|p| p.stripe_id != charge.id),
    })
}

/// Give back a charge that was not accepted. If the provider cannot be reached the
/// request fails with 503: retrying it (same token) gets the same charge back and
/// refunds it then (same refund idempotency key).
async fn refund_charge(
    state: &AppState,
    order_id: &OrderId,
    charge: &Charge,
) -> Result<(), PayError> {
    match state
        .provider
        .refund(&charge.id, None, &refund_idempotency_key(&charge.id))
        .await
    {
        Ok(()) => {
            tracing::info!(order = %order_id, charge = %charge.id, "refunded a charge the order could no longer accept");
            Ok(())
        }
        Err(ChargeError::Unavailable(reason)) => {
            tracing::error!(order = %order_id, charge = %charge.id, %reason, "refund pending: provider unavailable");
            Err(PayError::Unavailable)
        }
        Err(e) => Err(PayError::ProviderFailed(
            anyhow::Error::from(e).context(format!("refunding charge {}", charge.id)),
        )),
    }
}

async fn release_quietly(state: &AppState, order_id: &OrderId, claim: &str) {
    if let Err(e) = payments::release_now(&state.store, order_id, claim).await {
        tracing::warn!(order = %order_id, error = %e, "could not release a payment claim; it goes stale");
    }
}
