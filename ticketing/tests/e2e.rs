//! The whole system in one process (`--target all` composition): auth, tickets, orders,
//! payments and expiration on one runtime with a short order TTL.

use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use ticketing_kit::testing::{TestBackend, TestEnv, TestServer};
use tokio_util::sync::CancellationToken;

mod support;

use support::mount_all;

struct Sys {
    server: TestServer,
}

impl Sys {
    async fn signup(&self, client: &Client, email: &str) {
        let res = client
            .post(self.server.url("/api/users/signup"))
            .json(&json!({"email": email, "password": "password123"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
    }

    /// POST, retried while the answer is 404 (a replica has not heard of the object yet).
    async fn post(&self, client: &Client, path: &str, body: Value) -> (StatusCode, Value) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let res = client
                .post(self.server.url(path))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = res.status();
            if status != StatusCode::NOT_FOUND || Instant::now() > deadline {
                return (status, res.json().await.unwrap_or(Value::Null));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn get(&self, client: &Client, path: &str) -> Value {
        let res = client.get(self.server.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        res.json().await.unwrap()
    }

    async fn wait(&self, client: &Client, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let v = self.get(client, path).await;
            if ok(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{path} stuck at {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn sell(&self, seller: &Client, title: &str) -> String {
        let (status, ticket) = self
            .post(
                seller,
                "/api/tickets",
                json!({"title": title, "price": "20.50"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        ticket["id"].as_str().unwrap().to_owned()
    }

    async fn buy(&self, buyer: &Client, ticket: &str) -> Value {
        let (status, order) = self
            .post(buyer, "/api/orders", json!({"ticketId": ticket}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        order
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buy_pay_expire_and_restart() {
    let env = TestEnv::new(TestBackend::Sqlite);
    // Long enough to buy and pay on a loaded CI machine, short enough to wait out.
    let order_ttl = Duration::from_secs(3);
    let first = mount_all(&env.runtime, order_ttl).await;
    let sys = Sys {
        server: TestServer::spawn(first).await,
    };
    let seller = TestServer::new_client();
    let buyer = TestServer::new_client();
    sys.signup(&seller, "seller@test.com").await;
    sys.signup(&buyer, "buyer@test.com").await;

    // Buy and pay: the order completes, the ticket stays reserved.
    let paid_ticket = sys.sell(&seller, "Paid").await;
    let order = sys.buy(&buyer, &paid_ticket).await;
    let order_id = order["id"].as_str().unwrap().to_owned();
    let (status, payment) = sys
        .post(
            &buyer,
            "/api/payments",
            json!({"orderId": order_id, "token": "tok_visa"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{payment}");
    assert_eq!(payment["orderId"], order_id.as_str());
    sys.wait(&buyer, &format!("/api/orders/{order_id}"), |o| {
        o["status"] == "complete"
    })
    .await;
    // Past the TTL the paid order stays complete and keeps its ticket.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let o = sys.get(&buyer, &format!("/api/orders/{order_id}")).await;
    assert_eq!(o["status"], "complete");
    let t = sys
        .get(&buyer, &format!("/api/tickets/{paid_ticket}"))
        .await;
    assert_eq!(t["orderId"], order_id.as_str());

    // Buy without paying: the TTL runs out, the order is cancelled, the ticket is free.
    let ticket = sys.sell(&seller, "Unpaid").await;
    let order = sys.buy(&buyer, &ticket).await;
    let unpaid = order["id"].as_str().unwrap().to_owned();
    sys.wait(&buyer, &format!("/api/orders/{unpaid}"), |o| {
        o["status"] == "cancelled"
    })
    .await;
    sys.wait(&buyer, &format!("/api/tickets/{ticket}"), |t| {
        t.get("orderId").is_none()
    })
    .await;
    let (status, late) = sys
        .post(
            &buyer,
            "/api/payments",
            json!({"orderId": unpaid, "token": "tok_visa"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = late["errors"][0]["message"].as_str().unwrap();
    assert!(
        message == "Order has expired" || message == "Cannot pay for a cancelled order",
        "{message}"
    );
    let again = sys.buy(&buyer, &ticket).await;

    // Restart while that new order's expiry is pending: it still fires.
    let pending = again["id"].as_str().unwrap().to_owned();
    let mut second_rt = env.runtime.clone();
    second_rt.shutdown = CancellationToken::new();
    let _stop = second_rt.shutdown.clone().drop_guard();
    env.runtime.shutdown.cancel();
    let sys = Sys {
        server: TestServer::spawn(mount_all(&second_rt, order_ttl).await).await,
    };
    sys.wait(&buyer, &format!("/api/orders/{pending}"), |o| {
        o["status"] == "cancelled"
    })
    .await;
    sys.wait(&buyer, &format!("/api/tickets/{ticket}"), |t| {
        t.get("orderId").is_none()
    })
    .await;
}
