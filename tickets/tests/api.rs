//! The tickets contract (`../shared/spec/api.md` §tickets) over real HTTP, on every
//! storage backend and event bus, with the events it publishes and consumes.

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use ticketing_bus::Envelope;
use ticketing_contracts::events::{
    OrderCancelled, OrderCreated, OrderCreatedTicket, Subject, TicketRef,
};
use ticketing_contracts::money::Cents;
use ticketing_kit::flavor_tests;
use ticketing_kit::testing::{errors, EventRecorder, Flavor, TestApp, TestEnv};

/// The tickets service alone.
struct App(TestApp);

impl std::ops::Deref for App {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.0
    }
}

async fn spawn(flavor: Flavor) -> App {
    let env = TestEnv::with_flavor(flavor).await;
    let tickets = ticketing_tickets::mount(&env.runtime)
        .await
        .expect("mount tickets");
    App(TestApp::spawn(env, vec![tickets]).await)
}

impl App {
    async fn create(&self, user: &str, body: Value) -> Response {
        self.as_user(user).post_json("/api/tickets", body).await
    }

    async fn update(&self, user: &str, id: &str, body: Value) -> Response {
        self.as_user(user)
            .put_json(&format!("/api/tickets/{id}"), body)
            .await
    }

    async fn get(&self, path: &str) -> Response {
        self.api.get(path).await
    }

    async fn ticket(&self, user: &str, title: &str, price: Value) -> Value {
        let res = self
            .create(user, json!({"title": title, "price": price}))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json().await.unwrap()
    }
}

fn fields(errors: &[Value]) -> Vec<&str> {
    errors.iter().filter_map(|e| e["field"].as_str()).collect()
}

async fn create_requires_a_session(flavor: Flavor) {
    let app = spawn(flavor).await;
    let res = app
        .api
        .post_json("/api/tickets", json!({"title": "t", "price": 10}))
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(errors(res).await[0]["message"], "User not authorized.");
}

async fn create_validates_title_and_price(flavor: Flavor) {
    let app = spawn(flavor).await;
    for (body, expected) in [
        (json!({"title": "", "price": 10}), vec!["title"]),
        (json!({"title": "   ", "price": 10}), vec!["title"]),
        (json!({"price": 10}), vec!["title"]),
        (
            json!({"title": "x".repeat(201), "price": 10}),
            vec!["title"],
        ),
        (json!({"title": "t", "price": -10}), vec!["price"]),
        (json!({"title": "t", "price": 0}), vec!["price"]),
        (json!({"title": "t", "price": 10.999}), vec!["price"]),
        (json!({"title": "t", "price": 1000000.01}), vec!["price"]),
        (json!({"title": "t", "price": "abc"}), vec!["price"]),
        (json!({"title": "t"}), vec!["price"]),
        (json!({}), vec!["title", "price"]),
        (json!({"title": 5, "price": true}), vec!["title", "price"]),
    ] {
        let res = app.create("alice", body.clone()).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(fields(&errors(res).await), expected, "{body}");
    }
}

