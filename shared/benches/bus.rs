//! Publish→handled latency and throughput of both buses, outbox included: a service
//! commits a change with its event, the relay publishes it, a subscriber handles it.
//!
//! `cargo bench -p ticketing-shared --bench bus` (NATS at `TEST_NATS_URL`, default
//! `nats://127.0.0.1:4222`; `BENCH_BUS=in-process` or `nats` runs one backend). Prints
//! figures; asserts nothing.
//!
//! Three measures per backend: latency one event at a time; latency at a fixed offered
//! rate (open loop: producers keep the schedule whatever the latency, and latency counts
//! from the scheduled instant, so a stall is not hidden by producers waiting on it);
//! and the throughput of producers committing as fast as they can.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ticketing_shared::events::{
    outbox, Envelope, Handler, HandlerError, InProcessBus, NatsBus, Outbox, RetryPolicy, SharedBus,
    Subject,
};
use ticketing_shared::store::{DbLocation, Store};
use ticketing_shared::testing::{nats_url, unique_prefix, NO_MIGRATIONS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const LATENCY_EVENTS: usize = 2_000;
const THROUGHPUT_EVENTS: usize = 20_000;
const PRODUCERS: usize = 4;
const RATE_SECONDS: f64 = 3.0;

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
    relay: Outbox,
    start: Instant,
    done: mpsc::UnboundedReceiver<Duration>,
    shutdown: CancellationToken,
}

impl Rig {
    async fn new(bus: SharedBus, dir: &std::path::Path) -> anyhow::Result<Rig> {
        let store = Store::open(
            &DbLocation::Sqlite {
                path: dir.join("service.db"),
            },
            &NO_MIGRATIONS,
        )
        .await?;
        ticketing_shared::events::schema::install(&store).await?;
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
            relay,
            start,
            done,
            shutdown,
        })
    }

    /// Commit one event (as a service does) and wake the relay.
    async fn produce(store: &Store, relay: &Outbox, start: Instant) -> anyhow::Result<()> {
        Self::produce_at(store, relay, start.elapsed()).await
    }

    /// Like [`produce`](Self::produce), with latency counted from `sent` (since start).
    async fn produce_at(store: &Store, relay: &Outbox, sent: Duration) -> anyhow::Result<()> {
        let sent = sent.as_nanos().to_string();
        let event = Envelope::raw(Subject::TicketCreated, sent.into_bytes());
        let mut tx = store.begin().await?;
        outbox::enqueue(&mut tx, &event).await?;
        tx.commit().await?;
        relay.notify();
        Ok(())
    }

    async fn latency(&mut self) -> anyhow::Result<Vec<Duration>> {
        let mut samples = Vec::with_capacity(LATENCY_EVENTS);
        for _ in 0..LATENCY_EVENTS {
            Self::produce(&self.store, &self.relay, self.start).await?;
            samples.push(self.recv().await?);
        }
        Ok(samples)
    }

    /// `rate` events/s for `RATE_SECONDS`, spread over the producers.
    async fn at_rate(&mut self, rate: u32) -> anyhow::Result<(f64, Vec<Duration>)> {
        let total = (rate as f64 * RATE_SECONDS) as usize;
        let per_producer = total / PRODUCERS;
        let period = Duration::from_secs_f64(PRODUCERS as f64 / rate as f64);
        let begin = Instant::now();
        let mut producers = Vec::new();
        for p in 0..PRODUCERS {
            let (store, relay, start) = (self.store.clone(), self.relay.clone(), self.start);
            // Stagger the producers across one period.
            let first = begin + period.mul_f64(p as f64 / PRODUCERS as f64);
            producers.push(tokio::spawn(async move {
                for i in 0..per_producer {
                    let due = first + period * i as u32;
                    tokio::time::sleep_until(due.into()).await;
                    Self::produce_at(&store, &relay, due - start).await?;
                }
                anyhow::Ok(())
            }));
        }
        let mut samples = Vec::with_capacity(per_producer * PRODUCERS);
        for _ in 0..per_producer * PRODUCERS {
            samples.push(self.recv().await?);
        }
        for producer in producers {
            producer.await??;
        }
        Ok((
            samples.len() as f64 / begin.elapsed().as_secs_f64(),
            samples,
        ))
    }

    async fn throughput(&mut self) -> anyhow::Result<(f64, Vec<Duration>)> {
        let begin = Instant::now();
        let mut producers = Vec::new();
        for _ in 0..PRODUCERS {
            let (store, relay, start) = (self.store.clone(), self.relay.clone(), self.start);
            producers.push(tokio::spawn(async move {
                for _ in 0..THROUGHPUT_EVENTS / PRODUCERS {
                    Self::produce(&store, &relay, start).await?;
                }
                anyhow::Ok(())
            }));
        }
        let mut samples = Vec::with_capacity(THROUGHPUT_EVENTS);
        for _ in 0..THROUGHPUT_EVENTS {
            samples.push(self.recv().await?);
        }
        for producer in producers {
            producer.await??;
        }
        Ok((
            THROUGHPUT_EVENTS as f64 / begin.elapsed().as_secs_f64(),
            samples,
        ))
    }

    async fn recv(&mut self) -> anyhow::Result<Duration> {
        tokio::time::timeout(Duration::from_secs(30), self.done.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("subscriber stopped"))
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, what: &str, samples: &mut [Duration]) {
    println!(
        "{name:<10} {what:<28} p50 {:>8.3} ms   p99 {:>8.3} ms   max {:>8.3} ms",
        percentile(samples, 0.50).as_secs_f64() * 1e3,
        percentile(samples, 0.99).as_secs_f64() * 1e3,
        percentile(samples, 1.0).as_secs_f64() * 1e3,
    );
}

async fn run(name: &str, bus: SharedBus, dir: &std::path::Path, rate: u32) -> anyhow::Result<()> {
    let mut rig = Rig::new(bus, dir).await?;
    // Warm up connections and caches.
    for _ in 0..200 {
        Rig::produce(&rig.store, &rig.relay, rig.start).await?;
        rig.recv().await?;
    }
    let mut samples = rig.latency().await?;
    report(name, "latency (one at a time)", &mut samples);
    let (achieved, mut samples) = rig.at_rate(rate).await?;
    report(name, &format!("latency at {rate} events/s"), &mut samples);
    println!("{name:<10} achieved                     {achieved:>8.0} events/s");
    let (rate, mut samples) = rig.throughput().await?;
    report(name, "latency under load", &mut samples);
    println!(
        "{name:<10} throughput                   {rate:>8.0} events/s ({THROUGHPUT_EVENTS} events, {PRODUCERS} producers, 1 event per transaction)"
    );
    rig.shutdown.cancel();
    rig.store.close().await;
    Ok(())
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
            &dir.path().join("a"),
            10_000,
        )
        .await?;
    }
    if wanted("nats") {
        let nats = NatsBus::connect(&nats_url(), &unique_prefix()).await?;
        let stream = nats.stream_name().to_owned();
        let client = nats.client().clone();
        run("nats", Arc::new(nats), &dir.path().join("b"), 5_000).await?;
        // Leave no benchmark stream behind.
        let _ = async_nats::jetstream::new(client)
            .delete_stream(stream)
            .await;
    }
    Ok(())
}
