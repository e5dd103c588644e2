//! The steps journeys are made of: one checked request, and the requests every journey
//! shares (sign up, list, sell, order, show, cancel, pay) written once.
//!
//! Every request says which answers the contract allows it; anything else (a wrong
//! status, a body that does not parse, a transport error) is recorded as a failure of
//! that request and ends the journey's iteration.

use std::collections::HashSet;
use std::time::Duration;

use goose::goose::GooseResponse;
use goose::metrics::GooseRequestMetric;
use goose::prelude::*;
use rand::seq::SliceRandom;
use serde::de::DeserializeOwned;
use serde::Serialize;
use ticketing_contracts::api::orders::{CreateOrder, OrderBody};
use ticketing_contracts::api::payments::{CreatePayment, PaymentBody};
use ticketing_contracts::api::tickets::{TicketBody, TicketInput};
use ticketing_contracts::api::users::{Credentials, UserBody};
use ticketing_contracts::status::OrderStatus;

use super::{hot, record_failure, Session};

/// What a request may be answered with besides success: a status and the start of the
/// message the contract gives for it.
pub type Allowed = &'static [(u16, &'static str)];

/// Another buyer may have taken the ticket since it was listed.
pub const LOST_RACE: Allowed = &[(400, "Ticket is already reserved")];

pub const PASSWORD: &str = "load-password-1";

pub fn fresh_email() -> String {
    format!("load-{}@loadgen.test", uuid::Uuid::new_v4().simple())
}

/// The answer to one request: its body on a 2xx (`None` on an allowed refusal), and
/// the request's metric, to record a failure found in the body.
pub struct Reply<T> {
    pub body: Option<T>,
    pub request: GooseRequestMetric,
}

pub type Step<T> = Result<T, Box<TransactionError>>;

/// The POSTs that take an `Idempotency-Key`: loadgen sends one with each and retries a
/// try that failed in a way a dying server process causes, so a kill costs latency,
/// not an error.
const KEYED: [&str; 3] = ["/api/tickets", "/api/orders", "/api/payments"];
/// Tries of a keyed POST, and the pause before each retry (doubled, capped).
const KEYED_TRIES: u32 = 8;
const RETRY_PAUSE: Duration = Duration::from_millis(100);
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(1);

/// One request of a journey, reported under `name` (the path with `{id}` for its
/// variable parts). Anything the contract does not allow is recorded as a failure of
/// the request and ends the iteration. A keyed POST ([`KEYED`]) is retried with its
/// key after a transport error, a 502/503/504 or a 409 (its first try still running):
/// its retries are reported as `{name} (retry with its key)`, and the tries that
/// failed before one succeeded are counted as recovered, not as failures.
pub async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
    user: &mut GooseUser,
    method: GooseMethod,
    (path, name): (&str, &str),
    body: Option<&B>,
    allowed: &[(u16, &str)],
) -> Step<Reply<T>> {
    call_as(user, method, (path, name), body, allowed, None).await
}

/// [`call`] with `authorization` (a `Bearer` token) instead of the user's cookie.
pub async fn call_as<B: Serialize + ?Sized, T: DeserializeOwned>(
    user: &mut GooseUser,
    method: GooseMethod,
    (path, name): (&str, &str),
    body: Option<&B>,
    allowed: &[(u16, &str)],
    authorization: Option<&str>,
) -> Step<Reply<T>> {
    let keyed = matches!(method, GooseMethod::Post) && body.is_some() && KEYED.contains(&name);
    let key = keyed.then(|| uuid::Uuid::new_v4().to_string());
    let retry_name = format!("{name} (retry with its key)");
    let mut failed_tries: Vec<(String, Option<u16>)> = Vec::new();
    let mut pause = RETRY_PAUSE;
    loop {
        let this = if failed_tries.is_empty() {
            name
        } else {
            retry_name.as_str()
        };
        let last = !keyed || failed_tries.len() as u32 + 1 >= KEYED_TRIES;
        let mut builder = user.get_request_builder(&method, path)?;
        if let Some(body) = body {
            builder = builder.json(body);
        }
        if let Some(key) = &key {
            builder = builder.header("Idempotency-Key", key.as_str());
        }
        if let Some(authorization) = authorization {
            builder = builder.header("Authorization", authorization);
        }
        let request = GooseRequest::builder()
            .method(method.clone())
            .path(path)
            .name(this)
            .set_request_builder(builder)
            .build();
        let goose = user.request(request).await?;
        let status = goose.response.as_ref().ok().map(|r| r.status().as_u16());
        let retryable = matches!(status, None | Some(409 | 502 | 503 | 504));
        if retryable && !last {
            failed_tries.push((this.to_owned(), status));
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_PAUSE_MAX);
            continue;
        }
        let answer = answer(user, this, goose, allowed).await;
        if answer.is_ok() {
            for (name, status) in failed_tries {
                super::record_recovered(&name, status);
            }
        }
        return answer;
    }
}

