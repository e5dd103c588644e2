//! Session revocation end to end, embedded (`--target all` composition, SQLite, the
//! in-process bus): a session signed out, or ended by a password change, is refused by
//! tickets, orders, payments and auth within a second; the others go on.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use ticketing_kit::testing::sessions::{
    quantile, sign_in_token, sign_up_token, standing, time_until_refused,
};
use ticketing_kit::testing::{TestBackend, TestEnv, TestServer, PASSWORD};

mod support;

const WITHIN: Duration = Duration::from_secs(1);

async fn trial(api: &ticketing_kit::testing::Api, n: usize) -> (Duration, Duration) {
    let email = format!("revoke{n}@test.com");
    let a = sign_up_token(api, &email).await;
    let b = sign_in_token(api, &email, PASSWORD).await;
    assert!(standing(api, &a).await.accepted());
    assert!(standing(api, &b).await.accepted());

    // Sign out A: A is refused everywhere within a second, B goes on.
    let res = api
        .with_token(&a)
        .post_json("/api/users/signout", json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<serde_json::Value>().await.unwrap(), json!({}));
    let signed_out = time_until_refused(api, &a, Instant::now(), WITHIN * 5).await;
    assert!(standing(api, &b).await.accepted(), "B must still work");

    // A password change through B: B is refused everywhere, the new session works.
    let c = sign_in_token(api, &email, PASSWORD).await;
    let res = api
        .with_token(&b)
        .put_json(
            "/api/users/password",
            json!({"currentPassword": PASSWORD, "newPassword": "another password"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let new = ticketing_kit::testing::sessions::token_of(&res);
    let changed = Instant::now();
    let b_gone = time_until_refused(api, &b, changed, WITHIN * 5).await;
    let c_gone = time_until_refused(api, &c, changed, WITHIN * 5).await;
    assert!(standing(api, &a).await.refused());
    assert!(
        standing(api, &new).await.accepted(),
        "the new session works"
    );
    (signed_out, b_gone.max(c_gone))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_sessions_are_refused_everywhere_within_a_second() {
    let env = TestEnv::new(TestBackend::Sqlite);
    let services = support::mount_all(&env.runtime, Duration::from_secs(120)).await;
    let server = TestServer::spawn(services).await;
    let api = server.api();
    let mut sign_outs = Vec::new();
    let mut changes = Vec::new();
    for n in 0..10 {
        let (signed_out, changed) = trial(&api, n).await;
        sign_outs.push(signed_out);
        changes.push(changed);
    }
    let (p99_out, p99_change) = (quantile(&sign_outs, 0.99), quantile(&changes, 0.99));
    println!("embedded: sign-out refused everywhere after p99 {p99_out:?}; password change {p99_change:?}");
    assert!(p99_out <= WITHIN && p99_change <= WITHIN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_everywhere_ends_every_session_in_every_service() {
    let env = TestEnv::new(TestBackend::Sqlite);
    let services = support::mount_all(&env.runtime, Duration::from_secs(120)).await;
    let server = TestServer::spawn(services).await;
    let api = server.api();
    let a = sign_up_token(&api, "all@test.com").await;
    let b = sign_in_token(&api, "all@test.com", PASSWORD).await;
    let other = sign_up_token(&api, "other@test.com").await;
    let res = api
        .with_token(&b)
        .post_json("/api/users/signout", json!({"everywhere": true}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let since = Instant::now();
    for token in [&a, &b] {
        let took = time_until_refused(&api, token, since, WITHIN * 5).await;
        assert!(took <= WITHIN, "{took:?}");
    }
    assert!(standing(&api, &other).await.accepted());
}
