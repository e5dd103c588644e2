//! Cancelling a paid order for a refund (issue 32), over real HTTP with the tickets,
//! orders and payments services, the payments service refunding at a fake Stripe: every
//! backend and bus.
//!
//! - Ten parallel cancels give one 202 body; the provider sees exactly one refund of the
//!   total less the fee; the order ends `cancelled` (`refunded`) and its unit is offered
//!   to the waiting list in the transaction that cancels it.
//! - Before the policy's cutoff 202, after it 403, without a policy 400; `DELETE` of an
//!   unpaid order as before.
//! - A provider down for a while is waited for; one that refuses for good leaves the
//!   cancellation `failed` and the order paid.

#[path = "../../payments/tests/fake_stripe/mod.rs"]
mod fake_stripe;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use ticketing_contracts::events::Subject;
use ticketing_contracts::Timestamp;
use ticketing_kit::flavor_tests;
use ticketing_kit::runtime::Mounted;
use ticketing_kit::testing::{errors, reply, Api, EventRecorder, Flavor, TestApp, TestEnv, User};

struct App {
    app: TestApp,
    stripe: Arc<fake_stripe::Fake>,
}

async fn spawn(flavor: Flavor) -> App {
    let env = TestEnv::with_flavor(flavor).await;
    let rt = &env.runtime;
    let (base, stripe) = fake_stripe::spawn_fake().await;
    let provider = ticketing_payments::provider::StripeProvider::new(
        fake_stripe::SECRET,
        Some(&base),
        Duration::from_secs(5),
    )
    .unwrap()
    .with_retries(2, Duration::from_millis(20));
    let services: Vec<Mounted> = vec![
        ticketing_tickets::mount(rt).await.unwrap(),
        ticketing_orders::mount(rt, &ticketing_orders::Settings::default())
            .await
            .unwrap(),
        ticketing_payments::mount(rt, Arc::new(provider))
            .await
            .unwrap(),
    ];
    App {
        app: TestApp::spawn(env, services).await,
        stripe,
    }
}

/// `hours` from now, as the API writes times.
fn hours_from_now(hours: u64) -> String {
    (Timestamp::now() + Duration::from_secs(hours * 3600)).to_rfc3339()
}

impl App {
    fn user(&self, name: &str) -> Api {
        self.app
            .api
            .as_user(&User::bearer(&self.app.env.runtime.keys, name))
    }

    /// A listing by `seller` of `body` (title and price added): its body.
    async fn listing(&self, body: Value) -> Value {
        let mut body = body;
        body["title"] = json!("Concert");
        body["price"] = json!(20);
        let (status, ticket) =
            reply(self.user("seller").post_json("/api/tickets", body).await).await;
        assert_eq!(status, StatusCode::CREATED, "{ticket}");
        ticket
    }

    /// A listing of one unit with an event in 30 days, cancellable until `cutoff` hours
    /// before it for a fee of 12.5 %.
    async fn refundable(&self, cutoff: i64, event_in_hours: u64) -> String {
        let ticket = self
            .listing(json!({
                "quantity": 1,
                "eventAt": hours_from_now(event_in_hours),
                "refundPolicy": {"cutoffHours": cutoff, "feePercent": 12.5},
            }))
            .await;
        assert_eq!(
            ticket["refundPolicy"],
            json!({"cutoffHours": cutoff, "feePercent": 12.5})
        );
        ticket["id"].as_str().unwrap().to_owned()
    }

    /// An order of `listing` by `buyer`: its id.
    async fn order(&self, buyer: &str, listing: &str) -> String {
        let (status, order) = reply(
            self.user(buyer)
                .post_once_known("/api/orders", json!({"ticketId": listing}))
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        order["id"].as_str().unwrap().to_owned()
    }

    /// An order of `listing` by `buyer`, paid and complete: its id.
    async fn paid(&self, buyer: &str, listing: &str) -> String {
        let order = self.order(buyer, listing).await;
        let res = self.user(buyer).pay(&order).await;
        assert_eq!(
            res.status(),
            StatusCode::CREATED,
            "{}",
            res.text().await.unwrap()
        );
        self.user(buyer).wait_order(&order, "complete").await;
        order
    }

    async fn cancel_for_refund(&self, buyer: &str, order: &str) -> (StatusCode, Value) {
        reply(
            self.user(buyer)
                .post_json(&format!("/api/orders/{order}/cancellation"), json!(null))
                .await,
        )
        .await
    }

    /// Wait until the cancellation of `order` leaves `requested`: its body.
    async fn settled(&self, buyer: &str, order: &str) -> Value {
        self.user(buyer)
            .wait_for(&format!("/api/orders/{order}/cancellation"), |c| {
                c["status"] != "requested"
            })
            .await
    }
}

/// Proof 1: ten parallel cancels, one body, one refund of total − fee at the provider;
/// the order `cancelled` / `refunded`, its unit offered to the waiting list by then.
async fn parallel_cancels_refund_once(flavor: Flavor) {
    let app = Arc::new(spawn(flavor).await);
    let refunded = EventRecorder::start(&app.app.env.runtime, Subject::PaymentRefunded).await;
    let cancelled = EventRecorder::start(&app.app.env.runtime, Subject::OrderCancelled).await;
    let listing = app.refundable(48, 30 * 24).await;
    let order = app.paid("buyer", &listing).await;
    // Sold out: a second buyer waits for the unit.
    let (status, entry) = reply(
        app.user("waiter")
            .post_json("/api/waitlist", json!({"ticketId": listing, "quantity": 1}))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    let entry = entry["id"].as_str().unwrap().to_owned();

    let cancels = (0..10).map(|_| {
        let (app, order) = (app.clone(), order.clone());
        tokio::spawn(async move { app.cancel_for_refund("buyer", &order).await })
    });
    let answers: Vec<(StatusCode, Value)> = futures::future::join_all(cancels)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let first = &answers[0].1;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body, first, "every repeat answers the same cancellation");
    }
    // 12.5 % of 20.00 is 2.50.
    assert_eq!(first["orderId"], order.as_str());
    assert_eq!(
        (first["refund"].clone(), first["fee"].clone()),
        (json!(17.5), json!(2.5))
    );
    assert_eq!(first["status"], "requested", "{first}");
    assert!(first["requestedAt"].as_str().unwrap().ends_with('Z'));
    assert!(first.get("refundedAt").is_none());

