//! The payments contract (`../shared/spec/api.md` §Payments) over real HTTP, with the
//! order replica fed by `order:created` / `order:cancelled` events on the bus, on every
//! storage backend and event bus.

mod fake_stripe;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use ticketing_bus::Envelope;
use ticketing_contracts::events::{
    OrderCancelled, OrderCreated, OrderCreatedTicket, Subject, TicketRef,
};
use ticketing_contracts::money::Cents;
use ticketing_contracts::time::{format_millis, now_millis};
use ticketing_kit::flavor_tests;
use ticketing_kit::testing::{errors, EventRecorder, Flavor, TestApp, TestEnv};
use ticketing_payments::provider::{
    Charge, ChargeError, ChargeRequest, PaymentProvider, SandboxProvider, StripeProvider,
};
use ticketing_store::{query, Store};

/// The sandbox, slowed down: the order can change while the card is being charged.
struct Slow {
    inner: Arc<SandboxProvider>,
    delay: Duration,
}

#[async_trait]
impl PaymentProvider for Slow {
    async fn charge(&self, req: &ChargeRequest) -> Result<Charge, ChargeError> {
        tokio::time::sleep(self.delay).await;
        self.inner.charge(req).await
    }
    async fn refund(
        &self,
        charge_id: &str,
        amount: Option<Cents>,
        key: &str,
    ) -> Result<(), ChargeError> {
        self.inner.refund(charge_id, amount, key).await
    }
}

/// A provider that answers with something that is neither a charge nor a decline.
struct Broken;

#[async_trait]
impl PaymentProvider for Broken {
    async fn charge(&self, _: &ChargeRequest) -> Result<Charge, ChargeError> {
        Err(ChargeError::Other(anyhow::anyhow!(
            "unexpected answer: 418"
        )))
    }
    async fn refund(&self, _: &str, _: Option<Cents>, _: &str) -> Result<(), ChargeError> {
        Err(ChargeError::Other(anyhow::anyhow!(
            "unexpected answer: 418"
        )))
    }
}

/// A provider that cannot be reached.
struct Down;

#[async_trait]
impl PaymentProvider for Down {
    async fn charge(&self, _: &ChargeRequest) -> Result<Charge, ChargeError> {
        Err(ChargeError::Unavailable("connection refused".into()))
    }
    async fn refund(&self, _: &str, _: Option<Cents>, _: &str) -> Result<(), ChargeError> {
        Err(ChargeError::Unavailable("connection refused".into()))
    }
}

struct App {
    app: TestApp,
    sandbox: Arc<SandboxProvider>,
    store: Store,
}

async fn spawn(flavor: Flavor) -> App {
    spawn_with(flavor, |sandbox| sandbox).await
}

async fn spawn_slow(flavor: Flavor, delay: Duration) -> App {
    spawn_with(flavor, move |inner| Arc::new(Slow { inner, delay })).await
}

async fn spawn_with(
    flavor: Flavor,
    provider: impl FnOnce(Arc<SandboxProvider>) -> Arc<dyn PaymentProvider>,
) -> App {
    let sandbox = Arc::new(SandboxProvider::new());
    spawn_provider(flavor, sandbox.clone(), provider(sandbox)).await
}

