//! Expiry lateness: how long after `reservedUntil` (`expiresAt` + payment grace) an
//! unpaid order reads `cancelled` and its ticket reads available again. Target: p99 <
//! 250 ms, in both modes.
//!
//! Every service but auth runs in this process on one runtime, as `--target all` does.
//! Orders are placed over a spread of time, so their deadlines are staggered; none is
//! paid. An observer consumer group records when each `order:cancelled` and each
//! releasing `ticket:updated` reach the bus's consumers — the moment the orders row
//! and the tickets row were committed, plus one bus hop (an upper bound on what a
//! client could see).
//!
//! ```text
//! cargo bench -p ticketing --bench expiry                       # embedded
//! BENCH_EXPIRY_MODE=distributed cargo bench -p ticketing --bench expiry
//! BENCH_EXPIRY_ORDERS=1000 BENCH_EXPIRY_SPREAD_MS=4000 …
//! ```
//! Distributed: PostgreSQL (`TEST_DATABASE_URL`), JetStream (`TEST_NATS_URL`) and Redis
//! (`TEST_REDIS_URL`) of this machine.

#[path = "tools/knobs.rs"]
mod knobs;
#[path = "tools/observe.rs"]
mod observe;

use std::sync::Arc;
use std::time::{Duration, Instant};

use knobs::var;
use observe::FirstSeen;
use reqwest::header::AUTHORIZATION;
use serde_json::{json, Value};
use ticketing_bus::{Envelope, HandlerError};
use ticketing_contracts::events::{OrderCancelled, Subject, TicketUpdated};
use ticketing_contracts::time::{now_millis, parse_millis};
use ticketing_kit::testing::{unique_prefix, Flavor, TestBackend, TestEnv, TestServer};
use ticketing_store::{query, Store};

const TTL: Duration = Duration::from_secs(3);
const GRACE: Duration = Duration::from_secs(2);

