//! Firing lateness of the delay queues: schedules thousands of expiries due over a few
//! seconds (8 concurrent schedulers spread over two replicas), consumes them with both
//! replicas, and prints how late each fired (claim time − due time): p50 / p99 / max; and
//! the same measured from max(due time, when its schedule call started), which separates
//! the queue's timer from a store too slow to take the schedules.
//!
//! ```text
//! cargo run -p ticketing-expiration --example lateness -- [jobs] [spread_ms] [backends]
//! # defaults: 3000 4000 redis,sqlite,postgres
//! ```
//! Redis: `REDIS_URL` (default redis://127.0.0.1:6379); PostgreSQL: `TEST_DATABASE_URL`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use ticketing_contracts::time::now_millis;
use ticketing_contracts::{OrderId, Timestamp};
use ticketing_expiration::{
    DelayQueue, QueueOptions, RedisDelayQueue, SqlDelayQueue, MIGRATIONS, SERVICE,
};
use ticketing_kit::testing::{unique_prefix, TestBackend, TestEnv};
use ticketing_store::Store;
use tokio_util::sync::CancellationToken;

const REPLICAS: usize = 2;
/// Concurrent schedulers (order:created handlers), spread over the replicas.
const PRODUCERS: usize = 8;
const BATCH: usize = 64;
/// Jobs are scheduled at least this long before they are due.
const LEAD_MS: i64 = 300;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let jobs: usize = args.first().map(|a| a.parse()).transpose()?.unwrap_or(3000);
    let spread_ms: i64 = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(4000);
    let backends = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "redis,sqlite,postgres".to_owned());
    println!(
        "{jobs} jobs due over {spread_ms} ms, {PRODUCERS} schedulers, {REPLICAS} consuming replicas, claims of up to {BATCH}"
    );
    for backend in backends.split(',') {
        let options = QueueOptions::default();
        let (queues, _keep): (Vec<Arc<dyn DelayQueue>>, Option<TestEnv>) = match backend {
            "redis" => {
                let url = std::env::var("REDIS_URL")
                    .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
                let prefix = format!("bench-{}", unique_prefix());
                let mut queues: Vec<Arc<dyn DelayQueue>> = Vec::new();
                for _ in 0..REPLICAS {
                    queues.push(Arc::new(
                        RedisDelayQueue::connect(&url, &prefix, options.clone()).await?,
                    ));
                }
                (queues, None)
            }
            "sqlite" | "postgres" => {
                let env = TestEnv::new(if backend == "sqlite" {
                    TestBackend::Sqlite
                } else {
                    TestBackend::Postgres
                });
                let location = env.runtime.location(SERVICE)?;
                let mut queues: Vec<Arc<dyn DelayQueue>> = Vec::new();
                for _ in 0..REPLICAS {
                    let store = Store::open(&location, &MIGRATIONS).await?;
                    queues.push(Arc::new(SqlDelayQueue::new(store, options.clone())));
                }
                (queues, Some(env))
            }
            other => anyhow::bail!("unknown backend {other}"),
        };
        run(backend, queues, jobs, spread_ms).await?;
    }
    Ok(())
}

async fn run(
    name: &str,
    queues: Vec<Arc<dyn DelayQueue>>,
    jobs: usize,
    spread_ms: i64,
) -> anyhow::Result<()> {
    let total = jobs / PRODUCERS * PRODUCERS;
    // Per fired job: (claimed at − due at, claimed at − max(due at, schedule call start)).
    let lateness = Arc::new(Mutex::new(Vec::<(i64, i64)>::with_capacity(total)));
    let scheduled_at = Arc::new(Mutex::new(HashMap::<OrderId, i64>::with_capacity(total)));
    let fired = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();

    let mut consumers = Vec::new();
    for q in &queues {
        let (q, lateness, scheduled_at, fired, stop) = (
            q.clone(),
            lateness.clone(),
            scheduled_at.clone(),
            fired.clone(),
            stop.clone(),
        );
        consumers.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                let due = q.next_due(BATCH, &stop).await?;
                let at = now_millis();
                {
                    let scheduled_at = scheduled_at.lock().unwrap();
                    lateness.lock().unwrap().extend(due.iter().map(|j| {
                        let due_at = j.due_at_millis.as_millis();
                        let ready = scheduled_at
                            .get(&j.order_id)
                            .map_or(due_at, |s| (*s).max(due_at));
                        (at - due_at, at - ready)
                    }));
                }
                // The service enqueues each job's event and completes it; jobs of one
                // batch are independent, so they complete concurrently.
                futures::future::try_join_all(due.iter().map(|job| q.complete(job))).await?;
                if fired.fetch_add(due.len(), Ordering::SeqCst) + due.len() >= total {
                    stop.cancel();
                }
            }
            anyhow::Ok(())
        }));
    }

    // Orders arrive concurrently on every replica, each about LEAD_MS before it expires.
    let started = Instant::now();
    let base = now_millis() + LEAD_MS;
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let q = queues[p % queues.len()].clone();
        let scheduled_at = scheduled_at.clone();
        let mut rng = rand::thread_rng();
        let mut dues: Vec<i64> = (0..total / PRODUCERS)
            .map(|_| base + rng.gen_range(0..spread_ms))
            .collect();
        dues.sort_unstable();
        producers.push(tokio::spawn(async move {
            for (i, due) in dues.into_iter().enumerate() {
                let wait = due - LEAD_MS - now_millis();
                if wait > 0 {
                    tokio::time::sleep(Duration::from_millis(wait as u64)).await;
                }
                let id = OrderId::from(format!("{p}-{i}"));
                scheduled_at
                    .lock()
                    .unwrap()
                    .insert(id.clone(), now_millis());
                q.schedule(&id, Timestamp::from_millis(due)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for p in producers {
        p.await??;
    }
    let scheduled_in = started.elapsed();

    let deadline = Instant::now() + Duration::from_millis(spread_ms as u64 + 30_000);
    while fired.load(Ordering::SeqCst) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    for c in consumers {
        c.await??;
    }
    let all = lateness.lock().unwrap().clone();
    anyhow::ensure!(!all.is_empty(), "{name}: nothing fired");
    let summary = |mut v: Vec<i64>| {
        v.sort_unstable();
        let n = v.len();
        let pct = |p: usize| v[(n * p / 100).min(n - 1)];
        format!(
            "p50 {} p90 {} p99 {} max {}",
            pct(50),
            pct(90),
            pct(99),
            v[n - 1]
        )
    };
    println!(
        "{name:>8}: fired {}/{total}, scheduling window {:.2?}\n          lateness vs due time (ms):            {}\n          lateness vs max(due, scheduled) (ms): {}",
        all.len(),
        scheduled_in,
        summary(all.iter().map(|l| l.0).collect()),
        summary(all.iter().map(|l| l.1).collect()),
    );
    Ok(())
}
