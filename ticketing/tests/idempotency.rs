//! `Idempotency-Key` on the three POSTs that make something (tickets, orders, payments):
//! a repeat gets the first answer and makes nothing twice, concurrent repeats included;
//! another request under the same key is a 422; keys are per caller. Every flavour.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use ticketing_kit::flavor_tests;
use ticketing_kit::testing::{errors, id_of, payment, reply, Api, Flavor, TestApp, TestEnv};
use ticketing_store::query;

async fn spawn(flavor: Flavor) -> TestApp {
    let env = TestEnv::with_flavor(flavor).await;
    let services = vec![
        ticketing_tickets::mount(&env.runtime).await.unwrap(),
        ticketing_orders::mount(&env.runtime, &Default::default())
            .await
            .unwrap(),
        ticketing_payments::mount(
            &env.runtime,
            Arc::new(ticketing_payments::provider::SandboxProvider::new()),
        )
        .await
        .unwrap(),
    ];
    TestApp::spawn(env, services).await
}

/// POST `body` to `path` with `key`: status and body.
async fn post_keyed(api: &Api, path: &str, key: &str, body: &Value) -> (StatusCode, Value) {
    let res = api
        .request(Method::POST, path)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("request");
    reply(res).await
}

/// `service`'s database.
async fn store_of(app: &TestApp, service: &str) -> ticketing_store::Store {
    let migrations = match service {
        "tickets" => &ticketing_tickets::MIGRATIONS,
        "orders" => &ticketing_orders::MIGRATIONS,
        _ => &ticketing_payments::MIGRATIONS,
    };
    let location = app.env.runtime.location(service).unwrap();
    ticketing_store::Store::open(&location, migrations)
        .await
        .unwrap()
}

/// Rows in `table` of `service`'s database.
async fn count(app: &TestApp, service: &str, table: &str) -> i64 {
    query(&format!("SELECT COUNT(*) FROM {table}"))
        .scalar(store_of(app, service).await.reader())
        .await
        .unwrap()
}

