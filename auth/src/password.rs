//! Argon2id password hashing, off the async executor.
//!
//! Hashing is deliberately slow and memory-hungry, so it runs on the blocking pool and
//! at most a few hashes run at once (a global semaphore): a burst of sign-ins cannot
//! exhaust memory or take every blocking thread. A request waits for a permit at most
//! `max_wait`, then is refused with 503 and `Retry-After` (`auth_hash_refused_total`),
//! so a flood turns into quick refusals instead of a queue that grows without end.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use ticketing_kit::ApiError;
use tokio::sync::{Semaphore, SemaphorePermit};

/// How much hashing runs at once and how long a request waits for its turn.
#[derive(Debug, Clone)]
pub struct HashSettings {
    /// Hashes computed at once (each takes one blocking thread and 19 MiB).
    pub max_concurrent: usize,
    /// How long a request waits for a permit before it is refused.
    pub max_wait: Duration,
}

impl Default for HashSettings {
    fn default() -> Self {
        HashSettings {
            max_concurrent: std::thread::available_parallelism().map_or(2, |n| n.get() * 2),
            max_wait: Duration::from_secs(2),
        }
    }
}

#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    max_wait: Duration,
    /// A real hash to verify against when the account does not exist, so that an
    /// unknown e-mail costs as much time as a wrong password.
    dummy: Arc<String>,
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new(&HashSettings::default())
    }
}

impl Hasher {
    pub fn new(settings: &HashSettings) -> Hasher {
        let dummy = hash_blocking("dummy password for timing").expect("argon2 hashes");
        Hasher {
            permits: Arc::new(Semaphore::new(settings.max_concurrent.max(1))),
            max_wait: settings.max_wait,
            dummy: Arc::new(dummy),
        }
    }

    /// A hashing slot, or 503 `Busy` after `max_wait`.
    async fn permit(&self) -> Result<SemaphorePermit<'_>, ApiError> {
        match tokio::time::timeout(self.max_wait, self.permits.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(closed)) => Err(ApiError::Internal(closed.into())),
            Err(_) => {
                metrics::counter!("auth_hash_refused_total").increment(1);
                Err(ApiError::Busy {
                    retry_after_secs: 1,
                })
            }
        }
    }

    /// The PHC string of `password`.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        let _permit = self.permit().await?;
        let phc = tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .context("hashing task")??;
        Ok(phc)
    }

    /// Does `password` match `phc`? With `None`, burns the same time and answers no.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, ApiError> {
        let _permit = self.permit().await?;
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy.as_str().to_owned());
        let matches = tokio::task::spawn_blocking(move || {
            let parsed =
                PasswordHash::new(&phc).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
            Ok::<_, anyhow::Error>(
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok(),
            )
        })
        .await
        .context("verifying task")??;
        Ok(known && matches)
    }
}

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_phc_and_verify() {
        let h = Hasher::default();
        let phc = h.hash("correct horse".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(h
            .verify("correct horse".into(), Some(phc.clone()))
            .await
            .unwrap());
        assert!(!h.verify("wrong".into(), Some(phc)).await.unwrap());
        assert!(!h
            .verify("dummy password for timing".into(), None)
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn a_request_waits_for_a_hashing_slot_at_most_max_wait() {
        let h = Hasher::new(&HashSettings {
            max_concurrent: 1,
            max_wait: Duration::from_millis(50),
        });
        let held = h.permits.acquire().await.unwrap();
        match h.hash("correct horse".into()).await {
            Err(ApiError::Busy { retry_after_secs }) => assert_eq!(retry_after_secs, 1),
            other => panic!("{:?}", other.map(|_| ())),
        }
        drop(held);
        assert!(h.hash("correct horse".into()).await.is_ok());
    }
}
