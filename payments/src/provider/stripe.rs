//! The real Stripe Charges API (`POST /v1/charges`) and refunds (`POST /v1/refunds`).
//!
//! Requests are form-encoded and authenticated with the secret key as a bearer token. Each
//! carries the caller's `Idempotency-Key`, so a request that timed out or met a 5xx is
//! retried (bounded, with exponential backoff) without any risk of a second charge: Stripe
//! answers a repeated key with the result of the first request.

use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;

use super::{Charge, ChargeError, ChargeRequest, PaymentProvider};
use ticketing_contracts::money::Cents;

pub const DEFAULT_STRIPE_BASE_URL: &str = "https://api.stripe.com";

/// Attempts per charge, the first included.
const DEFAULT_MAX_ATTEMPTS: u32 = 3;
const DEFAULT_BACKOFF: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct StripeProvider {
    client: reqwest::Client,
    secret_key: String,
    charges_url: String,
    refunds_url: String,
    max_attempts: u32,
    backoff: Duration,
}

impl std::fmt::Debug for StripeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret key.
        f.debug_struct("StripeProvider")
            .field("charges_url", &self.charges_url)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl StripeProvider {
    /// A provider charging with `secret_key` (`sk_live_...`/`sk_test_...`) against
    /// `base_url` (default [`DEFAULT_STRIPE_BASE_URL`]); `timeout` bounds each HTTP attempt.
    pub fn new(
        secret_key: impl Into<String>,
        base_url: Option<&str>,
        timeout: Duration,
    ) -> anyhow::Result<StripeProvider> {
        let secret_key = secret_key.into();
        anyhow::ensure!(
            !secret_key.trim().is_empty(),
            "the Stripe secret key is empty"
        );
        let base = base_url
            .unwrap_or(DEFAULT_STRIPE_BASE_URL)
            .trim_end_matches('/');
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("ticketing-payments/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(StripeProvider {
            client,
            secret_key,
            charges_url: format!("{base}/v1/charges"),
            refunds_url: format!("{base}/v1/refunds"),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: DEFAULT_BACKOFF,
        })
    }

    /// How many attempts a charge gets (at least 1) and the wait before the first retry;
    /// the wait doubles on each further retry.
    pub fn with_retries(mut self, max_attempts: u32, initial_backoff: Duration) -> Self {
        self.max_attempts = max_attempts.max(1);
        self.backoff = initial_backoff;
        self
    }

    /// One form POST with the idempotency key: the answer, or why it is worth retrying.
    async fn post(
        &self,
        url: &str,
        idempotency_key: &str,
        form: &[(&str, &str)],
    ) -> Result<(StatusCode, Option<bool>, Vec<u8>), String> {
        let response = self
            .client
            .post(url)
            .bearer_auth(&self.secret_key)
            .header("Idempotency-Key", idempotency_key)
            .form(form)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            // Timeouts, refused or reset connections: the request may or may not have
            // been carried out; the same idempotency key makes the retry safe either way.
            Err(e) => return Err(describe_transport_error(&e)),
        };
        let status = response.status();
        let should_retry = response
            .headers()
            .get("stripe-should-retry")
            .and_then(|v| v.to_str().ok())
            .map(|v| v == "true");
        match response.bytes().await {
            Ok(b) => Ok((status, should_retry, b.to_vec())),
            Err(e) => Err(describe_transport_error(&e)),
        }
    }

    async fn attempt(&self, req: &ChargeRequest) -> Attempt<Charge> {
        let amount = req.amount.get().to_string();
        let mut form: Vec<(&str, &str)> = vec![
            ("amount", amount.as_str()),
            ("currency", req.currency),
            ("source", req.token.as_str()),
        ];
        if let Some(description) = &req.description {
            form.push(("description", description.as_str()));
        }
        let (status, should_retry, body) = match self
            .post(&self.charges_url, &req.idempotency_key, &form)
            .await
        {
            Ok(answer) => answer,
            Err(reason) => return Attempt::Retry(reason),
        };
        if status.is_success() {
            return Attempt::Done(match serde_json::from_slice::<ChargeBody>(&body) {
                Ok(charge) if !charge.id.is_empty() => Ok(Charge { id: charge.id }),
                Ok(_) => Err(ChargeError::Other(anyhow!(
                    "Stripe returned a charge without id"
                ))),
                Err(e) => Err(ChargeError::Other(anyhow!(
                    "unreadable Stripe charge ({status}): {e}"
                ))),
            });
        }
        let error = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error)
            .unwrap_or_default();
        classify(status, should_retry, error)
    }

    async fn refund_attempt(
        &self,
        charge_id: &str,
        amount: Option<Cents>,
        idempotency_key: &str,
    ) -> Attempt<()> {
        let amount = amount.map(|a| a.get().to_string());
        let mut form = vec![("charge", charge_id)];
        if let Some(amount) = &amount {
            form.push(("amount", amount.as_str()));
        }
        let (status, should_retry, body) =
            match self.post(&self.refunds_url, idempotency_key, &form).await {
                Ok(answer) => answer,
                Err(reason) => return Attempt::Retry(reason),
            };
        if status.is_success() {
            return Attempt::Done(Ok(()));
        }
        let error = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error)
            .unwrap_or_default();
        // Refunded already (by an earlier attempt whose answer was lost): done.
        if error.code.as_deref() == Some("charge_already_refunded") {
            return Attempt::Done(Ok(()));
        }
        let message = error
            .message
            .clone()
            .unwrap_or_else(|| format!("Stripe answered {status}"));
        let transient = status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::CONFLICT;
        if should_retry.unwrap_or(transient) {
            return Attempt::Retry(format!("{status}: {message}"));
        }
        Attempt::Done(Err(ChargeError::Other(anyhow!(
            "Stripe refused the refund of {charge_id} ({status}): {message}"
        ))))
    }

    /// Run `attempt` until it is done, retrying (bounded, with backoff) while Stripe is
    /// unavailable.
    async fn retrying<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, ChargeError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let mut backoff = self.backoff;
        let mut tries = 1;
        loop {
            match attempt().await {
                Attempt::Done(result) => return result,
                Attempt::Retry(reason) if tries >= self.max_attempts => {
                    tracing::warn!(%reason, attempts = tries, what, "Stripe unavailable, giving up");
                    return Err(ChargeError::Unavailable(reason));
                }
                Attempt::Retry(reason) => {
                    tracing::warn!(%reason, attempt = tries, ?backoff, what, "Stripe unavailable, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                    tries += 1;
                }
            }
        }
    }
}

