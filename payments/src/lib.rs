//! Payments service: charging orders (`/api/payments`).
//!
//! The service charges through a [`provider::PaymentProvider`]: the real Stripe Charges API
//! ([`provider::StripeProvider`]) when a secret key is configured, otherwise the offline
//! [`provider::SandboxProvider`], where Stripe's test tokens decide the outcome.

pub mod provider;

pub const SERVICE: &str = "payments";