    let done = app.settled("buyer", &order).await;
    assert_eq!(done["status"], "refunded", "{done}");
    assert_eq!(done["id"], first["id"]);
    assert!(done["refundedAt"].as_str().unwrap().ends_with('Z'));
    let shown = app
        .user("buyer")
        .get_json(&format!("/api/orders/{order}"))
        .await;
    assert_eq!(shown["status"], "cancelled", "{shown}");
    assert_eq!(shown["cancelReason"], "refunded", "{shown}");
    // Offered in the transaction that cancelled the order: there already.
    let waiting = app
        .user("waiter")
        .get_json(&format!("/api/waitlist/{entry}"))
        .await;
    assert_eq!(waiting["status"], "offered", "{waiting}");

    let event: Value = serde_json::from_slice(&refunded.next().await.payload).unwrap();
    assert_eq!(event["orderId"], order.as_str());
    assert_eq!(event["amountCents"], 1750);
    assert_eq!(event["cancellationId"], first["id"]);
    let event: Value = serde_json::from_slice(&cancelled.next().await.payload).unwrap();
    assert_eq!(event["id"], order.as_str());
    assert_eq!(event["cancelReason"], "refunded");

    // Exactly one refund, of 17.50, however the events are redelivered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let made = app.stripe.refunds_made.lock().unwrap().clone();
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0].1, Some(1750));
    refunded.assert_quiet(Duration::from_millis(200)).await;
    // A repeat after the refund still answers the same body.
    let (status, again) = app.cancel_for_refund("buyer", &order).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(&again, first);
}

