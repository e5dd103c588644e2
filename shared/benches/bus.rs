//! Publish→handled latency and throughput of both buses, outbox included: a service
//! commits a change with its event, the relay publishes it, a subscriber handles it.
//!
//! `cargo bench -p ticketing-shared --bench bus` (NATS at `TEST_NATS_URL`, default
//! `nats://127.0.0.1:4222`). Prints figures; asserts nothing.

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
        let sent = start.elapsed().as_nanos().to_string();
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

async fn run(name: &str, bus: SharedBus, dir: &std::path::Path) -> anyhow::Result<()> {
    let mut rig = Rig::new(bus, dir).await?;
    // Warm up connections and caches.
    for _ in 0..200 {
        Rig::produce(&rig.store, &rig.relay, rig.start).await?;
        rig.recv().await?;
    }
    let mut samples = rig.latency().await?;
    report(name, "latency (one at a time)", &mut samples);
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
    let in_process =
        InProcessBus::open_with(&dir.path().join("bus.db"), RetryPolicy::default()).await?;
    run("in-process", Arc::new(in_process), &dir.path().join("a")).await?;

    let nats = NatsBus::connect(&nats_url(), &unique_prefix()).await?;
    let stream = nats.stream_name().to_owned();
    let client = nats.client().clone();
    run("nats", Arc::new(nats), &dir.path().join("b")).await?;
    // Leave no benchmark stream behind.
    let _ = async_nats::jetstream::new(client)
        .delete_stream(stream)
        .await;
    Ok(())
}
