//! Rate limits of sign-in, sign-up and password changes (governor's GCRA, keyed): per client address,
//! generous, and per account (the normalised e-mail), tight. A refusal is 429 with
//! `Retry-After`, counted in `auth_rate_limited_total{limit, route}`.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ticketing_kit::client::TrustedProxies;
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
        }
    }
}

/// The limiters of one auth service.
#[derive(Clone)]
pub struct Limits(Arc<Inner>);

struct Inner {
    by_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    by_account: Option<DefaultKeyedRateLimiter<String>>,
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

fn keyed<K: std::hash::Hash + Eq + Clone>(
    enabled: bool,
    per_minute: u32,
) -> Option<DefaultKeyedRateLimiter<K>> {
    let per_minute = NonZeroU32::new(per_minute).filter(|_| enabled)?;
    // The whole minute's allowance may be spent at once; it comes back one cell at a time.
    Some(RateLimiter::keyed(Quota::per_minute(per_minute)))
}

impl Limits {
    pub fn new(settings: &LimitSettings) -> Limits {
        Limits(Arc::new(Inner {
            by_address: keyed(settings.enabled, settings.per_address_per_minute),
            by_account: keyed(settings.enabled, settings.per_account_per_minute),
        }))
    }

    /// One attempt from `client` (`None`: unknown, not limited).
    pub fn check_address(&self, client: Option<IpAddr>, route: Route) -> Result<(), ApiError> {
        let (Some(limiter), Some(client)) = (&self.0.by_address, client) else {
            return Ok(());
        };
        check(limiter, &address_key(client), "address", route)
    }

    /// One attempt on the account of `email`.
    pub fn check_account(&self, email: &Email, route: Route) -> Result<(), ApiError> {
        let Some(limiter) = &self.0.by_account else {
            return Ok(());
        };
        check(limiter, &email.as_str().to_lowercase(), "account", route)
    }

    /// Forget keys whose allowance is full again, so the maps stay as small as the
    /// clients of the last minute.
    pub fn prune(&self) {
        if let Some(limiter) = &self.0.by_address {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.0.by_account {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
    limit: &'static str,
    route: Route,
) -> Result<(), ApiError> {
    match limiter.check_key(key) {
        Ok(()) => Ok(()),
        Err(not_until) => {
            metrics::counter!("auth_rate_limited_total", "limit" => limit, "route" => route.label())
                .increment(1);
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Err(ApiError::TooManyRequests {
                retry_after_secs: ceil_secs(wait),
            })
        }
    }
}

fn ceil_secs(wait: Duration) -> u64 {
    (wait.as_millis().div_ceil(1000) as u64).max(1)
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

    #[test]
    fn the_account_limit_ignores_case_and_other_accounts() {
        let limits = Limits::new(&LimitSettings {
            per_account_per_minute: 2,
            ..Default::default()
        });
        assert!(limits
            .check_account(&email("a@b.co"), Route::SignIn)
            .is_ok());
        assert!(limits
            .check_account(&email("A@B.CO"), Route::SignIn)
            .is_ok());
        match limits.check_account(&email(" a@b.co "), Route::SignUp) {
            Err(ApiError::TooManyRequests { retry_after_secs }) => {
                assert!((1..=30).contains(&retry_after_secs), "{retry_after_secs}")
            }
            other => panic!("{other:?}"),
        }
        assert!(limits
            .check_account(&email("c@b.co"), Route::SignIn)
            .is_ok());
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let limits = Limits::new(&LimitSettings {
            per_address_per_minute: 1,
            ..Default::default()
        });
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limits.check_address(Some(a), Route::SignIn).is_ok());
        assert!(limits.check_address(Some(b), Route::SignIn).is_err());
        assert!(limits.check_address(Some(c), Route::SignIn).is_ok());
        assert!(limits.check_address(None, Route::SignIn).is_ok());
    }

    #[test]
    fn disabled_limits_never_refuse() {
        let limits = Limits::new(&LimitSettings {
            enabled: false,
            per_address_per_minute: 1,
            per_account_per_minute: 1,
            ..Default::default()
        });
        for _ in 0..10 {
            assert!(limits
                .check_account(&email("a@b.co"), Route::SignIn)
                .is_ok());
            assert!(limits
                .check_address(Some("127.0.0.1".parse().unwrap()), Route::SignIn)
                .is_ok());
        }
    }
}
