//! The binary's two ways of serving the pages: beside the API (`--target all`, the
//! default) and alone against a gateway (`--target web --api-url`).

mod process;

use std::process::Command;

use process::Running;
use reqwest::StatusCode;

fn csrf_of(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("a form") + marker.len();
    page[start..start + page[start..].find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn the_pages_run_beside_the_api_or_alone_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let all = Running::start(&["--data-dir", dir.path().to_str().unwrap()], &[]).await;
    let home = reqwest::get(all.url("/")).await.unwrap();
    assert_eq!(home.status(), StatusCode::OK);
    assert!(home.text().await.unwrap().contains("Tickets for sale"));

    // Alone: no data directory of its own; everything through the API's URL.
    let web = Running::start(
        &[
            "--target",
            "web",
            "--api-url",
            &all.base,
            "--cookie-secure",
            "false",
        ],
        &[],
    )
    .await;
    assert_eq!(
        reqwest::get(web.url("/readyz")).await.unwrap().status(),
        StatusCode::OK
    );
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = browser
        .get(web.url("/auth/signup"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let signed_up = browser
        .post(web.url("/auth/signup"))
        .form(&[
            ("csrf", csrf_of(&form).as_str()),
            ("email", "alone@test.com"),
            ("password", "password123"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_up.status(), StatusCode::SEE_OTHER);
    // The API's session cookie, relayed by the web process to the browser.
    assert!(signed_up
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("session=")));
    let home = browser
        .get(web.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(home.contains("alone@test.com"), "{home}");

    // The API gone: not ready, and pages say so kindly.
    drop(all);
    assert_eq!(
        reqwest::get(web.url("/readyz")).await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let page = reqwest::get(web.url("/")).await.unwrap();
    assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("Temporarily unavailable"));
}

/// Sign in through the pages at `base` as a visitor behind a proxy that names it
/// `client` in `X-Forwarded-For`: the page's status.
async fn sign_in_page(base: &str, client: &str, email: &str) -> StatusCode {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = browser
        .get(format!("{base}/auth/signin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let page = browser
        .post(format!("{base}/auth/signin"))
        .header("x-forwarded-for", client)
        .form(&[
            ("csrf", csrf_of(&form).as_str()),
            ("email", email),
            ("password", "password123"),
        ])
        .send()
        .await
        .unwrap();
    let status = page.status();
    let text = page.text().await.unwrap();
    if status == StatusCode::TOO_MANY_REQUESTS {
        assert!(text.contains("Too many attempts"), "{text}");
    }
    status
}

/// The API's per-address limit meets the visitor, not the web process (issue 31, the gap
/// of decision 0014): in-process under `--target all`, the page's own connection and
/// `X-Forwarded-For`; over HTTP from `--target web`, `X-Forwarded-For` with the visitor
/// appended. Two attempts a minute per address here: a third from one visitor is
/// refused, while another visitor behind the same proxy still gets through.
#[tokio::test]
async fn the_pages_forward_the_visitor_to_the_api_limits() {
    let dir = tempfile::tempdir().unwrap();
    let limits = [
        "--auth-rate-per-address",
        "2",
        "--auth-rate-per-account",
        "100",
        "--trusted-proxies",
        "127.0.0.1/32",
    ];
    let mut args = vec!["--data-dir", dir.path().to_str().unwrap()];
    args.extend(limits);
    let all = Running::start(&args, &[]).await;
    let web_args = [
        "--target",
        "web",
        "--api-url",
        &all.base,
        "--cookie-secure",
        "false",
    ];
    let web = Running::start(&web_args, &[]).await;
    for (base, first, second) in [
        (&all.base, "203.0.113.7", "203.0.113.8"),
        (&web.base, "198.51.100.1", "198.51.100.2"),
    ] {
        for n in 0..2 {
            let status = sign_in_page(base, first, &format!("nobody{n}@test.com")).await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{base} attempt {n}"
            );
        }
        let status = sign_in_page(base, first, "nobody9@test.com").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{base}");
        let status = sign_in_page(base, second, "nobody9@test.com").await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{base}: another visitor"
        );
    }
}

#[test]
fn web_alone_needs_an_api_url() {
    let out = Command::new(env!("CARGO_BIN_EXE_ticketing"))
        .args(["--target", "web", "--listen", "127.0.0.1:0"])
        .env_remove("TICKETING_API_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--api-url"));
}
