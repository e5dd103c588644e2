//! The orders contract (`../shared/spec/api.md` §orders) over real HTTP, with the
//! tickets service beside it and every storage backend and event bus.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use ticketing_bus::Envelope;
use ticketing_contracts::events::{
    ExpirationComplete, PaymentCreated, Subject, TicketCreated, TicketUpdated,
};
use ticketing_contracts::money::Cents;
use ticketing_contracts::time::{now_millis, parse_millis};
use ticketing_kit::flavor_tests;
use ticketing_kit::testing::{
    errors, reply, Api, EventRecorder, Flavor, TestApp, TestEnv, TestServer, User,
};
use ticketing_store::{query, Store};

/// Tickets and orders on one runtime.
struct App(TestApp);

impl std::ops::Deref for App {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.0
    }
}

async fn spawn(flavor: Flavor) -> App {
    spawn_with_ttl(flavor, Duration::from_secs(900)).await
}

async fn spawn_with_ttl(flavor: Flavor, ttl: Duration) -> App {
    spawn_with_deadline(flavor, ttl, ticketing_orders::DEFAULT_PAYMENT_GRACE).await
}

async fn spawn_with_deadline(flavor: Flavor, ttl: Duration, grace: Duration) -> App {
    let env = TestEnv::with_flavor(flavor).await;
    let tickets = ticketing_tickets::mount(&env.runtime)
        .await
        .expect("mount tickets");
    let orders = ticketing_orders::mount(
        &env.runtime,
        &ticketing_orders::Settings {
            order_ttl: ttl,
            payment_grace: grace,
            ..Default::default()
        },
    )
    .await
    .expect("mount orders");
    App(TestApp::spawn(env, vec![tickets, orders]).await)
}

impl App {
    /// `user`'s API: the app's, with `user`'s token.
    fn user(&self, user: &str) -> Api {
        self.as_user(user)
    }

    /// A ticket for sale, listed by alice: its id.
    async fn ticket(&self, title: &str, price: Value) -> String {
        self.user("alice").sell(title, price).await
    }

    /// Order right after listing: retried while the replica has not heard of the ticket.
    async fn order(&self, user: &str, ticket_id: &str) -> reqwest::Response {
        self.user(user).order(ticket_id).await
    }

    async fn order_ok(&self, user: &str, ticket_id: &str) -> Value {
        self.user(user).order_ok(ticket_id).await
    }

    async fn get_order(&self, user: &str, id: &str) -> Value {
        self.user(user).get_json(&format!("/api/orders/{id}")).await
    }

    async fn wait_order_status(&self, user: &str, id: &str, status: &str) -> Value {
        self.user(user).wait_order(id, status).await
    }

    async fn wait_ticket_holder(&self, ticket_id: &str, order: Option<&str>) -> Value {
        self.api.wait_ticket_held_by(ticket_id, order).await
    }

    /// Buyer `i` at `server`, from a browser of its own (a racer of its own connection).
    fn buyer(&self, server: &TestServer, i: usize) -> Api {
        Api::new(server.url(""))
            .as_user(&User::bearer(&self.env.runtime.keys, &format!("buyer{i}")))
    }

    async fn orders_store(&self) -> Store {
        let location = self
            .env
            .runtime
            .location(ticketing_orders::SERVICE)
            .unwrap();
        Store::open(&location, &ticketing_orders::MIGRATIONS)
            .await
            .unwrap()
    }
}

/// `POST /api/orders` for `ticket_id`, once: status and body.
async fn post_order(buyer: &Api, ticket_id: &str) -> (StatusCode, Value) {
    reply(
        buyer
            .post_json("/api/orders", json!({"ticketId": ticket_id}))
            .await,
    )
    .await
}

