//! The delay-queue contract, run against real Redis (127.0.0.1:6379 or `TEST_REDIS_URL`),
//! SQLite and PostgreSQL (`TEST_DATABASE_URL`). An unreachable server fails the test.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ticketing_contracts::time::now_millis;
use ticketing_contracts::{OrderId, Timestamp};
use ticketing_expiration::{
    DelayQueue, DueJob, QueueOptions, RedisDelayQueue, SqlDelayQueue, MIGRATIONS, SERVICE,
};
use ticketing_kit::testing::{unique_prefix, TestBackend, TestEnv};
use ticketing_store::Store;
use tokio_util::sync::CancellationToken;

/// How late a job may fire in these tests: a sanity bound (never early, not absurdly
/// late) that holds on a loaded CI box. Precision is measured by the `lateness`
/// example, not asserted here.
const LATE_OK: i64 = 3_000;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Redis,
    Sqlite,
    Postgres,
}

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Opens queue instances sharing one storage: a second instance is another replica, or
/// the same service after a restart.
struct Harness {
    kind: Kind,
    prefix: String,
    env: Option<TestEnv>,
    stores: Mutex<Vec<Store>>,
}

impl Harness {
    fn new(kind: Kind) -> Harness {
        let env = match kind {
            Kind::Redis => None,
            Kind::Sqlite => Some(TestEnv::new(TestBackend::Sqlite)),
            Kind::Postgres => Some(TestEnv::new(TestBackend::Postgres)),
        };
        Harness {
            kind,
            prefix: unique_prefix(),
            env,
            stores: Mutex::new(Vec::new()),
        }
    }

    async fn open(&self, options: QueueOptions) -> Arc<dyn DelayQueue> {
        match self.kind {
            Kind::Redis => Arc::new(
                RedisDelayQueue::connect(&redis_url(), &self.prefix, options)
                    .await
                    .expect("Redis must be reachable"),
            ),
            Kind::Sqlite | Kind::Postgres => {
                let env = self.env.as_ref().expect("env");
                let location = env.runtime.location(SERVICE).expect("location");
                let store = Store::open(&location, &MIGRATIONS)
                    .await
                    .expect("database must be reachable");
                self.stores.lock().unwrap().push(store.clone());
                Arc::new(SqlDelayQueue::new(store, options))
            }
        }
    }

    async fn open_default(&self) -> Arc<dyn DelayQueue> {
        self.open(fast()).await
    }

    async fn cleanup(self) {
        if let Kind::Redis = self.kind {
            RedisDelayQueue::connect(&redis_url(), &self.prefix, fast())
                .await
                .unwrap()
                .purge()
                .await
                .unwrap();
        }
        let stores = std::mem::take(&mut *self.stores.lock().unwrap());
        for store in stores {
            store.close().await;
        }
    }
}

fn fast() -> QueueOptions {
    QueueOptions {
        lease: Duration::from_secs(30),
        max_sleep: Duration::from_millis(200),
    }
}

/// `next_due`, giving up (empty) after `wait`.
async fn next_within(q: &dyn DelayQueue, max: usize, wait: Duration) -> Vec<DueJob> {
    let stop = CancellationToken::new();
    let timer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            stop.cancel();
        })
    };
    let jobs = q.next_due(max, &stop).await.expect("next_due");
    timer.abort();
    jobs
}

/// The queue's arguments from the plain values these tests write.
fn id(order: &str) -> OrderId {
    OrderId::from(order)
}

fn at(millis: i64) -> Timestamp {
    Timestamp::from_millis(millis)
}

fn ids(jobs: &[DueJob]) -> Vec<&str> {
    jobs.iter().map(|j| j.order_id.as_str()).collect()
}

async fn fires_when_due_earliest_first(kind: Kind) {
    let h = Harness::new(kind);
    let q = h.open_default().await;
    let now = now_millis();
    q.schedule(&id("late"), at(now + 900)).await.unwrap();
    q.schedule(&id("soon"), at(now + 400)).await.unwrap();

    let jobs = next_within(&*q, 10, Duration::from_secs(5)).await;
    assert_eq!(ids(&jobs), ["soon"]);
    assert_eq!(jobs[0].due_at_millis, at(now + 400));
    // Not early (lateness >= 0), not much late.
    let lateness = now_millis() - jobs[0].due_at_millis.as_millis();
    assert!((0..LATE_OK).contains(&lateness), "fired {lateness} ms late");
    q.complete(&jobs[0]).await.unwrap();

    let jobs = next_within(&*q, 10, Duration::from_secs(5)).await;
    assert_eq!(ids(&jobs), ["late"]);
    let lateness = now_millis() - jobs[0].due_at_millis.as_millis();
    assert!((0..LATE_OK).contains(&lateness), "fired {lateness} ms late");
    q.complete(&jobs[0]).await.unwrap();

    assert!(next_within(&*q, 10, Duration::from_millis(300))
        .await
        .is_empty());
    h.cleanup().await;
}

