//! No 404 right after creation (issue 31, docs/decisions/0029), embedded: tickets, orders
//! and payments in one process on SQLite and the in-process bus. An order is paid the
//! moment it is answered, a listing ordered the moment it is listed: the service waits
//! for the event instead of answering 404. Old, foreign and malformed ids are still 404
//! at once; a fresh id that never arrives is a 409 after the wait; past 256 waiters the
//! 409 comes at once. (Distributed: `distributed.rs`.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use ticketing_kit::testing::{payment, reply, Api, TestApp, TestBackend, TestEnv, User};

async fn spawn() -> TestApp {
    let env = TestEnv::new(TestBackend::Sqlite);
    let rt = &env.runtime;
    let services = vec![
        ticketing_tickets::mount(rt).await.unwrap(),
        ticketing_orders::mount(rt, &Default::default())
            .await
            .unwrap(),
        ticketing_payments::mount(
            rt,
            Arc::new(ticketing_payments::provider::SandboxProvider::new()),
        )
        .await
        .unwrap(),
    ];
    TestApp::spawn(env, services).await
}

fn user(app: &TestApp, name: &str) -> Api {
    app.api.as_user(&User::bearer(&app.env.runtime.keys, name))
}

/// POST until the answer is not the 409 of an object on its way (after its
/// `Retry-After`): every status seen, and the last body.
async fn post_until_known(api: &Api, path: &str, body: Value) -> (Vec<StatusCode>, Value) {
    let mut seen = Vec::new();
    loop {
        let res = api.post_json(path, body.clone()).await;
        let retry_after = res.headers().get("retry-after").cloned();
        let (status, body) = reply(res).await;
        seen.push(status);
        if status != StatusCode::CONFLICT || seen.len() > 10 {
            return (seen, body);
        }
        assert_eq!(retry_after.unwrap(), "1", "{body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.ends_with("is not known here yet; try again"),
            "{body}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// 1,000 listings; 1,000 buyers each order one the moment it is listed and pay the
/// moment the order is answered, all at once: no 404 anywhere, every order 201 (or 409
/// then 201), every payment 201 (or 409 then 201).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_orders_paid_at_once_never_404() {
    let app = Arc::new(spawn().await);
    let seller = user(&app, "seller");
    let barrier = Arc::new(tokio::sync::Barrier::new(1000));
    let started = Instant::now();
    let buyers = (0..1000).map(|i| {
        let (app, seller, barrier) = (app.clone(), seller.clone(), barrier.clone());
        tokio::spawn(async move {
            barrier.wait().await;
            let (status, ticket) = reply(
                seller
                    .post_json(
                        "/api/tickets",
                        json!({"title": format!("Seat {i}"), "price": "10"}),
                    )
                    .await,
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{ticket}");
            let buyer = user(&app, &format!("buyer{i}"));
            let ticket = ticket["id"].as_str().unwrap().to_owned();
            let (ordered, order) =
                post_until_known(&buyer, "/api/orders", json!({"ticketId": ticket})).await;
            assert_eq!(ordered.last(), Some(&StatusCode::CREATED), "{order}");
            let order = order["id"].as_str().unwrap().to_owned();
            let (paid, body) = post_until_known(&buyer, "/api/payments", payment(&order)).await;
            assert_eq!(body["orderId"], order.as_str(), "{body}");
            (ordered, paid)
        })
    });
    let results: Vec<(Vec<StatusCode>, Vec<StatusCode>)> = futures::future::join_all(buyers)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let took = started.elapsed();
    let only = |seen: &[StatusCode]| {
        seen.last() == Some(&StatusCode::CREATED)
            && seen[..seen.len() - 1]
                .iter()
                .all(|s| *s == StatusCode::CONFLICT)
    };
    let orders_retried = results.iter().filter(|r| r.0.len() > 1).count();
    let payments_retried = results.iter().filter(|r| r.1.len() > 1).count();
    for (ordered, paid) in &results {
        assert!(only(ordered), "an order saw {ordered:?}");
        assert!(only(paid), "a payment saw {paid:?}");
    }
    let metrics = app.api.get("/metrics").await.text().await.unwrap();
    let waits: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("arrival_waits_total"))
        .collect();
    eprintln!(
        "1,000 listed, ordered and paid at once in {took:?}: orders retried after a 409: {orders_retried}, payments: {payments_retried}, 404s: 0; {waits:?}"
    );
}

/// Ids that are not young UUIDv7s are 404 at once, as they always were; a young one that
/// never arrives is 409 with `Retry-After: 1` after the 2 s wait (a payment, an order,
/// a queue join).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_foreign_and_malformed_ids_are_404_at_once() {
    let app = spawn().await;
    let buyer = user(&app, "buyer");
    let old = "0190d5d3-7c5e-7000-8000-000000000000"; // a UUIDv7 of 2024
    let v4 = uuid::Uuid::new_v4().to_string();
    let eleven_seconds_ago = {
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            (ticketing_contracts::time::now_millis() / 1000 - 11) as u64,
            0,
        );
        uuid::Uuid::new_v7(ts).to_string()
    };
    for id in [old, &v4, &eleven_seconds_ago, "not-an-id", "x"] {
        let queue = format!("/api/queue/{id}");
        for (path, body) in [
            ("/api/payments", payment(id)),
            ("/api/orders", json!({"ticketId": id})),
            (queue.as_str(), json!({})),
        ] {
            let started = Instant::now();
            let (status, body) = reply(buyer.post_json(path, body).await).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path} {id}: {body}");
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "{path} {id} took {:?}",
                started.elapsed()
            );
        }
    }

    let fresh = uuid::Uuid::now_v7().to_string();
    let queue = format!("/api/queue/{fresh}");
    for (path, body, what) in [
        ("/api/payments", payment(&fresh), "Order"),
        ("/api/orders", json!({"ticketId": fresh}), "Ticket"),
        (queue.as_str(), json!({}), "Ticket"),
    ] {
        let started = Instant::now();
        let res = buyer.post_json(path, body).await;
        let waited = started.elapsed();
        assert_eq!(res.status(), StatusCode::CONFLICT, "{path}");
        assert_eq!(res.headers()["retry-after"], "1");
        let (_, body) = reply(res).await;
        assert_eq!(
            body,
            json!({"errors": [{"message": format!("{what} is not known here yet; try again")}]})
        );
        assert!(
            (Duration::from_millis(1900)..Duration::from_secs(5)).contains(&waited),
            "{path} waited {waited:?}"
        );
    }
}