async fn every_route_requires_a_session(flavor: Flavor) {
    let app = spawn(flavor).await;
    let id = "0190d5d3-7c5e-7000-8000-000000000000";
    for (method, path) in [
        (Method::GET, "/api/orders".to_owned()),
        (Method::POST, "/api/orders".to_owned()),
        (Method::GET, format!("/api/orders/{id}")),
        (Method::DELETE, format!("/api/orders/{id}")),
        (Method::GET, format!("/api/orders/{id}/cancellation")),
        (Method::POST, format!("/api/orders/{id}/cancellation")),
    ] {
        let res = app
            .api
            .send(method.clone(), &path, Some(json!({"ticketId": id})))
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(errors(res).await[0]["message"], "User not authorized.");
    }
}

async fn create_validates_the_ticket_id(flavor: Flavor) {
    let app = spawn(flavor).await;
    for body in [
        json!({}),
        json!({"ticketId": ""}),
        json!({"ticketId": 42}),
        json!({"ticketId": "no spaces!"}),
    ] {
        let res = app.user("bob").post_json("/api/orders", body.clone()).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(errors(res).await[0]["field"], "ticketId");
    }
    let unknown = app
        .user("bob")
        .post_json(
            "/api/orders",
            json!({"ticketId": "0190d5d3-7c5e-7000-8000-000000000000"}),
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

async fn create_reserves_the_ticket_and_publishes_order_created(flavor: Flavor) {
    let app = spawn(flavor).await;
    let created = EventRecorder::start(&app.env.runtime, Subject::OrderCreated).await;
    let ticket = app.ticket("Concert", json!("10.99")).await;
    let tid = ticket.as_str();
    let before = now_millis();
    let order = app.order_ok("bob", tid).await;
    assert_eq!(order["status"], "created");
    assert_eq!(order["userId"], "bob");
    assert_eq!(order["version"], 0);
    assert_eq!(
        order["ticket"],
        json!({"id": tid, "title": "Concert", "price": 10.99, "version": 0})
    );
    let expires = parse_millis(order["expiresAt"].as_str().unwrap()).unwrap();
    assert!((before + 900_000..=now_millis() + 900_000).contains(&expires));

    let event: Value = serde_json::from_slice(&created.next().await.payload).unwrap();
    assert_eq!(event["id"], order["id"]);
    assert_eq!(event["status"], "created");
    assert_eq!(event["userId"], "bob");
    assert_eq!(event["expiresAt"], order["expiresAt"]);
    assert_eq!(event["ticket"], json!({"id": tid, "price": 10.99}));

    let oid = order["id"].as_str().unwrap();
    app.wait_ticket_holder(tid, Some(oid)).await;
    let again = app.order("carol", tid).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        errors(again).await[0]["message"],
        "Ticket is already reserved"
    );
}

async fn list_and_show_only_the_callers_orders(flavor: Flavor) {
    let app = spawn(flavor).await;
    let t1 = app.ticket("One", json!(10)).await;
    let t2 = app.ticket("Two", json!(20)).await;
    let t3 = app.ticket("Three", json!(30)).await;
    let o1 = app.order_ok("bob", &t1).await;
    let o2 = app.order_ok("bob", &t2).await;
    let o3 = app.order_ok("carol", &t3).await;

    // Compared by id: the embedded ticket's version moves on as the ticket is reserved.
    let ids = |orders: Vec<Value>| orders.iter().map(|o| o["id"].clone()).collect::<Vec<_>>();
    let bobs: Vec<Value> = app
        .user("bob")
        .get("/api/orders")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(bobs), vec![o1["id"].clone(), o2["id"].clone()]);
    let carols: Vec<Value> = app
        .user("carol")
        .get("/api/orders")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(carols), vec![o3["id"].clone()]);

    let shown = app.get_order("bob", o1["id"].as_str().unwrap()).await;
    assert_eq!(shown["status"], "created");
    assert_eq!(shown["ticket"]["title"], "One");
    let foreign = app
        .user("bob")
        .get(&format!("/api/orders/{}", o3["id"].as_str().unwrap()))
        .await;
    assert_eq!(foreign.status(), StatusCode::UNAUTHORIZED);
    for id in ["0190d5d3-7c5e-7000-8000-000000000000", "bad%20id"] {
        let res = app.user("bob").get(&format!("/api/orders/{id}")).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{id}");
    }
}

