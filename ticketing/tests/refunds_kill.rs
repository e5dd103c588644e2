//! Proof 2 of issue 32: a payments process killed (`kill -9`) between the provider's
//! refund and the commit that records it refunds nothing twice, and the cancellation
//! still completes. The `ticketing` binary runs embedded (`--target all`) against a fake
//! Stripe in this test; `TICKETING_TEST_PAUSE_AFTER_REFUND` (test only) makes the
//! payments listener hang right after each cancellation's first refund, leaving a file
//! named after the cancellation, and the test kills the process there and starts it
//! again on the same data.

#[path = "../../payments/tests/fake_stripe/mod.rs"]
mod fake_stripe;
mod process;

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use ticketing_contracts::Timestamp;
use ticketing_kit::testing::{id_of, reply, Api, Patience};

use process::{free_port, Running};

const ROUNDS: usize = 10;

const PATIENCE: Patience = Patience {
    limit: Duration::from_secs(30),
    every: Duration::from_millis(20),
    retry_on: &[StatusCode::CONFLICT, StatusCode::NOT_FOUND],
    through_errors: false,
};

async fn start(port: u16, data: &str, stripe: &str, pause_dir: &str) -> Running {
    Running::start_on(
        port,
        &[
            "--data-dir",
            data,
            "--stripe-key",
            fake_stripe::SECRET,
            "--stripe-base-url",
            stripe,
        ],
        &[("TICKETING_TEST_PAUSE_AFTER_REFUND", pause_dir)],
    )
    .await
}

async fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_killed_before_its_commit_is_made_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pauses = dir.path().join("pauses");
    std::fs::create_dir_all(&pauses).unwrap();
    let (data, pause_dir) = (data.to_str().unwrap(), pauses.to_str().unwrap());
    let (stripe_url, stripe) = fake_stripe::spawn_fake().await;
    let port = free_port();
    let mut running = start(port, data, &stripe_url, pause_dir).await;
    let api = Api::new(running.base.clone()).with_patience(PATIENCE);
    let seller = api.as_user(&api.sign_up("seller@test.com").await);
    let buyer = api.as_user(&api.sign_up("buyer@test.com").await);
    let event_at = (Timestamp::now() + Duration::from_secs(30 * 86_400)).to_rfc3339();
    let mut cancellations = Vec::new();

    for round in 0..ROUNDS {
        let listing = json!({
            "title": format!("Round {round}"), "price": 20,
            "eventAt": event_at, "refundPolicy": {"cutoffHours": 48, "feePercent": 10},
        });
        let (status, ticket) = reply(seller.post_json("/api/tickets", listing).await).await;
        assert_eq!(status, StatusCode::CREATED, "{ticket}");
        let order = id_of(&buyer.order_ok(&id_of(&ticket)).await);
        let res = buyer.pay(&order).await;
        assert_eq!(
            res.status(),
            StatusCode::CREATED,
            "{}",
            res.text().await.unwrap()
        );
        buyer.wait_order(&order, "complete").await;
        let (status, cancellation) = reply(
            buyer
                .post_json(&format!("/api/orders/{order}/cancellation"), json!(null))
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{cancellation}");
        cancellations.push(id_of(&cancellation));

        // Refunded at the provider, not recorded: kill, start again on the same data.
        wait_for_file(&pauses.join(id_of(&cancellation))).await;
        running.kill9();
        running = start(port, data, &stripe_url, pause_dir).await;

        let done: Value = buyer
            .wait_for(&format!("/api/orders/{order}/cancellation"), |c| {
                c["status"] != "requested"
            })
            .await;
        assert_eq!(done["status"], "refunded", "round {round}: {done}");
        assert_eq!(done["id"], cancellation["id"]);
        let shown = buyer.wait_order(&order, "cancelled").await;
        assert_eq!(shown["cancelReason"], "refunded");
        // One refund per round, of 18.00, whatever the kill.
        let made = stripe.refunds_made.lock().unwrap().clone();
        assert_eq!(made.len(), round + 1, "round {round}: {made:?}");
        assert!(
            made.iter().all(|(_, cents)| *cents == Some(1800)),
            "{made:?}"
        );
    }
    // Each refund reached the provider twice (before the kill and after), under the
    // cancellation's key: the provider made it once.
    let requests = stripe.refund_requests.lock().unwrap().clone();
    for id in &cancellations {
        let key = format!("cancellation-{id}");
        let sent = requests.iter().filter(|k| **k == key).count();
        assert!(sent >= 2, "{key} sent {sent} times");
    }
    // The services agree, the refunds included, once the last events have landed.
    let audit = std::process::Command::new(env!("CARGO_BIN_EXE_ticketing"))
        .args(["audit", "--data-dir", data, "--settle-seconds", "20"])
        .env_remove("TICKETING_DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&audit.stdout);
    assert!(stdout.contains("audit: 0 divergences"), "{stdout}");
    running.stop();
}
