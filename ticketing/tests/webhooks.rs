//! Proof of the outbound webhooks (issue 31, proof 2), in both modes: with the receiver
//! down while 20 orders and their listings produce 200 events, every event arrives once
//! the receiver is back, per key (order, else listing) in queueing order, every signature
//! verifying; the webhooks process is `kill -9`ed mid-delivery and nothing is lost; a
//! replay sends the same ids in the same order.
//!
//! Embedded: the `ticketing` binary (`--target all`, SQLite), killed and started again on
//! its data. Distributed: `scripts/cluster` with two webhooks processes behind nginx; one
//! is killed and the other takes its claims over once their leases lapse.
//!
//! The outage is 5 s rather than 60 (the retries' backoff is shortened by flags to match:
//! 200 ms to 1 s instead of 1 s to 10 min); the behaviour is the same.

mod cluster;
mod process;
#[path = "../../webhooks/tests/receiver/mod.rs"]
mod receiver;

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use ticketing_kit::testing::{id_of, reply, Api, Patience};

use cluster::Cluster;
use process::{free_port, Running};
use receiver::Receiver;

const ROUNDS: usize = 20;
/// Edits of each listing before it is ordered: with its creation, the order, the
/// reservation and the payment, 10 events a round.
const EDITS: usize = 6;
const EVENTS: usize = ROUNDS * (1 + EDITS + 3);
const OUTAGE: Duration = Duration::from_secs(5);

const PATIENCE: Patience = Patience {
    limit: Duration::from_secs(60),
    every: Duration::from_millis(100),
    retry_on: &[StatusCode::NOT_FOUND, StatusCode::SERVICE_UNAVAILABLE],
    through_errors: true,
};

/// Flags (as environment variables) of every process that runs webhooks here.
const WEBHOOK_ENV: [(&str, &str); 4] = [
    ("TICKETING_WEBHOOKS_ALLOW_PRIVATE", "true"),
    ("TICKETING_WEBHOOKS_TIMEOUT_MS", "2000"),
    ("TICKETING_WEBHOOKS_BACKOFF_MIN_MS", "200"),
    ("TICKETING_WEBHOOKS_BACKOFF_MAX_MS", "1000"),
];

/// 20 listings, each edited, ordered and paid.
async fn produce(seller: &Api, buyer: &Api) {
    for round in 0..ROUNDS {
        let ticket = seller.sell(&format!("Show {round}"), json!(10)).await;
        for edit in 0..EDITS {
            let res = seller
                .put_json(
                    &format!("/api/tickets/{ticket}"),
                    json!({"title": format!("Show {round} v{edit}"), "price": 10 + edit}),
                )
                .await;
            assert_eq!(res.status(), StatusCode::OK);
        }
        let order = id_of(&buyer.order_ok(&ticket).await);
        buyer.wait_ticket_held_by(&ticket, Some(&order)).await;
        let (status, payment) = reply(buyer.pay(&order).await).await;
        assert_eq!(status, StatusCode::CREATED, "{payment}");
    }
}

