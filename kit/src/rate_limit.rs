//! Keyed rate limits (GCRA) counted where every process of a service sees them: in
//! Redis when there is one, else in this process's memory (governor). See
//! docs/decisions/0030-shared-rate-limits.md.
//!
//! A [`RateLimiter`] allows `count` attempts per `period` and key, the whole allowance
//! usable at once, coming back one attempt every `period / count`. With [`SharedLimits`]
//! each check is one `EVALSHA` of a Lua script that runs GCRA on Redis's own clock
//! (`TIME`): one round trip, no clock skew between processes, keys that expire once
//! their allowance is whole again. If Redis cannot answer, the check falls back to the
//! process's own limiter (counted in `rate_limit_fallback_total`), so an outage costs
//! sharing, never the sign-in page; after a failure Redis is left alone for a second.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter as Governor};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use tokio_util::sync::CancellationToken;

/// GCRA on Redis's clock. KEYS[1]: the key; ARGV[1]: the emission interval (µs);
/// ARGV[2]: the burst (attempts). Returns 0 when the attempt is allowed (and counted),
/// else the µs until one is.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local window = interval * tonumber(ARGV[2])
local stored = redis.call('GET', KEYS[1])
local tat = stored and tonumber(stored) or now
if tat < now then tat = now end
local next_tat = tat + interval
if next_tat - now > window then
  return next_tat - window - now
end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat),
  'PX', string.format('%d', math.ceil((next_tat - now) / 1000)))
return 0
"#;

/// How long a check waits for Redis before it counts locally.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// After Redis failed, how long checks count locally without asking it.
const BACK_OFF: Duration = Duration::from_secs(1);

/// A refused attempt: when the key has one again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_after: Duration,
}

impl Refused {
    /// For `Retry-After`: whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        (self.retry_after.as_millis().div_ceil(1000) as u64).max(1)
    }
}

/// Redis, shared by every limiter of a process: where their counts live. Cheap to clone.
#[derive(Clone)]
pub struct SharedLimits(Arc<Shared>);

struct Shared {
    /// Set once connected; the connection manager reconnects by itself afterwards.
    conn: RwLock<Option<ConnectionManager>>,
    prefix: String,
    script: Script,
    /// Until when (ms since the epoch) checks do not ask Redis, after a failure.
    resting_until: AtomicI64,
}

impl SharedLimits {
    /// Counts in Redis at `url` under keys `<prefix>:<limit>:<key>`. Connects now if
    /// Redis answers at once, else in the background (until then, and whenever Redis
    /// fails, limits count locally), so a Redis that is down does not keep the service
    /// from starting. Fails only on a URL that is not one.
    pub async fn connect(
        url: &str,
        prefix: &str,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<SharedLimits> {
        let client = redis::Client::open(url).context("invalid REDIS_URL")?;
        let shared = SharedLimits(Arc::new(Shared {
            conn: RwLock::new(None),
            prefix: prefix.to_owned(),
            script: Script::new(GCRA),
            resting_until: AtomicI64::new(0),
        }));
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(REDIS_TIMEOUT)
            .set_response_timeout(REDIS_TIMEOUT)
            .set_number_of_retries(1);
        let attempt = move || {
            tokio::time::timeout(
                REDIS_TIMEOUT * 4,
                ConnectionManager::new_with_config(client.clone(), config.clone()),
            )
        };
        match attempt().await {
            Ok(Ok(conn)) => {
                *shared.0.conn.write().expect("limits") = Some(conn);
                return Ok(shared);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "rate limits: Redis unreachable; counting in this process until it answers");
            }
            Err(_) => tracing::warn!(
                "rate limits: Redis does not answer; counting in this process until it does"
            ),
        }
        let connecting = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(BACK_OFF) => {}
                }
                if let Ok(Ok(conn)) = attempt().await {
                    tracing::info!("rate limits: connected to Redis; counting there");
                    *connecting.0.conn.write().expect("limits") = Some(conn);
                    return;
                }
            }
        });
        Ok(shared)
    }

    /// One attempt on `key` of `limit` in Redis: `Ok(None)` allowed, `Ok(Some)` refused,
    /// `Err` when Redis could not say.
    async fn check(
        &self,
        limit: &str,
        key: &str,
        interval: Duration,
        burst: u32,
    ) -> anyhow::Result<Option<Refused>> {
        let now = ticketing_contracts::time::now_millis();
        if self.0.resting_until.load(Ordering::Relaxed) > now {
            anyhow::bail!("Redis failed less than {BACK_OFF:?} ago");
        }
        let conn = self.0.conn.read().expect("limits").clone();
        let Some(mut conn) = conn else {
            anyhow::bail!("not connected to Redis yet");
        };
        let mut invocation = self
            .0
            .script
            .key(format!("{}:{limit}:{key}", self.0.prefix));
        invocation.arg(interval.as_micros() as u64).arg(burst);
        let answer: anyhow::Result<u64> =
            match tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async(&mut conn)).await {
                Ok(answer) => answer.context("rate limit script"),
                Err(_) => Err(anyhow::anyhow!("Redis took over {REDIS_TIMEOUT:?}")),
            };
        match answer {
            Ok(0) => Ok(None),
            Ok(wait_micros) => Ok(Some(Refused {
                retry_after: Duration::from_micros(wait_micros),
            })),
            Err(e) => {
                let until = ticketing_contracts::time::now_millis() + BACK_OFF.as_millis() as i64;
                self.0.resting_until.store(until, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Delete every key under this prefix (tests, benchmarks).
    pub async fn purge(&self) -> anyhow::Result<()> {
        let conn = self.0.conn.read().expect("limits").clone();
        let Some(mut conn) = conn else {
            return Ok(());
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.0.prefix))
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(keys)
                .query_async::<()>(&mut conn)
                .await?;
        }
        Ok(())
    }

    /// Whether the background connection is made (tests, benchmarks).
    pub fn is_connected(&self) -> bool {
        self.0.conn.read().expect("limits").is_some()
    }
}