#[async_trait]
impl PaymentProvider for StripeProvider {
    async fn charge(&self, req: &ChargeRequest) -> Result<Charge, ChargeError> {
        self.retrying("charge", || self.attempt(req)).await
    }

    async fn refund(
        &self,
        charge_id: &str,
        amount: Option<Cents>,
        idempotency_key: &str,
    ) -> Result<(), ChargeError> {
        self.retrying("refund", || {
            self.refund_attempt(charge_id, amount, idempotency_key)
        })
        .await
    }
}

enum Attempt<T> {
    Done(Result<T, ChargeError>),
    /// Worth retrying with the same idempotency key; the reason if it was the last try.
    Retry(String),
}

#[derive(Deserialize)]
struct ChargeBody {
    id: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: StripeError,
}

/// Stripe's error object (`{"error": {"type": ..., "code": ..., ...}}`).
#[derive(Deserialize, Default, Debug)]
struct StripeError {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    decline_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    param: Option<String>,
}

fn classify(status: StatusCode, should_retry: Option<bool>, e: StripeError) -> Attempt<Charge> {
    let message = e
        .message
        .clone()
        .unwrap_or_else(|| format!("Stripe answered {status}"));
    let kind = e.kind.as_deref().unwrap_or("");
    // A card decline is final for this key: Stripe saves the result and would answer a
    // retry with the same decline.
    if kind == "card_error" || status == StatusCode::PAYMENT_REQUIRED {
        return Attempt::Done(Err(ChargeError::Declined {
            message,
            code: e.decline_code.or(e.code),
        }));
    }
    // Rate limits, Stripe's own failures, and a concurrent request still holding the same
    // idempotency key (409 idempotency_error / lock_timeout) are transient. Stripe's
    // `Stripe-Should-Retry` header overrides the guess when present.
    let transient = status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::CONFLICT
        || kind == "api_error"
        || kind == "rate_limit_error";
    match should_retry {
        Some(true) => return Attempt::Retry(format!("{status}: {message}")),
        Some(false) if transient && !status.is_server_error() => {
            return Attempt::Done(Err(ChargeError::Other(anyhow!(
                "Stripe refused the charge ({status}): {message}"
            ))))
        }
        _ if transient => return Attempt::Retry(format!("{status}: {message}")),
        _ => {}
    }
    // A request the buyer can fix: a token that does not exist or was already used, an
    // amount Stripe will not charge.
    let buyer_fixable = kind == "invalid_request_error"
        && (matches!(e.param.as_deref(), Some("source" | "amount"))
            || matches!(
                e.code.as_deref(),
                Some(
                    "resource_missing"
                        | "token_already_used"
                        | "amount_too_small"
                        | "amount_too_large"
                        | "card_declined"
                        | "expired_card"
                        | "incorrect_cvc"
                        | "incorrect_number"
                        | "invalid_cvc"
                        | "invalid_expiry_month"
                        | "invalid_expiry_year"
                        | "invalid_number"
                        | "processing_error"
                )
            ));
    if buyer_fixable {
        return Attempt::Done(Err(ChargeError::Declined {
            message,
            code: e.decline_code.or(e.code),
        }));
    }
    // Bad secret key, missing permissions, an idempotency key reused with other
    // parameters, or a request we built wrong: none of it is the buyer's doing.
    Attempt::Done(Err(ChargeError::Other(anyhow!(
        "Stripe refused the charge ({status}, {}{}): {message}",
        if kind.is_empty() {
            "unknown error"
        } else {
            kind
        },
        e.code.map(|c| format!(", {c}")).unwrap_or_default(),
    ))))
}

