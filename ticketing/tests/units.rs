//! Listings of many units (issue 30): the orders service's claim under a rush, the
//! per-account cap, the refusals, and units coming back — over real HTTP, every storage
//! backend and event bus. The listings are published as the tickets service would.

mod support;

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::listings::{self, terms};
use ticketing_contracts::SaleTerms;
use ticketing_kit::flavor_tests;
use ticketing_kit::testing::{reply, Api, Flavor, TestApp, TestEnv, User};

struct App(TestApp);

async fn spawn(flavor: Flavor, order_ttl: Duration) -> App {
    let env = TestEnv::with_flavor(flavor).await;
    let orders = ticketing_orders::mount(
        &env.runtime,
        &ticketing_orders::Settings {
            order_ttl,
            payment_grace: Duration::from_millis(200),
            ..Default::default()
        },
    )
    .await
    .expect("mount orders");
    App(TestApp::spawn(env, vec![orders]).await)
}

impl App {
    fn buyer(&self, name: &str) -> Api {
        self.0
            .api
            .as_user(&User::bearer(&self.0.env.runtime.keys, name))
    }

    async fn listing(&self, quantity: i64, per_order: i64, per_account: i64) -> String {
        listings::listing(&self.0.env.runtime, terms(quantity, per_order, per_account)).await
    }

    async fn held(&self, listing: &str) -> i64 {
        listings::held(&self.0.env.runtime, listing).await
    }
}

async fn order(buyer: &Api, listing: &str, quantity: Value) -> (StatusCode, Value) {
    reply(
        buyer
            .post_json(
                "/api/orders",
                json!({"ticketId": listing, "quantity": quantity}),
            )
            .await,
    )
    .await
}

fn message(body: &Value) -> (&str, &str) {
    let error = &body["errors"][0];
    (
        error["message"].as_str().unwrap_or_default(),
        error["field"].as_str().unwrap_or_default(),
    )
}

