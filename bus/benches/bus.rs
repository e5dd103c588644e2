//! Publish→handled latency and throughput of both buses, outbox included: a service
//! commits a change with its event, the relay publishes it, a subscriber handles it.
//!
//! `cargo bench -p ticketing-shared --bench bus` (NATS at `TEST_NATS_URL`, default
//! `nats://127.0.0.1:4222`; PostgreSQL at `TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432`). Three set-ups: `in-process` and `nats` with the
//! service's database on SQLite, `nats+pg` with it on PostgreSQL (distributed mode);
//! `BENCH_BUS=<set-up>` runs one. Prints figures; asserts nothing.
//!
//! Per backend: latency one event at a time; latency at a fixed offered rate (open
//! loop: every transaction starts on its own schedule whatever the latency, and latency
//! counts from the scheduled instant, so a stall is not hidden by producers waiting on
//! it); and the rate of 4 producers committing as fast as they can. The last two with 1
//! event per producer transaction, then 10: one transaction per event is bounded by how
//! many commits the service's own database takes, ten show what the relay and the bus
//! carry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ticketing_bus::{
    outbox, Envelope, Handler, HandlerError, InProcessBus, NatsBus, Outbox, RetryPolicy, SharedBus,
};
use ticketing_contracts::events::Subject;
use ticketing_kit::testing::{nats_url, postgres_base_url, unique_prefix, NO_MIGRATIONS};
use ticketing_store::{DbLocation, Store};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const LATENCY_EVENTS: usize = 2_000;
const THROUGHPUT_EVENTS: usize = 20_000;
const PRODUCERS: usize = 4;
const RATE_SECONDS: f64 = 3.0;
/// Events per producer transaction: one (a service's typical change) and ten (the bus
/// itself, with the producers' commit rate out of the way).
const EVENTS_PER_TX: [usize; 2] = [1, 10];

/// Reports, per handled event, how long since its producer committed it.
struct Timer {
    start: Instant,
    done: mpsc::UnboundedSender<Duration>,
}

#[async_trait]
impl Handler for Timer {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        let sent: u64 = std::str::from_utf8(&event.payload)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| HandlerError::Poison("bad payload".into()))?;
        let elapsed = self
            .start
            .elapsed()
            .saturating_sub(Duration::from_nanos(sent));
        let _ = self.done.send(elapsed);
        Ok(())
    }
}

struct Rig {
    store: Store,
    _relay: Outbox,
    start: Instant,
    done: mpsc::UnboundedReceiver<Duration>,
    shutdown: CancellationToken,
}

impl Rig {
    async fn new(bus: SharedBus, location: &DbLocation) -> anyhow::Result<Rig> {
        let store = Store::open(location, &NO_MIGRATIONS).await?;
        ticketing_bus::tables::install(&store).await?;
        let shutdown = CancellationToken::new();
        let relay = Outbox::new(store.clone(), bus.clone());
        relay.spawn(shutdown.clone());
        let start = Instant::now();
        let (tx, done) = mpsc::unbounded_channel();
        let timer = Arc::new(Timer { start, done: tx });
        bus.subscribe(
            "bench-service",
            Subject::TicketCreated,
            timer,
            shutdown.clone(),
        )
        .await?;
        Ok(Rig {
            store,
            _relay: relay,
            start,
            done,
            shutdown,
        })
    }

    /// Commit one event (as a service does); the commit wakes the relay.
    async fn produce(store: &Store, start: Instant) -> anyhow::Result<()> {
        Self::produce_at(store, start.elapsed(), 1).await
    }

