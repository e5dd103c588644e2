//! Webhook delivery latency under load: from an event's production (`produced_at`, the
//! stamp of the producing commit's outbox row) to its delivery's arrival at a receiver,
//! at a fixed rate. Target: p99 < 250 ms at ≥ 1,000 deliveries/s, embedded (SQLite,
//! in-process bus) and distributed (PostgreSQL, JetStream).
//!
//! The webhooks service runs alone in this process; events (`ticket:created` of
//! `SELLERS` sellers, each with one endpoint, every listing its own key) are published
//! on the bus at `RATE` per second for `SECONDS`, after a warm-up. The sink verifies
//! every signature and records each first arrival.
//!
//! ```text
//! cargo bench -p ticketing-webhooks --bench delivery              # both backends
//! RUST_LOG=ticketing_webhooks=debug cargo bench …                  # each claim's size
//! BENCH_WEBHOOKS_BACKEND=postgres BENCH_WEBHOOKS_RATE=2000 cargo bench -p ticketing-webhooks --bench delivery
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use ticketing_bus::Envelope;
use ticketing_contracts::events::TicketCreated;
use ticketing_contracts::money::Cents;
use ticketing_contracts::time::{now_millis, parse_millis};
use ticketing_contracts::{webhook, SaleTerms};
use ticketing_kit::testing::{TestApp, TestBackend, TestEnv};

fn var(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Sink {
    /// Event id → ms from production to arrival (first arrival only).
    latency: HashMap<String, i64>,
    /// Arrival times (ms), for the throughput.
    arrivals: Vec<i64>,
    duplicates: u64,
    bad_signatures: u64,
    secrets: Vec<String>,
}

async fn receive(
    State(sink): State<Arc<Mutex<Sink>>>,
    headers: HeaderMap,
    raw: Bytes,
) -> StatusCode {
    let at = now_millis();
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let id = header(webhook::ID_HEADER);
    let ts: i64 = header(webhook::TIMESTAMP_HEADER).parse().unwrap_or(0);
    let sig = header(webhook::SIGNATURE_HEADER);
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let produced = body["createdAt"]
        .as_str()
        .and_then(parse_millis)
        .unwrap_or(at);
    let mut sink = sink.lock().unwrap();
    if !sink
        .secrets
        .iter()
        .any(|s| webhook::verify(s, &id, ts, &raw, &sig))
    {
        sink.bad_signatures += 1;
    }
    if sink.latency.insert(id, at - produced).is_some() {
        sink.duplicates += 1;
    } else {
        sink.arrivals.push(at);
    }
    StatusCode::NO_CONTENT
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn run(backend: TestBackend) {
    let rate = var("BENCH_WEBHOOKS_RATE", 1000);
    let seconds = var("BENCH_WEBHOOKS_SECONDS", 10);
    let warmup = var("BENCH_WEBHOOKS_WARMUP_SECONDS", 2);
    let sellers = var("BENCH_WEBHOOKS_SELLERS", 4) as usize;
    let env = match backend {
        TestBackend::Sqlite => TestEnv::new(backend),
        TestBackend::Postgres => TestEnv::with_nats(backend).await,
    };
    let settings = ticketing_webhooks::Settings {
        allow_private: true,
        ..Default::default()
    };
    let service = ticketing_webhooks::mount(&env.runtime, &settings)
        .await
        .unwrap();
    let app = TestApp::spawn(env, vec![service]).await;

    let sink = Arc::new(Mutex::new(Sink::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let router = Router::new()
        .route("/hook", post(receive))
        .with_state(sink.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    for s in 0..sellers {
        let res = app
            .as_user(&format!("bench-seller-{s}"))
            .post_json(
                "/api/webhooks",
                json!({"url": url, "events": ["ticket:created"]}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.unwrap();
        sink.lock()
            .unwrap()
            .secrets
            .push(body["secret"].as_str().unwrap().to_owned());
    }

    // Publish in batches every 10 ms.
    let per_tick = (rate / 100).max(1) as usize;
    let total_ticks = (warmup + seconds) * 100;
    let bus = app.env.runtime.bus.clone();
    let started = Instant::now();
    let measured_from = now_millis() + (warmup * 1000) as i64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n = 0u64;
    let mut measured_ids = Vec::new();
    for _ in 0..total_ticks {
        tick.tick().await;
        let batch: Vec<Envelope> = (0..per_tick)
            .map(|_| {
                n += 1;
                Envelope::new(&TicketCreated {
                    id: uuid::Uuid::now_v7().to_string().into(),
                    title: "Bench".into(),
                    price: Cents::new(1000),
                    user_id: format!("bench-seller-{}", n as usize % sellers).into(),
                    version: 0,
                    terms: SaleTerms::default(),
                    refund: Default::default(),
                })
            })
            .collect();
        if batch[0].produced_at >= measured_from {
            measured_ids.extend(batch.iter().map(|e| e.id.clone()));
        }
        bus.publish_batch(&batch).await.unwrap();
    }
    let publish_secs = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.lock().unwrap().latency.len() < n as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sink = sink.lock().unwrap();
    let mut lat: Vec<i64> = measured_ids
        .iter()
        .filter_map(|id| sink.latency.get(id).copied())
        .collect();
    let missing = measured_ids.len() - lat.len();
    lat.sort_unstable();
    let first = measured_from;
    let last = sink.arrivals.iter().copied().max().unwrap_or(first);
    let in_window = sink.arrivals.iter().filter(|a| **a >= first).count();
    let throughput = in_window as f64 / ((last - first).max(1) as f64 / 1000.0);
    let name = match backend {
        TestBackend::Sqlite => "embedded (SQLite, in-process bus)",
        TestBackend::Postgres => "distributed (PostgreSQL, JetStream)",
    };
    println!(
        "{name}: offered {rate}/s for {seconds} s ({} events, published in {publish_secs:.1} s incl. {warmup} s warm-up), {sellers} endpoints",
        n
    );
    println!(
        "  delivered {}/{} (missing {missing}, duplicates {}, bad signatures {}), {throughput:.0}/s",
        lat.len(),
        measured_ids.len(),
        sink.duplicates,
        sink.bad_signatures
    );
    println!(
        "  latency from production: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms  (target p99 < 250 ms at ≥ 1,000/s: {})",
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0),
        // Kept up with what was offered: every delivery within 250 ms at p99. (The
        // rate seen at the sink is the offered rate over the run plus the last
        // delivery's latency: just under it whenever the latency is bounded.)
        if percentile(&lat, 0.99) < 250 && rate >= 1000 && missing == 0 { "met" } else { "MISSED" }
    );
    app.env.runtime.shutdown.cancel();
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // The worker's claims and wake-ups: `RUST_LOG=ticketing_webhooks=trace`.
    if std::env::var_os("RUST_LOG").is_some() {
        ticketing_kit::telemetry::init_tracing(false);
    }
    let backend = std::env::var("BENCH_WEBHOOKS_BACKEND").unwrap_or_default();
    if backend != "postgres" {
        run(TestBackend::Sqlite).await;
    }
    if backend != "sqlite" {
        run(TestBackend::Postgres).await;
    }
}
