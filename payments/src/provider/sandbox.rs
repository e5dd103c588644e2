//! An offline provider for development and tests: Stripe's documented test tokens decide
//! the outcome, with Stripe's wording, and idempotency keys behave as Stripe's do.

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::anyhow;
use async_trait::async_trait;

use super::{Charge, ChargeError, ChargeRequest, PaymentProvider};
use ticketing_contracts::money::Cents;

/// What a test token does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenOutcome {
    Succeed,
    /// Declined with Stripe's `decline_code` (or `code`) and message.
    Decline {
        code: &'static str,
        message: &'static str,
    },
}

const GENERIC_DECLINE: &str = "Your card was declined.";

/// Stripe's test tokens (docs: Testing → "Cards by brand", "Cards by country",
/// "Declined payments", "Fraud prevention").
const TOKENS: &[(&str, TokenOutcome)] = {
    use TokenOutcome::{Decline, Succeed};
    &[
        // By brand.
        ("tok_visa", Succeed),
        ("tok_visa_debit", Succeed),
        ("tok_visa_cartesBancaires", Succeed),
        ("tok_mastercard", Succeed),
        ("tok_mastercard_debit", Succeed),
        ("tok_mastercard_prepaid", Succeed),
        ("tok_amex", Succeed),
        ("tok_discover", Succeed),
        ("tok_diners", Succeed),
        ("tok_jcb", Succeed),
        ("tok_unionpay", Succeed),
        // By country.
        ("tok_us", Succeed),
        ("tok_ca", Succeed),
        ("tok_mx", Succeed),
        ("tok_br", Succeed),
        ("tok_ar", Succeed),
        ("tok_gb", Succeed),
        ("tok_ie", Succeed),
        ("tok_fr", Succeed),
        ("tok_de", Succeed),
        ("tok_es", Succeed),
        ("tok_it", Succeed),
        ("tok_nl", Succeed),
        ("tok_be", Succeed),
        ("tok_at", Succeed),
        ("tok_ch", Succeed),
        ("tok_se", Succeed),
        ("tok_no", Succeed),
        ("tok_dk", Succeed),
        ("tok_fi", Succeed),
        ("tok_pl", Succeed),
        ("tok_pt", Succeed),
        ("tok_au", Succeed),
        ("tok_nz", Succeed),
        ("tok_jp", Succeed),
        ("tok_sg", Succeed),
        ("tok_hk", Succeed),
        ("tok_in", Succeed),
        // Special behaviours that still charge.
        ("tok_bypassPending", Succeed),
        ("tok_riskLevelElevated", Succeed),
        ("tok_chargeCustomerFail", Succeed),
        // Declines.
        (
            "tok_chargeDeclined",
            Decline {
                code: "generic_decline",
                message: GENERIC_DECLINE,
            },
        ),
        (
            "tok_chargeDeclinedInsufficientFunds",
            Decline {
                code: "insufficient_funds",
                message: "Your card has insufficient funds.",
            },
        ),
        (
            "tok_chargeDeclinedFraudulent",
            Decline {
                code: "fraudulent",
                message: GENERIC_DECLINE,
            },
        ),
        (
            "tok_chargeDeclinedIncorrectCvc",
            Decline {
                code: "incorrect_cvc",
                message: "Your card's security code is incorrect.",
            },
        ),
        (
            "tok_chargeDeclinedExpiredCard",
            Decline {
                code: "expired_card",
                message: "Your card has expired.",
            },
        ),
        (
            "tok_chargeDeclinedProcessingError",
            Decline {
                code: "processing_error",
                message: "An error occurred while processing your card. Try again in a little bit.",
            },
        ),
        (
            "tok_chargeDeclinedLostCard",
            Decline {
                code: "lost_card",
                message: GENERIC_DECLINE,
            },
        ),
        (
            "tok_chargeDeclinedStolenCard",
            Decline {
                code: "stolen_card",
                message: GENERIC_DECLINE,
            },
        ),
        (
            "tok_chargeDeclinedVelocityLimitExceeded",
            Decline {
                code: "card_velocity_exceeded",
                message: "Your card was declined for making repeated attempts too frequently or exceeding its amount limit.",
            },
        ),
        (
            "tok_cvcCheckFail",
            Decline {
                code: "incorrect_cvc",
                message: "Your card's security code is incorrect.",
            },
        ),
        (
            "tok_riskLevelHighest",
            Decline {
                code: "fraudulent",
                message: GENERIC_DECLINE,
            },
        ),
    ]
};

pub(crate) fn token_outcome(token: &str) -> Option<TokenOutcome> {
    TOKENS
        .iter()
        .find(|(name, _)| *name == token)
        .map(|(_, outcome)| *outcome)
}

/// Remembered results per idempotency key, as Stripe keeps them (for 24 hours there;
/// here for the process's life, bounded).
const MAX_REMEMBERED_KEYS: usize = 100_000;

type Remembered = (Fingerprint, Result<Charge, (String, Option<String>)>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    amount: i64,
    currency: &'static str,
    token: String,
    description: Option<String>,
}