async fn cancel_drops_the_job(kind: Kind) {
    let h = Harness::new(kind);
    let q = h.open_default().await;
    let now = now_millis();
    q.schedule(&id("a"), at(now + 100)).await.unwrap();
    q.schedule(&id("b"), at(now + 100)).await.unwrap();
    q.cancel(&id("a")).await.unwrap();
    q.cancel(&id("never-scheduled")).await.unwrap();
    let jobs = next_within(&*q, 10, Duration::from_secs(3)).await;
    assert_eq!(ids(&jobs), ["b"]);
    // Cancelling a claimed job drops it too: completing the stale claim is harmless.
    q.cancel(&id("b")).await.unwrap();
    q.complete(&jobs[0]).await.unwrap();
    assert!(next_within(&*q, 10, Duration::from_millis(400))
        .await
        .is_empty());
    h.cleanup().await;
}

async fn reschedule_is_idempotent(kind: Kind) {
    let h = Harness::new(kind);
    let q = h.open_default().await;
    let now = now_millis();
    for _ in 0..3 {
        q.schedule(&id("o"), at(now + 150)).await.unwrap();
    }
    let jobs = next_within(&*q, 10, Duration::from_secs(3)).await;
    assert_eq!(ids(&jobs), ["o"]);

    // A redelivered order:created (same time) while claimed changes nothing: the job is
    // not handed out a second time.
    q.schedule(&id("o"), at(now + 150)).await.unwrap();
    assert!(next_within(&*q, 10, Duration::from_millis(300))
        .await
        .is_empty());
    q.complete(&jobs[0]).await.unwrap();
    assert!(next_within(&*q, 10, Duration::from_millis(300))
        .await
        .is_empty());

    // Moving a job replaces it: one job, at the new time.
    let now = now_millis();
    q.schedule(&id("p"), at(now + 100)).await.unwrap();
    q.schedule(&id("p"), at(now + 60_000)).await.unwrap();
    assert!(next_within(&*q, 10, Duration::from_millis(400))
        .await
        .is_empty());
    q.schedule(&id("p"), at(now - 1)).await.unwrap();
    let jobs = next_within(&*q, 10, Duration::from_secs(1)).await;
    assert_eq!(ids(&jobs), ["p"]);
    assert_eq!(jobs[0].due_at_millis, at(now - 1));
    q.complete(&jobs[0]).await.unwrap();
    assert!(next_within(&*q, 10, Duration::from_millis(300))
        .await
        .is_empty());
    h.cleanup().await;
}

