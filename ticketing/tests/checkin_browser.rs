//! Passes and gate devices in Chromium, with JavaScript and without (issue 32): a buyer
//! pays and sees a QR code per pass on the order's page — decoded from the screenshot
//! back into the pass's code —, reissues it (a new code, the old one revoked); a seller
//! registers a gate device on `/checkin` (its token shown once) and revokes it.
//! Screenshots under `target/browser-screenshots/checkin_pages/`.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::browser::{Browser, Driver, Shots};
use support::Site;
use ticketing_kit::testing::{reply, Api, User};

async fn sign_up(browser: &Browser, site: &Site, email: &str) {
    browser.goto(&site.url("/auth/signup")).await;
    browser.fill("#f-email", email).await;
    browser.fill("#f-password", "correct horse battery").await;
    browser.click("main form button[type=submit]").await;
    browser.wait_for_text(".nav-user .who", email).await;
}

/// The QR codes in the latest screenshot at `path`, decoded.
fn decode_qr(path: &std::path::Path) -> Vec<String> {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let (w, h) = (info.width as usize, info.height as usize);
    let stride = info.line_size;
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        let at = y * stride + x * channels;
        let px = &buf[at..at + channels.min(3)];
        (px.iter().map(|v| *v as u32).sum::<u32>() / px.len() as u32) as u8
    });
    img.detect_grids()
        .into_iter()
        .filter_map(|grid| grid.decode().ok().map(|(_, text)| text))
        .collect()
}

/// The buyer's passes of `order`, through the API.
async fn passes(api: &Api, order: &str) -> Vec<Value> {
    api.get_json(&format!("/api/passes?orderId={order}"))
        .await
        .as_array()
        .unwrap()
        .clone()
}

async fn journey(browser: &Browser, site: &Site, shots: &Shots, tag: &str) {
    let api = site.server.api();
    let seller: User = api.sign_up(&format!("gate-seller-{tag}@test.com")).await;
    let seller_api = api.as_user(&seller);
    let ticket = seller_api.sell(&format!("Gig {tag}"), json!("25")).await;

    // The buyer pays in the browser and sees the pass.
    let email = format!("gate-buyer-{tag}@test.com");
    sign_up(browser, site, &email).await;
    browser.goto(&site.url(&format!("/tickets/{ticket}"))).await;
    browser.click("form[action='/orders'] button").await;
    browser.wait_for(".countdown-time").await;
    let order = browser
        .current_url()
        .await
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    browser.fill("#f-number", "4242 4242 4242 4242").await;
    browser.fill("#f-expiry", "12/34").await;
    browser.fill("#f-cvc", "123").await;
    browser
        .click("form[action$='/pay'] button[type=submit]")
        .await;
    // The passes are issued a moment after the payment: reload until they show.
    let mut shown = false;
    for _ in 0..50 {
        browser.goto(&site.url(&format!("/orders/{order}"))).await;
        if browser.find_now("#passes .qr svg").await {
            shown = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(shown, "no QR code: {}", browser.text().await);
    browser.screenshots(shots, &format!("pass-{tag}")).await;
    let shot = shots.desktop(&format!("pass-{tag}"));
    let decoded = decode_qr(&shot);

    // The code in the QR is the pass's, as the API gives it to the buyer.
    let buyer = buyer_api(site, &email).await;
    let before = passes(&buyer, &order).await;
    assert_eq!(before.len(), 1);
    assert_eq!(
        decoded,
        vec![before[0]["code"].as_str().unwrap().to_owned()]
    );

    // Reissue: a new code on the page, the old one revoked.
    browser
        .click("#passes form[action$='/reissue'] button")
        .await;
    browser.wait_for("#passes .qr svg").await;
    let after = passes(&buyer, &order).await;
    assert_ne!(after[0]["code"], before[0]["code"]);
    browser.screenshots(shots, &format!("reissued-{tag}")).await;
    let shot = shots.desktop(&format!("reissued-{tag}"));
    assert_eq!(
        decode_qr(&shot),
        vec![after[0]["code"].as_str().unwrap().to_owned()]
    );

    // The seller registers a gate device, sees its token once, and revokes it.
    browser.click("form[action='/auth/signout'] button").await;
    browser.wait_for("a[href='/auth/signup']").await;
    browser.goto(&site.url("/auth/signin")).await;
    browser.fill("#f-email", &seller.email).await;
    browser
        .fill("#f-password", ticketing_kit::testing::PASSWORD)
        .await;
    browser.click("main form button[type=submit]").await;
    browser.wait_for_text(".nav-user .who", &seller.email).await;
    // The listing sold out (its one ticket is the buyer's): no longer offered as a
    // checkbox, it is named by id; a listing still for sale is a checkbox.
    let on_sale = seller_api.sell(&format!("Encore {tag}"), json!("30")).await;
    browser.click("a[href='/checkin']").await;
    browser.wait_for("#devices-empty").await;
    browser.fill("#f-name", "North door").await;
    browser
        .click(&format!("input[name='ticketIds'][value='{on_sale}']"))
        .await;
    browser.fill("#f-more", &ticket).await;
    browser
        .click("form[action='/checkin/devices'] button[type=submit]")
        .await;
    let token = browser.wait_for_text("#device-token", "gd_").await;
    browser.wait_for("#devices").await;
    browser.screenshots(shots, &format!("device-{tag}")).await;
    // The token works, once only shown.
    let (status, body) = reply(
        reqwest::Client::new()
            .post(site.url("/api/checkin/redeem"))
            .header("Authorization", format!("Device {}", token.trim()))
            .json(&json!({"code": before[0]["code"], "nonce": "browser"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "revoked");
    browser.goto(&site.url("/checkin")).await;
    assert!(!browser.text().await.contains("gd_"));
    browser
        .click("#devices form[action$='/delete'] button")
        .await;
    browser.wait_for("#devices-empty").await;
    browser.click("form[action='/auth/signout'] button").await;
    browser.wait_for("a[href='/auth/signup']").await;
}

/// The buyer signed in through the API (the browser holds its own session).
async fn buyer_api(site: &Site, email: &str) -> Api {
    let api = site.server.api();
    let res = api
        .post_json(
            "/api/users/signin",
            json!({"email": email, "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    api
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkin_pages() {
    let site = Site::start_with_checkin(Duration::from_secs(900)).await;
    let driver = Driver::start().await;
    let shots = Shots::new("checkin_pages");
    let with_js = driver.browser("js").await;
    journey(&with_js, &site, &shots, "js").await;
    let without_js = driver.browser_without_js("nojs").await;
    journey(&without_js, &site, &shots, "nojs").await;
}
