//! Revoke: sign up (a new session), sign out, and the old token must be refused within
//! a second (issue 31). A token still taken after a second is a failure
//! (`revoke: old token still taken after 1 s`); how long each refusal took is counted
//! under the request name `/api/orders (signed-out token)`.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use goose::prelude::*;
use reqwest::header::SET_COOKIE;
use ticketing_contracts::api::users::Credentials;

use super::journey;
use super::steps::{call_as, fresh_email, wrong, Reply, NONE, PASSWORD};

/// How long after sign-out a token may still be taken.
pub const WITHIN: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(50);

journey!(revoke, "revoke", revoke_steps);

async fn revoke_steps(user: &mut GooseUser) -> TransactionResult {
    let credentials = Credentials::new(fresh_email(), PASSWORD);
    let token = sign_up_token(user, &credentials).await?;
    let bearer = format!("Bearer {token}");
    let _: Reply<serde_json::Value> =
        with_token(user, GooseMethod::Post, "/api/users/signout", &bearer, &[]).await?;
    let signed_out = Instant::now();
    loop {
        let mut reply: Reply<serde_json::Value> = with_token(
            user,
            GooseMethod::Get,
            "/api/orders (signed-out token)",
            &bearer,
            &[(401, "User not authorized.")],
        )
        .await?;
        if reply.body.is_none() {
            return Ok(());
        }
        if signed_out.elapsed() > WITHIN {
            let what = "revoke: old token still taken after 1 s".to_owned();
            return Err(wrong(user, &mut reply, what));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Sign up with `credentials`: the session's token (from its cookie).
async fn sign_up_token(
    user: &mut GooseUser,
    credentials: &Credentials,
) -> Result<String, Box<TransactionError>> {
    let builder = user
        .get_request_builder(&GooseMethod::Post, "/api/users/signup")?
        .json(credentials);
    let request = GooseRequest::builder()
        .method(GooseMethod::Post)
        .path("/api/users/signup")
        .name("/api/users/signup")
        .set_request_builder(builder)
        .build();
    let mut goose = user.request(request).await?;
    let token = goose
        .response
        .as_ref()
        .ok()
        .filter(|r| r.status().is_success())
        .and_then(|r| {
            r.headers()
                .get_all(SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|c| c.strip_prefix("session="))
                .and_then(|c| c.split(';').next())
                .and_then(|v| STANDARD.decode(v).ok())
                .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
                .and_then(|s| s["jwt"].as_str().map(str::to_owned))
        });
    match token {
        Some(token) => Ok(token),
        None => {
            let tag = "revoke: sign-up gave no session cookie";
            super::record_failure(tag);
            Err(
                match user.set_failure(tag, &mut goose.request, None, None) {
                    Err(err) => err,
                    Ok(()) => Box::new(TransactionError::RequestFailed {
                        raw_request: goose.request.clone(),
                    }),
                },
            )
        }
    }
}

/// A request with `bearer` as its `Authorization`, reported under `name` (whose path is
/// its first word).
async fn with_token(
    user: &mut GooseUser,
    method: GooseMethod,
    name: &str,
    bearer: &str,
    allowed: &[(u16, &str)],
) -> Result<Reply<serde_json::Value>, Box<TransactionError>> {
    let path = name.split(' ').next().unwrap_or(name);
    call_as(user, method, (path, name), NONE, allowed, Some(bearer)).await
}
