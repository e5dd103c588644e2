//! Waiting lists (issue 30): joining a sold-out listing, offers in join order the moment
//! units come free (in the transaction that frees them), offers that lapse or are
//! declined going to the next in line, a head that blocks those behind it — over real
//! HTTP with the expiration and payments services, every backend and bus.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::listings::{self, terms};
use ticketing_contracts::events::Subject;
use ticketing_contracts::time::{now_millis, parse_millis};
use ticketing_kit::flavor_tests;
use ticketing_kit::runtime::Mounted;
use ticketing_kit::testing::{
    payment, redis_url, reply, unique_prefix, Api, EventRecorder, Flavor, TestApp, TestBackend,
    TestEnv, User,
};

/// How long an offer can be paid in these tests.
const OFFER: Duration = Duration::from_millis(1500);
const GRACE: Duration = Duration::from_millis(200);

struct App(TestApp);

async fn spawn(flavor: Flavor) -> App {
    let env = TestEnv::with_flavor(flavor).await;
    let rt = &env.runtime;
    let redis_url = (flavor.backend == TestBackend::Postgres && flavor.nats).then(redis_url);
    let services: Vec<Mounted> = vec![
        ticketing_orders::mount(
            rt,
            &ticketing_orders::Settings {
                order_ttl: Duration::from_secs(900),
                payment_grace: GRACE,
                waitlist_offer: OFFER,
                ..Default::default()
            },
        )
        .await
        .unwrap(),
        ticketing_payments::mount(
            rt,
            Arc::new(ticketing_payments::provider::SandboxProvider::new()),
        )
        .await
        .unwrap(),
        ticketing_expiration::mount(
            rt,
            &ticketing_expiration::Settings {
                redis_url,
                redis_prefix: unique_prefix(),
                ..Default::default()
            },
        )
        .await
        .unwrap(),
    ];
    App(TestApp::spawn(env, services).await)
}

impl App {
    fn user(&self, name: &str) -> Api {
        self.0
            .api
            .as_user(&User::bearer(&self.0.env.runtime.keys, name))
    }

    async fn listing(&self, quantity: i64, per_order: i64) -> String {
        listings::listing(&self.0.env.runtime, terms(quantity, per_order, per_order)).await
    }

