//! Payment providers: who actually moves the money.
//!
//! Every charge carries an idempotency key (the payments service derives it from the
//! order), so a request retried after a timeout, a crash or a redelivered command never
//! charges the card twice: the provider answers a repeated key with the first result.

mod sandbox;
mod stripe;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ticketing_contracts::money::Cents;

pub use sandbox::SandboxProvider;
pub use stripe::{StripeProvider, DEFAULT_STRIPE_BASE_URL};

/// The only currency the marketplace charges in.
pub const CURRENCY_USD: &str = "usd";

#[async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// Charge `amount` cents (USD) with card `token`; `idempotency_key` makes a retried
    /// request never charge twice.
    async fn charge(&self, req: &ChargeRequest) -> Result<Charge, ChargeError>;

    /// Refund `amount` cents of charge `charge_id`, or all of it when `None` (a charge
    /// accepted by the provider that the payments service could not accept any more:
    /// the order was cancelled or expired meanwhile). `idempotency_key` makes a retried
    /// refund never refund twice (a cancellation's refund: the cancellation's id);
    /// refunding an already fully refunded charge succeeds.
    async fn refund(
        &self,
        charge_id: &str,
        amount: Option<Cents>,
        idempotency_key: &str,
    ) -> Result<(), ChargeError>;
}

/// The idempotency key for a cancellation's refund: the cancellation's id, so that the
/// refund is made once however often the request reaches the provider.
pub fn cancellation_refund_key(cancellation_id: &str) -> String {
    format!("cancellation-{cancellation_id}")
}

/// The idempotency key for refunding charge `charge_id`.
pub fn refund_idempotency_key(charge_id: &str) -> String {
    format!("refund-{charge_id}")
}

/// The provider the configuration asks for: Stripe when a secret key is set (non-empty),
/// otherwise the offline sandbox.
pub fn from_config(
    stripe_secret_key: Option<&str>,
    stripe_base_url: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<Arc<dyn PaymentProvider>> {
    match stripe_secret_key.map(str::trim).filter(|k| !k.is_empty()) {
        Some(key) => Ok(Arc::new(StripeProvider::new(
            key,
            stripe_base_url,
            timeout,
        )?)),
        None => Ok(Arc::new(SandboxProvider::new())),
    }
}

/// The idempotency key for paying `order_id` with card `token`.
///
/// A retried request for the same order and card (client retry, timeout, redelivery) gets
/// the same key and so never charges twice. A different card after a decline gets a new
/// key: Stripe refuses a key reused with other parameters, and the order stays payable
/// after a decline. Two concurrent payments of one order with different cards are not
/// told apart here: the payments service must serialise payments per order (and refuse
/// an order already paid) before charging.
pub fn idempotency_key(order_id: &str, token: &str) -> String {
    // Stripe accepts keys of up to 255 characters.
    let token: String = token.chars().take(180).collect();
    format!("order-{order_id}-{token}")
}

/// One charge to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    /// Amount in cents; Stripe takes the smallest currency unit too.
    pub amount: Cents,
    /// ISO currency code in lower case: [`CURRENCY_USD`].
    pub currency: &'static str,
    /// The card source: a Stripe token (`tok_...`).
    pub token: String,
    /// Same key, same parameters → same result, never a second charge.
    pub idempotency_key: String,
    pub description: Option<String>,
}

impl ChargeRequest {
    /// A USD charge.
    pub fn usd(
        amount: Cents,
        token: impl Into<String>,
        idempotency_key: impl Into<String>,
    ) -> Self {
        ChargeRequest {
            amount,
            currency: CURRENCY_USD,
            token: token.into(),
            idempotency_key: idempotency_key.into(),
            description: None,
        }
    }

    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }
}

/// A successful charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The provider's id of the charge (`ch_...`), stored as the payment's `stripeId`.
    pub id: String,
}

/// Why a charge did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ChargeError {
    /// The card or the request was refused for a reason the buyer can act on: shown to the
    /// user as a 400, and the order stays payable. `message` is the provider's wording
    /// ("Your card has insufficient funds."), `code` its machine-readable reason
    /// (`insufficient_funds`, `expired_card`, `resource_missing`, …).
    #[error("{message}")]
    Declined {
        message: String,
        code: Option<String>,
    },
    /// The provider could not be reached or failed (5xx, timeout, network, rate limit)
    /// even after retries. Nothing is known to be charged; retrying with the same
    /// idempotency key is safe.
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
    /// Anything else: misconfiguration (bad secret key), a malformed request, an
    /// unexpected answer.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl ChargeError {
    pub fn declined(message: impl Into<String>, code: Option<&str>) -> ChargeError {
        ChargeError::Declined {
            message: message.into(),
            code: code.map(str::to_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys() {
        let order = "0193a5c2-7d1e-7c3a-9f1b-2a3b4c5d6e7f";
        assert_eq!(
            idempotency_key(order, "tok_visa"),
            format!("order-{order}-tok_visa")
        );
        assert_eq!(
            idempotency_key(order, "tok_visa"),
            idempotency_key(order, "tok_visa")
        );
        assert_ne!(
            idempotency_key(order, "tok_visa"),
            idempotency_key(order, "tok_amex")
        );
        assert!(idempotency_key(order, &"x".repeat(1000)).len() <= 255);
    }

    #[tokio::test]
    async fn config_picks_the_provider() {
        let timeout = Duration::from_secs(5);
        // No key (or a blank one): the sandbox, which knows the test tokens.
        for key in [None, Some(""), Some("  ")] {
            let p = from_config(key, None, timeout).unwrap();
            let charge = p
                .charge(&ChargeRequest::usd(Cents::new(100), "tok_visa", "k"))
                .await
                .unwrap();
            assert!(charge.id.starts_with("ch_"));
        }
        // A key: Stripe (here pointed at a closed port, so unavailable, not a sandbox result).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let p = from_config(Some("sk_test_x"), Some(&base), timeout).unwrap();
        let err = p
            .charge(&ChargeRequest::usd(Cents::new(100), "tok_visa", "k"))
            .await
            .unwrap_err();
        assert!(matches!(err, ChargeError::Unavailable(_)), "{err:?}");
    }
}