/// A repeated sale lists one ticket; another request under the same key is a 422 until
/// the key is 24 hours old, then it is taken over; keys are per caller.
async fn a_repeated_sale_lists_one_ticket(flavor: Flavor) {
    let app = spawn(flavor).await;
    let seller = app.as_user("seller");
    let body = json!({"title": "concert", "price": 20});
    let (status, first) = post_keyed(&seller, "/api/tickets", "sale-1", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = post_keyed(&seller, "/api/tickets", "sale-1", &body).await;
    assert_eq!((status, &again), (StatusCode::CREATED, &first));
    assert_eq!(count(&app, "tickets", "tickets").await, 1);

    // The same key with another request.
    let other = json!({"title": "concert", "price": 21});
    let res = seller
        .request(Method::POST, "/api/tickets")
        .header("Idempotency-Key", "sale-1")
        .json(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        errors(res).await[0]["message"],
        "This Idempotency-Key was used with a different request"
    );

    // Keys are per caller: another seller's "sale-1" is theirs.
    let (status, theirs) = post_keyed(&app.as_user("other"), "/api/tickets", "sale-1", &body).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(id_of(&theirs), id_of(&first));

    // A malformed key is refused before anything is made.
    for bad in ["", &"k".repeat(256), "with space"] {
        let res = seller
            .request(Method::POST, "/api/tickets")
            .header("Idempotency-Key", bad)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        assert_eq!(errors(res).await[0]["field"], "Idempotency-Key");
    }

    assert_eq!(count(&app, "tickets", "tickets").await, 2);

    // Past its 24 hours a key is taken over by a new request, as if new.
    let store = store_of(&app, "tickets").await;
    query("UPDATE idempotency_keys SET created_at = created_at - $1")
        .bind(ticketing_kit::idempotency::KEEP.as_millis() as i64 + 1)
        .execute(store.writer())
        .await
        .unwrap();
    let (status, renewed) = post_keyed(&seller, "/api/tickets", "sale-1", &other).await;
    assert_eq!(status, StatusCode::CREATED, "{renewed}");
    assert_eq!(renewed["price"], json!(21), "{renewed}");
    let (status, again) = post_keyed(&seller, "/api/tickets", "sale-1", &other).await;
    assert_eq!((status, &again), (StatusCode::CREATED, &renewed));
    assert_eq!(count(&app, "tickets", "tickets").await, 3);
}

/// Ten copies of one order request with one key, all at once: one order, and every copy
/// answered 201 with it.
async fn concurrent_repeats_place_one_order(flavor: Flavor) {
    let app = spawn(flavor).await;
    let ticket = app.as_user("seller").sell("show", json!(30)).await;
    let buyer = app.as_user("buyer");
    buyer
        .wait_for(&format!("/api/tickets/{ticket}"), |_| true)
        .await;
    // Once the orders service knows the ticket (an unkeyed order of another buyer's
    // would take it): wait through a keyed probe of an unknown-ticket 404.
    let body = json!({"ticketId": ticket});
    let first = loop {
        let (status, order) = post_keyed(&buyer, "/api/orders", "probe", &body).await;
        if status == StatusCode::CREATED {
            break order;
        }
        assert_eq!(status, StatusCode::NOT_FOUND, "{order}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // The probe's order is the one; cancel nothing, just repeat it concurrently.
    let repeats = (0..10).map(|_| {
        let buyer = buyer.clone();
        let body = body.clone();
        async move { post_keyed(&buyer, "/api/orders", "probe", &body).await }
    });
    for (status, order) in futures::future::join_all(repeats).await {
        assert_eq!((status, &order), (StatusCode::CREATED, &first));
    }
    assert_eq!(count(&app, "orders", "orders").await, 1);

    // A second buyer's keyed order, raced by ten copies of itself from the start.
    let ticket = app.as_user("seller").sell("play", json!(40)).await;
    let other = app.as_user("other-buyer");
    other.order_ok(&ticket).await; // known to orders now; free it again
    let (status, held) = reply(other.get("/api/orders").await).await;
    assert_eq!(status, StatusCode::OK);
    let held = id_of(&held[0]);
    let res = other.delete(&format!("/api/orders/{held}")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let body = json!({"ticketId": ticket});
    let racers = (0..10).map(|_| {
        let other = other.clone();
        let body = body.clone();
        async move { post_keyed(&other, "/api/orders", "race", &body).await }
    });
    let answers = futures::future::join_all(racers).await;
    let (status, winner) = &answers[0];
    assert_eq!(*status, StatusCode::CREATED, "{winner}");
    for answer in &answers {
        assert_eq!(answer, &answers[0]);
    }
    assert_eq!(count(&app, "orders", "orders").await, 3);
}

/// A repeated payment charges once and answers the first payment.
async fn a_repeated_payment_charges_once(flavor: Flavor) {
    let app = spawn(flavor).await;
    let ticket = app.as_user("seller").sell("match", json!(15)).await;
    let buyer = app.as_user("buyer");
    let order = id_of(&buyer.order_ok(&ticket).await);
    // Once payments knows the order: a keyed probe until it is no longer a 404.
    let body = payment(&order);
    let repeats = || {
        (0..5).map(|_| {
            let buyer = buyer.clone();
            let body = body.clone();
            async move { post_keyed(&buyer, "/api/payments", "pay-1", &body).await }
        })
    };
    let first = loop {
        let answers = futures::future::join_all(repeats()).await;
        if answers
            .iter()
            .all(|(status, _)| *status == StatusCode::NOT_FOUND)
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        }
        let (status, paid) = answers
            .iter()
            .find(|(status, _)| *status == StatusCode::CREATED)
            .cloned()
            .expect("one of the racing repeats paid");
        for (status, answer) in &answers {
            // A repeat racing its first try may find it still running: 409, retry.
            assert!(
                answer == &paid
                    || *status == StatusCode::CONFLICT
                    || *status == StatusCode::NOT_FOUND,
                "{status} {answer}"
            );
        }
        assert_eq!(status, StatusCode::CREATED);
        break paid;
    };
    for (status, answer) in futures::future::join_all(repeats()).await {
        assert_eq!((status, answer), (StatusCode::CREATED, first.clone()));
    }
    assert_eq!(count(&app, "payments", "payments").await, 1);
    assert_eq!(first["orderId"], order.as_str());
}

flavor_tests!(
    a_repeated_sale_lists_one_ticket,
    concurrent_repeats_place_one_order,
    a_repeated_payment_charges_once,
);