/// 300 requests for fresh ids that never arrive, at once: at most 256 wait (the
/// process's slots), the others are answered 409 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_256_waiters_the_409_comes_at_once() {
    let app = Arc::new(spawn().await);
    // 300 connections opened first: a burst of new ones overflows the listen queue, and
    // a dropped SYN is sent again only a second later.
    let warm = (0..300).map(|_| app.api.get("/healthz"));
    futures::future::join_all(warm).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(300));
    let requests = (0..300).map(|i| {
        let (app, barrier) = (app.clone(), barrier.clone());
        tokio::spawn(async move {
            let buyer = user(&app, &format!("flood{i}"));
            let body = payment(&uuid::Uuid::now_v7().to_string());
            barrier.wait().await;
            let started = Instant::now();
            let status = buyer.post_json("/api/payments", body).await.status();
            (status, started.elapsed())
        })
    });
    let answers: Vec<(StatusCode, Duration)> = futures::future::join_all(requests)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert!(answers.iter().all(|(s, _)| *s == StatusCode::CONFLICT));
    // None of these ids ever arrives: a request answered before the 2 s were up was
    // refused at once, without a slot.
    let waited = answers
        .iter()
        .filter(|(_, took)| *took >= Duration::from_millis(1900))
        .count();
    let fastest = answers.iter().map(|(_, took)| *took).min().unwrap();
    // Other tests of this binary may hold slots too: never more than 256 waited.
    assert!(waited <= 256, "{waited} waited");
    assert!(
        fastest < Duration::from_millis(1000),
        "the refusals took {fastest:?}"
    );
}
