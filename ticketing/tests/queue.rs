//! On-sale queues (issue 30): joins before the sale are drawn at random, later ones
//! queue in arrival order, admissions are paced and spent once by an order, and an order
//! without one is told its place — over real HTTP, every backend and bus.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::listings;
use ticketing_contracts::{SaleTerms, Timestamp};
use ticketing_kit::flavor_tests;
use ticketing_kit::testing::{reply, Api, Flavor, TestApp, TestEnv, User};
use ticketing_store::query;

struct App(TestApp);

async fn spawn(flavor: Flavor, admit_per_second: u32) -> App {
    let env = TestEnv::with_flavor(flavor).await;
    let orders = ticketing_orders::mount(
        &env.runtime,
        &ticketing_orders::Settings {
            queue_admit_per_second: admit_per_second,
            ..Default::default()
        },
    )
    .await
    .expect("mount orders");
    App(TestApp::spawn(env, vec![orders]).await)
}

impl App {
    fn user(&self, name: &str) -> Api {
        self.0
            .api
            .as_user(&User::bearer(&self.0.env.runtime.keys, name))
    }

    /// A listing of `quantity` units going on sale `in_ms` from now.
    async fn listing(&self, quantity: i64, per_order: i64, in_ms: i64) -> (String, i64) {
        let on_sale_at = Timestamp::now().as_millis() + in_ms;
        let terms = SaleTerms {
            quantity: Some(quantity),
            max_per_order: Some(per_order),
            max_per_account: Some(per_order),
            on_sale_at: Some(Timestamp::from_millis(on_sale_at).to_rfc3339()),
        };
        (
            listings::listing(&self.0.env.runtime, terms).await,
            on_sale_at,
        )
    }

    async fn join(&self, user: &str, listing: &str) -> (StatusCode, Value) {
        reply(
            self.user(user)
                .post_json(&format!("/api/queue/{listing}"), json!({}))
                .await,
        )
        .await
    }

    async fn place(&self, user: &str, listing: &str) -> Value {
        self.user(user)
            .get_json(&format!("/api/queue/{listing}"))
            .await
    }

    async fn order(&self, user: &str, listing: &str) -> reqwest::Response {
        self.user(user)
            .post_json("/api/orders", json!({"ticketId": listing, "quantity": 1}))
            .await
    }
}

