//! The `/webhooks` pages in Chromium, with JavaScript and without: add an endpoint (a
//! bad URL refused beside its field; the secret shown once), see a listing's event
//! delivered to it, replay it, delete the endpoint. Screenshots under
//! `target/browser-screenshots/webhooks_pages/`.

#[path = "../../webhooks/tests/receiver/mod.rs"]
mod receiver;
mod support;

use std::time::Duration;

use receiver::Receiver;
use support::browser::{Browser, Driver, Shots};
use support::Site;

async fn sign_up(browser: &Browser, site: &Site, email: &str) {
    browser.goto(&site.url("/auth/signup")).await;
    browser.fill("#f-email", email).await;
    browser.fill("#f-password", "correct horse battery").await;
    browser.click("main form button[type=submit]").await;
    browser.wait_for_text(".nav-user .who", email).await;
}

async fn journey(browser: &Browser, site: &Site, shots: &Shots, email: &str) {
    let receiver = Receiver::start().await;
    sign_up(browser, site, email).await;
    browser.click("a[href='/webhooks']").await;
    browser.wait_for("#webhooks-empty").await;
    browser.screenshots(shots, "empty").await;

    browser.fill("#f-url", "ftp://example.com/hook").await;
    browser
        .click("form[action='/webhooks'] button[type=submit]")
        .await;
    browser.wait_for_text("#f-url-error", "http(s)").await;
    browser.screenshots(shots, "refused").await;

    browser.fill("#f-url", &receiver.url()).await;
    browser
        .click("form[action='/webhooks'] button[type=submit]")
        .await;
    let secret = browser.wait_for_text("#webhook-secret", "whsec_").await;
    browser.wait_for("#webhooks").await;
    browser.screenshots(shots, "created").await;
    // Shown once: the list does not show it again.
    browser.goto(&site.url("/webhooks")).await;
    browser.wait_for("#webhooks").await;
    assert!(!browser.text().await.contains("whsec_"));

    // A listing's event reaches the endpoint, signed with that secret.
    browser.goto(&site.url("/tickets/new")).await;
    browser.fill("#f-title", "Webhook night").await;
    browser.fill("#f-price", "12").await;
    browser.click("main form button[type=submit]").await;
    browser.wait_for("h1").await;
    receiver.wait_for(1, Duration::from_secs(30)).await;
    let got = receiver.received();
    assert!(got[0].verifies(secret.trim()), "signature");
    assert_eq!(got[0].subject(), "ticket:created");

    browser.goto(&site.url("/webhooks")).await;
    browser.click("#webhooks a").await;
    browser.wait_for_text("#deliveries", "delivered").await;
    browser.screenshots(shots, "deliveries").await;

    browser
        .click("form[action$='/replay'] button[type=submit]")
        .await;
    browser.wait_for_text("#replayed", "queued again").await;
    browser.screenshots(shots, "replayed").await;
    tokio::time::timeout(Duration::from_secs(30), async {
        while receiver.received().len() < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the replay arrives");
    let got = receiver.received();
    assert_eq!(got[1].id, got[0].id, "the same id again");

    browser.goto(&site.url("/webhooks")).await;
    browser
        .click("#webhooks form[action$='/delete'] button")
        .await;
    browser.wait_for("#webhooks-empty").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_pages() {
    let site = Site::start_with(Duration::from_secs(900), true).await;
    let driver = Driver::start().await;
    let shots = Shots::new("webhooks_pages");
    let with_js = driver.browser("js").await;
    journey(&with_js, &site, &shots, "hooks-js@test.com").await;
    let without_js = driver.browser_without_js("nojs").await;
    journey(&without_js, &site, &shots, "hooks-nojs@test.com").await;
}
