//! Rate limits of sign-in, sign-up and password changes (GCRA, keyed): per client
//! address, generous, and per account (the normalised e-mail), tight. Counted in Redis
//! when the service has one, so every auth process shares them; else in memory
//! (`ticketing_kit::rate_limit`, docs/decisions/0030). A refusal is 429 with
//! `Retry-After`, counted in `auth_rate_limited_total{limit, route}`.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use ticketing_kit::client::TrustedProxies;
use ticketing_kit::rate_limit::{RateLimiter, SharedLimits};
use ticketing_kit::ApiError;

use crate::domain::Email;

/// How sign-in and sign-up are limited.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// Off: no limit at all (benchmarks).
    pub enabled: bool,
    /// Attempts per minute from one client address (IPv6: one /64); 0 = unlimited.
    pub per_address_per_minute: u32,
    /// Attempts per minute on one account (sign-in and sign-up of one e-mail, compared
    /// case-insensitively); 0 = unlimited.
    pub per_account_per_minute: u32,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// Count in Redis (shared by every auth process) rather than in this process.
    pub shared: Option<SharedSettings>,
}

/// Where shared limits count: a Redis URL and the prefix of their keys.
#[derive(Debug, Clone)]
pub struct SharedSettings {
    pub redis_url: String,
    pub prefix: String,
}

pub const DEFAULT_PER_ADDRESS_PER_MINUTE: u32 = 600;
pub const DEFAULT_PER_ACCOUNT_PER_MINUTE: u32 = 5;

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            enabled: true,
            per_address_per_minute: DEFAULT_PER_ADDRESS_PER_MINUTE,
            per_account_per_minute: DEFAULT_PER_ACCOUNT_PER_MINUTE,
            trusted_proxies: TrustedProxies::default(),
            shared: None,
        }
    }
}

/// The limiters of one auth service.
#[derive(Clone)]
pub struct Limits(Arc<Inner>);

/// One field per limit: a new kind of limit is one line here and one in [`Limits::new`].
struct Inner {
    by_address: Option<RateLimiter>,
    by_account: Option<RateLimiter>,
}

/// Which endpoint is being limited (a metric label).
#[derive(Debug, Clone, Copy)]
pub enum Route {
    SignIn,
    SignUp,
    /// `PUT /api/users/password`: a guess at the current password, limited as sign-in.
    Password,
}

impl Route {
    fn label(self) -> &'static str {
        match self {
            Route::SignIn => "signin",
            Route::SignUp => "signup",
            Route::Password => "password",
        }
    }
}

impl Limits {
    /// The limits of `settings`, counted in `shared` when given (else in this process).
    pub fn new(settings: &LimitSettings, shared: Option<&SharedLimits>) -> Limits {
        let per_minute = |name, count| {
            let count = if settings.enabled { count } else { 0 };
            RateLimiter::new(name, count, Duration::from_secs(60), shared)
        };
        Limits(Arc::new(Inner {
            by_address: per_minute("address", settings.per_address_per_minute),
            by_account: per_minute("account", settings.per_account_per_minute),
        }))
    }

    /// One attempt from `client` (`None`: unknown, not limited).
    pub async fn check_address(
        &self,
        client: Option<IpAddr>,
        route: Route,
    ) -> Result<(), ApiError> {
        let Some(client) = client else {
            return Ok(());
        };
        check(&self.0.by_address, &address_key(client).to_string(), route).await
    }

    /// One attempt on the account of `email`.
    pub async fn check_account(&self, email: &Email, route: Route) -> Result<(), ApiError> {
        check(&self.0.by_account, &email.as_str().to_lowercase(), route).await
    }

    /// Forget local keys whose allowance is full again, so the maps stay as small as the
    /// clients of the last minute.
    pub fn prune(&self) {
        for limiter in [&self.0.by_address, &self.0.by_account]
            .into_iter()
            .flatten()
        {
            limiter.prune();
        }
    }
}

async fn check(limiter: &Option<RateLimiter>, key: &str, route: Route) -> Result<(), ApiError> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter.check(key).await.map_err(|refused| {
        metrics::counter!("auth_rate_limited_total", "limit" => limiter.name(), "route" => route.label())
            .increment(1);
        ApiError::TooManyRequests {
            retry_after_secs: refused.retry_after_secs(),
        }
    })
}

/// IPv6 clients get a /64 each (what one subscriber is usually given), so a client
/// cannot escape its limit by rotating through its own addresses.
fn address_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn email(s: &str) -> Email {
        Email::parse(&json!(s)).unwrap()
    }

    #[tokio::test]
    async fn the_account_limit_ignores_case_and_other_accounts() {
        let limits = Limits::new(
            &LimitSettings {
                per_account_per_minute: 2,
                ..Default::default()
            },
            None,
        );
        assert!(limits
            .check_account(&email("a@b.co"), Route::SignIn)
            .await
            .is_ok());
        assert!(limits
            .check_account(&email("A@B.CO"), Route::SignIn)
            .await
            .is_ok());
        match limits
            .check_account(&email(" a@b.co "), Route::SignUp)
            .await
        {
            Err(ApiError::TooManyRequests { retry_after_secs }) => {
                assert!((1..=30).contains(&retry_after_secs), "{retry_after_secs}")
            }
            other => panic!("{other:?}"),
        }
        assert!(limits
            .check_account(&email("c@b.co"), Route::SignIn)
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn ipv6_clients_share_their_64() {
        let limits = Limits::new(
            &LimitSettings {
                per_address_per_minute: 1,
                ..Default::default()
            },
            None,
        );
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limits.check_address(Some(a), Route::SignIn).await.is_ok());
        assert!(limits.check_address(Some(b), Route::SignIn).await.is_err());
        assert!(limits.check_address(Some(c), Route::SignIn).await.is_ok());
        assert!(limits.check_address(None, Route::SignIn).await.is_ok());
    }

    #[tokio::test]
    async fn disabled_limits_never_refuse() {
        let limits = Limits::new(
            &LimitSettings {
                enabled: false,
                per_address_per_minute: 1,
                per_account_per_minute: 1,
                ..Default::default()
            },
            None,
        );
        for _ in 0..10 {
            assert!(limits
                .check_account(&email("a@b.co"), Route::SignIn)
                .await
                .is_ok());
            assert!(limits
                .check_address(Some("127.0.0.1".parse().unwrap()), Route::SignIn)
                .await
                .is_ok());
        }
    }
}