/// Every delivery of the endpoint, all pages.
async fn deliveries(seller: &Api, hook: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor = 0;
    loop {
        let (status, page) = reply(
            seller
                .get(&format!("/api/webhooks/{hook}/deliveries?cursor={cursor}"))
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let page = page.as_array().unwrap().clone();
        let Some(last) = page.last() else {
            return all;
        };
        cursor = last["seq"].as_i64().unwrap();
        all.extend(page);
    }
}

/// Wait until the endpoint has `n` deliveries, and the `heads` of their keys were tried
/// (the others wait behind them).
async fn wait_queued_and_tried(seller: &Api, hook: &str, n: usize, heads: usize) -> Vec<Value> {
    PATIENCE
        .eventually("every event queued and tried", || async {
            let list = deliveries(seller, hook).await;
            let tried = list
                .iter()
                .filter(|d| d["attempts"].as_i64() >= Some(1))
                .count();
            (list.len() == n && tried == heads).then_some(list)
        })
        .await
}

/// What arrived, against what was queued: every event, signed; per key in `seq` order,
/// an order's events after its order:created.
fn check_arrivals(
    receiver: &Receiver,
    list: &[Value],
    secret: &str,
) -> HashMap<String, Vec<String>> {
    let seq: HashMap<String, i64> = list
        .iter()
        .map(|d| {
            (
                d["eventId"].as_str().unwrap().to_owned(),
                d["seq"].as_i64().unwrap(),
            )
        })
        .collect();
    let received = receiver.received();
    for r in &received {
        assert!(
            r.verifies(secret),
            "the signature of {} does not verify",
            r.id
        );
        assert!(seq.contains_key(&r.id), "{} was never queued", r.id);
        assert_eq!(r.body["id"], r.id.as_str());
    }
    assert_eq!(receiver.distinct(), list.len(), "every event arrives");
    let by_key = receiver.by_key();
    for (key, ids) in &by_key {
        let mut sorted = ids.clone();
        sorted.sort_by_key(|id| seq[id]);
        assert_eq!(ids, &sorted, "key {key}: arrived out of order");
    }
    let subjects: HashMap<&str, &str> = received
        .iter()
        .map(|r| (r.id.as_str(), r.subject()))
        .collect();
    let mut orders = 0;
    for ids in by_key.values() {
        if ids
            .iter()
            .any(|id| subjects[id.as_str()] == "payment:created")
        {
            orders += 1;
            assert_eq!(subjects[ids[0].as_str()], "order:created", "{ids:?}");
        }
    }
    assert_eq!(orders, ROUNDS);
    by_key
}

/// The proof against a running system at `base`; `kill` kills the webhooks process
/// (one of them), and `revive` brings the system back to full strength.
async fn prove<K, R>(base: &str, kill: K, revive: R)
where
    K: AsyncFnOnce(),
    R: AsyncFnOnce(),
{
    let api = Api::new(base.to_owned())
        .with_patience(PATIENCE)
        .with_timeout(Duration::from_secs(30));
    let seller = api.as_user(&api.sign_up("seller@test.com").await);
    let buyer = api.as_user(&api.sign_up("buyer@test.com").await);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let (status, hook) = reply(
        seller
            .post_json(
                "/api/webhooks",
                json!({"url": url, "events": ["ticket:created", "ticket:updated", "order:created", "payment:created"]}),
            )
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_owned();
    let hook = id_of(&hook);

    // The receiver is down while the events are produced, and a while after.
    produce(&seller, &buyer).await;
    wait_queued_and_tried(&seller, &hook, EVENTS, 2 * ROUNDS).await;
    tokio::time::sleep(OUTAGE).await;

    // Back, slow: the webhooks process is killed while delivering.
    let receiver = Receiver::start_on(port).await;
    receiver.delay(Duration::from_millis(40));
    PATIENCE
        .eventually("a part of the events to arrive", || async {
            (receiver.distinct() >= EVENTS / 4).then_some(())
        })
        .await;
    kill().await;
    let at_kill = receiver.distinct();
    assert!(at_kill < EVENTS, "all arrived before the kill");
    receiver.delay(Duration::ZERO);
    revive().await;
    receiver.wait_for(EVENTS, Duration::from_secs(90)).await;
    let list = PATIENCE
        .eventually("every delivery marked delivered", || async {
            let list = deliveries(&seller, &hook).await;
            list.iter()
                .all(|d| d["status"] == "delivered")
                .then_some(list)
        })
        .await;
    let first_time = check_arrivals(&receiver, &list, &secret);

    // A replay: the same ids, per key in the same order.
    receiver.clear();
    let from = list[0]["seq"].as_i64().unwrap();
    let (status, body) = reply(
        seller
            .post_json(
                &format!("/api/webhooks/{hook}/replay"),
                json!({"fromSeq": from}),
            )
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["queued"], EVENTS);
    receiver.wait_for(EVENTS, Duration::from_secs(60)).await;
    let list = deliveries(&seller, &hook).await;
    assert_eq!(check_arrivals(&receiver, &list, &secret), first_time);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_receiver_outage_kill_and_replay() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().display().to_string();
    let args = ["--target", "all", "--data-dir", data_dir.as_str()];
    let port = free_port();
    let running = std::sync::Arc::new(std::sync::Mutex::new(Some(
        Running::start_on(port, &args, &WEBHOOK_ENV).await,
    )));
    let base = format!("http://127.0.0.1:{port}");
    let killed = running.clone();
    let revived = running.clone();
    prove(
        &base,
        async move || {
            let mut process = killed.lock().unwrap().take().unwrap();
            process.kill9();
        },
        async move || {
            let process = Running::start_on(port, &args, &WEBHOOK_ENV).await;
            *revived.lock().unwrap() = Some(process);
        },
    )
    .await;
    let process = running.lock().unwrap().take().unwrap();
    process.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_receiver_outage_kill_and_replay() {
    // Two webhooks processes, the other services one each.
    let mut settings = vec![("CLUSTER_WEBHOOKS_REPLICAS", "2")];
    settings.extend(WEBHOOK_ENV);
    let cluster = Cluster::up(10_000, &settings).await;
    let base = cluster.gateway.clone();
    prove(
        &base,
        async || cluster.kill9("webhooks-1"),
        async || cluster.run("up").await,
    )
    .await;
}
