//! The webhooks API and deliveries over real HTTP, on SQLite and PostgreSQL: endpoints
//! are validated, kept per seller and removed; events published on the bus reach the
//! endpoints of the listing's seller, signed, per key in order; 410 disables.

mod receiver;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use ticketing_bus::Envelope;
use ticketing_contracts::events::{
    CheckinRecorded, OrderCancelRequested, OrderCompleted, OrderCreated, OrderCreatedTicket,
    PassIssued, PaymentCreated, PaymentRefundFailed, TicketCreated, TicketRef, TicketUpdated,
};
use ticketing_contracts::money::Cents;
use ticketing_contracts::time::{format_millis, now_millis};
use ticketing_contracts::{OrderStatus, SaleTerms};
use ticketing_kit::backend_tests;
use ticketing_kit::testing::{errors, reply, Api, TestApp, TestBackend, TestEnv};
use ticketing_store::query;
use ticketing_webhooks::Settings;

use receiver::Receiver;

async fn app(backend: TestBackend, allow_private: bool) -> TestApp {
    app_on(TestEnv::new(backend), allow_private).await
}

/// The service on `env`'s databases (a test may write to them first).
async fn app_on(env: TestEnv, allow_private: bool) -> TestApp {
    let settings = Settings {
        allow_private,
        timeout: Duration::from_secs(2),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(300),
        poll: Duration::from_millis(50),
        ..Default::default()
    };
    let service = ticketing_webhooks::mount(&env.runtime, &settings)
        .await
        .unwrap();
    TestApp::spawn(env, vec![service]).await
}

async fn publish<E: ticketing_contracts::events::Event>(app: &TestApp, event: &E) -> String {
    let envelope = Envelope::new(event);
    app.env.runtime.bus.publish(&envelope).await.unwrap();
    envelope.id
}

fn listing(id: &str, seller: &str, version: i64) -> TicketCreated {
    TicketCreated {
        id: id.into(),
        title: "Concert".into(),
        price: Cents::new(1000),
        user_id: seller.into(),
        version,
        terms: SaleTerms::default(),
        refund: Default::default(),
    }
}

fn order(id: &str, ticket: &str, buyer: &str) -> OrderCreated {
    OrderCreated {
        id: id.into(),
        status: OrderStatus::Created,
        user_id: buyer.into(),
        expires_at: format_millis(now_millis() + 60_000),
        reserved_until: None,
        version: 0,
        ticket: OrderCreatedTicket {
            id: ticket.into(),
            price: Cents::new(1000),
        },
        quantity: 1,
        waitlist_entry_id: None,
    }
}

async fn create(api: &Api, url: &str, events: Value) -> (StatusCode, Value) {
    reply(
        api.post_json("/api/webhooks", json!({"url": url, "events": events}))
            .await,
    )
    .await
}