/// The offline provider.
#[derive(Debug, Default)]
pub struct SandboxProvider {
    results: Mutex<HashMap<String, Remembered>>,
    /// Refunds made: idempotency key → charge id and cents (`None`: all of it).
    refunds: Mutex<HashMap<String, (String, Option<i64>)>>,
}

impl SandboxProvider {
    pub fn new() -> SandboxProvider {
        SandboxProvider::default()
    }

    /// How many distinct charges succeeded (each idempotency key counted once).
    pub fn charges_made(&self) -> usize {
        let results = self.results.lock().expect("sandbox lock");
        results.values().filter(|(_, r)| r.is_ok()).count()
    }

    /// The charges refunded (each refund idempotency key counted once), sorted.
    pub fn refunded(&self) -> Vec<String> {
        let refunds = self.refunds.lock().expect("sandbox lock");
        let mut ids: Vec<String> = refunds.values().map(|(id, _)| id.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Every refund made (each idempotency key once): charge id and cents (`None`: the
    /// whole charge), sorted.
    pub fn refunds_made(&self) -> Vec<(String, Option<i64>)> {
        let refunds = self.refunds.lock().expect("sandbox lock");
        let mut made: Vec<_> = refunds.values().cloned().collect();
        made.sort();
        made
    }

    fn charge_exists(&self, charge_id: &str) -> bool {
        let results = self.results.lock().expect("sandbox lock");
        results
            .values()
            .any(|(_, r)| matches!(r, Ok(c) if c.id == charge_id))
    }

    fn decide(req: &ChargeRequest) -> Result<Charge, (String, Option<String>)> {
        match token_outcome(&req.token) {
            Some(TokenOutcome::Succeed) => Ok(Charge {
                id: format!("ch_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]),
            }),
            Some(TokenOutcome::Decline { code, message }) => {
                Err((message.to_owned(), Some(code.to_owned())))
            }
            None => Err((
                format!("No such token: '{}'", req.token),
                Some("resource_missing".to_owned()),
            )),
        }
    }
}

#[async_trait]
impl PaymentProvider for SandboxProvider {
    async fn charge(&self, req: &ChargeRequest) -> Result<Charge, ChargeError> {
        if req.amount.get() <= 0 {
            return Err(ChargeError::Other(anyhow!(
                "invalid amount {} (must be a positive number of cents)",
                req.amount.get()
            )));
        }
        if req.currency != super::CURRENCY_USD {
            return Err(ChargeError::Other(anyhow!(
                "unsupported currency {:?}",
                req.currency
            )));
        }
        let fingerprint = Fingerprint {
            amount: req.amount.get(),
            currency: req.currency,
            token: req.token.clone(),
            description: req.description.clone(),
        };
        let mut results = self.results.lock().expect("sandbox lock");
        let result = match results.get(&req.idempotency_key) {
            Some((first, _)) if *first != fingerprint => {
                return Err(ChargeError::Other(anyhow!(
                    "Keys for idempotent requests can only be used with the same parameters \
                     they were first used with. Try using a key other than '{}' if you meant \
                     to execute a different request.",
                    req.idempotency_key
                )));
            }
            Some((_, result)) => result.clone(),
            None => {
                if results.len() >= MAX_REMEMBERED_KEYS {
                    results.clear();
                }
                let result = Self::decide(req);
                results.insert(req.idempotency_key.clone(), (fingerprint, result.clone()));
                result
            }
        };
        result.map_err(|(message, code)| ChargeError::Declined { message, code })
    }

    async fn refund(
        &self,
        charge_id: &str,
        amount: Option<Cents>,
        idempotency_key: &str,
    ) -> Result<(), ChargeError> {
        if !self.charge_exists(charge_id) {
            return Err(ChargeError::Other(anyhow!("No such charge: '{charge_id}'")));
        }
        if amount.is_some_and(|a| a.get() <= 0) {
            return Err(ChargeError::Other(anyhow!(
                "invalid refund amount (must be a positive number of cents)"
            )));
        }
        // As Stripe: a repeated key is the first refund, whatever it says now.
        self.refunds
            .lock()
            .expect("sandbox lock")
            .entry(idempotency_key.to_owned())
            .or_insert_with(|| (charge_id.to_owned(), amount.map(Cents::get)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(token: &str, key: &str) -> ChargeRequest {
        ChargeRequest::usd(Cents::new(2000), token, key)
    }

    #[tokio::test]
    async fn success_tokens_charge() {
        let sandbox = SandboxProvider::new();
        for (i, token) in [
            "tok_visa",
            "tok_visa_debit",
            "tok_mastercard",
            "tok_mastercard_debit",
            "tok_mastercard_prepaid",
            "tok_amex",
            "tok_discover",
            "tok_diners",
            "tok_jcb",
            "tok_unionpay",
            "tok_us",
            "tok_gb",
            "tok_bypassPending",
        ]
        .into_iter()
        .enumerate()
        {
            let charge = sandbox
                .charge(&req(token, &format!("k{i}")))
                .await
                .unwrap_or_else(|e| panic!("{token}: {e}"));
            assert!(charge.id.starts_with("ch_"), "{token}: {}", charge.id);
            assert_eq!(charge.id.len(), 27);
        }
        assert_eq!(sandbox.charges_made(), 13);
    }

    #[tokio::test]
    async fn decline_tokens_decline_with_stripes_wording() {
        let sandbox = SandboxProvider::new();
        let cases = [
            (
                "tok_chargeDeclined",
                "generic_decline",
                "Your card was declined.",
            ),
            (
                "tok_chargeDeclinedInsufficientFunds",
                "insufficient_funds",
                "Your card has insufficient funds.",
            ),
            (
                "tok_chargeDeclinedExpiredCard",
                "expired_card",
                "Your card has expired.",
            ),
            (
                "tok_chargeDeclinedIncorrectCvc",
                "incorrect_cvc",
                "Your card's security code is incorrect.",
            ),
            (
                "tok_chargeDeclinedProcessingError",
                "processing_error",
                "An error occurred while processing your card. Try again in a little bit.",
            ),
            (
                "tok_chargeDeclinedFraudulent",
                "fraudulent",
                "Your card was declined.",
            ),
            (
                "tok_chargeDeclinedLostCard",
                "lost_card",
                "Your card was declined.",
            ),
            (
                "tok_chargeDeclinedStolenCard",
                "stolen_card",
                "Your card was declined.",
            ),
            ("tok_nope", "resource_missing", "No such token: 'tok_nope'"),
            ("", "resource_missing", "No such token: ''"),
        ];
        for (i, (token, want_code, want_message)) in cases.into_iter().enumerate() {
            match sandbox.charge(&req(token, &format!("d{i}"))).await {
                Err(ChargeError::Declined { message, code }) => {
                    assert_eq!(message, want_message, "{token}");
                    assert_eq!(code.as_deref(), Some(want_code), "{token}");
                }
                other => panic!("{token}: {other:?}"),
            }
        }
        assert_eq!(sandbox.charges_made(), 0);
    }

    #[tokio::test]
    async fn same_idempotency_key_same_charge() {
        let sandbox = SandboxProvider::new();
        let first = sandbox.charge(&req("tok_visa", "order-1")).await.unwrap();
        let again = sandbox.charge(&req("tok_visa", "order-1")).await.unwrap();
        assert_eq!(first, again);
        let other = sandbox.charge(&req("tok_visa", "order-2")).await.unwrap();
        assert_ne!(first, other);
        assert_eq!(sandbox.charges_made(), 2);

        // A decline is remembered too, as Stripe does.
        let d1 = sandbox.charge(&req("tok_chargeDeclined", "order-3")).await;
        let d2 = sandbox.charge(&req("tok_chargeDeclined", "order-3")).await;
        assert!(matches!(d1, Err(ChargeError::Declined { .. })));
        assert!(matches!(d2, Err(ChargeError::Declined { .. })));

        // Reusing a key with other parameters is a programming error, not a decline.
        let mut changed = req("tok_visa", "order-1");
        changed.amount = Cents::new(1);
        assert!(matches!(
            sandbox.charge(&changed).await,
            Err(ChargeError::Other(_))
        ));
        assert_eq!(sandbox.charges_made(), 2);
    }

    #[tokio::test]
    async fn concurrent_retries_charge_once() {
        let sandbox = std::sync::Arc::new(SandboxProvider::new());
        let mut handles = Vec::new();
        for _ in 0..16 {
            let sandbox = sandbox.clone();
            handles.push(tokio::spawn(async move {
                sandbox.charge(&req("tok_amex", "same")).await.unwrap()
            }));
        }
        let mut ids = std::collections::HashSet::new();
        for h in handles {
            ids.insert(h.await.unwrap().id);
        }
        assert_eq!(ids.len(), 1);
        assert_eq!(sandbox.charges_made(), 1);
    }

    #[tokio::test]
    async fn rejects_invalid_amounts() {
        let sandbox = SandboxProvider::new();
        let mut r = req("tok_visa", "z");
        r.amount = Cents::new(0);
        assert!(matches!(
            sandbox.charge(&r).await,
            Err(ChargeError::Other(_))
        ));
    }

    #[tokio::test]
    async fn refunds_are_recorded_once() {
        let sandbox = SandboxProvider::new();
        let charge = sandbox.charge(&req("tok_visa", "r1")).await.unwrap();
        let key = super::super::refund_idempotency_key(&charge.id);
        sandbox.refund(&charge.id, None, &key).await.unwrap();
        sandbox.refund(&charge.id, None, &key).await.unwrap();
        assert_eq!(sandbox.refunded(), vec![charge.id.clone()]);
        assert!(sandbox.refund("ch_unknown", None, "x").await.is_err());
        // A part of a charge, once per key.
        let part = Some(Cents::new(1500));
        sandbox.refund(&charge.id, part, "c1").await.unwrap();
        sandbox.refund(&charge.id, part, "c1").await.unwrap();
        assert_eq!(
            sandbox.refunds_made(),
            vec![(charge.id.clone(), None), (charge.id, Some(1500))]
        );
    }
}
