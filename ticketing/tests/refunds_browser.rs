//! "Cancel and refund" in a real browser (issue 32), with JavaScript and without: a
//! buyer pays a listing with a refund policy, sees what a cancellation gives back, the
//! fee and the deadline, cancels, and lands on the refund's status. The seller's forms
//! take the event time and the policy. Screenshots under
//! `target/browser-screenshots/<test>/`.

mod support;

use std::time::Duration;

use serde_json::json;
use support::browser::{Browser, Driver, Shots};
use support::Site;
use ticketing_contracts::Timestamp;

async fn sign_up(browser: &Browser, site: &Site, email: &str) {
    browser.goto(&site.url("/auth/signup")).await;
    browser.fill("#f-email", email).await;
    browser.fill("#f-password", "correct horse battery").await;
    browser.click("main form button[type=submit]").await;
    browser.wait_for_text(".nav-user .who", email).await;
}

async fn cancel_and_refund(javascript: bool) {
    let site = Site::start(Duration::from_secs(900)).await;
    let api = site.server.api();
    let seller = api.as_user(&api.sign_up("refund-seller@test.com").await);
    let event_at = (Timestamp::now() + Duration::from_secs(30 * 86_400)).to_rfc3339();
    let res = seller
        .post_once_known(
            "/api/tickets",
            json!({"title": "Jazz night — Balcony", "price": "40", "eventAt": event_at,
                   "refundPolicy": {"cutoffHours": 48, "feePercent": 10}}),
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::CREATED);
    let ticket = res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let driver = Driver::start().await;
    let (shots, browser) = if javascript {
        (
            Shots::new("cancel_and_refund"),
            driver.browser("buyer").await,
        )
    } else {
        (
            Shots::new("cancel_and_refund_no_js"),
            driver.browser_without_js("buyer").await,
        )
    };
    sign_up(&browser, &site, "refund-buyer@test.com").await;
    browser.goto(&site.url(&format!("/tickets/{ticket}"))).await;
    browser
        .wait_for_text(
            "#refund-policy-facts",
            "cancel up to 48 hours before the event, less a 10% fee",
        )
        .await;
    browser.wait_for_text("#event-at", "Event: ").await;
    browser.screenshots(&shots, "ticket").await;
    browser.click("form[action='/orders'] button").await;
    browser.wait_for("#f-number").await;
    browser.fill("#f-number", "4242 4242 4242 4242").await;
    browser.fill("#f-expiry", "12/34").await;
    browser.fill("#f-cvc", "123").await;
    browser
        .click("form[action$='/pay'] button[type=submit]")
        .await;
    browser.wait_for_text("#order-status", "Complete").await;

    // What a cancellation gives back, the fee and until when.
    browser.wait_for_text("#refund-amount", "$36.00").await;
    browser.wait_for_text("#refund-fee", "$4.00").await;
    browser.wait_for_text("#refund-deadline", "UTC").await;
    browser.screenshots(&shots, "paid-with-refund-offer").await;

    browser
        .click("form[action$='/refund'] button[type=submit]")
        .await;
    browser.wait_for_text("#refund-status", "Refunded.").await;
    browser.wait_for_text("#order-status", "Refunded").await;
    browser
        .wait_for_text("#order-refunded", "cancelled and refunded")
        .await;
    assert!(!browser.find_now("form[action$='/refund']").await);
    browser.screenshots(&shots, "refunded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_refund_in_chromium() {
    cancel_and_refund(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_refund_in_chromium_without_javascript() {
    cancel_and_refund(false).await
}

/// The sell form's refund fields: a policy without the event's time is refused beside
/// them; the edit form shows a listing's policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sell_and_edit_forms_take_a_refund_policy_in_chromium() {
    let site = Site::start(Duration::from_secs(900)).await;
    let driver = Driver::start().await;
    let shots = Shots::new("refund_policy_forms");
    let browser = driver.browser_without_js("seller").await;
    sign_up(&browser, &site, "policy-seller@test.com").await;
    browser.goto(&site.url("/tickets/new")).await;
    browser
        .wait_for_text("#refund-policy legend", "Event and refunds")
        .await;
    browser.fill("#f-title", "Theatre — Stalls").await;
    browser.fill("#f-price", "30").await;
    browser.fill("#f-cutoffHours", "24").await;
    browser.fill("#f-feePercent", "5").await;
    browser.click("main form button[type=submit]").await;
    browser
        .wait_for_text(
            "#f-refundPolicy-error",
            "A refund policy needs the event's time",
        )
        .await;
    browser.screenshots(&shots, "policy-without-event").await;

    // A listing with a policy (made through the API: a date field is typed per locale).
    let api = site.server.api();
    let seller = api.as_user(&api.sign_up("policy-api@test.com").await);
    let event_at = (Timestamp::now() + Duration::from_secs(10 * 86_400)).to_rfc3339();
    let res = seller
        .post_once_known(
            "/api/tickets",
            json!({"title": "Ballet", "price": 55, "eventAt": event_at,
                   "refundPolicy": {"cutoffHours": 72, "feePercent": 2.5}}),
        )
        .await;
    let ticket = res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let owner = driver.browser("owner").await;
    owner.goto(&site.url("/auth/signin")).await;
    owner.fill("#f-email", "policy-api@test.com").await;
    owner
        .fill("#f-password", ticketing_kit::testing::PASSWORD)
        .await;
    owner.click("main form button[type=submit]").await;
    owner
        .wait_for_text(".nav-user .who", "policy-api@test.com")
        .await;
    owner.goto(&site.url(&format!("/tickets/{ticket}"))).await;
    owner.wait_for_text(".edit h2", "Edit your ticket").await;
    owner.wait_for("#f-cutoffHours[value='72']").await;
    owner.wait_for("#f-feePercent[value='2.5']").await;
    // Saving the edit form sends the policy back unchanged.
    owner.fill("#f-price", "60").await;
    owner.click(".edit form button[type=submit]").await;
    owner.wait_for_text("p.price", "$60.00").await;
    owner
        .wait_for_text(
            "#refund-policy-facts",
            "72 hours before the event, less a 2.5% fee",
        )
        .await;
    owner.screenshots(&shots, "edit-with-policy").await;
}