async fn create_stores_the_ticket_and_publishes_ticket_created(flavor: Flavor) {
    let app = spawn(flavor).await;
    let created = EventRecorder::start(&app.env.runtime, Subject::TicketCreated).await;
    let res = app
        .create("alice", json!({"title": "  Concert  ", "price": "10.99"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let ticket: Value = res.json().await.unwrap();
    assert_eq!(ticket["title"], "Concert");
    assert_eq!(ticket["price"], json!(10.99));
    assert_eq!(ticket["userId"], "alice");
    assert_eq!(ticket["version"], 0);
    assert!(ticket.get("orderId").is_none());

    let event = created.next().await;
    let payload: Value = serde_json::from_slice(&event.payload).unwrap();
    assert_eq!(payload["id"], ticket["id"]);
    assert_eq!(payload["title"], "Concert");
    assert_eq!(payload["price"], json!(10.99));
    assert_eq!(payload["userId"], "alice");
    assert_eq!(payload["version"], 0);

    let shown: Value = app
        .get(&format!("/api/tickets/{}", ticket["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown, ticket);
}

async fn events_carry_the_callers_trace(flavor: Flavor) {
    let app = spawn(flavor).await;
    let created = EventRecorder::start(&app.env.runtime, Subject::TicketCreated).await;
    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let res = app
        .as_user("alice")
        .request(Method::POST, "/api/tickets")
        .header("traceparent", caller)
        .json(&json!({"title": "Traced", "price": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let answered = res.headers()["traceparent"].to_str().unwrap().to_owned();
    assert!(
        answered.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{answered}"
    );
    let event = created.next().await;
    let carried = event.traceparent.expect("traceparent header on the event");
    assert!(
        carried.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{carried}"
    );
    assert_ne!(carried, caller);
}

async fn show_answers_404_for_unknown_and_malformed_ids(flavor: Flavor) {
    let app = spawn(flavor).await;
    for id in [
        "0190d5d3-7c5e-7000-8000-000000000000",
        "not a valid id!",
        "x".repeat(65).as_str(),
    ] {
        let res = app.get(&format!("/api/tickets/{}", urlencode(id))).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{id}");
        assert_eq!(errors(res).await[0]["message"], "Not found.");
    }
}

fn urlencode(s: &str) -> String {
    s.replace(' ', "%20").replace('!', "%21")
}

async fn list_pages_through_available_tickets_oldest_first(flavor: Flavor) {
    let app = spawn(flavor).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.ticket("alice", &format!("t{i}"), json!(i + 1)).await["id"].clone());
    }
    let all: Vec<Value> = app.get("/api/tickets").await.json().await.unwrap();
    assert_eq!(all.iter().map(|t| t["id"].clone()).collect::<Vec<_>>(), ids);

    let first = app.get("/api/tickets?limit=2").await;
    let cursor = first.headers()["x-next-cursor"]
        .to_str()
        .unwrap()
        .to_owned();
    let page: Vec<Value> = first.json().await.unwrap();
    assert_eq!(page.len(), 2);
    let second: Vec<Value> = app
        .get(&format!("/api/tickets?limit=2&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second[0]["id"], ids[2]);
    assert_eq!(second[1]["id"], ids[3]);

    for bad in ["limit=0", "limit=1001", "limit=abc", "cursor=%21%21"] {
        let res = app.get(&format!("/api/tickets?{bad}")).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

/// The listing is served from memory between writes: every write shows in the next
/// listing at once, whether a request or an event made it.
async fn the_listing_shows_every_write_at_once(flavor: Flavor) {
    let app = spawn(flavor).await;
    let titles = |listed: Vec<Value>| -> Vec<String> {
        listed
            .iter()
            .map(|t| t["title"].as_str().unwrap().to_owned())
            .collect()
    };
    let listing = || async { titles(app.get("/api/tickets").await.json().await.unwrap()) };
    assert!(listing().await.is_empty());
    let first = app.ticket("alice", "First", json!(10)).await;
    assert_eq!(listing().await, ["First"]);
    app.ticket("alice", "Second", json!(10)).await;
    assert_eq!(listing().await, ["First", "Second"]);
    let id = first["id"].as_str().unwrap();
    let res = app
        .update("alice", id, json!({"title": "Renamed", "price": 11}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(listing().await, ["Renamed", "Second"]);

    let order = uuid::Uuid::now_v7().to_string();
    app.env
        .runtime
        .bus
        .publish(&order_created(&order, id))
        .await
        .unwrap();
    eventually_reserved_by(&app, id, Some(&order)).await;
    assert_eq!(listing().await, ["Second"]);
}

async fn update_checks_in_the_contract_order(flavor: Flavor) {
    let app = spawn(flavor).await;
    let ticket = app.ticket("alice", "Concert", json!(20)).await;
    let id = ticket["id"].as_str().unwrap();
    let valid = json!({"title": "New", "price": 30});

    let anonymous = app
        .api
        .put_json(&format!("/api/tickets/{id}"), valid.clone())
        .await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let invalid = app
        .update("alice", id, json!({"title": "", "price": -1}))
        .await;
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
    assert_eq!(fields(&errors(invalid).await), ["title", "price"]);

    let unknown = app
        .update(
            "alice",
            "0190d5d3-7c5e-7000-8000-000000000000",
            valid.clone(),
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    let stranger = app.update("mallory", id, valid.clone()).await;
    assert_eq!(stranger.status(), StatusCode::UNAUTHORIZED);

    let unchanged: Value = app
        .get(&format!("/api/tickets/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(unchanged, ticket);
}

async fn update_bumps_the_version_and_publishes_ticket_updated(flavor: Flavor) {
    let app = spawn(flavor).await;
    let updated = EventRecorder::start(&app.env.runtime, Subject::TicketUpdated).await;
    let ticket = app.ticket("alice", "Concert", json!(20)).await;
    let id = ticket["id"].as_str().unwrap();
    let res = app
        .update("alice", id, json!({"title": "New title", "price": 100.5}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["title"], "New title");
    assert_eq!(body["price"], json!(100.5));
    assert_eq!(body["version"], 1);

    let event = updated.next().await;
    let payload: Value = serde_json::from_slice(&event.payload).unwrap();
    assert_eq!(payload["version"], 1);
    assert_eq!(payload["title"], "New title");
    assert!(payload.get("orderId").is_none());
}

fn order_created(order_id: &str, ticket_id: &str) -> Envelope {
    order_created_units(order_id, ticket_id, 1)
}

fn order_created_units(order_id: &str, ticket_id: &str, quantity: i64) -> Envelope {
    Envelope::new(&OrderCreated {
        id: (order_id.to_owned()).into(),
        status: ticketing_contracts::OrderStatus::Created,
        user_id: "bob".into(),
        expires_at: "2030-01-01T00:00:00.000Z".into(),
        reserved_until: None,
        version: 0,
        ticket: OrderCreatedTicket {
            id: (ticket_id.to_owned()).into(),
            price: Cents::new(2000),
        },
        quantity,
        waitlist_entry_id: None,
    })
}

fn order_cancelled(order_id: &str, ticket_id: &str) -> Envelope {
    Envelope::new(&OrderCancelled {
        id: (order_id.to_owned()).into(),
        version: 1,
        ticket: TicketRef {
            id: (ticket_id.to_owned()).into(),
        },
        cancel_reason: None,
    })
}

async fn show(app: &App, id: &str) -> Value {
    app.get(&format!("/api/tickets/{id}"))
        .await
        .json()
        .await
        .unwrap()
}

async fn eventually_reserved_by(app: &App, id: &str, order: Option<&str>) -> Value {
    app.api.wait_ticket_held_by(id, order).await
}

async fn order_events_reserve_and_release_the_ticket(flavor: Flavor) {
    let app = spawn(flavor).await;
    let updated = EventRecorder::start(&app.env.runtime, Subject::TicketUpdated).await;
    let ticket = app.ticket("alice", "Concert", json!(20)).await;
    let id = ticket["id"].as_str().unwrap();
    let order = uuid::Uuid::now_v7().to_string();
    let bus = &app.env.runtime.bus;

    let created = order_created(&order, id);
    bus.publish(&created).await.unwrap();
    let reserved = eventually_reserved_by(&app, id, Some(&order)).await;
    assert_eq!(reserved["version"], 1);
    let event: Value = serde_json::from_slice(&updated.next().await.payload).unwrap();
    assert_eq!(event["orderId"], json!(order));
    assert_eq!(event["version"], 1);

    // Reserved: the owner can no longer edit it, and it leaves the listing.
    let res = app
        .update("alice", id, json!({"title": "x", "price": 1}))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        errors(res).await[0]["message"],
        "Cannot edit a reserved ticket"
    );
    let listed: Vec<Value> = app.get("/api/tickets").await.json().await.unwrap();
    assert!(listed.is_empty());

    // A redelivered order:created changes nothing.
    bus.publish(&Envelope {
        id: uuid::Uuid::now_v7().to_string(),
        ..created.clone()
    })
    .await
    .unwrap();

    // A cancellation of some other order does not release it.
    let other = uuid::Uuid::now_v7().to_string();
    bus.publish(&order_cancelled(&other, id)).await.unwrap();
    bus.publish(&order_cancelled(&order, id)).await.unwrap();
    let released = eventually_reserved_by(&app, id, None).await;
    assert_eq!(released["version"], 2);
    let event: Value = serde_json::from_slice(&updated.next().await.payload).unwrap();
    assert_eq!(event["version"], 2);
    assert!(event.get("orderId").is_none());
}

async fn late_events_of_an_older_order_never_steal_the_ticket(flavor: Flavor) {
    let app = spawn(flavor).await;
    let ticket = app.ticket("alice", "Concert", json!(20)).await;
    let id = ticket["id"].as_str().unwrap();
    let older = uuid::Uuid::now_v7().to_string();
    let newer = uuid::Uuid::now_v7().to_string();
    let bus = &app.env.runtime.bus;

    // The newer order's creation overtakes the older order's events.
    bus.publish(&order_created(&newer, id)).await.unwrap();
    eventually_reserved_by(&app, id, Some(&newer)).await;
    bus.publish(&order_created(&older, id)).await.unwrap();
    bus.publish(&order_cancelled(&older, id)).await.unwrap();
    // Let everything drain: the newer order still holds the ticket.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(show(&app, id).await["orderId"], json!(newer));

    // A cancellation that overtakes its own creation leaves the ticket free.
    let other = app.ticket("alice", "Play", json!(30)).await;
    let other_id = other["id"].as_str().unwrap();
    let withdrawn = uuid::Uuid::now_v7().to_string();
    bus.publish(&order_cancelled(&withdrawn, other_id))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    bus.publish(&order_created(&withdrawn, other_id))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let after = show(&app, other_id).await;
    assert!(after.get("orderId").is_none(), "{after}");
    assert_eq!(after["version"], 0);
}

/// An order's `order:created` and `order:cancelled` travel on different subjects, so
/// their listeners run at the same time (on PostgreSQL, in concurrent transactions):
/// whichever commits first, the ticket ends free. Many pairs, published together, so
/// that some of them meet.
async fn a_cancellation_racing_its_creation_leaves_the_ticket_free(flavor: Flavor) {
    let app = spawn(flavor).await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let ticket = app.ticket("alice", &format!("Seat {i}"), json!(20)).await;
        ids.push(ticket["id"].as_str().unwrap().to_owned());
    }
    let orders: Vec<String> = ids
        .iter()
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let created: Vec<Envelope> = ids
        .iter()
        .zip(&orders)
        .map(|(id, order)| order_created(order, id))
        .collect();
    let cancelled: Vec<Envelope> = ids
        .iter()
        .zip(&orders)
        .map(|(id, order)| order_cancelled(order, id))
        .collect();
    let bus = &app.env.runtime.bus;
    let (a, b) = tokio::join!(bus.publish_batch(&created), bus.publish_batch(&cancelled));
    a.unwrap();
    b.unwrap();
    app.env
        .wait_handled(
            ticketing_tickets::SERVICE,
            &ticketing_tickets::MIGRATIONS,
            2 * ids.len() as i64,
        )
        .await;
    for id in &ids {
        let ticket = show(&app, id).await;
        assert!(ticket.get("orderId").is_none(), "{ticket}");
    }
}

/// Orders published together are reserved in batches (one statement for the lot on
/// PostgreSQL), two orders for one ticket in the same burst included: each ticket ends
/// held by its newest order.
async fn a_burst_of_orders_reserves_each_ticket_for_its_newest_order(flavor: Flavor) {
    let app = spawn(flavor).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let ticket = app.ticket("alice", &format!("Seat {i}"), json!(20)).await;
        ids.push(ticket["id"].as_str().unwrap().to_owned());
    }
    let first: Vec<String> = ids
        .iter()
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let second: Vec<String> = ids
        .iter()
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    // Every third ticket gets a newer order too, published before or after the first.
    let mut burst = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        match i % 6 {
            0 => burst.extend([order_created(&first[i], id), order_created(&second[i], id)]),
            3 => burst.extend([order_created(&second[i], id), order_created(&first[i], id)]),
            _ => burst.push(order_created(&first[i], id)),
        }
    }
    app.env.runtime.bus.publish_batch(&burst).await.unwrap();
    app.env
        .wait_handled(
            ticketing_tickets::SERVICE,
            &ticketing_tickets::MIGRATIONS,
            burst.len() as i64,
        )
        .await;
    for (i, id) in ids.iter().enumerate() {
        let ticket = show(&app, id).await;
        let newest = if i % 3 == 0 { &second[i] } else { &first[i] };
        assert_eq!(ticket["orderId"], json!(newest), "{ticket}");
        // One reservation per ticket with one order. With two: one or two, whatever the
        // order they were published in — a statement that reserves for both moves the
        // row for one of them, and the other is then reserved (the newer) or refused.
        let version = ticket["version"].as_i64().unwrap();
        let versions = if i % 3 == 0 { 1..=2 } else { 1..=1 };
        assert!(versions.contains(&version), "{ticket}");
    }
}

// Issue 30: a listing's units and sale terms.

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

fn new_order() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Wait until the service has handled `n` order events in all.
async fn settle(app: &App, n: i64) {
    app.env
        .wait_handled(
            ticketing_tickets::SERVICE,
            &ticketing_tickets::MIGRATIONS,
            n,
        )
        .await;
}

async fn a_ticket_listed_the_seeds_way_carries_no_terms(flavor: Flavor) {
    let app = spawn(flavor).await;
    let created = EventRecorder::start(&app.env.runtime, Subject::TicketCreated).await;
    let updated = EventRecorder::start(&app.env.runtime, Subject::TicketUpdated).await;
    let seed_keys = ["id", "price", "title", "userId", "version"];
    let ticket = app.ticket("alice", "Concert", json!(20)).await;
    assert_eq!(keys(&ticket), seed_keys);
    let id = ticket["id"].as_str().unwrap();
    assert_eq!(keys(&show(&app, id).await), seed_keys);
    let event: Value = serde_json::from_slice(&created.next().await.payload).unwrap();
    assert_eq!(keys(&event), seed_keys);

    let res = app
        .update("alice", id, json!({"title": "Renamed", "price": 21}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(keys(&res.json().await.unwrap()), seed_keys);
    let event: Value = serde_json::from_slice(&updated.next().await.payload).unwrap();
    assert_eq!(keys(&event), seed_keys);

    // Its order still reserves it, with one unit held.
    let order = new_order();
    let bus = &app.env.runtime.bus;
    bus.publish(&order_created(&order, id)).await.unwrap();
    let reserved = eventually_reserved_by(&app, id, Some(&order)).await;
    assert_eq!(
        keys(&reserved),
        ["id", "orderId", "price", "title", "userId", "version"]
    );
    // Reserved: terms cannot be added either.
    let res = app
        .update(
            "alice",
            id,
            json!({"title": "x", "price": 1, "quantity": 5}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        errors(res).await[0]["message"],
        "Cannot edit a reserved ticket"
    );
}

async fn terms_are_resolved_shown_and_published(flavor: Flavor) {
    let app = spawn(flavor).await;
    let created = EventRecorder::start(&app.env.runtime, Subject::TicketCreated).await;
    let res = app
        .create(
            "alice",
            json!({"title": "Drop", "price": 20, "quantity": 5}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let ticket: Value = res.json().await.unwrap();
    assert_eq!(ticket["quantity"], 5);
    assert_eq!(ticket["maxPerOrder"], 5);
    assert_eq!(ticket["maxPerAccount"], 5);
    assert_eq!(ticket["available"], 5);
    assert!(ticket.get("onSaleAt").is_none(), "{ticket}");
    assert!(ticket.get("orderId").is_none(), "{ticket}");
    assert_eq!(show(&app, ticket["id"].as_str().unwrap()).await, ticket);
    let event: Value = serde_json::from_slice(&created.next().await.payload).unwrap();
    assert_eq!(
        keys(&event),
        [
            "id",
            "maxPerAccount",
            "maxPerOrder",
            "price",
            "quantity",
            "title",
            "userId",
            "version"
        ]
    );
    assert_eq!(event["quantity"], 5);

    // Defaults: at most 10 per order, per account as per order; the time in UTC.
    let ticket: Value = app
        .create(
            "alice",
            json!({"title": "Big", "price": 20, "quantity": 500,
                   "onSaleAt": "2030-01-01T10:00:00+01:00"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ticket["maxPerOrder"], 10);
    assert_eq!(ticket["maxPerAccount"], 10);
    assert_eq!(ticket["onSaleAt"], "2030-01-01T09:00:00.000Z");
    let event: Value = serde_json::from_slice(&created.next().await.payload).unwrap();
    assert_eq!(event["onSaleAt"], "2030-01-01T09:00:00.000Z");
    assert!(event.get("available").is_none(), "{event}");

    // A cap alone counts the listing, with one unit.
    let ticket: Value = app
        .create(
            "alice",
            json!({"title": "One", "price": 20, "maxPerOrder": 1}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            &ticket["quantity"],
            &ticket["maxPerOrder"],
            &ticket["maxPerAccount"],
            &ticket["available"]
        ),
        (&json!(1), &json!(1), &json!(1), &json!(1))
    );

    let ticket: Value = app
        .create(
            "alice",
            json!({"title": "Caps", "price": 20, "quantity": 50, "maxPerOrder": 4, "maxPerAccount": 6}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&ticket["maxPerOrder"], &ticket["maxPerAccount"]),
        (&json!(4), &json!(6))
    );
}

async fn bad_terms_are_refused_field_by_field(flavor: Flavor) {
    let app = spawn(flavor).await;
    let quantity = "Quantity must be a whole number from 1 to 100000";
    let on_sale = "On-sale time must be an ISO-8601 date and time";
    let cases: Vec<(Value, Vec<(&str, &str)>)> = vec![
        (json!({"quantity": 0}), vec![("quantity", quantity)]),
        (json!({"quantity": 100001}), vec![("quantity", quantity)]),
        (json!({"quantity": -3}), vec![("quantity", quantity)]),
        (json!({"quantity": 2.5}), vec![("quantity", quantity)]),
        (json!({"quantity": "5"}), vec![("quantity", quantity)]),
        (json!({"quantity": true}), vec![("quantity", quantity)]),
        (
            json!({"quantity": 5, "maxPerOrder": 6}),
            vec![(
                "maxPerOrder",
                "Max per order must be a whole number from 1 to 5",
            )],
        ),
        (
            json!({"quantity": 5, "maxPerOrder": 0}),
            vec![(
                "maxPerOrder",
                "Max per order must be a whole number from 1 to 5",
            )],
        ),
        (
            json!({"maxPerOrder": 2}),
            vec![(
                "maxPerOrder",
                "Max per order must be a whole number from 1 to 1",
            )],
        ),
        (
            json!({"quantity": 5, "maxPerOrder": 3, "maxPerAccount": 2}),
            vec![(
                "maxPerAccount",
                "Max per account must be a whole number from 3 to 5",
            )],
        ),
        (
            json!({"quantity": 5, "maxPerAccount": 6}),
            vec![(
                "maxPerAccount",
                "Max per account must be a whole number from 5 to 5",
            )],
        ),
        (
            json!({"quantity": 5, "onSaleAt": "tomorrow"}),
            vec![("onSaleAt", on_sale)],
        ),
        (
            json!({"quantity": 5, "onSaleAt": "2030-01-01"}),
            vec![("onSaleAt", on_sale)],
        ),
        (
            json!({"quantity": 5, "onSaleAt": 1893456000000i64}),
            vec![("onSaleAt", on_sale)],
        ),
        (
            json!({"title": "", "quantity": "x", "maxPerOrder": 2.5, "maxPerAccount": 0, "onSaleAt": 1}),
            vec![
                ("title", "Title is required"),
                ("quantity", quantity),
                (
                    "maxPerOrder",
                    "Max per order must be a whole number from 1 to 100000",
                ),
                (
                    "maxPerAccount",
                    "Max per account must be a whole number from 1 to 100000",
                ),
                ("onSaleAt", on_sale),
            ],
        ),
    ];
    let ticket = app.ticket("alice", "Concert", json!(20)).await;
    let id = ticket["id"].as_str().unwrap();
    for (terms, expected) in cases {
        let mut body = json!({"title": "Drop", "price": 20});
        body.as_object_mut()
            .unwrap()
            .extend(terms.as_object().unwrap().clone());
        for res in [
            app.create("alice", body.clone()).await,
            app.update("alice", id, body.clone()).await,
        ] {
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
            let errors = errors(res).await;
            let got: Vec<(&str, &str)> = errors
                .iter()
                .map(|e| (e["field"].as_str().unwrap(), e["message"].as_str().unwrap()))
                .collect();
            assert_eq!(got, expected, "{body}");
        }
    }
    // Nothing was listed or changed.
    let listed: Vec<Value> = app.get("/api/tickets").await.json().await.unwrap();
    assert_eq!(listed, [ticket]);
}

async fn an_update_keeps_or_changes_the_terms(flavor: Flavor) {
    let app = spawn(flavor).await;
    let updated = EventRecorder::start(&app.env.runtime, Subject::TicketUpdated).await;
    let ticket: Value = app
        .create(
            "alice",
            json!({"title": "Drop", "price": 20, "quantity": 8, "maxPerOrder": 4,
                   "maxPerAccount": 6, "onSaleAt": "2030-01-01T09:00:00Z"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = ticket["id"].as_str().unwrap();

    // The seed's client sends title and price only: the terms stay.
    let res = app
        .update("alice", id, json!({"title": "Drop!", "price": "25"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["version"], 1);
    for key in [
        "quantity",
        "maxPerOrder",
        "maxPerAccount",
        "onSaleAt",
        "available",
    ] {
        assert_eq!(body[key], ticket[key], "{key}");
    }
    let event: Value = serde_json::from_slice(&updated.next().await.payload).unwrap();
    assert_eq!(event["quantity"], 8);
    assert_eq!(event["maxPerAccount"], 6);
    assert_eq!(event["onSaleAt"], "2030-01-01T09:00:00.000Z");

    // A lower quantity clamps the caps not given; null puts it on sale now.
    let body: Value = app
        .update(
            "alice",
            id,
            json!({"title": "Drop", "price": 20, "quantity": 5, "onSaleAt": null}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            &body["quantity"],
            &body["maxPerOrder"],
            &body["maxPerAccount"],
            &body["available"]
        ),
        (&json!(5), &json!(4), &json!(5), &json!(5))
    );
    assert!(body.get("onSaleAt").is_none(), "{body}");
    let event: Value = serde_json::from_slice(&updated.next().await.payload).unwrap();
    assert!(event.get("onSaleAt").is_none(), "{event}");
    assert_eq!(event["quantity"], 5);

    // Terms given to a ticket listed the seed's way count it.
    let seed = app.ticket("alice", "Seed", json!(10)).await;
    let seed_id = seed["id"].as_str().unwrap();
    let body: Value = app
        .update(
            "alice",
            seed_id,
            json!({"title": "Seed", "price": 10, "onSaleAt": "2030-01-01T00:00:00.000Z"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["quantity"], 1);
    assert_eq!(body["available"], 1);
    assert_eq!(body["onSaleAt"], "2030-01-01T00:00:00.000Z");

    // Only the owner.
    let res = app
        .update(
            "mallory",
            id,
            json!({"title": "x", "price": 1, "quantity": 9}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

async fn orders_hold_units_once_whatever_the_order_of_their_events(flavor: Flavor) {
    let app = spawn(flavor).await;
    let ticket: Value = app
        .create(
            "alice",
            json!({"title": "Drop", "price": 20, "quantity": 5}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = ticket["id"].as_str().unwrap();
    let updated = EventRecorder::start(&app.env.runtime, Subject::TicketUpdated).await;
    let bus = &app.env.runtime.bus;
    let available = || async { show(&app, id).await["available"].clone() };

    let first = new_order();
    let created = order_created_units(&first, id, 2);
    bus.publish(&created).await.unwrap();
    settle(&app, 1).await;
    assert_eq!(available().await, 3);
    // A duplicate (a new envelope, the same order) holds nothing more.
    bus.publish(&Envelope {
        id: new_order(),
        ..created.clone()
    })
    .await
    .unwrap();
    settle(&app, 2).await;
    assert_eq!(available().await, 3);

    // A cancellation that overtakes its creation: the creation holds nothing.
    let withdrawn = new_order();
    bus.publish(&order_cancelled(&withdrawn, id)).await.unwrap();
    settle(&app, 3).await;
    bus.publish(&order_created_units(&withdrawn, id, 2))
        .await
        .unwrap();
    settle(&app, 4).await;
    assert_eq!(available().await, 3);

    // A counted listing's orders change neither its version nor its order, and
    // publish nothing.
    let shown = show(&app, id).await;
    assert_eq!(shown["version"], 0);
    assert!(shown.get("orderId").is_none(), "{shown}");
    updated
        .assert_quiet(std::time::Duration::from_millis(300))
        .await;

    // Not below what orders hold; above is fine while they hold it.
    let res = app
        .update(
            "alice",
            id,
            json!({"title": "Drop", "price": 20, "quantity": 1}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let errors = errors(res).await;
    assert_eq!(errors[0]["field"], "quantity");
    assert_eq!(errors[0]["message"], "Cannot lower quantity below 2");
    let res = app
        .update(
            "alice",
            id,
            json!({"title": "Drop", "price": 20, "quantity": 2}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["available"], 0);
    let res = app
        .update(
            "alice",
            id,
            json!({"title": "Drop", "price": 20, "quantity": 10}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["available"], 8);

    // Cancelled (twice): its units are back, once.
    bus.publish(&order_cancelled(&first, id)).await.unwrap();
    bus.publish(&order_cancelled(&first, id)).await.unwrap();
    settle(&app, 6).await;
    assert_eq!(available().await, 10);

    // Released holds are pruned like the memory of cancelled orders; held ones stay.
    let held = new_order();
    bus.publish(&order_created_units(&held, id, 4))
        .await
        .unwrap();
    settle(&app, 7).await;
    let store = ticketing_store::Store::open(
        &app.env
            .runtime
            .location(ticketing_tickets::SERVICE)
            .unwrap(),
        &ticketing_tickets::MIGRATIONS,
    )
    .await
    .unwrap();
    let (table, column, key) = ticketing_tickets::RELEASED_HOLDS;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let pruned = ticketing_store::retention::prune_older_than(
        &store,
        table,
        column,
        key,
        std::time::Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!(pruned, 2, "the first order's and the withdrawn one's");
    let left: Vec<String> = ticketing_store::query("SELECT order_id FROM ticket_holds")
        .scalars(store.reader())
        .await
        .unwrap();
    assert_eq!(left, [held]);
    assert_eq!(available().await, 6);
}

async fn the_listing_shows_counted_listings_while_units_are_left(flavor: Flavor) {
    let app = spawn(flavor).await;
    let titles = || async {
        let listed: Vec<Value> = app.get("/api/tickets").await.json().await.unwrap();
        listed
            .iter()
            .map(|t| t["title"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let pair: Value = app
        .create(
            "alice",
            json!({"title": "Pair", "price": 20, "quantity": 2}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = pair["id"].as_str().unwrap();
    app.ticket("alice", "Single", json!(20)).await;
    assert_eq!(titles().await, ["Pair", "Single"]);
    let bus = &app.env.runtime.bus;
    let (one, two) = (new_order(), new_order());
    bus.publish(&order_created(&one, id)).await.unwrap();
    settle(&app, 1).await;
    let listed: Vec<Value> = app.get("/api/tickets").await.json().await.unwrap();
    assert_eq!(listed[0]["available"], 1);
    bus.publish(&order_created(&two, id)).await.unwrap();
    settle(&app, 2).await;
    assert_eq!(titles().await, ["Single"]);
    bus.publish(&order_cancelled(&one, id)).await.unwrap();
    settle(&app, 3).await;
    assert_eq!(titles().await, ["Pair", "Single"]);
}

/// A burst mixing listings of both kinds (one statement for the lot on PostgreSQL),
/// with an order twice in it: the seed's tickets reserved, the units counted once.
async fn a_burst_of_orders_counts_units_and_reserves_single_tickets(flavor: Flavor) {
    let app = spawn(flavor).await;
    let counted: Value = app
        .create(
            "alice",
            json!({"title": "Drop", "price": 20, "quantity": 100}),
        )
        .await
        .json()
        .await
        .unwrap();
    let counted = counted["id"].as_str().unwrap().to_owned();
    let mut singles = Vec::new();
    for i in 0..5 {
        let ticket = app.ticket("alice", &format!("Seat {i}"), json!(20)).await;
        singles.push(ticket["id"].as_str().unwrap().to_owned());
    }
    let updated = EventRecorder::start(&app.env.runtime, Subject::TicketUpdated).await;
    let mut burst = Vec::new();
    let mut reserved = Vec::new();
    for (i, single) in singles.iter().enumerate() {
        let order = new_order();
        burst.push(order_created(&order, single));
        reserved.push(order);
        burst.push(order_created_units(&new_order(), &counted, i as i64 + 1));
    }
    // 1 + 2 + 3 + 4 + 5 units, and the first order of 3 again.
    burst.push(burst[5].clone());
    let repeated = Envelope {
        id: new_order(),
        ..burst[5].clone()
    };
    burst.push(repeated);
    app.env.runtime.bus.publish_batch(&burst).await.unwrap();
    settle(&app, burst.len() as i64 - 1).await;
    assert_eq!(show(&app, &counted).await["available"], 85);
    for (single, order) in singles.iter().zip(&reserved) {
        let ticket = show(&app, single).await;
        assert_eq!(ticket["orderId"], json!(order), "{ticket}");
        assert_eq!(ticket["version"], 1, "{ticket}");
    }
    // One ticket:updated per seed's ticket, none for the counted listing.
    for _ in &singles {
        let event: Value = serde_json::from_slice(&updated.next().await.payload).unwrap();
        assert_ne!(event["id"], json!(counted));
    }
    updated
        .assert_quiet(std::time::Duration::from_millis(300))
        .await;
}

async fn openapi_covers_every_tickets_route(flavor: Flavor) {
    let app = spawn(flavor).await;
    let doc: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    let paths = &doc["paths"];
    for method in ["get", "post"] {
        assert!(
            paths["/api/tickets"].get(method).is_some(),
            "{method} /api/tickets"
        );
    }
    for method in ["get", "put"] {
        assert!(
            paths["/api/tickets/{id}"].get(method).is_some(),
            "{method} /api/tickets/{{id}}"
        );
    }
    // The terms' refusals are documented with their fields.
    let create = paths["/api/tickets"]["post"]["responses"]["400"]["description"].to_string();
    for field in ["quantity", "maxPerOrder", "maxPerAccount", "onSaleAt"] {
        assert!(create.contains(field), "{field}: {create}");
    }
    let update = paths["/api/tickets/{id}"]["put"]["responses"]["400"]["description"].to_string();
    assert!(update.contains("Cannot lower quantity below"), "{update}");
}

flavor_tests!(
    create_requires_a_session,
    create_validates_title_and_price,
    create_stores_the_ticket_and_publishes_ticket_created,
    show_answers_404_for_unknown_and_malformed_ids,
    events_carry_the_callers_trace,
    list_pages_through_available_tickets_oldest_first,
    the_listing_shows_every_write_at_once,
    update_checks_in_the_contract_order,
    update_bumps_the_version_and_publishes_ticket_updated,
    order_events_reserve_and_release_the_ticket,
    late_events_of_an_older_order_never_steal_the_ticket,
    a_cancellation_racing_its_creation_leaves_the_ticket_free,
    a_burst_of_orders_reserves_each_ticket_for_its_newest_order,
    openapi_covers_every_tickets_route,
    a_ticket_listed_the_seeds_way_carries_no_terms,
    terms_are_resolved_shown_and_published,
    bad_terms_are_refused_field_by_field,
    an_update_keeps_or_changes_the_terms,
    orders_hold_units_once_whatever_the_order_of_their_events,
    the_listing_shows_counted_listings_while_units_are_left,
    a_burst_of_orders_counts_units_and_reserves_single_tickets,
);
