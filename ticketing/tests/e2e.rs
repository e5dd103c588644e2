//! The whole system in one process (`--target all` composition): auth, tickets, orders,
//! payments and expiration on one runtime with a short order TTL.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use ticketing_kit::testing::{reply, Api, Patience, TestBackend, TestEnv, TestServer};
use tokio_util::sync::CancellationToken;

mod support;

use support::mount_all;

/// A client of `server` that waits up to 15 s for the system to catch up.
fn api(server: &TestServer) -> Api {
    server.api().with_patience(Patience {
        limit: Duration::from_secs(15),
        every: Duration::from_millis(20),
        ..Patience::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buy_pay_expire_and_restart() {
    let env = TestEnv::new(TestBackend::Sqlite);
    // Long enough to buy and pay on a loaded CI machine, short enough to wait out.
    let order_ttl = Duration::from_secs(3);
    let first = mount_all(&env.runtime, order_ttl).await;
    let sys = api(&TestServer::spawn(first).await);
    let seller = sys.as_user(&sys.sign_up("seller@test.com").await);
    let buyer_user = sys.sign_up("buyer@test.com").await;
    let buyer = sys.as_user(&buyer_user);

    // Buy and pay: the order completes, the ticket stays reserved.
    let paid_ticket = seller.sell("Paid", json!("20.50")).await;
    let order = buyer.order_ok(&paid_ticket).await;
    let order_id = order["id"].as_str().unwrap().to_owned();
    let (status, payment) = reply(buyer.pay(&order_id).await).await;
    assert_eq!(status, StatusCode::CREATED, "{payment}");
    assert_eq!(payment["orderId"], order_id.as_str());
    buyer.wait_order(&order_id, "complete").await;
    // Past the TTL the paid order stays complete and keeps its ticket.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let o = buyer.get_json(&format!("/api/orders/{order_id}")).await;
    assert_eq!(o["status"], "complete");
    let t = buyer.get_json(&format!("/api/tickets/{paid_ticket}")).await;
    assert_eq!(t["orderId"], order_id.as_str());

    // Buy without paying: the TTL runs out, the order is cancelled, the ticket is free.
    let ticket = seller.sell("Unpaid", json!("20.50")).await;
    let order = buyer.order_ok(&ticket).await;
    let unpaid = order["id"].as_str().unwrap().to_owned();
    buyer.wait_order(&unpaid, "cancelled").await;
    buyer.wait_ticket_held_by(&ticket, None).await;
    let (status, late) = reply(buyer.pay(&unpaid).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = late["errors"][0]["message"].as_str().unwrap();
    assert!(
        message == "Order has expired" || message == "Cannot pay for a cancelled order",
        "{message}"
    );
    let again = buyer.order_ok(&ticket).await;

    // Restart while that new order's expiry is pending: it still fires.
    let pending = again["id"].as_str().unwrap().to_owned();
    let mut second_rt = env.runtime.clone();
    second_rt.shutdown = CancellationToken::new();
    let _stop = second_rt.shutdown.clone().drop_guard();
    env.runtime.shutdown.cancel();
    // The same browser, at the restarted server.
    let restarted = api(&TestServer::spawn(mount_all(&second_rt, order_ttl).await).await);
    let buyer = restarted.as_user(&buyer_user);
    buyer.wait_order(&pending, "cancelled").await;
    buyer.wait_ticket_held_by(&ticket, None).await;
}
