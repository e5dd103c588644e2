//! One reservation deadline across the whole system (every service on one runtime), in
//! both modes: embedded (SQLite, in-process bus, SQL delay queue) and distributed
//! (PostgreSQL, JetStream, Redis delay queue). The buyer pays until `expiresAt`; the
//! order holds its ticket until `expiresAt` + grace, and is cancelled right then.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use ticketing_contracts::time::{now_millis, parse_millis};
use ticketing_kit::runtime::Mounted;
use ticketing_kit::testing::{
    payment, redis_url, unique_prefix, Flavor, Patience, TestApp, TestBackend, TestEnv,
};

const TTL: Duration = Duration::from_millis(1500);
const GRACE: Duration = Duration::from_millis(1500);

struct Sys(TestApp);

async fn spawn(flavor: Flavor) -> Sys {
    let env = TestEnv::with_flavor(flavor).await;
    let rt = &env.runtime;
    // Distributed: the delay queue on Redis, as `--redis-url` gives it.
    let redis_url = (flavor.backend == TestBackend::Postgres && flavor.nats).then(redis_url);
    let services: Vec<Mounted> = vec![
        ticketing_tickets::mount(rt).await.unwrap(),
        ticketing_orders::mount(
            rt,
            &ticketing_orders::Settings {
                order_ttl: TTL,
                payment_grace: GRACE,
                ..Default::default()
            },
        )
        .await
        .unwrap(),
        ticketing_payments::mount(
            rt,
            std::sync::Arc::new(ticketing_payments::provider::SandboxProvider::new()),
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
    let mut app = TestApp::spawn(env, services).await;
    app.api.patience = Patience {
        limit: Duration::from_secs(15),
        every: Duration::from_millis(5),
        ..Patience::default()
    };
    Sys(app)
}

impl Sys {
    async fn get(&self, path: &str, user: &str) -> Value {
        self.0.as_user(user).get_json(path).await
    }

    async fn ticket(&self) -> String {
        self.0.as_user("seller").sell("Concert", json!(20)).await
    }

    /// Place an order, retried while the orders replica has not heard of the ticket.
    async fn order(&self, user: &str, ticket: &str) -> Response {
        self.0.as_user(user).order(ticket).await
    }

    /// One payment, not retried: it is sent at a chosen moment.
    async fn pay(&self, user: &str, order: &str) -> Response {
        self.0
            .as_user(user)
            .post_json("/api/payments", payment(order))
            .await
    }

    async fn wait_order(&self, user: &str, id: &str, status: &str) -> Value {
        self.0.as_user(user).wait_order(id, status).await
    }

    async fn wait_available(&self, ticket: &str) {
        self.0
            .as_user("seller")
            .wait_ticket_held_by(ticket, None)
            .await;
    }
}

async fn sleep_until(millis: i64) {
    let wait = (millis - now_millis()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

async fn a_payment_just_before_the_deadline_completes_the_order(flavor: Flavor) {
    let sys = spawn(flavor).await;
    // A payment sent 250 ms before the deadline may reach the server after it on a loaded
    // machine; it is then rightly refused and says nothing about the grace: try again
    // with a new ticket (a refusal answered before the deadline fails at once).
    let mut tries = 0;
    let (ticket, id, expires_at) = loop {
        tries += 1;
        let ticket = sys.ticket().await;
        let res = sys.order("bob", &ticket).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let order: Value = res.json().await.unwrap();
        let id = order["id"].as_str().unwrap().to_owned();
        let expires_at = parse_millis(order["expiresAt"].as_str().unwrap()).unwrap();

        sleep_until(expires_at - 250).await;
        let paid = sys.pay("bob", &id).await;
        let answered = now_millis();
        if paid.status() == StatusCode::CREATED {
            break (ticket, id, expires_at);
        }
        let body: Value = paid.json().await.unwrap();
        assert!(
            answered > expires_at && tries < 3,
            "payment refused {}ms before the deadline (try {tries}): {body}",
            expires_at - answered
        );
    };
    let id = id.as_str();
    // Past expiresAt, within the grace: nobody else can take the ticket.
    sleep_until(expires_at + 100).await;
    let other = sys.order("carol", &ticket).await;
    assert_eq!(other.status(), StatusCode::BAD_REQUEST);
    let body: Value = other.json().await.unwrap();
    assert_eq!(body["errors"][0]["message"], "Ticket is already reserved");

    sys.wait_order("bob", id, "complete").await;
    // And the expiry, due at the end of the grace, leaves the paid order alone.
    sleep_until(expires_at + GRACE.as_millis() as i64 + 500).await;
    assert_eq!(
        sys.get(&format!("/api/orders/{id}"), "bob").await["status"],
        "complete"
    );
    let shown = sys.get(&format!("/api/tickets/{ticket}"), "seller").await;
    assert_eq!(shown["orderId"], json!(id));
}

async fn a_payment_after_the_deadline_is_refused_and_nothing_charged(flavor: Flavor) {
    let sys = spawn(flavor).await;
    let ticket = sys.ticket().await;
    let order: Value = sys.order("bob", &ticket).await.json().await.unwrap();
    let id = order["id"].as_str().unwrap();
    let expires_at = parse_millis(order["expiresAt"].as_str().unwrap()).unwrap();
    sleep_until(expires_at + 50).await;
    let res = sys.pay("bob", id).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["message"], "Order has expired");
    assert_eq!(
        sys.get(&format!("/api/payments?orderId={id}"), "bob").await,
        json!([])
    );
}

async fn an_unpaid_order_is_cancelled_when_its_grace_ends(flavor: Flavor) {
    let sys = spawn(flavor).await;
    let ticket = sys.ticket().await;
    let order: Value = sys.order("bob", &ticket).await.json().await.unwrap();
    let id = order["id"].as_str().unwrap();
    let reserved_until =
        parse_millis(order["expiresAt"].as_str().unwrap()).unwrap() + GRACE.as_millis() as i64;

    let cancelled = sys.wait_order("bob", id, "cancelled").await;
    let late = now_millis() - reserved_until;
    assert!(late >= 0, "cancelled {}ms early", -late);
    // Generous for a loaded CI machine; the lateness benchmark measures the real figure.
    assert!(late < 2_000, "cancelled {late}ms late");
    assert_eq!(cancelled["cancelReason"], "expired");
    sys.wait_available(&ticket).await;
    // The ticket is free for the next buyer.
    assert_eq!(
        sys.order("carol", &ticket).await.status(),
        StatusCode::CREATED
    );
}

ticketing_kit::flavor_tests!(
    a_payment_just_before_the_deadline_completes_the_order,
    a_payment_after_the_deadline_is_refused_and_nothing_charged,
    an_unpaid_order_is_cancelled_when_its_grace_ends,
);