async fn validation(backend: TestBackend) {
    let app = app(backend, false).await;
    let seller = app.as_user("seller-1");
    let res = app
        .api
        .post_json(
            "/api/webhooks",
            json!({"url": "https://example.com", "events": ["order:created"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let cases = [
        (json!({"events": ["order:created"]}), "url"),
        (json!({"url": 5, "events": ["order:created"]}), "url"),
        (
            json!({"url": "ftp://example.com", "events": ["order:created"]}),
            "url",
        ),
        (
            json!({"url": "http://127.0.0.1:9/x", "events": ["order:created"]}),
            "url",
        ),
        (
            json!({"url": "http://localhost/x", "events": ["order:created"]}),
            "url",
        ),
        (
            json!({"url": "http://10.0.0.1/x", "events": ["order:created"]}),
            "url",
        ),
        (
            json!({"url": format!("https://example.com/{}", "a".repeat(2048)), "events": ["order:created"]}),
            "url",
        ),
        (json!({"url": "https://example.com"}), "events"),
        (
            json!({"url": "https://example.com", "events": []}),
            "events",
        ),
        (
            json!({"url": "https://example.com", "events": ["order:shipped"]}),
            "events",
        ),
        (
            json!({"url": "https://example.com", "events": "order:created"}),
            "events",
        ),
    ];
    for (body, field) in cases {
        let res = seller.post_json("/api/webhooks", body.clone()).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
        let errs = errors(res).await;
        assert_eq!(errs.len(), 1, "{body}: {errs:?}");
        assert_eq!(errs[0]["field"], field, "{body}: {errs:?}");
    }
    // A host name is judged by the addresses it resolves to: this machine's own name
    // (loopback on these machines) may not be registered; a name resolving to a public
    // address would be.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim();
    let internal_only = tokio::net::lookup_host((host, 0))
        .await
        .map(|found| {
            let ips: Vec<_> = found.map(|a| a.ip()).collect();
            !ips.is_empty() && ips.iter().all(|ip| ip.is_loopback() || is_private(ip))
        })
        .unwrap_or(false);
    let (status, body) = create(
        &seller,
        &format!("http://{host}:9/hook"),
        json!(["order:created"]),
    )
    .await;
    if internal_only {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{host}: {body}");
        assert_eq!(body["errors"][0]["field"], "url", "{body}");
    } else {
        assert_eq!(status, StatusCode::CREATED, "{host}: {body}");
        let id = body["id"].as_str().unwrap();
        let res = seller.delete(&format!("/api/webhooks/{id}")).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    }
    let (status, body) = create(
        &seller,
        "https://example.com/hook",
        json!(["order:created", "order:created", "payment:created"]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(
        body["secret"].as_str().unwrap().starts_with("whsec_"),
        "{body}"
    );
    assert_eq!(body["events"], json!(["order:created", "payment:created"]));
    assert_eq!(body["url"], "https://example.com/hook");
    assert!(body["createdAt"].is_string());
    let id = body["id"].as_str().unwrap().to_owned();

    // Listed without the secret; another seller neither sees nor touches it.
    let (status, list) = reply(seller.get("/api/webhooks").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("secret").is_none(), "{list}");
    let other = app.as_user("seller-2");
    assert_eq!(reply(other.get("/api/webhooks").await).await.1, json!([]));
    for res in [
        other.delete(&format!("/api/webhooks/{id}")).await,
        other.get(&format!("/api/webhooks/{id}/deliveries")).await,
        other
            .post_json(&format!("/api/webhooks/{id}/replay"), json!({"fromSeq": 0}))
            .await,
        seller.get("/api/webhooks/not%20an%20id/deliveries").await,
    ] {
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
    let res = seller
        .get(&format!("/api/webhooks/{id}/deliveries?cursor=x"))
        .await;
    assert_eq!(errors(res).await[0]["field"], "cursor");
    let res = seller
        .post_json(
            &format!("/api/webhooks/{id}/replay"),
            json!({"fromSeq": -1}),
        )
        .await;
    assert_eq!(errors(res).await[0]["field"], "fromSeq");
    let res = seller.delete(&format!("/api/webhooks/{id}")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(reply(seller.get("/api/webhooks").await).await.1, json!([]));
    let res = seller.delete(&format!("/api/webhooks/{id}")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

async fn delivers_signed_in_order(backend: TestBackend) {
    let app = app(backend, true).await;
    let receiver = Receiver::start().await;
    let seller = app.as_user("seller-a");
    let (status, hook) = create(
        &seller,
        &receiver.url(),
        json!([
            "ticket:created",
            "ticket:updated",
            "order:created",
            "payment:created"
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_owned();
    let hook_id = hook["id"].as_str().unwrap().to_owned();

    // Another seller's listing reaches nobody here.
    publish(&app, &listing("t-other", "seller-b", 0)).await;
    // An order before its listing waits for it.
    let mut ids = vec![];
    let early = publish(&app, &order("o-1", "t-1", "buyer")).await;
    ids.push(publish(&app, &listing("t-1", "seller-a", 0)).await);
    ids.push(early);
    receiver.wait_for(2, Duration::from_secs(30)).await;
    ids.push(
        publish(
            &app,
            &TicketUpdated {
                id: "t-1".into(),
                title: "Concert".into(),
                price: Cents::new(1000),
                user_id: "seller-a".into(),
                version: 1,
                order_id: Some("o-1".into()),
                terms: SaleTerms::default(),
                refund: Default::default(),
            },
        )
        .await,
    );
    receiver.wait_for(3, Duration::from_secs(30)).await;
    ids.push(
        publish(
            &app,
            &PaymentCreated {
                id: "p-1".into(),
                order_id: "o-1".into(),
                stripe_id: "ch_1".into(),
            },
        )
        .await,
    );
    receiver.wait_for(4, Duration::from_secs(30)).await;
    let got = receiver.received();
    for r in &got {
        assert!(r.verifies(&secret), "signature of {}", r.id);
        assert_eq!(r.body["id"], r.id.as_str());
        assert!(r.body["createdAt"].is_string());
        assert!(r.body["data"].is_object());
        assert!((r.timestamp - now_millis() / 1000).abs() < 60);
    }
    let order_keyed: Vec<&str> = got
        .iter()
        .filter(|r| r.key() == "o-1")
        .map(|r| r.subject())
        .collect();
    assert_eq!(
        order_keyed,
        ["order:created", "ticket:updated", "payment:created"]
    );
    let mut sent: Vec<String> = got.iter().map(|r| r.id.clone()).collect();
    sent.sort();
    ids.sort();
    assert_eq!(sent, ids);

    // The deliveries list, then a replay: the same ids again, in the same order per key.
    let (status, list) = reply(
        seller
            .get(&format!("/api/webhooks/{hook_id}/deliveries"))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 4, "{list:?}");
    assert!(
        list.iter().all(|d| d["status"] == "delivered"
            && d["attempts"] == 1
            && d["deliveredAt"].is_string()),
        "{list:?}"
    );
    let first = list[0]["seq"].as_i64().unwrap();
    let (status, _) = reply(
        seller
            .get(&format!(
                "/api/webhooks/{hook_id}/deliveries?cursor={first}"
            ))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let before = receiver.by_key();
    receiver.clear();
    let (status, body) = reply(
        seller
            .post_json(
                &format!("/api/webhooks/{hook_id}/replay"),
                json!({"fromSeq": first}),
            )
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["queued"], 4);
    receiver.wait_for(4, Duration::from_secs(30)).await;
    assert_eq!(receiver.by_key(), before);
}

async fn retries_and_gone(backend: TestBackend) {
    let app = app(backend, true).await;
    let receiver = Receiver::start().await;
    receiver.answer(500);
    let seller = app.as_user("seller-r");
    let (_, hook) = create(&seller, &receiver.url(), json!(["ticket:created"])).await;
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    publish(&app, &listing("t-r1", "seller-r", 0)).await;
    // Refused a few times, then taken.
    let path = format!("/api/webhooks/{hook_id}/deliveries");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, list) = reply(seller.get(&path).await).await;
        if list[0]["attempts"].as_i64().unwrap_or(0) >= 3 {
            assert_eq!(list[0]["status"], "pending");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    receiver.answer(200);
    receiver.wait_for(1, Duration::from_secs(20)).await;

    // 410 disables the endpoint: nothing more is sent.
    receiver.answer(410);
    publish(&app, &listing("t-r2", "seller-r", 0)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, list) = reply(seller.get("/api/webhooks").await).await;
        if list[0]["disabledAt"].is_string() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    receiver.answer(200);
    publish(&app, &listing("t-r3", "seller-r", 0)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.distinct(), 1);
}

/// An endpoint's deliveries once `ok` holds of them (at most 20 s).
async fn deliveries_until(
    api: &Api,
    path: &str,
    what: &str,
    ok: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, list) = reply(api.get(path).await).await;
        let list = list.as_array().cloned().unwrap_or_default();
        if ok(&list) {
            return list;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {list:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Events of one key queued while its head is refused wait behind it: none is sent
/// before the head is delivered, and they follow it in their order once it is.
async fn a_burst_on_one_key_waits_for_its_head(backend: TestBackend) {
    let app = app(backend, true).await;
    let receiver = Receiver::start().await;
    let seller = app.as_user("seller-a");
    let (status, hook) = create(
        &seller,
        &receiver.url(),
        json!(["ticket:created", "order:created", "payment:created"]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    let path = format!("/api/webhooks/{}/deliveries", hook["id"].as_str().unwrap());
    publish(&app, &listing("t-9", "seller-a", 0)).await;
    receiver.wait_for(1, Duration::from_secs(30)).await;
    receiver.clear();
    receiver.answer(500);
    let mut ids = vec![publish(&app, &order("o-9", "t-9", "buyer")).await];
    deliveries_until(&seller, &path, "the order's delivery refused", |l| {
        l.len() == 2 && l[1]["attempts"].as_i64() >= Some(1)
    })
    .await;
    for i in 0..5 {
        let payment = PaymentCreated {
            id: format!("p-{i}").into(),
            order_id: "o-9".into(),
            stripe_id: format!("ch_{i}"),
        };
        ids.push(publish(&app, &payment).await);
    }
    // The head is retried with backoff; the payments queued behind it are not tried.
    let list = deliveries_until(&seller, &path, "the head retried, the rest queued", |l| {
        l.len() == 7 && l[1]["attempts"].as_i64() >= Some(3)
    })
    .await;
    for d in &list[2..] {
        assert_eq!(
            (d["status"].as_str(), d["attempts"].as_i64()),
            (Some("pending"), Some(0)),
            "{list:?}"
        );
    }
    receiver.answer(204);
    receiver.wait_for(ids.len(), Duration::from_secs(30)).await;
    let arrivals: Vec<String> = receiver.received().iter().map(|r| r.id.clone()).collect();
    assert_eq!(arrivals, ids);
}

/// The events of refunds and check-in reach the listing's seller: an order's keyed by
/// the order, a check-in by the listing.
async fn refund_and_checkin_events_reach_the_seller(backend: TestBackend) {
    let app = app(backend, true).await;
    let receiver = Receiver::start().await;
    let seller = app.as_user("seller-c");
    let subjects = json!([
        "order:completed",
        "pass:issued",
        "checkin:recorded",
        "order:cancel-requested",
        "payment:refund-failed"
    ]);
    let (status, hook) = create(&seller, &receiver.url(), subjects).await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    publish(&app, &listing("t-c", "seller-c", 0)).await;
    publish(&app, &order("o-c", "t-c", "buyer")).await;
    let mut ids = vec![
        publish(
            &app,
            &OrderCompleted {
                id: "o-c".into(),
                version: 1,
                user_id: "buyer".into(),
                ticket: TicketRef { id: "t-c".into() },
                quantity: 1,
            },
        )
        .await,
    ];
    ids.push(
        publish(
            &app,
            &PassIssued {
                id: "pass-c".into(),
                order_id: "o-c".into(),
                ticket_id: "t-c".into(),
                user_id: "buyer".into(),
                unit: 1,
                epoch: 1,
            },
        )
        .await,
    );
    ids.push(
        publish(
            &app,
            &CheckinRecorded {
                pass_id: "pass-c".into(),
                ticket_id: "t-c".into(),
                device_id: "gate-1".into(),
                checked_in_at: format_millis(now_millis()),
            },
        )
        .await,
    );
    ids.push(
        publish(
            &app,
            &OrderCancelRequested {
                id: "c-c".into(),
                order_id: "o-c".into(),
                user_id: "buyer".into(),
                refund_cents: 900,
                fee_cents: 100,
            },
        )
        .await,
    );
    ids.push(
        publish(
            &app,
            &PaymentRefundFailed {
                cancellation_id: "c-c".into(),
                order_id: "o-c".into(),
                reason: "card_closed".into(),
            },
        )
        .await,
    );
    receiver.wait_for(ids.len(), Duration::from_secs(30)).await;
    let mut got: Vec<String> = receiver.received().iter().map(|r| r.id.clone()).collect();
    got.sort();
    got.dedup();
    ids.sort();
    assert_eq!(got, ids);
}

/// The single deliveries table of earlier releases, the queue's columns in it.
fn old_deliveries(seq: &str) -> String {
    format!(
        "CREATE TABLE deliveries (seq {seq}, endpoint_id TEXT NOT NULL, event_id TEXT NOT NULL, \
         subject TEXT NOT NULL, order_key TEXT NOT NULL, body TEXT NOT NULL, \
         created_at BIGINT NOT NULL, queued_at BIGINT NOT NULL, status TEXT NOT NULL, \
         attempts BIGINT NOT NULL, next_at BIGINT NOT NULL, lease_until BIGINT NOT NULL, \
         claim TEXT, delivered_at BIGINT, ended_at BIGINT, UNIQUE (endpoint_id, event_id))"
    )
}

/// Deliveries an earlier release left pending move to the queue at start-up and are
/// sent, a key's in order (the first release had every pending delivery due at once);
/// the delivered ones stay listed.
async fn pending_deliveries_of_an_earlier_release_are_sent(backend: TestBackend) {
    let env = TestEnv::new(backend);
    let store = env.event_store(ticketing_webhooks::SERVICE).await;
    let seq = match backend {
        TestBackend::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
        TestBackend::Postgres => "BIGSERIAL PRIMARY KEY",
    };
    query(&old_deliveries(seq))
        .execute(store.writer())
        .await
        .unwrap();
    let now = now_millis();
    for (event, status) in [("e-0", "delivered"), ("e-1", "pending"), ("e-2", "pending")] {
        let body = json!({"id": event, "type": "order:created", "createdAt": format_millis(now),
            "data": {"id": "o-old"}});
        query(
            "INSERT INTO deliveries (endpoint_id, event_id, subject, order_key, body, created_at, \
             queued_at, status, attempts, next_at, lease_until) \
             VALUES ('ep-old', $1, 'order:created', 'o-old', $2, $3, $3, $4, 0, $3, 0)",
        )
        .bind(event)
        .bind(body.to_string())
        .bind(now)
        .bind(status)
        .execute(store.writer())
        .await
        .unwrap();
    }
    let app = app_on(env, true).await;
    let receiver = Receiver::start().await;
    query(
        "INSERT INTO endpoints (id, user_id, url, events, secret, created_at) \
         VALUES ('ep-old', 'seller-old', $1, '[\"order:created\"]', $2, $3)",
    )
    .bind(receiver.url())
    .bind(format!("whsec_{}", "A".repeat(32)))
    .bind(now)
    .execute(store.writer())
    .await
    .unwrap();
    receiver.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(receiver.by_key()["o-old"], ["e-1", "e-2"]);
    let seller = app.as_user("seller-old");
    let list = deliveries_until(
        &seller,
        "/api/webhooks/ep-old/deliveries",
        "all ended",
        |l| l.len() == 3 && l.iter().all(|d| d["status"] == "delivered"),
    )
    .await;
    let events: Vec<&str> = list
        .iter()
        .map(|d| d["eventId"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["e-0", "e-1", "e-2"]);
}

backend_tests!(
    refund_and_checkin_events_reach_the_seller,
    validation,
    delivers_signed_in_order,
    retries_and_gone,
    a_burst_on_one_key_waits_for_its_head,
    pending_deliveries_of_an_earlier_release_are_sent
);

fn is_private(ip: &std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}