/// One limit: `count` attempts per `period` and key. Cheap to clone.
#[derive(Clone)]
pub struct RateLimiter(Arc<Limiter>);

struct Limiter {
    /// In metric labels and Redis keys: `address`, `account`.
    name: &'static str,
    interval: Duration,
    burst: NonZeroU32,
    local: DefaultKeyedRateLimiter<String>,
    shared: Option<SharedLimits>,
}

impl RateLimiter {
    /// `count` attempts per `period` (`None` when `count` is 0: no limit), in `shared`
    /// when given.
    pub fn new(
        name: &'static str,
        count: u32,
        period: Duration,
        shared: Option<&SharedLimits>,
    ) -> Option<RateLimiter> {
        let burst = NonZeroU32::new(count)?;
        let interval = (period / count).max(Duration::from_micros(1));
        let quota = Quota::with_period(interval)
            .expect("a positive interval")
            .allow_burst(burst);
        Some(RateLimiter(Arc::new(Limiter {
            name,
            interval,
            burst,
            local: Governor::keyed(quota),
            shared: shared.cloned(),
        })))
    }

    pub fn name(&self) -> &'static str {
        self.0.name
    }

    /// One attempt on `key`: counted, and refused when over the limit.
    pub async fn check(&self, key: &str) -> Result<(), Refused> {
        let limiter = &self.0;
        if let Some(shared) = &limiter.shared {
            match shared
                .check(limiter.name, key, limiter.interval, limiter.burst.get())
                .await
            {
                Ok(None) => return Ok(()),
                Ok(Some(refused)) => return Err(refused),
                Err(e) => {
                    metrics::counter!("rate_limit_fallback_total", "limit" => limiter.name)
                        .increment(1);
                    tracing::debug!(
                        error = format!("{e:#}"),
                        limit = limiter.name,
                        "rate limit counted locally"
                    );
                }
            }
        }
        self.check_locally(key)
    }

    fn check_locally(&self, key: &str) -> Result<(), Refused> {
        self.0
            .local
            .check_key(&key.to_owned())
            .map_err(|not_until| Refused {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            })
    }

    /// Forget local keys whose allowance is whole again, so the map stays as small as
    /// the clients of the last period (Redis expires its keys by itself).
    pub fn prune(&self) {
        self.0.local.retain_recent();
        self.0.local.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_local_limit_allows_the_burst_then_refuses() {
        let limiter = RateLimiter::new("test", 3, Duration::from_secs(60), None).unwrap();
        for _ in 0..3 {
            assert_eq!(limiter.check("a").await, Ok(()));
        }
        let refused = limiter.check("a").await.unwrap_err();
        assert!(
            (1..=20).contains(&refused.retry_after_secs()),
            "{refused:?}"
        );
        assert_eq!(limiter.check("b").await, Ok(()));
        assert!(RateLimiter::new("off", 0, Duration::from_secs(60), None).is_none());
    }
}