/// Orders seen cancelled, tickets seen released.
fn pick(event: &Envelope) -> Result<Option<(&'static str, String)>, HandlerError> {
    Ok(match event.subject {
        Subject::OrderCancelled => {
            let e: OrderCancelled = event.decode()?;
            Some(("cancelled", e.id.into()))
        }
        Subject::TicketUpdated => {
            let e: TicketUpdated = event.decode()?;
            e.order_id.is_none().then(|| ("released", e.id.into()))
        }
        _ => None,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let orders = var("BENCH_EXPIRY_ORDERS", 1000) as usize;
    let spread_ms = var("BENCH_EXPIRY_SPREAD_MS", 4000);
    let distributed = std::env::var("BENCH_EXPIRY_MODE").as_deref() == Ok("distributed");
    let flavor = Flavor {
        backend: if distributed {
            TestBackend::Postgres
        } else {
            TestBackend::Sqlite
        },
        nats: distributed,
    };
    println!(
        "expiry lateness, {}: {orders} unpaid orders placed over {spread_ms} ms, TTL {TTL:?} + grace {GRACE:?}",
        if distributed {
            "distributed (PostgreSQL + JetStream + Redis)"
        } else {
            "embedded (SQLite + in-process bus + SQL delay queue)"
        }
    );

    let env = TestEnv::with_flavor(flavor).await;
    let rt = &env.runtime;
    let redis_url = distributed.then(|| {
        std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
    });
    let services = vec![
        ticketing_tickets::mount(rt).await?,
        ticketing_orders::mount(
            rt,
            &ticketing_orders::Settings {
                order_ttl: TTL,
                payment_grace: GRACE,
                ..Default::default()
            },
        )
        .await?,
        ticketing_payments::mount(
            rt,
            Arc::new(ticketing_payments::provider::SandboxProvider::new()),
        )
        .await?,
        ticketing_expiration::mount(
            rt,
            &ticketing_expiration::Settings {
                redis_url,
                redis_prefix: unique_prefix(),
                ..Default::default()
            },
        )
        .await?,
    ];
    let server = TestServer::spawn(services).await;
    let seen = Arc::new(FirstSeen::new(pick));
    for subject in [Subject::OrderCancelled, Subject::TicketUpdated] {
        rt.bus
            .subscribe("bench-observer", subject, seen.clone(), rt.shutdown.clone())
            .await?;
    }
    let bearer = |user: &str| {
        let (token, _) = rt
            .keys
            .issue(user, &format!("{user}@bench"))
            .expect("token");
        format!("Bearer {token}")
    };
    let client = &server.client;

    // The tickets, and the orders service's replica of them.
    let seller = bearer("seller");
    let mut tickets = Vec::with_capacity(orders);
    for chunk in (0..orders).collect::<Vec<_>>().chunks(32) {
        let created = futures::future::join_all(chunk.iter().map(|i| {
            client
                .post(server.url("/api/tickets"))
                .header(AUTHORIZATION, &seller)
                .json(&json!({"title": format!("Show {i}"), "price": 10}))
                .send()
        }))
        .await;
        for res in created {
            let body: Value = res?.json().await?;
            tickets.push(body["id"].as_str().expect("ticket id").to_owned());
        }
    }
    let replica = Store::open(&rt.location("orders")?, &ticketing_orders::MIGRATIONS).await?;
    let started = Instant::now();
    loop {
        let known: i64 = query("SELECT COUNT(*) FROM tickets")
            .scalar(replica.reader())
            .await?;
        if known as usize >= orders {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "replica stuck at {known}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Orders placed over the spread: staggered deadlines.
    let grace = GRACE.as_millis() as i64;
    let start = now_millis() + 100;
    let placed = futures::future::join_all(tickets.iter().enumerate().map(|(i, ticket)| {
        let at = start + spread_ms * i as i64 / orders as i64;
        let buyer = bearer(&format!("buyer{i}"));
        let url = server.url("/api/orders");
        async move {
            tokio::time::sleep(Duration::from_millis((at - now_millis()).max(0) as u64)).await;
            let res = client
                .post(url)
                .header(AUTHORIZATION, buyer)
                .json(&json!({ "ticketId": ticket }))
                .send()
                .await?;
            anyhow::ensure!(res.status() == 201, "order refused: {}", res.status());
            let order: Value = res.json().await?;
            let expires_at = parse_millis(order["expiresAt"].as_str().unwrap_or("")).unwrap_or(0);
            anyhow::Ok((
                order["id"].as_str().unwrap_or("").to_owned(),
                ticket.clone(),
                expires_at + grace,
            ))
        }
    }))
    .await
    .into_iter()
    .collect::<anyhow::Result<Vec<_>>>()?;

    // Wait out the last deadline, then for the stragglers.
    let last = placed.iter().map(|p| p.2).max().unwrap_or(0);
    let until_last = Duration::from_millis((last - now_millis()).max(0) as u64);
    seen.wait_for(
        &["cancelled", "released"],
        orders,
        until_last + Duration::from_secs(30),
    )
    .await;

    let mut cancelled = Vec::new();
    let mut released = Vec::new();
    for (order, ticket, reserved_until) in &placed {
        if let Some(at) = seen.at("cancelled", order) {
            cancelled.push(at - reserved_until);
        }
        if let Some(at) = seen.at("released", ticket) {
            released.push(at - reserved_until);
        }
    }
    report("order reads cancelled", &mut cancelled, orders);
    report("ticket reads available", &mut released, orders);
    env.runtime.shutdown.cancel();
    Ok(())
}

fn report(what: &str, lateness: &mut [i64], expected: usize) {
    lateness.sort_unstable();
    let pick = |q: f64| lateness[((lateness.len() as f64 - 1.0) * q).round() as usize];
    if lateness.is_empty() {
        println!("{what:<24} none seen of {expected}");
        return;
    }
    println!(
        "{what:<24} {}/{expected} seen   lateness after reservedUntil: min {} ms  p50 {} ms  p99 {} ms  max {} ms   (target p99 < 250 ms)",
        lateness.len(),
        lateness[0],
        pick(0.5),
        pick(0.99),
        lateness[lateness.len() - 1],
    );
}