/// Proof 3: 202 before the cutoff, 403 after, 400 without a policy or payment; someone
/// else's order 401, no cancellation 404; `DELETE` of orders as before.
async fn refusals_follow_the_policy(flavor: Flavor) {
    let app = spawn(flavor).await;
    // Before the cutoff.
    let open = app.refundable(48, 30 * 24).await;
    let order = app.paid("buyer", &open).await;
    let res = app
        .user("buyer")
        .get(&format!("/api/orders/{order}/cancellation"))
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    for other in ["intruder"] {
        let (status, _) = app.cancel_for_refund(other, &order).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let res = app
            .user(other)
            .get(&format!("/api/orders/{order}/cancellation"))
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = app
        .app
        .api
        .post_json(&format!("/api/orders/{order}/cancellation"), json!(null))
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let (status, body) = app
        .cancel_for_refund("buyer", "0193a5c2-7d1e-7c3a-9f1b-2a3b4c5d6e7f")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = app.cancel_for_refund("buyer", &order).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // After the cutoff: the event is in 47 hours, cancellations closed 48 before it.
    let closed = app.refundable(48, 47).await;
    let order = app.paid("buyer", &closed).await;
    let res = app
        .user("buyer")
        .post_json(&format!("/api/orders/{order}/cancellation"), json!(null))
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        errors(res).await[0]["message"],
        "Cancellation closed 48 hours before the event"
    );

    // No policy: the seed's listing.
    let plain = app.listing(json!({})).await;
    assert!(
        plain.get("eventAt").is_none() && plain.get("refundPolicy").is_none(),
        "{plain}"
    );
    let plain = plain["id"].as_str().unwrap().to_owned();
    let order = app.paid("buyer", &plain).await;
    let res = app
        .user("buyer")
        .post_json(&format!("/api/orders/{order}/cancellation"), json!(null))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        errors(res).await[0]["message"],
        "This ticket cannot be cancelled"
    );
    // A paid order's DELETE: as before.
    let res = app
        .user("buyer")
        .delete(&format!("/api/orders/{order}"))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        errors(res).await[0]["message"],
        "Cannot cancel a completed order"
    );

    // Not paid: refused; its DELETE as before.
    let listing = app.refundable(48, 30 * 24).await;
    let unpaid = app.order("buyer", &listing).await;
    let res = app
        .user("buyer")
        .post_json(&format!("/api/orders/{unpaid}/cancellation"), json!(null))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(errors(res).await[0]["message"], "Order is not paid");
    let res = app
        .user("buyer")
        .delete(&format!("/api/orders/{unpaid}"))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let shown = app.user("buyer").wait_order(&unpaid, "cancelled").await;
    assert_eq!(shown["cancelReason"], "cancelled by buyer");

    // The policy's own refusals.
    let seller = app.user("seller");
    let bad = [
        (
            json!({"refundPolicy": {"cutoffHours": 48, "feePercent": 10}}),
            "refundPolicy",
        ),
        (json!({"eventAt": "2020-01-01T00:00:00Z"}), "eventAt"),
        (json!({"eventAt": "tomorrow"}), "eventAt"),
        (
            json!({"eventAt": hours_from_now(100), "refundPolicy": {"cutoffHours": 8761, "feePercent": 10}}),
            "refundPolicy",
        ),
        (
            json!({"eventAt": hours_from_now(100), "refundPolicy": {"cutoffHours": 1, "feePercent": 100.5}}),
            "refundPolicy",
        ),
    ];
    for (extra, field) in bad {
        let mut body = extra.clone();
        body["title"] = json!("Concert");
        body["price"] = json!(20);
        let res = seller.post_json("/api/tickets", body).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{extra}");
        assert_eq!(errors(res).await[0]["field"], field, "{extra}");
    }
    // A policy added on update, kept by an update that does not say, removed by null.
    let id = plain_listing(&app).await;
    let path = format!("/api/tickets/{id}");
    let at = hours_from_now(100);
    let (status, updated) = reply(
        seller
            .put_json(
                &path,
                json!({"title": "Concert", "price": 20, "eventAt": at,
                       "refundPolicy": {"cutoffHours": 24, "feePercent": 0}}),
            )
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        updated["refundPolicy"],
        json!({"cutoffHours": 24, "feePercent": 0})
    );
    let (_, kept) = reply(
        seller
            .put_json(&path, json!({"title": "Concert", "price": 21}))
            .await,
    )
    .await;
    assert_eq!(kept["refundPolicy"], updated["refundPolicy"], "{kept}");
    assert_eq!(kept["eventAt"], updated["eventAt"]);
    let (status, body) = reply(
        seller
            .put_json(
                &path,
                json!({"title": "Concert", "price": 21, "eventAt": null}),
            )
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errors"][0]["field"], "refundPolicy");
    let (status, cleared) = reply(
        seller
            .put_json(
                &path,
                json!({"title": "Concert", "price": 21, "eventAt": null, "refundPolicy": null}),
            )
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    assert!(cleared.get("eventAt").is_none() && cleared.get("refundPolicy").is_none());
}

async fn plain_listing(app: &App) -> String {
    app.listing(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A provider down for a while: the refund waits for it. One that refuses for good: the
/// cancellation `failed`, the order still paid, the unit still the buyer's.
async fn outages_wait_refusals_fail(flavor: Flavor) {
    let app = spawn(flavor).await;
    *app.stripe.refunds_unavailable.lock().unwrap() = 6;
    let listing = app.refundable(48, 30 * 24).await;
    let order = app.paid("buyer", &listing).await;
    let (status, _) = app.cancel_for_refund("buyer", &order).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let done = app.settled("buyer", &order).await;
    assert_eq!(done["status"], "refunded", "{done}");
    assert_eq!(*app.stripe.refunds_unavailable.lock().unwrap(), 0);
    assert_eq!(app.stripe.refunds_made.lock().unwrap().len(), 1);

    app.stripe.refuse_refunds.store(true, Ordering::SeqCst);
    let failed = EventRecorder::start(&app.app.env.runtime, Subject::PaymentRefundFailed).await;
    let listing = app.refundable(48, 30 * 24).await;
    let order = app.paid("buyer", &listing).await;
    let (status, _) = app.cancel_for_refund("buyer", &order).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let done = app.settled("buyer", &order).await;
    assert_eq!(done["status"], "failed", "{done}");
    let event: Value = serde_json::from_slice(&failed.next().await.payload).unwrap();
    assert_eq!(event["orderId"], order.as_str());
    assert_eq!(event["cancellationId"], done["id"]);
    assert!(!event["reason"].as_str().unwrap().is_empty());
    let shown = app
        .user("buyer")
        .get_json(&format!("/api/orders/{order}"))
        .await;
    assert_eq!(shown["status"], "complete", "{shown}");
    assert_eq!(app.stripe.refunds_made.lock().unwrap().len(), 1);
}

flavor_tests!(
    parallel_cancels_refund_once,
    refusals_follow_the_policy,
    outages_wait_refusals_fail,
);