/// Judge one answer: its body on a 2xx, `None` on an allowed refusal, else a failure.
async fn answer<T: DeserializeOwned>(
    user: &mut GooseUser,
    name: &str,
    goose: GooseResponse,
    allowed: &[(u16, &str)],
) -> Step<Reply<T>> {
    let GooseResponse {
        mut request,
        response,
    } = goose;
    let response = match response {
        Ok(response) => response,
        Err(err) => {
            let tag = format!("{name}: {err}");
            return Err(fail(user, &tag, &mut request, None));
        }
    };
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    if (200..300).contains(&status) {
        let text = if text.is_empty() { "null" } else { &text };
        return match serde_json::from_str::<T>(text) {
            Ok(body) => Ok(Reply {
                body: Some(body),
                request,
            }),
            Err(err) => {
                let tag = format!("{name}: unexpected body ({err})");
                Err(fail(user, &tag, &mut request, Some(text)))
            }
        };
    }
    let expected = allowed
        .iter()
        .any(|(s, message)| *s == status && text.contains(message));
    if expected {
        user.set_success(&mut request)?;
        return Ok(Reply {
            body: None,
            request,
        });
    }
    let tag = format!("{name}: {status}");
    Err(fail(user, &tag, &mut request, Some(&text)))
}

/// A GET whose path is its name.
pub async fn get<T: DeserializeOwned>(user: &mut GooseUser, path: &str) -> Step<Reply<T>> {
    call(user, GooseMethod::Get, (path, path), NONE, &[]).await
}

/// A POST whose path is its name.
pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
    user: &mut GooseUser,
    path: &str,
    body: Option<&B>,
) -> Step<Reply<T>> {
    call(user, GooseMethod::Post, (path, path), body, &[]).await
}

/// Record `request` as failed and give the journey's error.
fn fail(
    user: &GooseUser,
    tag: &str,
    request: &mut GooseRequestMetric,
    body: Option<&str>,
) -> Box<TransactionError> {
    let shown: String = body.unwrap_or_default().chars().take(300).collect();
    eprintln!("loadgen: {tag} {shown}");
    record_failure(tag);
    match user.set_failure(tag, request, None, body) {
        Err(err) => err,
        Ok(()) => Box::new(TransactionError::RequestFailed {
            raw_request: request.clone(),
        }),
    }
}

/// A check on a 2xx answer that did not hold: a failure of that request.
pub fn wrong<T>(user: &GooseUser, reply: &mut Reply<T>, what: String) -> Box<TransactionError> {
    fail(user, &what, &mut reply.request, None)
}

pub const NONE: Option<&()> = None;

/// An account for `credentials`, signed in (the cookie); who is signed in is kept.
pub async fn sign_up_as(user: &mut GooseUser, credentials: &Credentials) -> Step<()> {
    let reply: Reply<UserBody> = post(user, "/api/users/signup", Some(credentials)).await?;
    remember(user, reply);
    Ok(())
}

/// Keep who `reply` (a sign-up or sign-in) signed in.
pub fn remember(user: &mut GooseUser, reply: Reply<UserBody>) {
    if let Some(signed_in) = reply.body {
        user.set_session_data(Session {
            user_id: signed_in.id,
        });
    }
}

/// Every user's first step: an account of its own, signed in.
pub async fn sign_up(user: &mut GooseUser) -> TransactionResult {
    sign_up_as(user, &Credentials::new(fresh_email(), PASSWORD)).await
}

/// List a ticket.
pub async fn create_ticket(user: &mut GooseUser, input: &TicketInput) -> Step<Reply<TicketBody>> {
    post(user, "/api/tickets", Some(input)).await
}

/// The first `limit` tickets for sale.
pub async fn list(user: &mut GooseUser, limit: usize) -> Step<Vec<TicketBody>> {
    let path = format!("/api/tickets?limit={limit}");
    let reply: Reply<Vec<TicketBody>> =
        call(user, GooseMethod::Get, (&path, "/api/tickets"), NONE, &[]).await?;
    Ok(reply.body.unwrap_or_default())
}

