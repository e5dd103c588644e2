//! Proof helpers of session revocation: a token's standing with every service, and how
//! long after its session ended every service refused it.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::header::SET_COOKIE;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use super::api::{Api, PASSWORD};

/// The token of a `Set-Cookie: session=<base64 {"jwt": ..}>` answer.
pub fn token_of(res: &Response) -> String {
    let cookie = res
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("session="))
        .expect("a session cookie");
    let value = cookie.split(';').next().unwrap_or_default();
    let session: Value =
        serde_json::from_slice(&STANDARD.decode(value).expect("base64 cookie")).expect("JSON");
    session["jwt"].as_str().expect("jwt").to_owned()
}

/// Sign up `email` (password [`PASSWORD`]): the first session's token.
pub async fn sign_up_token(api: &Api, email: &str) -> String {
    let res = api
        .post_json(
            "/api/users/signup",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "sign up {email}");
    token_of(&res)
}

/// Sign in `email` with `password`: a new session's token.
pub async fn sign_in_token(api: &Api, email: &str, password: &str) -> String {
    let res = api
        .post_json(
            "/api/users/signin",
            json!({"email": email, "password": password}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK, "sign in {email}");
    token_of(&res)
}

/// What each service makes of a token: tickets (`POST /api/tickets {}`: 400 when
/// signed in), orders (`GET /api/orders`), payments (`GET /api/payments`), and auth
/// (`currentUser`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub tickets: StatusCode,
    pub orders: StatusCode,
    pub payments: StatusCode,
    pub signed_in: bool,
}

impl Standing {
    /// Every service refuses the token.
    pub fn refused(&self) -> bool {
        [self.tickets, self.orders, self.payments]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED)
            && !self.signed_in
    }

    /// Every service takes the token.
    pub fn accepted(&self) -> bool {
        self.tickets == StatusCode::BAD_REQUEST
            && self.orders == StatusCode::OK
            && self.payments == StatusCode::OK
            && self.signed_in
    }
}

/// Ask every service about `token` (at once).
pub async fn standing(api: &Api, token: &str) -> Standing {
    let api = api.with_token(token);
    let (tickets, orders, payments, me) = tokio::join!(
        api.post_json("/api/tickets", json!({})),
        api.get("/api/orders"),
        api.get("/api/payments"),
        api.get("/api/users/currentuser"),
    );
    let me: Value = me.json().await.unwrap_or(Value::Null);
    Standing {
        tickets: tickets.status(),
        orders: orders.status(),
        payments: payments.status(),
        signed_in: !me["currentUser"].is_null(),
    }
}

/// How long after `since` every service refused `token` — three rounds in a row, so
/// that each replica behind a gateway had its say; the time of the first of them.
/// Fails past `limit`.
pub async fn time_until_refused(
    api: &Api,
    token: &str,
    since: Instant,
    limit: Duration,
) -> Duration {
    let mut first_refused: Option<Duration> = None;
    let mut in_a_row = 0;
    loop {
        let asked = since.elapsed();
        let now = standing(api, token).await;
        if now.refused() {
            first_refused.get_or_insert(asked);
            in_a_row += 1;
            if in_a_row == 3 {
                return first_refused.expect("set");
            }
        } else {
            first_refused = None;
            in_a_row = 0;
            assert!(
                since.elapsed() < limit,
                "token still taken {:?} after its session ended: {now:?}",
                since.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The `q` quantile (0..=1) of `samples` (nearest rank).
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