async fn overdue_fires_immediately(kind: Kind) {
    let h = Harness::new(kind);
    let q = h.open_default().await;
    let now = now_millis();
    q.schedule(&id("old"), at(now - 60_000)).await.unwrap();
    q.schedule(&id("older"), at(now - 120_000)).await.unwrap();
    let started = Instant::now();
    let jobs = next_within(&*q, 10, Duration::from_secs(3)).await;
    assert!(
        started.elapsed() < Duration::from_millis(LATE_OK as u64),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(ids(&jobs), ["older", "old"]);
    h.cleanup().await;
}

/// How far ahead the job that must survive a restart is due.
const PENDING_MS: i64 = 6_000;

async fn restart_keeps_pending_jobs(kind: Kind) {
    let h = Harness::new(kind);
    let now = now_millis();
    {
        let q = h.open_default().await;
        // Far enough ahead to still be pending after a slow reopen (PostgreSQL on a
        // loaded machine took over 2 s).
        q.schedule(&id("pending"), at(now + PENDING_MS))
            .await
            .unwrap();
        q.schedule(&id("overdue"), at(now - 5)).await.unwrap();
    }
    // "Restart": close the first instance's connections, open a new one.
    let stores = std::mem::take(&mut *h.stores.lock().unwrap());
    for store in stores {
        store.close().await;
    }
    let q = h.open_default().await;
    let jobs = next_within(&*q, 10, Duration::from_secs(3)).await;
    assert_eq!(ids(&jobs), ["overdue"]);
    q.complete(&jobs[0]).await.unwrap();
    let jobs = next_within(&*q, 10, Duration::from_secs(10)).await;
    assert_eq!(ids(&jobs), ["pending"]);
    let lateness = now_millis() - (now + PENDING_MS);
    assert!((0..LATE_OK).contains(&lateness), "fired {lateness} ms late");
    h.cleanup().await;
}

async fn concurrent_consumers_never_claim_the_same_job(kind: Kind) {
    const JOBS: usize = 300;
    let h = Harness::new(kind);
    let producer = h.open_default().await;
    let now = now_millis();
    for i in 0..JOBS {
        // Half overdue, half due over the next 300 ms.
        producer
            .schedule(&id(&format!("order-{i}")), at(now - 100 + (i as i64 % 400)))
            .await
            .unwrap();
    }
    let claimed = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = CancellationToken::new();
    let mut consumers = Vec::new();
    for _ in 0..3 {
        let q = h.open_default().await;
        let claimed = claimed.clone();
        let stop = stop.clone();
        consumers.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                let jobs = q.next_due(7, &stop).await.unwrap();
                for job in &jobs {
                    claimed.lock().unwrap().push(job.order_id.to_string());
                    q.complete(job).await.unwrap();
                }
                if claimed.lock().unwrap().len() >= JOBS {
                    stop.cancel();
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while claimed.lock().unwrap().len() < JOBS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give a straggler the chance to claim a job twice before judging.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    for c in consumers {
        c.await.unwrap();
    }
    let claimed = claimed.lock().unwrap().clone();
    let unique: HashSet<&String> = claimed.iter().collect();
    assert_eq!(unique.len(), claimed.len(), "a job was claimed twice");
    assert_eq!(claimed.len(), JOBS);
    h.cleanup().await;
}

async fn expired_lease_hands_the_job_out_again(kind: Kind) {
    let h = Harness::new(kind);
    let options = QueueOptions {
        lease: Duration::from_millis(1_000),
        max_sleep: Duration::from_millis(200),
    };
    let crashed = h.open(options.clone()).await;
    let survivor = h.open(options).await;
    crashed
        .schedule(&id("o"), at(now_millis() - 1))
        .await
        .unwrap();
    let first = next_within(&*crashed, 10, Duration::from_secs(2)).await;
    assert_eq!(ids(&first), ["o"]);
    // Held by the lease.
    assert!(next_within(&*survivor, 10, Duration::from_millis(200))
        .await
        .is_empty());
    // The claimer never completes; after the lease the survivor gets it.
    let second = next_within(&*survivor, 10, Duration::from_secs(3)).await;
    assert_eq!(ids(&second), ["o"]);
    assert_ne!(first[0].claim, second[0].claim);
    assert_eq!(first[0].due_at_millis, second[0].due_at_millis);
    // The stale claim removes nothing; the live one removes the job.
    crashed.complete(&first[0]).await.unwrap();
    let third = next_within(&*survivor, 10, Duration::from_secs(3)).await;
    assert_eq!(
        ids(&third),
        ["o"],
        "stale completion must not remove the job"
    );
    survivor.complete(&third[0]).await.unwrap();
    assert!(next_within(&*survivor, 10, Duration::from_millis(800))
        .await
        .is_empty());
    h.cleanup().await;
}

async fn schedule_wakes_a_waiting_consumer(kind: Kind) {
    let h = Harness::new(kind);
    let q = h
        .open(QueueOptions {
            lease: Duration::from_secs(30),
            max_sleep: Duration::from_secs(30),
        })
        .await;
    let waiter = {
        let q = q.clone();
        tokio::spawn(async move { next_within(&*q, 10, Duration::from_secs(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    q.schedule(&id("far"), at(now_millis() + 60_000))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let due = now_millis() + 100;
    q.schedule(&id("near"), at(due)).await.unwrap();
    let jobs = waiter.await.unwrap();
    assert_eq!(ids(&jobs), ["near"]);
    let lateness = now_millis() - due;
    assert!((0..LATE_OK).contains(&lateness), "fired {lateness} ms late");
    h.cleanup().await;
}

async fn shutdown_returns_nothing(kind: Kind) {
    let h = Harness::new(kind);
    let q = h.open_default().await;
    q.schedule(&id("x"), at(now_millis() + 60_000))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    stop.cancel();
    assert!(q.next_due(10, &stop).await.unwrap().is_empty());
    h.cleanup().await;
}

async fn claims_at_most_max(kind: Kind) {
    let h = Harness::new(kind);
    let q = h.open_default().await;
    let now = now_millis();
    for i in 0..5 {
        q.schedule(&id(&format!("m{i}")), at(now - 10 + i))
            .await
            .unwrap();
    }
    let first = next_within(&*q, 3, Duration::from_secs(1)).await;
    assert_eq!(ids(&first), ["m0", "m1", "m2"]);
    let rest = next_within(&*q, 3, Duration::from_secs(1)).await;
    assert_eq!(ids(&rest), ["m3", "m4"]);
    h.cleanup().await;
}

macro_rules! queue_tests {
    ($($name:ident),* $(,)?) => {
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name(super::Kind::Redis).await }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name(super::Kind::Sqlite).await }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name(super::Kind::Postgres).await }
            )*
        }
    };
}

queue_tests!(
    fires_when_due_earliest_first,
    cancel_drops_the_job,
    reschedule_is_idempotent,
    overdue_fires_immediately,
    restart_keeps_pending_jobs,
    concurrent_consumers_never_claim_the_same_job,
    expired_lease_hands_the_job_out_again,
    schedule_wakes_a_waiting_consumer,
    shutdown_returns_nothing,
    claims_at_most_max,
);
