//! The delay queue on Redis (distributed mode).
//!
//! Three keys under a configurable prefix (hash-tagged, so they share a cluster slot):
//! - `{prefix}:jobs`: sorted set, order id → when it may next be claimed (its due time
//!   while pending, the lease's end while claimed);
//! - `{prefix}:due`: hash, order id → due time as scheduled;
//! - `{prefix}:claims`: hash, order id → token of the claim holding it.
//!
//! Every change is one Lua script, so it is atomic across replicas: a claim moves due
//! jobs' scores to the lease's end in the same step that selects them, and nobody else
//! sees them due until that lease runs out.

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::Script;
use ticketing_contracts::{OrderId, Timestamp};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::queue::{wait_and_claim, Backend, Claim, DelayQueue, DueJob, QueueOptions};

const SCHEDULE: &str = r#"
-- KEYS: jobs, due, claims. ARGV: order id, due at.
local current = redis.call('HGET', KEYS[2], ARGV[1])
if current == ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"#;

const CLAIM: &str = r#"
-- KEYS: jobs, due, claims. ARGV: now, max, lease until, token.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], ARGV[3], id)
  redis.call('HSET', KEYS[3], id, ARGV[4])
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or ARGV[1]
end
return out
"#;

const COMPLETE: &str = r#"
-- KEYS: jobs, due, claims. ARGV: order id, token.
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"#;

const CANCEL: &str = r#"
-- KEYS: jobs, due, claims. ARGV: order id.
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[3], ARGV[1])
"#;

struct Keys {
    jobs: String,
    due: String,
    claims: String,
}

struct Scripts {
    schedule: Script,
    claim: Script,
    complete: Script,
    cancel: Script,
}

#[derive(Clone)]
pub struct RedisDelayQueue {
    conn: ConnectionManager,
    keys: Arc<Keys>,
    scripts: Arc<Scripts>,
    wake: Arc<Notify>,
    options: QueueOptions,
}

impl std::fmt::Debug for RedisDelayQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDelayQueue")
            .field("jobs", &self.keys.jobs)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl RedisDelayQueue {
    /// Connect to `url` (`redis://host:port/db`) and use keys under `prefix`
    /// (`expiration` in production; unique per test). Fails when Redis is unreachable.
    pub async fn connect(
        url: &str,
        prefix: &str,
        options: QueueOptions,
    ) -> anyhow::Result<RedisDelayQueue> {
        let client = redis::Client::open(url).context("invalid REDIS_URL")?;
        let conn = ConnectionManager::new(client)
            .await
            .with_context(|| format!("connecting to Redis at {url}"))?;
        Ok(Self::with_connection(conn, prefix, options))
    }

    /// Use an existing connection (shared with other users of the same Redis).
    pub fn with_connection(
        conn: ConnectionManager,
        prefix: &str,
        options: QueueOptions,
    ) -> RedisDelayQueue {
        RedisDelayQueue {
            conn,
            keys: Arc::new(Keys {
                jobs: format!("{{{prefix}}}:jobs"),
                due: format!("{{{prefix}}}:due"),
                claims: format!("{{{prefix}}}:claims"),
            }),
            scripts: Arc::new(Scripts {
                schedule: Script::new(SCHEDULE),
                claim: Script::new(CLAIM),
                complete: Script::new(COMPLETE),
                cancel: Script::new(CANCEL),
            }),
            wake: Arc::new(Notify::new()),
            options,
        }
    }

    /// How many jobs are pending or claimed.
    pub async fn len(&self) -> anyhow::Result<usize> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("ZCARD")
            .arg(&self.keys.jobs)
            .query_async(&mut conn)
            .await?)
    }

    /// Delete every key of this queue (tests, benchmarks).
    pub async fn purge(&self) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(&self.keys.jobs)
            .arg(&self.keys.due)
            .arg(&self.keys.claims)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    fn invocation<'a>(&'a self, script: &'a Script) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(&self.keys.jobs)
            .key(&self.keys.due)
            .key(&self.keys.claims);
        invocation
    }
}

#[async_trait]
impl Backend for RedisDelayQueue {
    async fn claim(&self, claim: &Claim) -> anyhow::Result<Vec<DueJob>> {
        let mut conn = self.conn.clone();
        let flat: Vec<String> = self
            .invocation(&self.scripts.claim)
            .arg(claim.now.as_millis())
            .arg(claim.max)
            .arg(claim.lease_until.as_millis())
            .arg(&claim.token)
            .invoke_async(&mut conn)
            .await
            .context("claiming due expiration jobs")?;
        flat.chunks_exact(2)
            .map(|pair| {
                Ok(DueJob {
                    order_id: OrderId::from(pair[0].as_str()),
                    due_at_millis: pair[1]
                        .parse()
                        .map(Timestamp::from_millis)
                        .with_context(|| format!("bad due time {:?}", pair[1]))?,
                    claim: claim.token.clone(),
                })
            })
            .collect()
    }

    async fn earliest(&self) -> anyhow::Result<Option<Timestamp>> {
        let mut conn = self.conn.clone();
        let first: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(&self.keys.jobs)
            .arg(0)
            .arg(0)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        Ok(first
            .first()
            .map(|(_, score)| Timestamp::from_millis(*score as i64)))
    }
}

#[async_trait]
impl DelayQueue for RedisDelayQueue {
    async fn pending(&self) -> anyhow::Result<usize> {
        self.len().await
    }

    async fn schedule(&self, order_id: &OrderId, due_at: Timestamp) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let _changed: i64 = self
            .invocation(&self.scripts.schedule)
            .arg(order_id.as_str())
            .arg(due_at.as_millis())
            .invoke_async(&mut conn)
            .await
            .context("scheduling an expiration job")?;
        self.wake.notify_waiters();
        Ok(())
    }

    async fn cancel(&self, order_id: &OrderId) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let _removed: i64 = self
            .invocation(&self.scripts.cancel)
            .arg(order_id.as_str())
            .invoke_async(&mut conn)
            .await
            .context("cancelling an expiration job")?;
        Ok(())
    }

    async fn next_due(
        &self,
        max: usize,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Vec<DueJob>> {
        wait_and_claim(self, &self.wake, &self.options, max, shutdown).await
    }

    async fn complete(&self, job: &DueJob) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let _removed: i64 = self
            .invocation(&self.scripts.complete)
            .arg(job.order_id.as_str())
            .arg(&job.claim)
            .invoke_async(&mut conn)
            .await
            .context("completing an expiration job")?;
        Ok(())
    }
}
