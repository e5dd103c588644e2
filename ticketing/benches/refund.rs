//! Cancellation latency (issue 32): from a buyer's `POST /api/orders/{id}/cancellation`
//! to the order reading `cancelled` with its refund recorded. Target: p99 < 1 s, in both
//! modes.
//!
//! Tickets, orders and payments run in this process on one runtime, as `--target all`
//! does, payments refunding at the sandbox provider. Every order is placed and paid
//! first; then the cancellations are sent over a spread of time, so the saga (orders →
//! `order:cancel-requested` → payments refunds → `payment:refunded` → orders cancels)
//! runs for many orders at once, as on a day a show is called off. An observer consumer
//! group records when each `order:cancelled` (reason `refunded`) reaches the bus's
//! consumers: the moment orders committed the end of the saga, plus one bus hop (an
//! upper bound on what a client could see).
//!
//! ```text
//! cargo bench -p ticketing --bench refund                       # embedded
//! BENCH_REFUND_MODE=distributed cargo bench -p ticketing --bench refund
//! BENCH_REFUND_ORDERS=500 BENCH_REFUND_SPREAD_MS=4000 …
//! ```
//! Distributed: PostgreSQL (`TEST_DATABASE_URL`) and JetStream (`TEST_NATS_URL`) of this
//! machine.

#[path = "tools/knobs.rs"]
mod knobs;
#[path = "tools/observe.rs"]
mod observe;

use std::sync::Arc;
use std::time::Duration;

use knobs::var;
use observe::FirstSeen;
use reqwest::StatusCode;
use serde_json::json;
use ticketing_bus::{Envelope, HandlerError};
use ticketing_contracts::events::{OrderCancelled, OrderCompleted, Subject};
use ticketing_contracts::time::now_millis;
use ticketing_contracts::Timestamp;
use ticketing_kit::testing::{reply, Flavor, TestApp, TestBackend, TestEnv};

/// Orders seen complete, and seen cancelled by their refund.
fn pick(event: &Envelope) -> Result<Option<(&'static str, String)>, HandlerError> {
    Ok(match event.subject {
        Subject::OrderCompleted => {
            let e: OrderCompleted = event.decode()?;
            Some(("completed", e.id.into()))
        }
        Subject::OrderCancelled => {
            let e: OrderCancelled = event.decode()?;
            (e.cancel_reason.as_deref() == Some("refunded")).then(|| ("refunded", e.id.into()))
        }
        _ => None,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let orders = var("BENCH_REFUND_ORDERS", 500) as usize;
    let spread_ms = var("BENCH_REFUND_SPREAD_MS", 4000);
    let distributed = std::env::var("BENCH_REFUND_MODE").as_deref() == Ok("distributed");
    let flavor = Flavor {
        backend: if distributed {
            TestBackend::Postgres
        } else {
            TestBackend::Sqlite
        },
        nats: distributed,
    };
    println!(
        "cancel → refunded, {}: {orders} paid orders cancelled over {spread_ms} ms",
        if distributed {
            "distributed (PostgreSQL + JetStream)"
        } else {
            "embedded (SQLite + in-process bus)"
        }
    );

    let env = TestEnv::with_flavor(flavor).await;
    let rt = &env.runtime;
    let services = vec![
        ticketing_tickets::mount(rt).await?,
        ticketing_orders::mount(rt, &ticketing_orders::Settings::default()).await?,
        ticketing_payments::mount(
            rt,
            Arc::new(ticketing_payments::provider::SandboxProvider::new()),
        )
        .await?,
    ];
    let seen = Arc::new(FirstSeen::new(pick));
    for subject in [Subject::OrderCompleted, Subject::OrderCancelled] {
        rt.bus
            .subscribe("bench-observer", subject, seen.clone(), rt.shutdown.clone())
            .await?;
    }
    let app = TestApp::spawn(env, services).await;

    // One refundable listing of `orders` units; each buyer orders one and pays.
    let event_at = (Timestamp::now() + Duration::from_secs(30 * 24 * 3600)).to_rfc3339();
    let (status, listing) = reply(
        app.as_user("seller")
            .post_json(
                "/api/tickets",
                json!({
                    "title": "Called off",
                    "price": 25,
                    "quantity": orders,
                    "maxPerOrder": 1,
                    "eventAt": event_at,
                    "refundPolicy": {"cutoffHours": 1, "feePercent": 10},
                }),
            )
            .await,
    )
    .await;
    anyhow::ensure!(status == StatusCode::CREATED, "listing refused: {listing}");
    let listing = listing["id"].as_str().unwrap_or_default().to_owned();
    let buyers: Vec<String> = (0..orders).map(|i| format!("buyer{i}")).collect();
    let mut placed = Vec::with_capacity(orders);
    for chunk in buyers.chunks(32) {
        let paid = futures::future::join_all(chunk.iter().map(|buyer| {
            let api = app.as_user(buyer);
            let listing = &listing;
            async move {
                let (status, order) = reply(
                    api.post_once_known("/api/orders", json!({ "ticketId": listing }))
                        .await,
                )
                .await;
                anyhow::ensure!(status == StatusCode::CREATED, "order refused: {order}");
                let order = order["id"].as_str().unwrap_or_default().to_owned();
                let (status, body) = reply(api.pay(&order).await).await;
                anyhow::ensure!(status == StatusCode::CREATED, "payment refused: {body}");
                anyhow::Ok((buyer.clone(), order))
            }
        }))
        .await;
        for p in paid {
            placed.push(p?);
        }
    }
    anyhow::ensure!(
        seen.wait_for(&["completed"], orders, Duration::from_secs(60))
            .await,
        "orders never all complete"
    );

    // The cancellations, spread out; each one's send time.
    let start = now_millis() + 100;
    let sent = futures::future::join_all(placed.iter().enumerate().map(|(i, (buyer, order))| {
        let at = start + spread_ms * i as i64 / orders as i64;
        let api = app.as_user(buyer);
        async move {
            tokio::time::sleep(Duration::from_millis((at - now_millis()).max(0) as u64)).await;
            let sent = now_millis();
            let (status, body) = reply(
                api.post_json(&format!("/api/orders/{order}/cancellation"), json!(null))
                    .await,
            )
            .await;
            anyhow::ensure!(
                status == StatusCode::ACCEPTED,
                "cancellation refused: {status} {body}"
            );
            anyhow::Ok((order.clone(), sent, now_millis() - sent))
        }
    }))
    .await
    .into_iter()
    .collect::<anyhow::Result<Vec<_>>>()?;
    seen.wait_for(&["refunded"], orders, Duration::from_secs(60))
        .await;

    let mut accepted: Vec<i64> = sent.iter().map(|s| s.2).collect();
    let mut refunded: Vec<i64> = sent
        .iter()
        .filter_map(|(order, at, _)| Some(seen.at("refunded", order)? - at))
        .collect();
    report("202 answered", &mut accepted, orders, "");
    report(
        "order reads refunded",
        &mut refunded,
        orders,
        "   (target p99 < 1000 ms)",
    );
    app.env.runtime.shutdown.cancel();
    Ok(())
}

fn report(what: &str, ms: &mut [i64], expected: usize, target: &str) {
    ms.sort_unstable();
    if ms.is_empty() {
        println!("{what:<22} none seen of {expected}");
        return;
    }
    let pick = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{what:<22} {}/{expected} seen   after the request: min {} ms  p50 {} ms  p99 {} ms  max {} ms{target}",
        ms.len(),
        ms[0],
        pick(0.5),
        pick(0.99),
        ms[ms.len() - 1],
    );
}