async fn cancel_releases_the_ticket_once(flavor: Flavor) {
    let app = spawn(flavor).await;
    let cancelled = EventRecorder::start(&app.env.runtime, Subject::OrderCancelled).await;
    let ticket = app.ticket("Concert", json!(20)).await;
    let tid = ticket.as_str();
    let order = app.order_ok("bob", tid).await;
    let oid = order["id"].as_str().unwrap();
    let path = format!("/api/orders/{oid}");

    assert_eq!(
        app.user("carol").delete(&path).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.user("bob")
            .delete("/api/orders/0190d5d3-7c5e-7000-8000-000000000000")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let res = app.user("bob").delete(&path).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(res.bytes().await.unwrap().is_empty());
    let shown = app.get_order("bob", oid).await;
    assert_eq!(shown["status"], "cancelled");
    assert_eq!(shown["cancelReason"], "cancelled by buyer");
    assert_eq!(shown["version"], 1);

    let event: Value = serde_json::from_slice(&cancelled.next().await.payload).unwrap();
    assert_eq!(
        event,
        json!({"id": oid, "version": 1, "ticket": {"id": tid}})
    );
    app.wait_ticket_holder(tid, None).await;

    // Cancelling again changes nothing and publishes nothing.
    assert_eq!(
        app.user("bob").delete(&path).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get_order("bob", oid).await["version"], 1);
    cancelled.assert_quiet(Duration::from_millis(300)).await;

    // The ticket can be bought again.
    app.order_ok("carol", tid).await;
}

async fn payment_completes_and_completed_orders_cannot_be_cancelled(flavor: Flavor) {
    let app = spawn(flavor).await;
    let ticket = app.ticket("Concert", json!(20)).await;
    let order = app.order_ok("bob", &ticket).await;
    let oid = order["id"].as_str().unwrap();
    let payment = Envelope::new(&PaymentCreated {
        id: "pay1".into(),
        order_id: (oid.to_owned()).into(),
        stripe_id: "ch_1".into(),
    });
    app.env.runtime.bus.publish(&payment).await.unwrap();
    let done = app.wait_order_status("bob", oid, "complete").await;
    assert_eq!(done["version"], 1);

    let res = app.user("bob").delete(&format!("/api/orders/{oid}")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        errors(res).await[0]["message"],
        "Cannot cancel a completed order"
    );

    // Expiry of a paid order changes nothing.
    let expired = Envelope::new(&ExpirationComplete {
        order_id: (oid.to_owned()).into(),
    });
    app.env.runtime.bus.publish(&expired).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.get_order("bob", oid).await["status"], "complete");
}

async fn expiration_cancels_an_unpaid_order(flavor: Flavor) {
    // The expiration service fires at expiresAt plus the payment grace; an event that
    // arrives earlier than that (an older producer's schedule) waits until then.
    let app = spawn_with_ttl(flavor, Duration::from_millis(500)).await;
    let cancelled = EventRecorder::start(&app.env.runtime, Subject::OrderCancelled).await;
    let ticket = app.ticket("Concert", json!(20)).await;
    let tid = ticket.as_str();
    let order = app.order_ok("bob", tid).await;
    let oid = order["id"].as_str().unwrap();
    let expired = Envelope::new(&ExpirationComplete {
        order_id: (oid.to_owned()).into(),
    });
    app.env.runtime.bus.publish(&expired).await.unwrap();
    app.wait_order_status("bob", oid, "cancelled").await;
    let event: Value = serde_json::from_slice(&cancelled.next().await.payload).unwrap();
    assert_eq!(event["id"], json!(oid));
    app.wait_ticket_holder(tid, None).await;
    // Duplicate delivery: nothing more happens.
    app.env
        .runtime
        .bus
        .publish(&Envelope {
            id: uuid::Uuid::now_v7().to_string(),
            ..expired
        })
        .await
        .unwrap();
    cancelled.assert_quiet(Duration::from_millis(300)).await;
}

