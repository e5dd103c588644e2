//! What a shared rate limit costs: the p50/p99 of one check against the machine's Redis
//! (`TEST_REDIS_URL`, default `redis://127.0.0.1:6379`; one `EVALSHA`), beside the same
//! check counted in the process (governor, the embedded mode's: the no-op ceiling) and a
//! Redis `PING` (the floor of any round trip). The three are timed interleaved, one of
//! each per round, so that all meet the same machine load. Target: the Redis check adds
//! < 1 ms at p99 to the local one. Figures, not a test:
//!
//! ```text
//! cargo bench -p ticketing-kit --bench rate_limit      (BENCH_CHECKS=20000)
//! ```

use std::time::{Duration, Instant};

use ticketing_kit::rate_limit::{RateLimiter, SharedLimits};
use tokio_util::sync::CancellationToken;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(what: &str, mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.50), percentile(&samples, 0.99));
    println!(
        "{what:<30} n={:>6}  p50 {:>8.1} µs  p99 {:>8.1} µs  max {:>9.1} µs",
        samples.len(),
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        samples.last().unwrap().as_secs_f64() * 1e6,
    );
    (p50, p99)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("BENCH_CHECKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let url =
        std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("bench-{}", uuid::Uuid::now_v7().simple());
    let shutdown = CancellationToken::new();
    let shared = SharedLimits::connect(&url, &prefix, &shutdown).await?;
    anyhow::ensure!(shared.is_connected(), "Redis at {url} does not answer");
    // A generous quota over many keys: the checks are allowed, as nearly all are.
    let period = Duration::from_secs(60);
    let local = RateLimiter::new("bench", 600, period, None).expect("a limit");
    let remote = RateLimiter::new("bench", 600, period, Some(&shared)).expect("a limit");
    let key = |i: usize| format!("198.51.100.{}", i % 250);
    let client = redis::Client::open(url.as_str())?;
    let conn = client.get_multiplexed_async_connection().await?;

    // Warm up: the script loaded, connections made, caches hot.
    for i in 0..1_000 {
        let _ = remote.check(&key(i)).await;
    }
    println!(
        "rate limit check, {n} rounds (250 keys, 600/min: all allowed), one of each per round:"
    );
    let (mut local_t, mut ping_t, mut redis_t) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for i in 0..n {
        let key = key(i);
        let started = Instant::now();
        let _ = local.check(&key).await;
        local_t.push(started.elapsed());
        // A clone shares the one multiplexed connection.
        let mut ping = conn.clone();
        let started = Instant::now();
        let _: String = redis::cmd("PING").query_async(&mut ping).await?;
        ping_t.push(started.elapsed());
        let started = Instant::now();
        let _ = remote.check(&key).await;
        redis_t.push(started.elapsed());
    }
    let (_, local_p99) = report("local (governor, embedded)", local_t);
    let (_, ping_p99) = report("Redis PING (one round trip)", ping_t);
    let (_, redis_p99) = report("Redis GCRA (one EVALSHA)", redis_t);
    let added = redis_p99.saturating_sub(local_p99);
    println!(
        "added by Redis at p99: {:.3} ms (target < 1 ms: {}); p99 ratio to the PING floor: {:.2}",
        added.as_secs_f64() * 1e3,
        if added < Duration::from_millis(1) {
            "met"
        } else {
            "MISSED"
        },
        redis_p99.as_secs_f64() / ping_p99.as_secs_f64(),
    );
    shared.purge().await?;
    shutdown.cancel();
    Ok(())
}