    async fn order(&self, user: &str, listing: &str, quantity: i64) -> String {
        let (status, body) = reply(
            self.user(user)
                .post_json(
                    "/api/orders",
                    json!({"ticketId": listing, "quantity": quantity}),
                )
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    async fn join(&self, user: &str, listing: &str, quantity: i64) -> (StatusCode, Value) {
        reply(
            self.user(user)
                .post_json(
                    "/api/waitlist",
                    json!({"ticketId": listing, "quantity": quantity}),
                )
                .await,
        )
        .await
    }

    async fn joined(&self, user: &str, listing: &str, quantity: i64) -> Value {
        let (status, body) = self.join(user, listing, quantity).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    async fn entry(&self, user: &str, id: &str) -> Value {
        self.user(user)
            .get_json(&format!("/api/waitlist/{id}"))
            .await
    }

    async fn cancel(&self, user: &str, order: &str) {
        let res = self
            .user(user)
            .delete(&format!("/api/orders/{order}"))
            .await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    }

    /// Wait for entry `id` to reach `status`, at most `within`.
    async fn wait_entry(&self, user: &str, id: &str, status: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let entry = self.entry(user, id).await;
            if entry["status"] == status {
                return entry;
            }
            assert!(
                Instant::now() < deadline,
                "entry {id} not {status} within {within:?}: {entry}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// 10 units held by unpaid orders, 50 accounts join at once; the 10 orders cancelled one
/// by one: each cancel offers its unit to the next in join order before it answers,
/// positions only fall, and live offers never exceed the units freed. A lapsed offer
/// reaches the 11th within a second of its end; a paid one is `purchased`.
async fn freed_units_are_offered_in_join_order(flavor: Flavor) {
    let app = Arc::new(spawn(flavor).await);
    let offered = EventRecorder::start(&app.0.env.runtime, Subject::WaitlistOffered).await;
    let listing = app.listing(10, 1).await;
    let mut holders = Vec::new();
    for i in 0..10 {
        let user = format!("holder{i}");
        let order = app.order(&user, &listing, 1).await;
        holders.push((user, order));
    }
    let joins = (0..50).map(|i| {
        let (app, listing) = (app.clone(), listing.clone());
        tokio::spawn(async move {
            let user = format!("waiter{i}");
            let entry = app.joined(&user, &listing, 1).await;
            (user, entry)
        })
    });
    let mut line: Vec<(String, Value)> = futures::future::join_all(joins)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    line.sort_by(|a, b| a.1["id"].as_str().cmp(&b.1["id"].as_str()));
    // Read now (joins that raced each saw only what had committed): exactly the line.
    let mut last_positions: Vec<i64> = Vec::new();
    for (user, e) in &line {
        last_positions.push(
            app.entry(user, e["id"].as_str().unwrap()).await["position"]
                .as_i64()
                .unwrap(),
        );
    }
    assert_eq!(last_positions, (1..=50).collect::<Vec<_>>());

    for (n, (holder, order)) in holders.iter().enumerate() {
        app.cancel(holder, order).await;
        // Offered in the cancel's own transaction: visible as soon as it answered.
        let (user, e) = &line[n];
        let entry = app.entry(user, e["id"].as_str().unwrap()).await;
        assert_eq!(entry["status"], "offered", "{entry}");
        assert!(entry["position"].is_null());
        let order = entry["orderId"].as_str().unwrap();
        let placed = app
            .user(user)
            .get_json(&format!("/api/orders/{order}"))
            .await;
        assert_eq!(placed["status"], "created");
        assert_eq!(placed["quantity"], 1);
        // The rest of the line: positions only fall, and nobody else is offered.
        for (k, (user, e)) in line.iter().enumerate().skip(n + 1).step_by(7) {
            let entry = app.entry(user, e["id"].as_str().unwrap()).await;
            assert_eq!(entry["status"], "waiting");
            let position = entry["position"].as_i64().unwrap();
            assert!(position <= last_positions[k], "position rose: {entry}");
            assert_eq!(position, (k - n) as i64);
            last_positions[k] = position;
        }
        assert_eq!(listings::held(&app.0.env.runtime, &listing).await, 10);
    }
    for (user, e) in &line[..10] {
        let event: Value = serde_json::from_slice(&offered.next().await.payload).unwrap();
        assert_eq!(event["id"], e["id"]);
        assert_eq!(event["userId"], json!(user));
        assert_eq!(event["ticketId"], json!(listing));
    }

    // The first offer is paid; the second lapses and its unit goes to the 11th.
    let (first, e) = &line[0];
    let first_order = app.entry(first, e["id"].as_str().unwrap()).await["orderId"]
        .as_str()
        .unwrap()
        .to_owned();
    let paid = app
        .user(first)
        .post_json("/api/payments", payment(&first_order))
        .await;
    assert_eq!(paid.status(), StatusCode::CREATED);
    app.wait_entry(
        first,
        e["id"].as_str().unwrap(),
        "purchased",
        Duration::from_secs(10),
    )
    .await;

    let (second, e) = &line[1];
    let second_entry = app.entry(second, e["id"].as_str().unwrap()).await;
    let lapses_at = parse_millis(second_entry["offerExpiresAt"].as_str().unwrap()).unwrap()
        + GRACE.as_millis() as i64;
    let (eleventh, e11) = &line[10];
    let budget = Duration::from_millis((lapses_at - now_millis()).max(0) as u64 + 1000);
    let entry = app
        .wait_entry(eleventh, e11["id"].as_str().unwrap(), "offered", budget)
        .await;
    assert!(now_millis() - lapses_at < 1000, "offered late: {entry}");
    app.wait_entry(
        second,
        e["id"].as_str().unwrap(),
        "lapsed",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(listings::held(&app.0.env.runtime, &listing).await, 10);
}

/// A head wanting more than is free blocks those behind it; declining an offer (by
/// leaving the list) passes its units on; a seller adding units offers them.
async fn the_head_of_the_line_comes_first(flavor: Flavor) {
    let app = spawn(flavor).await;
    let listing = app.listing(3, 2).await;
    let a = app.order("a", &listing, 2).await;
    let b = app.order("b", &listing, 1).await;
    let big = app.joined("big", &listing, 2).await;
    let small = app.joined("small", &listing, 1).await;
    assert_eq!(small["position"], 2);

    app.cancel("b", &b).await;
    // One unit free: the head wants two, so nobody is offered.
    let id = |e: &Value| e["id"].as_str().unwrap().to_owned();
    assert_eq!(app.entry("big", &id(&big)).await["status"], "waiting");
    assert_eq!(app.entry("small", &id(&small)).await["status"], "waiting");
    app.cancel("a", &a).await;
    let offer = app.entry("big", &id(&big)).await;
    assert_eq!(offer["status"], "offered", "{offer}");
    let placed = app
        .user("big")
        .get_json(&format!(
            "/api/orders/{}",
            offer["orderId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(placed["quantity"], 2);
    // One unit left over, and the next wants one.
    assert_eq!(app.entry("small", &id(&small)).await["status"], "offered");

    // Declined: leaving the list cancels the offer's order; its units are free again.
    let left = app
        .user("big")
        .delete(&format!("/api/waitlist/{}", id(&big)))
        .await;
    assert_eq!(left.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.entry("big", &id(&big)).await["status"], "left");
    let cancelled = app
        .user("big")
        .get_json(&format!(
            "/api/orders/{}",
            offer["orderId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(listings::held(&app.0.env.runtime, &listing).await, 1);

    // Sold out again; the seller adds two units: the line's head gets them at once.
    app.order("c", &listing, 2).await;
    let late = app.joined("late", &listing, 2).await;
    listings::publish(&app.0.env.runtime, &listing, 1, terms(5, 2, 2)).await;
    app.wait_entry("late", &id(&late), "offered", Duration::from_secs(5))
        .await;
    assert_eq!(listings::held(&app.0.env.runtime, &listing).await, 5);
}

/// The refusals of `POST /api/waitlist`, and the entry as its owner alone sees it.
async fn joining_is_refused_when_it_makes_no_sense(flavor: Flavor) {
    let app = spawn(flavor).await;
    let listing = app.listing(2, 2).await;
    let message = |body: &Value| {
        (
            body["errors"][0]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            body["errors"][0]["field"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    let (status, body) = app.join("w", &listing, 2).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        ("Tickets are available".into(), String::new())
    );
    app.order("a", &listing, 1).await;
    let (status, body) = app.join("w", &listing, 3).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        (
            "Quantity must be a whole number from 1 to 2".into(),
            "quantity".into()
        )
    );
    let entry = app.joined("w", &listing, 2).await;
    assert_eq!(entry["status"], "waiting");
    assert_eq!(entry["position"], 1);
    assert_eq!(entry["quantity"], 2);
    assert!(entry["joinedAt"].as_str().unwrap().ends_with('Z'));
    let (status, body) = app.join("w", &listing, 2).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(message(&body).0, "Already on the waiting list");
    let (status, _) = app.join("w", "no-such-listing", 1).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let id = entry["id"].as_str().unwrap();
    let mine = app.user("w").get_json("/api/waitlist").await;
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert_eq!(mine[0]["id"], entry["id"]);
    let theirs = app.user("x").get(&format!("/api/waitlist/{id}")).await;
    assert_eq!(theirs.status(), StatusCode::UNAUTHORIZED);
    let anonymous = app.0.api.get(&format!("/api/waitlist/{id}")).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let unknown = app.user("w").get("/api/waitlist/nope").await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    // Left once, left again: the same answer, and a new entry may be made.
    for _ in 0..2 {
        let left = app.user("w").delete(&format!("/api/waitlist/{id}")).await;
        assert_eq!(left.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(app.entry("w", id).await["status"], "left");
    app.joined("w", &listing, 2).await;
}

flavor_tests!(
    freed_units_are_offered_in_join_order,
    the_head_of_the_line_comes_first,
    joining_is_refused_when_it_makes_no_sense,
);
