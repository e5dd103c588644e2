//! Payment providers: who actually moves the money.
//!
//! Every charge carries an idempotency key (the payments service derives it from the
//! order), so a request retried after a timeout, a crash or a redelivered command never
//! charges the card twice: the provider answers a repeated key with the first result.

mod sandbox;
mod stripe;

use async_trait::async_trait;
use ticketing_shared::money::Cents;

pub use sandbox::SandboxProvider;
pub use stripe::{StripeProvider, DEFAULT_STRIPE_BASE_URL};

/// The only currency the marketplace charges in.
pub const CURRENCY_USD: &str = "usd";

#[async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// Charge `amount` cents (USD) with card `token`; `idempotency_key` makes a retried
    /// request never charge twice.
    async fn charge(&self, req: &ChargeRequest) -> Result<Charge, ChargeError>;
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