async fn an_expired_order_no_longer_holds_its_ticket(flavor: Flavor) {
    // The expiration event may be late or lost: the order stops holding at expiresAt
    // plus the payment grace — and not a moment before, so that a payment made just
    // before expiresAt still finds the ticket its own.
    let app = spawn_with_deadline(flavor, Duration::from_secs(2), Duration::from_secs(2)).await;
    let cancelled = EventRecorder::start(&app.env.runtime, Subject::OrderCancelled).await;
    let ticket = app.ticket("Concert", json!(20)).await;
    let tid = ticket.as_str();
    let first = app.order_ok("bob", tid).await;
    let reserved_until = parse_millis(first["expiresAt"].as_str().unwrap()).unwrap() + 2_000;
    let early = app.order("carol", tid).await;
    assert_eq!(early.status(), StatusCode::BAD_REQUEST);
    // Past expiresAt, within the grace: still bob's.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    if now_millis() < reserved_until - 200 {
        let within_grace = app.order("carol", tid).await;
        assert_eq!(within_grace.status(), StatusCode::BAD_REQUEST);
        let body: Value = within_grace.json().await.unwrap();
        assert_eq!(body["errors"][0]["message"], "Ticket is already reserved");
    }
    let wait = (reserved_until - now_millis()).max(0) as u64 + 100;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let second = app.order_ok("carol", tid).await;
    assert_eq!(
        app.get_order("bob", first["id"].as_str().unwrap()).await["cancelReason"],
        "expired"
    );
    let first_id = first["id"].as_str().unwrap();
    assert_eq!(app.get_order("bob", first_id).await["status"], "cancelled");
    let event: Value = serde_json::from_slice(&cancelled.next().await.payload).unwrap();
    assert_eq!(event["id"], json!(first_id));
    app.wait_ticket_holder(tid, Some(second["id"].as_str().unwrap()))
        .await;
}

async fn a_hundred_buyers_one_ticket_one_winner(flavor: Flavor) {
    let app = spawn(flavor).await;
    // A second orders replica on the same database and bus, as in a scaled deployment.
    let second_replica = TestServer::spawn(vec![ticketing_orders::mount(
        &app.env.runtime,
        &Default::default(),
    )
    .await
    .unwrap()])
    .await;
    let ticket = app.ticket("Hot", json!(99)).await;
    let tid = ticket;
    // Wait for both replicas to know the ticket (the same database, so one check).
    let probe = app.order("probe", &tid).await;
    assert_eq!(probe.status(), StatusCode::CREATED);
    let pid = probe.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.user("probe")
            .delete(&format!("/api/orders/{pid}"))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );

    let servers = [&app.server, &second_replica];
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(100));
    let attempts = (0..100).map(|i| {
        let buyer = app.buyer(servers[i % 2], i);
        let barrier = barrier.clone();
        let tid = tid.clone();
        async move {
            barrier.wait().await;
            post_order(&buyer, &tid).await
        }
    });
    let results = futures::future::join_all(attempts).await;
    let winners = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    let losers: Vec<_> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::BAD_REQUEST)
        .collect();
    assert_eq!(winners, 1, "{results:?}");
    assert_eq!(losers.len(), 99, "{results:?}");
    assert!(losers
        .iter()
        .all(|(_, b)| b["errors"][0]["message"] == "Ticket is already reserved"));
}