async fn spawn_provider(
    flavor: Flavor,
    sandbox: Arc<SandboxProvider>,
    provider: Arc<dyn PaymentProvider>,
) -> App {
    let env = TestEnv::with_flavor(flavor).await;
    let payments = ticketing_payments::mount(&env.runtime, provider)
        .await
        .expect("mount payments");
    let location = env.runtime.location(ticketing_payments::SERVICE).unwrap();
    let store = Store::open(&location, &ticketing_payments::MIGRATIONS)
        .await
        .unwrap();
    App {
        app: TestApp::spawn(env, vec![payments]).await,
        sandbox,
        store,
    }
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl std::ops::Deref for App {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

impl App {
    async fn pay(&self, user: Option<&str>, body: Value) -> Response {
        let api = match user {
            Some(user) => self.as_user(user),
            None => self.api.clone(),
        };
        api.post_json("/api/payments", body).await
    }

    async fn publish(&self, event: Envelope) {
        self.env.runtime.bus.publish(&event).await.unwrap();
    }

    /// An order of `user` at 10.99, expiring in `ttl_ms`, known to the replica.
    async fn order(&self, user: &str, ttl_ms: i64) -> String {
        let id = new_id();
        self.publish(Envelope::new(&OrderCreated {
            id: (id.clone()).into(),
            status: ticketing_contracts::OrderStatus::Created,
            user_id: user.into(),
            expires_at: format_millis(now_millis() + ttl_ms),
            reserved_until: None,
            version: 0,
            ticket: OrderCreatedTicket {
                id: (new_id()).into(),
                price: Cents::new(1099),
            },
            quantity: 1,
            waitlist_entry_id: None,
        }))
        .await;
        self.wait_replica(&id, "created").await;
        id
    }

    async fn payments_of(&self, user: &str, query: &str) -> Response {
        self.as_user(user)
            .get(&format!("/api/payments{query}"))
            .await
    }

    async fn cancel(&self, order_id: &str) {
        self.publish(cancelled(order_id)).await;
    }

    async fn wait_replica(&self, order_id: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let row: Option<String> = query("SELECT status FROM orders WHERE id = $1")
                .bind(order_id)
                .fetch_optional(self.store.reader())
                .await
                .unwrap()
                .map(|row| row.get("status").unwrap());
            if row.as_deref() == Some(status) {
                return;
            }
            assert!(Instant::now() < deadline, "order {order_id} never {status}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn cancelled(order_id: &str) -> Envelope {
    Envelope::new(&OrderCancelled {
        id: order_id.into(),
        version: 1,
        ticket: TicketRef {
            id: (new_id()).into(),
        },
        cancel_reason: None,
    })
}

async fn refused(res: Response, status: StatusCode, message: &str) {
    assert_eq!(res.status(), status);
    let errors = errors(res).await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["message"], message);
    assert!(errors[0].get("field").is_none());
}

async fn requires_a_session(flavor: Flavor) {
    let app = spawn(flavor).await;
    let id = app.order("bob", 60_000).await;
    let res = app
        .pay(None, json!({"orderId": id, "token": "tok_visa"}))
        .await;
    refused(res, StatusCode::UNAUTHORIZED, "User not authorized.").await;
    assert_eq!(app.sandbox.charges_made(), 0);
}

async fn validates_token_and_order_id(flavor: Flavor) {
    let app = spawn(flavor).await;
    let res = app.pay(Some("bob"), json!({})).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let fields: Vec<Value> = errors(res)
        .await
        .iter()
        .map(|e| e["field"].clone())
        .collect();
    assert_eq!(fields, vec![json!("token"), json!("orderId")]);
    for body in [
        json!({"orderId": new_id()}),
        json!({"orderId": new_id(), "token": ""}),
        json!({"orderId": new_id(), "token": 42}),
    ] {
        let res = app.pay(Some("bob"), body.clone()).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(errors(res).await[0]["field"], "token", "{body}");
    }
    for body in [
        json!({"token": "tok_visa"}),
        json!({"token": "tok_visa", "orderId": 42}),
        json!({"token": "tok_visa", "orderId": "no spaces!"}),
    ] {
        let res = app.pay(Some("bob"), body.clone()).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(errors(res).await[0]["field"], "orderId", "{body}");
    }
}

async fn unknown_order_is_404_and_others_order_401(flavor: Flavor) {
    let app = spawn(flavor).await;
    // An id made long ago (or not a UUIDv7) that the replica lacks: unknown, at once.
    for old in ["0190d5d3-7c5e-7000-8000-000000000000", "not-an-order"] {
        let res = app
            .pay(Some("bob"), json!({"orderId": old, "token": "tok_visa"}))
            .await;
        refused(res, StatusCode::NOT_FOUND, "Not found.").await;
    }
    // A fresh one may be on its way: waited for, then 409 (decision 0029).
    let res = app
        .pay(
            Some("bob"),
            json!({"orderId": new_id(), "token": "tok_visa"}),
        )
        .await;
    assert_eq!(res.headers()["retry-after"], "1");
    refused(
        res,
        StatusCode::CONFLICT,
        "Order is not known here yet; try again",
    )
    .await;
    let id = app.order("bob", 60_000).await;
    let res = app
        .pay(Some("mallory"), json!({"orderId": id, "token": "tok_visa"}))
        .await;
    refused(res, StatusCode::UNAUTHORIZED, "User not authorized.").await;
    assert_eq!(app.sandbox.charges_made(), 0);
}

async fn pays_once_and_publishes_payment_created(flavor: Flavor) {
    let app = spawn(flavor).await;
    let created = EventRecorder::start(&app.env.runtime, Subject::PaymentCreated).await;
    let id = app.order("bob", 60_000).await;
    let res = app
        .pay(Some("bob"), json!({"orderId": id, "token": "tok_visa"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let payment: Value = res.json().await.unwrap();
    assert_eq!(payment["orderId"], id.as_str());
    assert!(payment["stripeId"].as_str().unwrap().starts_with("ch_"));
    assert!(payment["id"].as_str().is_some());

    assert_eq!(payment["status"], "succeeded");
    let event: Value = serde_json::from_slice(&created.next().await.payload).unwrap();
    assert_eq!(
        event,
        json!({"id": payment["id"], "orderId": id, "stripeId": payment["stripeId"]})
    );

    for token in ["tok_visa", "tok_mastercard"] {
        let again = app
            .pay(Some("bob"), json!({"orderId": id, "token": token}))
            .await;
        refused(again, StatusCode::BAD_REQUEST, "Order is already paid").await;
    }
    assert_eq!(app.sandbox.charges_made(), 1);
    created.assert_quiet(Duration::from_millis(300)).await;
}

async fn cancelled_order_cannot_be_paid(flavor: Flavor) {
    let app = spawn(flavor).await;
    let id = app.order("bob", 60_000).await;
    app.cancel(&id).await;
    app.wait_replica(&id, "cancelled").await;
    let res = app
        .pay(Some("bob"), json!({"orderId": id, "token": "tok_visa"}))
        .await;
    refused(
        res,
        StatusCode::BAD_REQUEST,
        "Cannot pay for a cancelled order",
    )
    .await;
    assert_eq!(app.sandbox.charges_made(), 0);
}

async fn early_cancellation_waits_for_its_creation(flavor: Flavor) {
    let app = spawn(flavor).await;
    let id = new_id();
    app.cancel(&id).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.publish(Envelope::new(&OrderCreated {
        id: (id.clone()).into(),
        status: ticketing_contracts::OrderStatus::Created,
        user_id: "bob".into(),
        expires_at: format_millis(now_millis() + 60_000),
        reserved_until: None,
        version: 0,
        ticket: OrderCreatedTicket {
            id: (new_id()).into(),
            price: Cents::new(500),
        },
        quantity: 1,
        waitlist_entry_id: None,
    }))
    .await;
    app.wait_replica(&id, "cancelled").await;
}

/// New orders published at once reach the replica in batches that share a transaction
/// (one insert for the lot on PostgreSQL), duplicates and cancellations ahead of their
/// creation included: each order once, in its last state.
async fn a_burst_of_orders_reaches_the_replica_once_each(flavor: Flavor) {
    let app = spawn(flavor).await;
    let ids: Vec<String> = (0..40).map(|_| new_id()).collect();
    let created = |n: usize| {
        Envelope::new(&OrderCreated {
            id: ids[n].clone().into(),
            status: ticketing_contracts::OrderStatus::Created,
            user_id: format!("buyer-{n}").into(),
            expires_at: format_millis(now_millis() + 60_000),
            reserved_until: None,
            version: 0,
            ticket: OrderCreatedTicket {
                id: (new_id()).into(),
                price: Cents::new(1000 + n as i64),
            },
            quantity: 1,
            waitlist_entry_id: None,
        })
    };
    for (n, id) in ids.iter().enumerate() {
        if n % 5 == 0 {
            app.publish(cancelled(id)).await;
        }
        let event = created(n);
        if n % 3 == 0 {
            // A republish: the same order under a new event id.
            app.publish(Envelope {
                id: new_id(),
                ..event.clone()
            })
            .await;
        }
        app.publish(event).await;
    }
    for (n, id) in ids.iter().enumerate() {
        let status = if n % 5 == 0 { "cancelled" } else { "created" };
        app.wait_replica(id, status).await;
    }
    let rows = query("SELECT id, user_id, price_cents FROM orders")
        .fetch_all(app.store.reader())
        .await
        .unwrap();
    assert_eq!(rows.len(), ids.len());
    for row in rows {
        let id: String = row.get("id").unwrap();
        let n = ids.iter().position(|i| *i == id).unwrap();
        assert_eq!(row.get::<String>("user_id").unwrap(), format!("buyer-{n}"));
        assert_eq!(row.get::<i64>("price_cents").unwrap(), 1000 + n as i64);
    }
}

async fn expired_order_cannot_be_paid(flavor: Flavor) {
    let app = spawn(flavor).await;
    let id = app.order("bob", -1).await;
    let res = app
        .pay(Some("bob"), json!({"orderId": id, "token": "tok_visa"}))
        .await;
    refused(res, StatusCode::BAD_REQUEST, "Order has expired").await;
    assert_eq!(app.sandbox.charges_made(), 0);
}

async fn declined_card_leaves_the_order_payable(flavor: Flavor) {
    let app = spawn(flavor).await;
    let id = app.order("bob", 60_000).await;
    let res = app
        .pay(
            Some("bob"),
            json!({"orderId": id, "token": "tok_chargeDeclinedInsufficientFunds"}),
        )
        .await;
    refused(
        res,
        StatusCode::BAD_REQUEST,
        "Your card has insufficient funds.",
    )
    .await;
    let res = app
        .pay(Some("bob"), json!({"orderId": id, "token": "tok_bogus"}))
        .await;
    refused(res, StatusCode::BAD_REQUEST, "No such token: 'tok_bogus'").await;
    let res = app
        .pay(Some("bob"), json!({"orderId": id, "token": "tok_visa"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

async fn provider_unavailable_is_503(flavor: Flavor) {
    let app = spawn_with(flavor, |_| Arc::new(Down)).await;
    let id = app.order("bob", 60_000).await;
    let res = app
        .pay(Some("bob"), json!({"orderId": id, "token": "tok_visa"}))
        .await;
    refused(res, StatusCode::SERVICE_UNAVAILABLE, "Service unavailable.").await;
    // Nothing held: the next attempt is charged again (and refused again here).
    let res = app
        .pay(Some("bob"), json!({"orderId": id, "token": "tok_visa"}))
        .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
}

async fn simultaneous_payments_charge_once(flavor: Flavor) {
    let app = spawn_slow(flavor, Duration::from_millis(400)).await;
    let id = app.order("bob", 60_000).await;
    let (a, b) = futures::join!(
        app.pay(Some("bob"), json!({"orderId": id, "token": "tok_visa"})),
        app.pay(
            Some("bob"),
            json!({"orderId": id, "token": "tok_mastercard"})
        ),
    );
    let mut statuses = vec![a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, vec![StatusCode::CREATED, StatusCode::BAD_REQUEST]);
    let loser = if a.status() == StatusCode::BAD_REQUEST {
        a
    } else {
        b
    };
    let message = errors(loser).await[0]["message"].clone();
    assert!(
        message == "A payment for this order is already in progress"
            || message == "Order is already paid",
        "{message}"
    );
    assert_eq!(app.sandbox.charges_made(), 1);
    let paid: i64 = query("SELECT COUNT(*) FROM payments WHERE order_id = $1")
        .bind(&id)
        .scalar(app.store.reader())
        .await
        .unwrap();
    assert_eq!(paid, 1);
}

async fn order_expiring_during_the_charge_is_refunded(flavor: Flavor) {
    let app = spawn_slow(flavor, Duration::from_millis(1500)).await;
    let created = EventRecorder::start(&app.env.runtime, Subject::PaymentCreated).await;
    let id = app.order("bob", 1000).await;
    let res = app
        .pay(Some("bob"), json!({"orderId": id, "token": "tok_visa"}))
        .await;
    refused(res, StatusCode::BAD_REQUEST, "Order has expired").await;
    assert_eq!(app.sandbox.charges_made(), 1);
    assert_eq!(app.sandbox.refunded().len(), 1);
    created.assert_quiet(Duration::from_millis(300)).await;
}

async fn order_cancelled_during_the_charge_is_refunded(flavor: Flavor) {
    let app = spawn_slow(flavor, Duration::from_millis(1000)).await;
    let id = app.order("bob", 60_000).await;
    let pay = app.pay(Some("bob"), json!({"orderId": id, "token": "tok_visa"}));
    let cancel = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        app.cancel(&id).await;
    };
    let (res, ()) = futures::join!(pay, cancel);
    refused(
        res,
        StatusCode::BAD_REQUEST,
        "Cannot pay for a cancelled order",
    )
    .await;
    assert_eq!(app.sandbox.refunded().len(), 1);
    let paid: i64 = query("SELECT COUNT(*) FROM payments")
        .scalar(app.store.reader())
        .await
        .unwrap();
    assert_eq!(paid, 0);
}

async fn a_payment_reaching_a_cancelled_order_is_refunded_and_shown(flavor: Flavor) {
    // Paid while the order was open here; the orders service cancelled it before the
    // payment:created reached it (held back past the grace): the money goes back.
    let app = spawn(flavor).await;
    let refunded = EventRecorder::start(&app.env.runtime, Subject::PaymentRefunded).await;
    let id = app.order("bob", 60_000).await;
    let res = app
        .pay(Some("bob"), json!({"orderId": id, "token": "tok_visa"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let payment: Value = res.json().await.unwrap();
    app.cancel(&id).await;

    let event: Value = serde_json::from_slice(&refunded.next().await.payload).unwrap();
    assert_eq!(
        event,
        json!({"id": payment["id"], "orderId": id, "stripeId": payment["stripeId"]})
    );
    assert_eq!(
        app.sandbox.refunded(),
        vec![payment["stripeId"].as_str().unwrap().to_owned()]
    );
    let res = app.payments_of("bob", &format!("?orderId={id}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let shown: Value = res.json().await.unwrap();
    assert_eq!(shown.as_array().unwrap().len(), 1, "{shown}");
    assert_eq!(shown[0]["id"], payment["id"]);
    assert_eq!(shown[0]["status"], "refunded");
    assert!(shown[0]["refundedAt"].as_str().unwrap().ends_with('Z'));

    // Once: a redelivered cancellation refunds nothing more.
    app.publish(cancelled(&id)).await;
    refunded.assert_quiet(Duration::from_millis(500)).await;
    assert_eq!(app.sandbox.refunded().len(), 1);
    // Only the buyer sees it; a malformed filter is a 400.
    let others: Value = app.payments_of("carol", "").await.json().await.unwrap();
    assert_eq!(others, json!([]));
    let all: Value = app.payments_of("bob", "").await.json().await.unwrap();
    assert_eq!(all.as_array().unwrap().len(), 1);
    let bad = app.payments_of("bob", "?orderId=not%20an%20id").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

async fn provider_errors_are_502_and_nothing_is_recorded(flavor: Flavor) {
    let app = spawn_with(flavor, |_| Arc::new(Broken)).await;
    let id = app.order("bob", 60_000).await;
    let res = app
        .pay(Some("bob"), json!({"orderId": id, "token": "tok_visa"}))
        .await;
    refused(
        res,
        StatusCode::BAD_GATEWAY,
        "The payment provider failed. Please try again.",
    )
    .await;
    let paid: i64 = query("SELECT COUNT(*) FROM payments")
        .scalar(app.store.reader())
        .await
        .unwrap();
    assert_eq!(paid, 0);
}

async fn pays_through_stripe(flavor: Flavor) {
    let (base, fake) = fake_stripe::spawn_fake().await;
    let stripe = StripeProvider::new(fake_stripe::SECRET, Some(&base), Duration::from_secs(2))
        .unwrap()
        .with_retries(2, Duration::from_millis(10));
    let app = spawn_provider(flavor, Arc::new(SandboxProvider::new()), Arc::new(stripe)).await;
    let id = app.order("bob", 60_000).await;
    let res = app
        .pay(
            Some("bob"),
            json!({"orderId": id, "token": "tok_chargeDeclinedInsufficientFunds"}),
        )
        .await;
    refused(
        res,
        StatusCode::BAD_REQUEST,
        "Your card has insufficient funds.",
    )
    .await;
    let res = app
        .pay(Some("bob"), json!({"orderId": id, "token": "tok_visa"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let payment: Value = res.json().await.unwrap();
    assert_eq!(payment["stripeId"], "ch_3Fake0000000000000000001");
    let seen = fake.seen.lock().unwrap().clone();
    let last = seen.last().unwrap();
    assert_eq!(last.form["amount"], "1099");
    assert_eq!(last.form["currency"], "usd");
    assert_eq!(
        last.idempotency_key.as_deref(),
        Some(format!("order-{id}-tok_visa").as_str())
    );
}

flavor_tests!(
    requires_a_session,
    validates_token_and_order_id,
    unknown_order_is_404_and_others_order_401,
    pays_once_and_publishes_payment_created,
    cancelled_order_cannot_be_paid,
    early_cancellation_waits_for_its_creation,
    a_burst_of_orders_reaches_the_replica_once_each,
    expired_order_cannot_be_paid,
    declined_card_leaves_the_order_payable,
    provider_unavailable_is_503,
    simultaneous_payments_charge_once,
    order_expiring_during_the_charge_is_refunded,
    order_cancelled_during_the_charge_is_refunded,
    a_payment_reaching_a_cancelled_order_is_refunded_and_shown,
    provider_errors_are_502_and_nothing_is_recorded,
    pays_through_stripe,
);