fn describe_transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "request to Stripe timed out".to_owned()
    } else if e.is_connect() {
        format!("cannot connect to Stripe: {e}")
    } else {
        format!("request to Stripe failed: {e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(kind: &str, code: Option<&str>, param: Option<&str>) -> StripeError {
        StripeError {
            kind: Some(kind.into()),
            code: code.map(Into::into),
            decline_code: None,
            message: Some("m".into()),
            param: param.map(Into::into),
        }
    }

    fn outcome(a: Attempt<Charge>) -> &'static str {
        match a {
            Attempt::Done(Ok(_)) => "ok",
            Attempt::Done(Err(ChargeError::Declined { .. })) => "declined",
            Attempt::Done(Err(ChargeError::Unavailable(_))) => "unavailable",
            Attempt::Done(Err(ChargeError::Other(_))) => "other",
            Attempt::Retry(_) => "retry",
        }
    }

    #[test]
    fn classifies_stripe_errors() {
        let invalid = |code, param| err("invalid_request_error", code, param);
        // (HTTP status, `Stripe-Should-Retry`, error, outcome)
        let cases = [
            (
                402,
                None,
                err("card_error", Some("card_declined"), None),
                "declined",
            ),
            (
                400,
                None,
                invalid(Some("resource_missing"), Some("source")),
                "declined",
            ),
            (
                400,
                None,
                invalid(Some("amount_too_small"), Some("amount")),
                "declined",
            ),
            (400, None, err("idempotency_error", None, None), "other"),
            (
                400,
                None,
                invalid(Some("parameter_unknown"), Some("foo")),
                "other",
            ),
            (401, None, invalid(None, None), "other"),
            (500, None, err("api_error", None, None), "retry"),
            (503, None, StripeError::default(), "retry"),
            (
                429,
                None,
                err("rate_limit_error", Some("rate_limit"), None),
                "retry",
            ),
            (409, None, err("idempotency_error", None, None), "retry"),
            (
                409,
                Some(false),
                err("idempotency_error", None, None),
                "other",
            ),
            (400, Some(true), invalid(None, None), "retry"),
        ];
        for (status, should_retry, error, expected) in cases {
            let status = StatusCode::from_u16(status).unwrap();
            let got = outcome(classify(status, should_retry, error));
            assert_eq!(got, expected, "{status} {should_retry:?}");
        }
    }
}