    /// Commit `per_tx` events in one transaction, with latency counted from `sent`
    /// (since start).
    async fn produce_at(store: &Store, sent: Duration, per_tx: usize) -> anyhow::Result<()> {
        let sent = sent.as_nanos().to_string();
        let mut tx = store.begin().await?;
        for _ in 0..per_tx {
            let event = Envelope::raw(Subject::TicketCreated, sent.clone().into_bytes());
            outbox::enqueue(&mut tx, &event).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn latency(&mut self) -> anyhow::Result<Vec<Duration>> {
        let mut samples = Vec::with_capacity(LATENCY_EVENTS);
        for _ in 0..LATENCY_EVENTS {
            Self::produce(&self.store, self.start).await?;
            samples.push(self.recv().await?);
        }
        Ok(samples)
    }

    /// `rate` events/s for `RATE_SECONDS` in transactions of `per_tx` events. Open loop:
    /// each transaction starts on its own schedule, as independent requests would, not
    /// after the previous one of a fixed set of producers.
    async fn at_rate(&mut self, rate: u32, per_tx: usize) -> anyhow::Result<Run> {
        let transactions = (rate as f64 * RATE_SECONDS) as usize / per_tx;
        let period = Duration::from_secs_f64(per_tx as f64 / rate as f64);
        let (store, start) = (self.store.clone(), self.start);
        let begin = Instant::now();
        let scheduler = tokio::spawn(async move {
            let mut running = tokio::task::JoinSet::new();
            for i in 0..transactions {
                let due = begin + period * i as u32;
                tokio::time::sleep_until(due.into()).await;
                let store = store.clone();
                running.spawn(async move { Self::produce_at(&store, due - start, per_tx).await });
            }
            while let Some(done) = running.join_next().await {
                done??;
            }
            anyhow::Ok(())
        });
        self.collect(begin, vec![scheduler], transactions * per_tx)
            .await
    }

    /// Producers committing transactions of `per_tx` events as fast as they can.
    async fn throughput(&mut self, per_tx: usize) -> anyhow::Result<Run> {
        let transactions = THROUGHPUT_EVENTS / per_tx / PRODUCERS;
        let begin = Instant::now();
        let mut producers = Vec::new();
        for _ in 0..PRODUCERS {
            let (store, start) = (self.store.clone(), self.start);
            producers.push(tokio::spawn(async move {
                for _ in 0..transactions {
                    Self::produce_at(&store, start.elapsed(), per_tx).await?;
                }
                anyhow::Ok(())
            }));
        }
        self.collect(begin, producers, transactions * PRODUCERS * per_tx)
            .await
    }

    async fn collect(
        &mut self,
        begin: Instant,
        producers: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
        events: usize,
    ) -> anyhow::Result<Run> {
        let mut samples = Vec::with_capacity(events);
        for _ in 0..events {
            samples.push(self.recv().await?);
        }
        for producer in producers {
            producer.await??;
        }
        Ok(Run {
            rate: events as f64 / begin.elapsed().as_secs_f64(),
            samples,
        })
    }

    async fn recv(&mut self) -> anyhow::Result<Duration> {
        tokio::time::timeout(Duration::from_secs(30), self.done.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("subscriber stopped"))
    }
}

/// Events handled per second, and each one's latency.
struct Run {
    rate: f64,
    samples: Vec<Duration>,
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, what: &str, samples: &mut [Duration], rate: Option<f64>) {
    let rate = rate.map_or(String::new(), |r| format!("   {r:>6.0} events/s"));
    println!(
        "{name:<10} {what:<34} p50 {:>7.3} ms   p99 {:>8.3} ms   max {:>8.3} ms{rate}",
        percentile(samples, 0.50).as_secs_f64() * 1e3,
        percentile(samples, 0.99).as_secs_f64() * 1e3,
        percentile(samples, 1.0).as_secs_f64() * 1e3,
    );
}

async fn run(name: &str, bus: SharedBus, store: &DbLocation, rate: u32) -> anyhow::Result<()> {
    let mut rig = Rig::new(bus, store).await?;
    // Warm up connections and caches.
    for _ in 0..200 {
        Rig::produce(&rig.store, rig.start).await?;
        rig.recv().await?;
    }
    let mut samples = rig.latency().await?;
    report(name, "one event at a time", &mut samples, None);
    for per_tx in EVENTS_PER_TX {
        let mut run = rig.at_rate(rate, per_tx).await?;
        let what = format!("{rate}/s offered, {per_tx} per tx");
        report(name, &what, &mut run.samples, Some(run.rate));
    }
    for per_tx in EVENTS_PER_TX {
        let mut run = rig.throughput(per_tx).await?;
        let what = format!("flat out, {per_tx} per tx");
        report(name, &what, &mut run.samples, Some(run.rate));
    }
    rig.shutdown.cancel();
    rig.store.close().await;
    Ok(())
}

fn sqlite(dir: &std::path::Path) -> DbLocation {
    DbLocation::Sqlite {
        path: dir.join("service.db"),
    }
}

async fn nats_run(name: &str, store: &DbLocation) -> anyhow::Result<()> {
    let nats = NatsBus::connect(&nats_url(), &unique_prefix()).await?;
    let stream = nats.stream_name().to_owned();
    let client = nats.client().clone();
    let result = run(name, Arc::new(nats), store, 5_000).await;
    // Leave no benchmark stream behind.
    let _ = async_nats::jetstream::new(client)
        .delete_stream(stream)
        .await;
    result
}

async fn drop_postgres_database(name: &str) {
    let url = format!("{}/postgres", postgres_base_url());
    if let Ok(admin) = sqlx::AnyPool::connect(&url).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&admin)
            .await;
        admin.close().await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir()?;
    let only = std::env::var("BENCH_BUS").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|only| only == name);
    // The rates are the throughput targets for each backend.
    if wanted("in-process") {
        let in_process =
            InProcessBus::open_with(&dir.path().join("bus.db"), RetryPolicy::default()).await?;
        run(
            "in-process",
            Arc::new(in_process),
            &sqlite(&dir.path().join("a")),
            10_000,
        )
        .await?;
    }
    if wanted("nats") {
        nats_run("nats", &sqlite(&dir.path().join("b"))).await?;
    }
    if wanted("nats+pg") {
        // Distributed mode's pairing: the service's database on PostgreSQL.
        let name = format!("{}_bench", unique_prefix());
        let url = format!("{}/{name}", postgres_base_url());
        let result = nats_run("nats+pg", &DbLocation::Postgres { url }).await;
        drop_postgres_database(&name).await;
        result?;
    }
    Ok(())
}