/// A ticket for sale that is neither the caller's nor one of the hot ones.
async fn pick_ticket(user: &mut GooseUser) -> Step<Option<String>> {
    let tickets = list(user, 200).await?;
    let me = user
        .get_session_data::<Session>()
        .map(|s| s.user_id.clone())
        .unwrap_or_default();
    let hot: HashSet<&String> = hot().iter().collect();
    let candidates: Vec<&TicketBody> = tickets
        .iter()
        .filter(|t| t.user_id != me && !hot.contains(&t.id))
        .collect();
    Ok(candidates
        .choose(&mut rand::thread_rng())
        .map(|t| t.id.clone()))
}

/// A POST naming an object another service created (a ticket to order, an order to
/// pay): the service learns about it by event, and waits for it up to 2 s (docs/
/// decisions/0029); if it is still on its way the answer is 409 `... is not known here
/// yet` with `Retry-After`, retried here after that pause for up to 5 s (the retries
/// counted under their own name, so the report shows how often the events were slower
/// than the wait). A 404 is a failure: the object does not exist.
async fn call_once_known<B: Serialize + ?Sized, T: DeserializeOwned>(
    user: &mut GooseUser,
    path: &'static str,
    body: Option<&B>,
    allowed: Allowed,
) -> Step<Reply<T>> {
    const NOT_KNOWN_YET: [(u16, &str); 2] = [
        (409, "Order is not known here yet"),
        (409, "Ticket is not known here yet"),
    ];
    let retried = format!("{path} (retried: not known yet)");
    let give_up = std::time::Instant::now() + Duration::from_secs(5);
    let mut attempt = 0;
    loop {
        let name = if attempt == 0 { path } else { retried.as_str() };
        let mut also: Vec<(u16, &'static str)> = allowed.to_vec();
        let patient = std::time::Instant::now() < give_up;
        if patient {
            also.extend(NOT_KNOWN_YET);
        }
        let reply = call(user, GooseMethod::Post, (path, name), body, &also).await?;
        let not_known = reply.body.is_none() && reply.request.status_code == 409 && patient;
        if !not_known {
            return Ok(reply);
        }
        attempt += 1;
        // The answer's `Retry-After`: 1 s.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Reserve `ticket_id`: the order, or `None` when another buyer was faster.
pub async fn place_order(user: &mut GooseUser, ticket_id: &str) -> Step<Option<OrderBody>> {
    let order = CreateOrder::new(ticket_id);
    let mut reply: Reply<OrderBody> =
        call_once_known(user, "/api/orders", Some(&order), LOST_RACE).await?;
    match reply.body.take() {
        Some(order) if order.status != OrderStatus::Created || order.ticket.id != ticket_id => {
            let what = format!("new order {} is {:?}", order.id, order.status);
            Err(wrong(user, &mut reply, what))
        }
        order => Ok(order),
    }
}

/// Reserve a listed ticket: its id and the order, or `None` when there was none to
/// take or another buyer was faster.
pub async fn reserve(user: &mut GooseUser) -> Step<Option<(String, OrderBody)>> {
    let Some(ticket_id) = pick_ticket(user).await? else {
        return Ok(None);
    };
    let order = place_order(user, &ticket_id).await?;
    Ok(order.map(|order| (ticket_id, order)))
}

/// One of the caller's orders, which must exist.
pub async fn show_order(user: &mut GooseUser, id: &str) -> Step<Reply<OrderBody>> {
    let path = format!("/api/orders/{id}");
    call(
        user,
        GooseMethod::Get,
        (&path, "/api/orders/{orderId}"),
        NONE,
        &[],
    )
    .await
}

pub async fn cancel(user: &mut GooseUser, order_id: &str) -> TransactionResult {
    let path = format!("/api/orders/{order_id}");
    let _: Reply<serde_json::Value> = call(
        user,
        GooseMethod::Delete,
        (&path, "/api/orders/{orderId}"),
        NONE,
        &[],
    )
    .await?;
    Ok(())
}

/// Pay `order` with a card that succeeds, once the payments service knows it.
pub async fn pay(user: &mut GooseUser, order: &OrderBody) -> TransactionResult {
    let payment = CreatePayment::new(order.id.clone(), "tok_visa");
    let mut reply: Reply<PaymentBody> =
        call_once_known(user, "/api/payments", Some(&payment), &[]).await?;
    if reply.body.as_ref().map(|p| &p.order_id) != Some(&order.id) {
        let what = format!("payment of {} names another order", order.id);
        return Err(wrong(user, &mut reply, what));
    }
    Ok(())
}
