//! `ticketing audit` and refunds (issue 32): silent once every cancellation is settled by
//! one refund of the total less the fee; a refund of another amount, a cancellation
//! stuck `requested` and a refund naming no cancellation are each found.

mod process;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use ticketing_contracts::Timestamp;
use ticketing_kit::testing::{id_of, reply, Api, Patience};

use process::{audit, sqlite, Running};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_checks_each_cancellations_refund() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let running = Running::start(&["--data-dir", data], &[]).await;
    let api = Api::new(running.base.clone()).with_patience(Patience {
        every: Duration::from_millis(50),
        ..Patience::default()
    });
    let seller = api.as_user(&api.sign_up("seller@test.com").await);
    let buyer = api.as_user(&api.sign_up("buyer@test.com").await);
    let event_at = (Timestamp::now() + Duration::from_secs(30 * 86_400)).to_rfc3339();
    let mut cancellations = Vec::new();
    for i in 0..2 {
        let body = json!({"title": format!("Show {i}"), "price": 30, "eventAt": event_at,
                          "refundPolicy": {"cutoffHours": 24, "feePercent": 5}});
        let (status, ticket) = reply(seller.post_json("/api/tickets", body).await).await;
        assert_eq!(status, StatusCode::CREATED, "{ticket}");
        let order = id_of(&buyer.order_ok(&id_of(&ticket)).await);
        assert_eq!(buyer.pay(&order).await.status(), StatusCode::CREATED);
        buyer.wait_order(&order, "complete").await;
        let path = format!("/api/orders/{order}/cancellation");
        let (status, made) = reply(buyer.post_json(&path, json!(null)).await).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{made}");
        buyer.wait_for(&path, |c| c["status"] == "refunded").await;
        cancellations.push(id_of(&made));
    }

    let clean = audit(data, "20");
    let stdout = String::from_utf8_lossy(&clean.stdout);
    assert!(stdout.contains("audit: 0 divergences"), "{stdout}");
    running.stop();

    let now = ticketing_contracts::time::now_millis();
    let orders_db = sqlite(dir.path(), "orders");
    let payments_db = sqlite(dir.path(), "payments");
    // A refund of another amount than the total less the fee.
    payments_db
        .execute(
            "UPDATE refunds SET amount_cents = amount_cents + 1 WHERE cancellation_id = ?1",
            [&cancellations[0]],
        )
        .unwrap();
    // A cancellation left `requested` two minutes ago.
    orders_db
        .execute(
            "UPDATE cancellations SET status = 'requested', refunded_at = NULL, \
             requested_at = ?1 WHERE id = ?2",
            (now - 120_000, &cancellations[1]),
        )
        .unwrap();
    // A refund naming a cancellation the orders service never made.
    payments_db
        .execute(
            "INSERT INTO refunds (payment_id, refunded_at, amount_cents, cancellation_id) \
             VALUES ('planted-payment', ?1, 100, 'planted-cancellation')",
            [now],
        )
        .unwrap();
    drop((orders_db, payments_db));

    let found = audit(data, "0");
    let stdout = String::from_utf8_lossy(&found.stdout).into_owned();
    assert_eq!(found.status.code(), Some(1), "{stdout}");
    let has = |kind: &str, id: &str| {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("{kind}\t")) && l.contains(id)),
            "no {kind} naming {id} in:\n{stdout}"
        );
    };
    has("cancellation-refund", &cancellations[0]);
    has("cancellation-stuck", &cancellations[1]);
    has("cancellation-refund", "planted-cancellation");
}
