//! Online redeems at concurrency 32 against the check-in service alone, over HTTP: each
//! request checks in a distinct pass (the full path: device lookup, nonce claim, the
//! check-in's insert, its event and feed row, the commit). Beside it, the ceiling of the
//! same run: `GET /api/checkin/key` at the same concurrency (the same HTTP stack, no
//! database). Target (issue 32): ≥ 2,000 redeems/s and p99 < 20 ms embedded. Figures,
//! not a test:
//!
//! ```text
//! cargo bench -p ticketing-checkin --bench redeem
//!   BENCH_CHECKIN_BACKEND=sqlite|postgres  BENCH_CHECKIN_SECONDS=10  BENCH_CHECKIN_CONCURRENCY=32
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use ticketing_bus::Envelope;
use ticketing_contracts::events::{OrderCompleted, TicketCreated, TicketRef};
use ticketing_contracts::money::Cents;
use ticketing_contracts::SaleTerms;
use ticketing_kit::testing::{TestApp, TestBackend, TestEnv};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Run {
    done: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// `concurrency` workers sending `request(i)` for `seconds`, `i` counting across them.
async fn run<F, Fut>(concurrency: usize, seconds: u64, limit: usize, request: F) -> Run
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let next = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (request, next) = (request.clone(), next.clone());
            tokio::spawn(async move {
                let mut times = Vec::new();
                while Instant::now() < until {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= limit {
                        break;
                    }
                    let t = Instant::now();
                    assert!(request(i).await, "request {i} failed");
                    times.push(t.elapsed());
                }
                times
            })
        })
        .collect();
    let mut times = Vec::new();
    for w in workers {
        times.extend(w.await.unwrap());
    }
    let elapsed = started.elapsed();
    times.sort();
    Run {
        done: times.len(),
        per_second: times.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&times, 0.50),
        p99: percentile(&times, 0.99),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let backend = match std::env::var("BENCH_CHECKIN_BACKEND").as_deref() {
        Ok("postgres") => TestBackend::Postgres,
        _ => TestBackend::Sqlite,
    };
    let seconds: u64 = env_or("BENCH_CHECKIN_SECONDS", 10);
    let concurrency: usize = env_or("BENCH_CHECKIN_CONCURRENCY", 32);
    let passes: i64 = env_or("BENCH_CHECKIN_PASSES", 40_000);

    let env = TestEnv::new(backend);
    let service = ticketing_checkin::mount(&env.runtime, &Default::default()).await?;
    let app = TestApp::spawn(env, vec![service]).await;
    let ticket = uuid::Uuid::now_v7().to_string();
    let bus = app.env.runtime.bus.clone();
    bus.publish(&Envelope::new(&TicketCreated {
        id: ticket.as_str().into(),
        title: "Bench".into(),
        price: Cents::new(1000),
        user_id: "seller".into(),
        version: 0,
        terms: SaleTerms::default(),
        refund: Default::default(),
    }))
    .await?;
    // Passes in orders of 1,000 units.
    let mut orders = Vec::new();
    for _ in 0..(passes / 1000).max(1) {
        let order = uuid::Uuid::now_v7().to_string();
        bus.publish(&Envelope::new(&OrderCompleted {
            id: order.as_str().into(),
            version: 1,
            user_id: "buyer".into(),
            ticket: TicketRef {
                id: ticket.as_str().into(),
            },
            quantity: 1000,
        }))
        .await?;
        orders.push(order);
    }
    let buyer = app.as_user("buyer");
    let mut codes = Vec::new();
    for order in &orders {
        let list = buyer
            .patience
            .eventually("the passes", || async {
                let list = buyer
                    .get_json(&format!("/api/passes?orderId={order}"))
                    .await;
                (list.as_array().unwrap().len() == 1000).then_some(list)
            })
            .await;
        codes.extend(
            list.as_array()
                .unwrap()
                .iter()
                .map(|p| p["code"].as_str().unwrap().to_owned()),
        );
    }
    let created: Value = app
        .as_user("seller")
        .post_json(
            "/api/checkin/devices",
            json!({"name": "Bench", "ticketIds": [ticket]}),
        )
        .await
        .json()
        .await?;
    let token = created["token"].as_str().unwrap().to_owned();
    let codes = Arc::new(codes);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let base = app.server.url("");

    let ceiling = {
        let (http, base) = (http.clone(), base.clone());
        run(concurrency, seconds.min(5), usize::MAX, move |_| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                http.get(format!("{base}/api/checkin/key"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await
    };
    let redeems = {
        let limit = codes.len();
        run(concurrency, seconds, limit, move |i| {
            let (http, base, token, codes) =
                (http.clone(), base.clone(), token.clone(), codes.clone());
            async move {
                let res = http
                    .post(format!("{base}/api/checkin/redeem"))
                    .header("Authorization", format!("Device {token}"))
                    .json(&json!({"code": codes[i], "nonce": format!("n{i}")}))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().is_success() => {
                        r.json::<Value>().await.is_ok_and(|b| b["result"] == "ok")
                    }
                    _ => false,
                }
            }
        })
        .await
    };
    println!(
        "checkin redeem bench ({backend:?}, c={concurrency}, debug assertions: {}):",
        cfg!(debug_assertions)
    );
    for (what, r) in [
        ("ceiling GET /api/checkin/key", &ceiling),
        ("POST /api/checkin/redeem", &redeems),
    ] {
        println!(
            "  {what:<30} n={:>6}  {:>8.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
            r.done,
            r.per_second,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3
        );
    }
    println!(
        "  redeems/s over the ceiling: {:.3}   target: ≥ 2,000/s, p99 < 20 ms",
        redeems.per_second / ceiling.per_second
    );
    if redeems.done == codes_len_hint(passes) {
        println!("  (every pass was redeemed before the time was up: raise BENCH_CHECKIN_PASSES)");
    }
    Ok(())
}

fn codes_len_hint(passes: i64) -> usize {
    ((passes / 1000).max(1) * 1000) as usize
}