async fn sleep_until(millis: i64) {
    let wait = (millis - Timestamp::now().as_millis()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

/// Spearman's ρ of two rankings of the same n items (no ties).
fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let d2: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

/// 10,000 accounts join before the sale, 1,000 after: the early ones' places owe nothing
/// to their arrival (|ρ| below 0.05, five null σ), the late ones follow theirs exactly,
/// and all of them behind every early one.
async fn early_joins_are_drawn_and_late_ones_queue_in_order(flavor: Flavor) {
    const EARLY: usize = 10_000;
    const LATE: usize = 1_000;
    // Admissions slow enough to leave the ranks to read; units for everyone.
    let app = Arc::new(spawn(flavor, 1).await);
    let (listing, on_sale_at) = app.listing(20_000, 1, 60_000).await;
    let joined = futures::stream::iter(0..EARLY)
        .map(|i| {
            let (app, listing) = (app.clone(), listing.clone());
            async move {
                let (status, body) = app.join(&format!("early{i:05}"), &listing).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                assert_eq!(body["status"], "waiting");
                assert!(body["position"].is_null());
            }
        })
        .buffer_unordered(32)
        .count()
        .await;
    assert_eq!(joined, EARLY);
    // Bring the sale forward to now (as a seller would), so the late joins are late.
    let terms = SaleTerms {
        quantity: Some(20_000),
        max_per_order: Some(1),
        max_per_account: Some(1),
        on_sale_at: Some(Timestamp::now().to_rfc3339()),
    };
    listings::publish(&app.0.env.runtime, &listing, 1, terms).await;
    assert!(
        on_sale_at > Timestamp::now().as_millis(),
        "the joins were early"
    );
    for i in 0..LATE {
        let (status, body) = app.join(&format!("late{i:04}"), &listing).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    let store = listings::orders_store(&app.0.env.runtime).await;
    let rows = query(
        "SELECT user_id, joined_at, rank FROM queue_entries WHERE ticket_id = $1 \
         ORDER BY joined_at, user_id",
    )
    .bind(&listing)
    .fetch_all(store.reader())
    .await
    .unwrap();
    let (mut early, mut late) = (Vec::new(), Vec::new());
    for row in &rows {
        let user: String = row.get("user_id").unwrap();
        let rank: i64 = row.get("rank").unwrap();
        if user.starts_with("early") {
            early.push(rank);
        } else {
            late.push((user, rank));
        }
    }
    assert_eq!(early.len(), EARLY);
    let mut ranks: Vec<i64> = early.clone();
    ranks.sort_unstable();
    assert_eq!(ranks, (1..=EARLY as i64).collect::<Vec<_>>());
    let arrival: Vec<f64> = (1..=EARLY).map(|r| r as f64).collect();
    let admission: Vec<f64> = early.iter().map(|&r| r as f64).collect();
    let rho = spearman(&arrival, &admission);
    assert!(rho.abs() < 0.05, "early joins' ρ = {rho}");
    // Late joins: in arrival order, right behind the early ones.
    late.sort_by(|a, b| a.0.cmp(&b.0));
    let late_ranks: Vec<i64> = late.iter().map(|(_, r)| *r).collect();
    let expected: Vec<i64> = (EARLY as i64 + 1..=(EARLY + LATE) as i64).collect();
    assert_eq!(late_ranks, expected);
}

/// Late joins at the same moment (on PostgreSQL they share statements: decision 0036),
/// every account twice: each account has one place, the ranks are one unbroken run, and
/// both of an account's answers name its place.
async fn simultaneous_late_joins_take_one_place_each(flavor: Flavor) {
    const ACCOUNTS: usize = 300;
    let app = Arc::new(spawn(flavor, 1).await);
    let (listing, _) = app.listing(1_000, 1, -1_000).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(2 * ACCOUNTS));
    let joins = (0..2 * ACCOUNTS).map(|i| {
        let (app, listing, barrier) = (app.clone(), listing.clone(), barrier.clone());
        tokio::spawn(async move {
            let user = format!("late{:03}", i % ACCOUNTS);
            barrier.wait().await;
            let (status, body) = app.join(&user, &listing).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            (user, body)
        })
    });
    let mut answers: std::collections::HashMap<String, Vec<Value>> = Default::default();
    for joined in futures::future::join_all(joins).await {
        let (user, body) = joined.unwrap();
        answers.entry(user).or_default().push(body);
    }

    let store = listings::orders_store(&app.0.env.runtime).await;
    let rows = query("SELECT user_id, rank FROM queue_entries WHERE ticket_id = $1")
        .bind(&listing)
        .fetch_all(store.reader())
        .await
        .unwrap();
    assert_eq!(rows.len(), ACCOUNTS);
    let mut ranks = Vec::new();
    for row in &rows {
        let (user, rank): (String, i64) = (row.get("user_id").unwrap(), row.get("rank").unwrap());
        ranks.push(rank);
        for answer in &answers[&user] {
            // Waiting at the rank written, or admitted already (one a second).
            if answer["status"] == "waiting" {
                let position = answer["position"].as_i64().unwrap();
                assert!(
                    position >= 1 && position <= rank,
                    "{user}: {answer} at rank {rank}"
                );
            } else {
                assert_eq!(answer["status"], "admitted", "{user}: {answer}");
            }
        }
    }
    ranks.sort_unstable();
    assert_eq!(ranks, (1..=ACCOUNTS as i64).collect::<Vec<_>>());
}

/// Before the queue opens: `Not on sale yet`. Before the sale: an order joins the queue
/// and is answered 429 without a place. From the sale: admissions at the configured rate
/// and never more unused ones than free units; an order without one is told its
/// position; an admission places one order, once.
async fn orders_wait_for_their_admission(flavor: Flavor) {
    let app = spawn(flavor, 2).await;
    let (far, _) = app.listing(5, 1, 2 * 3600 * 1000).await;
    let (status, body) = app.join("a", &far).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["message"], "Not on sale yet");
    let (status, body) = reply(app.order("a", &far).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["message"], "Not on sale yet");

    let (listing, on_sale_at) = app.listing(3, 1, 1500).await;
    let early = app.order("a", &listing).await;
    assert_eq!(early.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = early.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry));
    let body: Value = early.json().await.unwrap();
    assert_eq!(body["errors"][0]["message"], "You are in the queue");
    assert!(body["queue"]["position"].is_null());
    for user in ["b", "c", "d", "e"] {
        assert_eq!(app.join(user, &listing).await.0, StatusCode::OK);
    }
    let place = app.place("a", &listing).await;
    assert_eq!(place["status"], "waiting");
    assert_eq!(
        parse(&place["opensAt"]),
        on_sale_at,
        "opensAt is the sale: {place}"
    );

    sleep_until(on_sale_at).await;
    // Two a second, three units: after the first second two are admitted, then the third.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut admitted = Vec::new();
    let mut waiting = Vec::new();
    for user in ["a", "b", "c", "d", "e"] {
        let place = app.place(user, &listing).await;
        match place["status"].as_str().unwrap() {
            "admitted" => admitted.push(user),
            "waiting" => waiting.push((user, place["position"].as_i64().unwrap())),
            other => panic!("{other}: {place}"),
        }
    }
    assert_eq!(admitted.len(), 3, "{admitted:?} {waiting:?}");
    // Nobody holds a unit yet: three admissions for three free units, no more.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (user, position) = waiting[0];
    assert_eq!(app.place(user, &listing).await["status"], "waiting");
    let refused = app.order(user, &listing).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["message"],
        format!("You are in the queue (position {position})")
    );
    assert_eq!(body["queue"]["position"], position);

    let first = admitted[0];
    let placed = app.order(first, &listing).await;
    assert_eq!(placed.status(), StatusCode::CREATED);
    assert_eq!(app.place(first, &listing).await["status"], "used");
    // Spent: a second order goes back to the queue.
    assert_eq!(
        app.order(first, &listing).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    for user in &admitted[1..] {
        assert_eq!(
            app.order(user, &listing).await.status(),
            StatusCode::CREATED
        );
    }
    // Sold out now: those still waiting are told so, and an order is refused as sold out
    // (a 429 would have them poll on).
    assert_eq!(app.place(user, &listing).await["status"], "sold-out");
    let (status, body) = reply(app.order(user, &listing).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errors"][0]["message"], "Ticket is sold out");
}

/// An early join written just after the draws were ranked (its clock read before the
/// sale, its write after: nothing orders the two) is not left out: the pacer ranks it at
/// the back of the line, and it is admitted in its turn.
async fn a_draw_written_after_the_ranking_is_ranked_too(flavor: Flavor) {
    let app = spawn(flavor, 100).await;
    let (listing, on_sale_at) = app.listing(10, 1, 800).await;
    for user in ["a", "b"] {
        assert_eq!(app.join(user, &listing).await.0, StatusCode::OK);
    }
    sleep_until(on_sale_at).await;
    // The pacer has ranked the draws (and admitted both).
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(app.place("a", &listing).await["status"], "admitted");
    let store = listings::orders_store(&app.0.env.runtime).await;
    let mut tx = store.begin().await.unwrap();
    query("INSERT INTO queue_entries (ticket_id, user_id, joined_at, draw) VALUES ($1, $2, $3, 7)")
        .bind(&listing)
        .bind("late-draw")
        .bind(on_sale_at - 1)
        .execute(&mut tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let place = app.place("late-draw", &listing).await;
    assert_eq!(place["status"], "admitted", "{place}");
    let rank: i64 = query("SELECT rank FROM queue_entries WHERE ticket_id = $1 AND user_id = $2")
        .bind(&listing)
        .bind("late-draw")
        .fetch_one(store.reader())
        .await
        .unwrap()
        .get("rank")
        .unwrap();
    assert_eq!(rank, 3);
}

/// Admitted buyers' orders at the same moment, the queue in force (on PostgreSQL the
/// placer claims them together and spends their admissions in its statement): one
/// account's eight
/// requests — four copies of one keyed request, four others — place one order, and
/// the copies, if theirs won, one answer; six accounts wanting two units each of the
/// nine left get four orders, and the other two are told what is left and keep their
/// admissions.
async fn concurrent_admitted_orders_spend_each_admission_once(flavor: Flavor) {
    let app = Arc::new(spawn(flavor, 50).await);
    let (listing, on_sale_at) = app.listing(10, 2, 1200).await;
    let buyers = ["a", "b", "c", "d", "e", "f", "g"];
    for user in buyers {
        assert_eq!(app.join(user, &listing).await.0, StatusCode::OK);
    }
    sleep_until(on_sale_at).await;
    // Behind them, more than the units left: the queue stays in force (somebody waits),
    // so an order without an admission is held back.
    for user in ["f1", "f2", "f3", "f4", "f5"] {
        assert_eq!(app.join(user, &listing).await.0, StatusCode::OK);
    }
    for user in buyers {
        let admitted = async || app.place(user, &listing).await["status"] == "admitted";
        while !admitted().await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(app.place("f5", &listing).await["status"], "waiting");
    let order = |user: &'static str, key: Option<String>, quantity: i64| {
        let (app, listing) = (app.clone(), listing.clone());
        async move {
            let mut request = app
                .user(user)
                .request(reqwest::Method::POST, "/api/orders")
                .json(&json!({"ticketId": listing, "quantity": quantity}));
            if let Some(key) = key {
                request = request.header("Idempotency-Key", key);
            }
            reply(request.send().await.unwrap()).await
        }
    };
    let keys: Vec<String> = (0..8)
        .map(|i| match i {
            0..4 => "same".to_owned(),
            _ => format!("other-{i}"),
        })
        .collect();
    let tries = keys.iter().map(|key| order("a", Some(key.clone()), 1));
    let answers = futures::future::join_all(tries).await;
    let placed: Vec<&(StatusCode, Value)> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .collect();
    assert!(!placed.is_empty(), "{answers:?}");
    for (status, body) in &answers {
        assert!(
            *status == StatusCode::CREATED || *status == StatusCode::TOO_MANY_REQUESTS,
            "{status} {body}"
        );
    }
    // Every 201 is the one order (copies of the winning key answer it again).
    assert!(
        placed.iter().all(|(_, body)| body == &placed[0].1),
        "{placed:?}"
    );
    // Retried later (its admission spent, the queue still in force), the winning key
    // gets its answer again, not a place at the back of the line.
    let won = answers.iter().position(|(s, _)| *s == StatusCode::CREATED);
    let retried = order("a", Some(keys[won.unwrap()].clone()), 1).await;
    assert_eq!(&retried, placed[0]);

    let others = buyers[1..].iter().map(|user| order(user, None, 2));
    let answers = futures::future::join_all(others).await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 4, "nine units were left: {answers:?}");
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s != StatusCode::CREATED)
        .map(|(_, body)| &body["errors"][0]["message"])
        .collect();
    assert_eq!(refused.len(), 2, "{answers:?}");
    // A refused order spent nothing: its buyer is still admitted (a batch that spent
    // an admission for an order it then left out gave it back).
    for (user, (status, _)) in buyers[1..].iter().zip(&answers) {
        if *status != StatusCode::CREATED {
            assert_eq!(
                app.place(user, &listing).await["status"],
                "admitted",
                "{user}"
            );
        }
    }

    let store = listings::orders_store(&app.0.env.runtime).await;
    let row = query(
        "SELECT (SELECT count(*) FROM orders WHERE user_id = 'a') AS mine, \
                CAST((SELECT sum(quantity) FROM orders) AS BIGINT) AS units, \
                (SELECT held FROM tickets WHERE id = $1) AS held",
    )
    .bind(&listing)
    .fetch_one(store.reader())
    .await
    .unwrap();
    assert_eq!(row.get::<i64>("mine").unwrap(), 1);
    assert_eq!(row.get::<i64>("units").unwrap(), 9);
    assert_eq!(row.get::<i64>("held").unwrap(), 9);
}

fn parse(value: &Value) -> i64 {
    ticketing_contracts::time::parse_millis(value.as_str().unwrap()).unwrap()
}

flavor_tests!(
    early_joins_are_drawn_and_late_ones_queue_in_order,
    orders_wait_for_their_admission,
    a_draw_written_after_the_ranking_is_ranked_too,
    simultaneous_late_joins_take_one_place_each,
    concurrent_admitted_orders_spend_each_admission_once,
);