/// Many buyers on many tickets at once, interleaved: on PostgreSQL concurrent placements
/// share statements (batches holding several tickets, the same ticket twice, in any
/// order), and still each ticket has one winner, each winner one `order:created` with
/// its ticket's price, and every loser the reserved error.
async fn many_buyers_many_tickets_one_winner_each(flavor: Flavor) {
    const TICKETS: usize = 30;
    const BUYERS_EACH: usize = 4;
    let app = spawn(flavor).await;
    let created = EventRecorder::start(&app.env.runtime, Subject::OrderCreated).await;
    let mut tickets = Vec::new();
    for i in 0..TICKETS {
        let ticket = app.ticket(&format!("Show {i}"), json!(10 + i)).await;
        tickets.push(ticket);
    }
    let store = app.orders_store().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while query("SELECT id FROM tickets")
        .fetch_all(store.reader())
        .await
        .unwrap()
        .len()
        < TICKETS
    {
        assert!(
            Instant::now() < deadline,
            "the replica never heard of every ticket"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let attempts = TICKETS * BUYERS_EACH;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(attempts));
    let orders = (0..attempts).map(|i| {
        let tid = tickets[i % TICKETS].clone();
        let (buyer, barrier) = (app.buyer(&app.server, i), barrier.clone());
        async move {
            barrier.wait().await;
            let (status, body) = post_order(&buyer, &tid).await;
            (tid, status, body)
        }
    });
    let results = futures::future::join_all(orders).await;

    let mut winners = std::collections::HashMap::new();
    for (tid, status, body) in &results {
        match *status {
            StatusCode::CREATED => {
                assert_eq!(&body["ticket"]["id"], tid);
                assert!(
                    winners.insert(tid.clone(), body.clone()).is_none(),
                    "{results:?}"
                );
            }
            StatusCode::BAD_REQUEST => {
                assert_eq!(body["errors"][0]["message"], "Ticket is already reserved");
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(winners.len(), TICKETS, "{results:?}");

    let mut announced = std::collections::HashMap::new();
    for _ in 0..TICKETS {
        let event: Value = serde_json::from_slice(&created.next().await.payload).unwrap();
        let tid = event["ticket"]["id"].as_str().unwrap().to_owned();
        assert!(
            announced.insert(tid, event).is_none(),
            "a second order:created for a ticket"
        );
    }
    created.assert_quiet(Duration::from_millis(300)).await;
    for (tid, order) in &winners {
        let event = &announced[tid];
        assert_eq!(event["id"], order["id"]);
        assert_eq!(event["userId"], order["userId"]);
        assert_eq!(event["ticket"]["price"], order["ticket"]["price"]);
    }
}

fn ticket_event(id: &str, version: i64, title: &str) -> Envelope {
    if version == 0 {
        Envelope::new(&TicketCreated {
            id: id.into(),
            title: title.into(),
            price: Cents::new(1000 + version),
            user_id: "alice".into(),
            version,
            terms: Default::default(),
            refund: Default::default(),
        })
    } else {
        Envelope::new(&TicketUpdated {
            id: id.into(),
            title: title.into(),
            price: Cents::new(1000 + version),
            user_id: "alice".into(),
            version,
            order_id: None,
            terms: Default::default(),
            refund: Default::default(),
        })
    }
}

async fn replica_applies_versions_in_order_whatever_the_delivery(flavor: Flavor) {
    let app = spawn(flavor).await;
    let store = app.orders_store().await;
    let bus = &app.env.runtime.bus;
    let id = uuid::Uuid::now_v7().to_string();
    // Updates before the creation, out of order, with duplicates.
    let events: Vec<Envelope> = (0..=4)
        .map(|v| ticket_event(&id, v, &format!("v{v}")))
        .collect();
    for i in [3, 1, 4, 1, 2, 0, 3] {
        let e = &events[i];
        // A redelivery is a new message with the same event id; a republish a new id.
        bus.publish(&Envelope {
            id: uuid::Uuid::now_v7().to_string(),
            ..e.clone()
        })
        .await
        .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = query("SELECT title, price_cents, version FROM tickets WHERE id = $1")
            .bind(&id)
            .fetch_optional(store.reader())
            .await
            .unwrap();
        if let Some(row) = row {
            let version: i64 = row.get("version").unwrap();
            if version == 4 {
                assert_eq!(row.get::<String>("title").unwrap(), "v4");
                assert_eq!(row.get::<i64>("price_cents").unwrap(), 1004);
                break;
            }
        }
        assert!(Instant::now() < deadline, "replica never reached version 4");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // An old version delivered late is ignored.
    bus.publish(&Envelope {
        id: uuid::Uuid::now_v7().to_string(),
        ..events[2].clone()
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let row = query("SELECT title, version FROM tickets WHERE id = $1")
        .bind(&id)
        .fetch_one(store.reader())
        .await
        .unwrap();
    assert_eq!(row.get::<i64>("version").unwrap(), 4);
    assert_eq!(row.get::<String>("title").unwrap(), "v4");
}

/// Many tickets' events published at once reach the consumer in batches that share a
/// transaction (one statement for the lot on PostgreSQL): creations, updates ahead of
/// their predecessors, two versions of a ticket in one batch, duplicates — every
/// replica still ends at its last version.
async fn replica_applies_a_burst_of_events_for_many_tickets(flavor: Flavor) {
    let app = spawn(flavor).await;
    let store = app.orders_store().await;
    let bus = &app.env.runtime.bus;
    let ids: Vec<String> = (0..40).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let mut burst = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let events: Vec<Envelope> = (0..=3)
            .map(|v| ticket_event(id, v, &format!("{id} v{v}")))
            .collect();
        // In order for most; some updates ahead of the creation; duplicates.
        let order: &[usize] = match n % 4 {
            0 => &[0, 1, 2, 3],
            1 => &[0, 2, 1, 3, 3],
            2 => &[3, 0, 1, 1, 2],
            _ => &[0, 0, 1, 2, 3],
        };
        for &i in order {
            burst.push(Envelope {
                id: uuid::Uuid::now_v7().to_string(),
                ..events[i].clone()
            });
        }
    }
    for event in &burst {
        bus.publish(event).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = query("SELECT id, title, price_cents, version FROM tickets")
            .fetch_all(store.reader())
            .await
            .unwrap();
        let done = rows
            .iter()
            .filter(|row| row.get::<i64>("version").unwrap() == 3)
            .count();
        if done == ids.len() {
            for row in &rows {
                let id: String = row.get("id").unwrap();
                assert_eq!(row.get::<String>("title").unwrap(), format!("{id} v3"));
                assert_eq!(row.get::<i64>("price_cents").unwrap(), 1003);
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {} replicas at version 3",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn openapi_covers_every_orders_route(flavor: Flavor) {
    let app = spawn(flavor).await;
    let doc: Value = app.api.get("/api/openapi.json").await.json().await.unwrap();
    let paths = &doc["paths"];
    for method in ["get", "post"] {
        assert!(
            paths["/api/orders"].get(method).is_some(),
            "{method} /api/orders"
        );
    }
    for method in ["get", "delete"] {
        assert!(
            paths["/api/orders/{orderId}"].get(method).is_some(),
            "{method} /api/orders/{{orderId}}"
        );
    }
    for method in ["get", "post"] {
        assert!(
            paths["/api/orders/{orderId}/cancellation"]
                .get(method)
                .is_some(),
            "{method} /api/orders/{{orderId}}/cancellation"
        );
    }
    assert!(doc["components"]["schemas"]["CancellationBody"].is_object());
}

flavor_tests!(
    every_route_requires_a_session,
    create_validates_the_ticket_id,
    create_reserves_the_ticket_and_publishes_order_created,
    list_and_show_only_the_callers_orders,
    cancel_releases_the_ticket_once,
    payment_completes_and_completed_orders_cannot_be_cancelled,
    expiration_cancels_an_unpaid_order,
    an_expired_order_no_longer_holds_its_ticket,
    a_hundred_buyers_one_ticket_one_winner,
    many_buyers_many_tickets_one_winner_each,
    replica_applies_versions_in_order_whatever_the_delivery,
    replica_applies_a_burst_of_events_for_many_tickets,
    openapi_covers_every_orders_route,
);