/// 1,000 buyers of 1–4 units rush 100 units: the orders answered 201 hold exactly 100,
/// each the units it asked for; every other buyer is told why, and nobody gets a 5xx.
/// Half of them send an `Idempotency-Key` (a tenth send their request twice at once,
/// under one key: one order, the answer to both copies).
async fn a_rush_sells_exactly_the_listed_units(flavor: Flavor) {
    let app = Arc::new(spawn(flavor, Duration::from_secs(900)).await);
    let listing = app.listing(100, 4, 4).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(1000));
    let rush = (0..1000).map(|i| {
        let (app, listing, barrier) = (app.clone(), listing.clone(), barrier.clone());
        tokio::spawn(async move {
            let wanted = (i % 4) as i64 + 1;
            let buyer = app.buyer(&format!("rush{i}"));
            let body = json!({"ticketId": listing, "quantity": wanted});
            let send = async || {
                let request = buyer.request(reqwest::Method::POST, "/api/orders");
                let request = match i % 2 {
                    1 => request.header("Idempotency-Key", format!("rush-{i}")),
                    _ => request,
                };
                reply(request.json(&body).send().await.unwrap()).await
            };
            barrier.wait().await;
            let answer = if i % 10 == 1 {
                let (first, copy) = tokio::join!(send(), send());
                // A placed order is the answer to both; a refusal is not kept (each
                // copy is told why as it found the listing).
                if first.0 == StatusCode::CREATED || copy.0 == StatusCode::CREATED {
                    assert_eq!(first, copy, "one key, one order");
                }
                first
            } else {
                send().await
            };
            (wanted, answer)
        })
    });
    let mut sold = 0;
    for result in futures::future::join_all(rush).await {
        let (wanted, (status, body)) = result.unwrap();
        match status {
            StatusCode::CREATED => {
                assert_eq!(body["quantity"], wanted, "{body}");
                sold += wanted;
            }
            StatusCode::BAD_REQUEST => {
                let refusal = message(&body);
                let only_left = refusal.0.starts_with("Only ") && refusal.1 == "quantity";
                assert!(refusal == ("Ticket is sold out", "") || only_left, "{body}");
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(sold, 100);
    assert_eq!(app.held(&listing).await, 100);
}

/// Ten one-unit orders at once from one account capped at 4: exactly 4 placed; a
/// cancelled one gives its unit back to the account.
async fn an_account_holds_at_most_its_cap(flavor: Flavor) {
    let app = Arc::new(spawn(flavor, Duration::from_secs(900)).await);
    let listing = app.listing(50, 2, 4).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(10));
    let tries = (0..10).map(|_| {
        let (app, listing, barrier) = (app.clone(), listing.clone(), barrier.clone());
        tokio::spawn(async move {
            let buyer = app.buyer("collector");
            barrier.wait().await;
            order(&buyer, &listing, json!(1)).await
        })
    });
    let mut placed = Vec::new();
    for result in futures::future::join_all(tries).await {
        let (status, body) = result.unwrap();
        match status {
            StatusCode::CREATED => placed.push(body["id"].as_str().unwrap().to_owned()),
            StatusCode::BAD_REQUEST => {
                assert_eq!(message(&body), ("At most 4 per account", "quantity"))
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(placed.len(), 4);
    let collector = app.buyer("collector");
    let (status, body) = order(&collector, &listing, json!(1)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let cancelled = collector
        .delete(&format!("/api/orders/{}", placed[0]))
        .await;
    assert_eq!(cancelled.status(), StatusCode::NO_CONTENT);
    let (status, body) = order(&collector, &listing, json!(1)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Another account is not limited by this one's.
    let (status, body) = order(&app.buyer("other"), &listing, json!(2)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(app.held(&listing).await, 6);
}

/// What the listing allows, said in the contract's words.
async fn quantities_outside_the_terms_are_refused(flavor: Flavor) {
    let app = spawn(flavor, Duration::from_secs(900)).await;
    let listing = app.listing(5, 4, 5).await;
    let bob = app.buyer("bob");
    for wrong in [
        json!(0),
        json!(5),
        json!(-1),
        json!(2.5),
        json!("2"),
        json!(true),
    ] {
        let (status, body) = order(&bob, &listing, wrong.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{wrong}: {body}");
        assert_eq!(
            message(&body),
            ("Quantity must be a whole number from 1 to 4", "quantity"),
            "{wrong}"
        );
    }
    let (status, body) = order(&bob, &listing, json!(4)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["quantity"], 4);
    assert_eq!(body["ticket"]["price"], json!(10));
    let (status, body) = order(&app.buyer("carol"), &listing, json!(2)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(message(&body), ("Only 1 left", "quantity"));
    let (status, _) = order(&app.buyer("carol"), &listing, json!(1)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = order(&app.buyer("dave"), &listing, json!(1)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(message(&body), ("Ticket is sold out", ""));

    // A ticket listed the seed's way: one unit, one per order, refused as before.
    let single = listings::listing(&app.0.env.runtime, SaleTerms::default()).await;
    let (status, body) = order(&bob, &single, json!(2)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        ("Quantity must be a whole number from 1 to 1", "quantity")
    );
    let (status, body) = reply(
        bob.post_json("/api/orders", json!({"ticketId": single}))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["quantity"], 1);
    let (status, body) = order(&app.buyer("carol"), &single, Value::Null).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(message(&body), ("Ticket is already reserved", ""));
}

/// Units of unpaid orders whose reservation ran out are free for the next buyer (lazy
/// expiry in the claim's transaction, before any expiration job), account shares too.
async fn lapsed_holds_give_their_units_back(flavor: Flavor) {
    // Long enough that the first three orders meet live holds on a loaded machine.
    let app = spawn(flavor, Duration::from_millis(1500)).await;
    let listing = app.listing(6, 3, 3).await;
    for buyer in ["a", "b"] {
        let (status, body) = order(&app.buyer(buyer), &listing, json!(3)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = order(&app.buyer("c"), &listing, json!(1)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(message(&body), ("Ticket is sold out", ""));
    tokio::time::sleep(Duration::from_millis(1900)).await;
    let (status, body) = order(&app.buyer("c"), &listing, json!(3)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The first buyer's share came back with its units.
    let (status, body) = order(&app.buyer("a"), &listing, json!(3)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(app.held(&listing).await, 6);
}

/// A ticket listed as one unit, ordered, then given a quantity by its seller: what its
/// live order holds counts against its buyer's cap from then on, and comes back with a
/// cancel.
async fn a_ticket_given_a_quantity_counts_its_orders(flavor: Flavor) {
    let app = spawn(flavor, Duration::from_secs(900)).await;
    let rt = &app.0.env.runtime;
    let single = listings::listing(rt, SaleTerms::default()).await;
    let (status, first) = order(&app.buyer("a"), &single, json!(1)).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    listings::publish(rt, &single, 1, terms(5, 1, 1)).await;
    let (status, body) = order(&app.buyer("a"), &single, json!(1)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(message(&body), ("At most 1 per account", "quantity"));
    let (status, body) = order(&app.buyer("b"), &single, json!(1)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let cancelled = app
        .buyer("a")
        .delete(&format!("/api/orders/{}", first["id"].as_str().unwrap()))
        .await;
    assert_eq!(cancelled.status(), StatusCode::NO_CONTENT);
    let (status, body) = order(&app.buyer("a"), &single, json!(1)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(app.held(&single).await, 2);
}

flavor_tests!(
    a_ticket_given_a_quantity_counts_its_orders,
    a_rush_sells_exactly_the_listed_units,
    an_account_holds_at_most_its_cap,
    quantities_outside_the_terms_are_refused,
    lapsed_holds_give_their_units_back,
);
