//! The user journeys, one goose scenario each, and the requests they are made of.
//!
//! Every request says which answers the contract allows it; anything else (a wrong
//! status, a body that does not parse, a transport error) is recorded as a failure of
//! that request and ends the journey's iteration.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use goose::metrics::GooseRequestMetric;
use goose::prelude::*;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use ticketing_contracts::api::orders::{CreateOrder, OrderBody};
use ticketing_contracts::api::payments::{CreatePayment, PaymentBody};
use ticketing_contracts::api::tickets::{TicketBody, TicketInput};
use ticketing_contracts::api::users::{Credentials, CurrentUserBody, UserBody};
use ticketing_contracts::status::OrderStatus;

use crate::Args;

pub const JOURNEYS: [(&str, usize); 8] = [
    ("browse", 6),
    ("view", 5),
    ("account", 1),
    ("sell", 3),
    ("buy", 3),
    ("abandon", 1),
    ("cancel", 2),
    ("contention", 3),
];

/// The weights: the defaults above, overridden by `name=weight` items.
pub fn weights(items: &[String]) -> anyhow::Result<BTreeMap<&'static str, usize>> {
    let mut weights: BTreeMap<&'static str, usize> = JOURNEYS.into_iter().collect();
    for item in items.iter().filter(|i| !i.trim().is_empty()) {
        let (name, weight) = item
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("weight `{item}` is not name=weight"))?;
        let (known, _) = JOURNEYS
            .iter()
            .find(|(j, _)| *j == name.trim())
            .ok_or_else(|| anyhow::anyhow!("unknown journey `{name}`"))?;
        weights.insert(known, weight.trim().parse()?);
    }
    anyhow::ensure!(weights.values().any(|w| *w > 0), "every journey weighs 0");
    Ok(weights)
}

struct Config {
    hot_tickets: usize,
    seed_tickets: usize,
}

static CONFIG: OnceLock<Config> = OnceLock::new();
/// The few tickets the contention journey races for.
static HOT: OnceLock<Vec<String>> = OnceLock::new();

pub fn configure(args: &Args) {
    let _ = CONFIG.set(Config {
        hot_tickets: args.hot_tickets.max(1),
        seed_tickets: args.seed_tickets,
    });
}

fn hot() -> &'static [String] {
    HOT.get().map(Vec::as_slice).unwrap_or_default()
}

pub fn scenarios(weights: &BTreeMap<&'static str, usize>) -> Result<Vec<Scenario>, GooseError> {
    let mut out = Vec::new();
    for (name, weight) in weights {
        if *weight == 0 {
            continue;
        }
        let journey = match *name {
            "browse" => transaction!(browse),
            "view" => transaction!(view_ticket),
            "account" => transaction!(sign_up_and_in),
            "sell" => transaction!(sell),
            "buy" => transaction!(buy_and_pay),
            "abandon" => transaction!(buy_and_abandon),
            "cancel" => transaction!(buy_and_cancel),
            "contention" => transaction!(contend),
            _ => unreachable!("weights() knows only the journeys"),
        };
        let (min_wait, max_wait) = match *name {
            "browse" | "view" => (100, 500),
            "account" => (1000, 2000),
            _ => (200, 800),
        };
        out.push(
            Scenario::new(name)
                .set_weight(*weight)?
                .set_wait_time(
                    Duration::from_millis(min_wait),
                    Duration::from_millis(max_wait),
                )?
                .register_transaction(transaction!(sign_up).set_name("sign up").set_on_start())
                .register_transaction(journey.set_name(name)),
        );
    }
    Ok(out)
}

/// Who a goose user is signed in as.
struct Session {
    user_id: String,
}

fn fresh_email() -> String {
    format!("load-{}@loadgen.test", uuid::Uuid::new_v4().simple())
}

const PASSWORD: &str = "load-password-1";

/// What a request may be answered with besides success: a status and the start of the
/// message the contract gives for it.
type Allowed = &'static [(u16, &'static str)];

/// The answer to one request: its body on a 2xx (`None` on an allowed refusal), and
/// the request's metric, to record a failure found in the body.
struct Reply<T> {
    body: Option<T>,
    request: GooseRequestMetric,
}

/// One request of a journey. Anything the contract does not allow is recorded as a
/// failure of the request and ends the iteration.
async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
    user: &mut GooseUser,
    method: GooseMethod,
    path: &str,
    name: &str,
    body: Option<&B>,
    allowed: &[(u16, &str)],
) -> Result<Reply<T>, Box<TransactionError>> {
    let mut builder = user.get_request_builder(&method, path)?;
    if let Some(body) = body {
        builder = builder.json(body);
    }
    let request = GooseRequest::builder()
        .method(method)
        .path(path)
        .name(name)
        .set_request_builder(builder)
        .build();
    let mut goose = user.request(request).await?;
    let response = match goose.response {
        Ok(response) => response,
        Err(err) => {
            return Err(fail(
                user,
                &format!("{name}: {err}"),
                &mut goose.request,
                None,
            ))
        }
    };
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    if (200..300).contains(&status) {
        let text = if text.is_empty() { "null" } else { &text };
        return match serde_json::from_str::<T>(text) {
            Ok(body) => Ok(Reply {
                body: Some(body),
                request: goose.request,
            }),
            Err(err) => Err(fail(
                user,
                &format!("{name}: unexpected body ({err})"),
                &mut goose.request,
                Some(text),
            )),
        };
    }
    let expected = allowed
        .iter()
        .any(|(s, message)| *s == status && text.contains(message));
    if expected {
        user.set_success(&mut goose.request)?;
        return Ok(Reply {
            body: None,
            request: goose.request,
        });
    }
    Err(fail(
        user,
        &format!("{name}: {status}"),
        &mut goose.request,
        Some(&text),
    ))
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
    match user.set_failure(tag, request, None, body) {
        Err(err) => err,
        Ok(()) => Box::new(TransactionError::RequestFailed {
            raw_request: request.clone(),
        }),
    }
}

/// A check on a 2xx answer that did not hold: a failure of that request.
fn wrong<T>(user: &GooseUser, reply: &mut Reply<T>, what: String) -> Box<TransactionError> {
    fail(user, &what, &mut reply.request, None)
}

const NONE: Option<&()> = None;

/// How long each journey's iterations took, in ms, and how many failed. Kept here
/// rather than read from goose: goose 0.18 rounds transaction times above 500 ms to a
/// tenth of their value.
#[derive(Default)]
pub struct JourneyTimes {
    pub millis: Vec<u32>,
    pub failures: usize,
}

static TIMES: Mutex<BTreeMap<&'static str, JourneyTimes>> = Mutex::new(BTreeMap::new());

/// The journeys' times so far.
pub fn journey_times() -> BTreeMap<&'static str, JourneyTimes> {
    std::mem::take(&mut *TIMES.lock().unwrap_or_else(|e| e.into_inner()))
}

async fn timed(
    journey: &'static str,
    steps: impl std::future::Future<Output = TransactionResult>,
) -> TransactionResult {
    let started = std::time::Instant::now();
    let result = steps.await;
    let millis = started.elapsed().as_millis().min(u32::MAX as u128) as u32;
    let mut times = TIMES.lock().unwrap_or_else(|e| e.into_inner());
    let entry = times.entry(journey).or_default();
    entry.millis.push(millis);
    if result.is_err() {
        entry.failures += 1;
    }
    result
}

/// Every user's first step: an account of its own, signed in (the cookie).
pub async fn sign_up(user: &mut GooseUser) -> TransactionResult {
    let body = Credentials::new(fresh_email(), PASSWORD);
    let reply: Reply<UserBody> = call(
        user,
        GooseMethod::Post,
        "/api/users/signup",
        "/api/users/signup",
        Some(&body),
        &[],
    )
    .await?;
    if let Some(created) = reply.body {
        user.set_session_data(Session {
            user_id: created.id,
        });
    }
    Ok(())
}

/// Once before the users start: the contention journey's hot tickets, and a first
/// stock of tickets for the buyers.
pub async fn setup(user: &mut GooseUser) -> TransactionResult {
    let config = CONFIG.get().expect("configured");
    sign_up(user).await?;
    let mut hot = Vec::new();
    for i in 0..config.hot_tickets + config.seed_tickets {
        let input = TicketInput::new(format!("Seed ticket {i}"), "25.00");
        let reply: Reply<TicketBody> = call(
            user,
            GooseMethod::Post,
            "/api/tickets",
            "/api/tickets",
            Some(&input),
            &[],
        )
        .await?;
        if let (Some(ticket), true) = (reply.body, i < config.hot_tickets) {
            hot.push(ticket.id);
        }
    }
    let _ = HOT.set(hot);
    // Let the orders service's replica learn about them before the races start.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

async fn list(
    user: &mut GooseUser,
    limit: usize,
) -> Result<Vec<TicketBody>, Box<TransactionError>> {
    let path = format!("/api/tickets?limit={limit}");
    let reply: Reply<Vec<TicketBody>> =
        call(user, GooseMethod::Get, &path, "/api/tickets", NONE, &[]).await?;
    Ok(reply.body.unwrap_or_default())
}

/// Browse: the first page of the list.
async fn browse(user: &mut GooseUser) -> TransactionResult {
    timed("browse", browse_steps(user)).await
}

async fn browse_steps(user: &mut GooseUser) -> TransactionResult {
    list(user, 50).await?;
    Ok(())
}

/// View: the list, then one ticket of it.
async fn view_ticket(user: &mut GooseUser) -> TransactionResult {
    timed("view", view_ticket_steps(user)).await
}

async fn view_ticket_steps(user: &mut GooseUser) -> TransactionResult {
    let tickets = list(user, 50).await?;
    let Some(ticket) = tickets.choose(&mut rand::thread_rng()) else {
        return Ok(());
    };
    let path = format!("/api/tickets/{}", ticket.id);
    let mut reply: Reply<TicketBody> = call(
        user,
        GooseMethod::Get,
        &path,
        "/api/tickets/{id}",
        NONE,
        &[],
    )
    .await?;
    if reply.body.as_ref().map(|t| &t.id) != Some(&ticket.id) {
        let what = format!("ticket {} answered with another", ticket.id);
        return Err(wrong(user, &mut reply, what));
    }
    Ok(())
}

/// Account: sign up, sign out, sign in again, ask who is signed in.
async fn sign_up_and_in(user: &mut GooseUser) -> TransactionResult {
    timed("account", sign_up_and_in_steps(user)).await
}

async fn sign_up_and_in_steps(user: &mut GooseUser) -> TransactionResult {
    let email = fresh_email();
    let credentials = Credentials::new(email.clone(), PASSWORD);
    let _: Reply<UserBody> = call(
        user,
        GooseMethod::Post,
        "/api/users/signup",
        "/api/users/signup",
        Some(&credentials),
        &[],
    )
    .await?;
    let _: Reply<serde_json::Value> = call(
        user,
        GooseMethod::Post,
        "/api/users/signout",
        "/api/users/signout",
        NONE,
        &[],
    )
    .await?;
    let signed_in: Reply<UserBody> = call(
        user,
        GooseMethod::Post,
        "/api/users/signin",
        "/api/users/signin",
        Some(&credentials),
        &[],
    )
    .await?;
    let mut me: Reply<CurrentUserBody> = call(
        user,
        GooseMethod::Get,
        "/api/users/currentuser",
        "/api/users/currentuser",
        NONE,
        &[],
    )
    .await?;
    let current = me
        .body
        .as_ref()
        .and_then(|m| m.current_user.as_ref())
        .map(|u| u.email.clone());
    if current.as_deref() != Some(email.as_str()) {
        let what = format!("signed in as {email}, current user {current:?}");
        return Err(wrong(user, &mut me, what));
    }
    if let Some(signed_in) = signed_in.body {
        user.set_session_data(Session {
            user_id: signed_in.id,
        });
    }
    Ok(())
}

/// Sell: list a ticket, then change its price.
async fn sell(user: &mut GooseUser) -> TransactionResult {
    timed("sell", sell_steps(user)).await
}

async fn sell_steps(user: &mut GooseUser) -> TransactionResult {
    let price = rand::thread_rng().gen_range(1..=500);
    let title = format!("Load ticket {}", uuid::Uuid::new_v4());
    let input = TicketInput::new(title.clone(), format!("{price}.50"));
    let mut reply: Reply<TicketBody> = call(
        user,
        GooseMethod::Post,
        "/api/tickets",
        "/api/tickets",
        Some(&input),
        &[],
    )
    .await?;
    let Some(ticket) = reply.body.take() else {
        return Ok(());
    };
    if ticket.version != 0 || ticket.title != title {
        let what = format!("new ticket {} at version {}", ticket.id, ticket.version);
        return Err(wrong(user, &mut reply, what));
    }
    let input = TicketInput::new(title, format!("{}", price + 1));
    let path = format!("/api/tickets/{}", ticket.id);
    let _: Reply<TicketBody> = call(
        user,
        GooseMethod::Put,
        &path,
        "/api/tickets/{id}",
        Some(&input),
        // A buyer may have reserved it in between.
        &[(400, "Cannot edit a reserved ticket")],
    )
    .await?;
    Ok(())
}

/// A ticket for sale that is neither the caller's nor one of the hot ones.
async fn pick_ticket(user: &mut GooseUser) -> Result<Option<String>, Box<TransactionError>> {
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

/// Another buyer may have taken the ticket since it was listed.
const LOST_RACE: Allowed = &[(400, "Ticket is already reserved")];

/// A POST naming an object another service created (a ticket to order, an order to
/// pay): the service learns about it by event, so for a moment it may answer 404. A
/// client retries that for up to 5 s; the retries are counted under their own name,
/// so the report shows how often the events were slower than the client.
async fn call_once_known<B: Serialize + ?Sized, T: DeserializeOwned>(
    user: &mut GooseUser,
    path: &'static str,
    body: Option<&B>,
    allowed: Allowed,
) -> Result<Reply<T>, Box<TransactionError>> {
    const NOT_KNOWN_YET: (u16, &str) = (404, "Not found.");
    let retried = format!("{path} (retried: not known yet)");
    let give_up = std::time::Instant::now() + Duration::from_secs(5);
    let mut attempt = 0;
    loop {
        let name = if attempt == 0 { path } else { retried.as_str() };
        let mut also: Vec<(u16, &'static str)> = allowed.to_vec();
        let patient = std::time::Instant::now() < give_up;
        if patient {
            also.push(NOT_KNOWN_YET);
        }
        let reply = call(user, GooseMethod::Post, path, name, body, &also).await?;
        let not_known = reply.body.is_none() && reply.request.status_code == 404 && patient;
        if !not_known {
            return Ok(reply);
        }
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reserve `ticket_id`: the order, or `None` when another buyer was faster.
async fn place_order(
    user: &mut GooseUser,
    ticket_id: &str,
) -> Result<Option<OrderBody>, Box<TransactionError>> {
    let mut reply: Reply<OrderBody> = call_once_known(
        user,
        "/api/orders",
        Some(&CreateOrder::new(ticket_id)),
        LOST_RACE,
    )
    .await?;
    match reply.body.take() {
        Some(order) if order.status != OrderStatus::Created || order.ticket.id != ticket_id => {
            let what = format!("new order {} is {:?}", order.id, order.status);
            Err(wrong(user, &mut reply, what))
        }
        order => Ok(order),
    }
}

/// One of the caller's orders, which must exist.
async fn show_order(
    user: &mut GooseUser,
    id: &str,
) -> Result<Reply<OrderBody>, Box<TransactionError>> {
    let path = format!("/api/orders/{id}");
    call(
        user,
        GooseMethod::Get,
        &path,
        "/api/orders/{orderId}",
        NONE,
        &[],
    )
    .await
}

/// Buy and pay: reserve a listed ticket and pay it with a card that succeeds.
async fn buy_and_pay(user: &mut GooseUser) -> TransactionResult {
    timed("buy", buy_and_pay_steps(user)).await
}

async fn buy_and_pay_steps(user: &mut GooseUser) -> TransactionResult {
    let Some(ticket_id) = pick_ticket(user).await? else {
        return Ok(());
    };
    let Some(order) = place_order(user, &ticket_id).await? else {
        return Ok(());
    };
    // A person takes a moment to type a card; the payments service learns about the
    // order by event meanwhile.
    let typing = Duration::from_millis(rand::thread_rng().gen_range(200..=800));
    tokio::time::sleep(typing).await;
    let payment = CreatePayment::new(order.id.clone(), "tok_visa");
    let mut reply: Reply<PaymentBody> =
        call_once_known(user, "/api/payments", Some(&payment), &[]).await?;
    if reply.body.as_ref().map(|p| &p.order_id) != Some(&order.id) {
        let what = format!("payment of {} names another order", order.id);
        return Err(wrong(user, &mut reply, what));
    }
    Ok(())
}

/// Buy and abandon: reserve, look at the order, never pay (it expires).
async fn buy_and_abandon(user: &mut GooseUser) -> TransactionResult {
    timed("abandon", buy_and_abandon_steps(user)).await
}

async fn buy_and_abandon_steps(user: &mut GooseUser) -> TransactionResult {
    let Some(ticket_id) = pick_ticket(user).await? else {
        return Ok(());
    };
    let Some(order) = place_order(user, &ticket_id).await? else {
        return Ok(());
    };
    let mut shown = show_order(user, &order.id).await?;
    if shown.body.as_ref().map(|o| &o.ticket.id) != Some(&ticket_id) {
        let what = format!("order {} does not hold {ticket_id}", order.id);
        return Err(wrong(user, &mut shown, what));
    }
    Ok(())
}

/// Cancel: reserve, cancel, and see it cancelled.
async fn buy_and_cancel(user: &mut GooseUser) -> TransactionResult {
    timed("cancel", buy_and_cancel_steps(user)).await
}

async fn buy_and_cancel_steps(user: &mut GooseUser) -> TransactionResult {
    let Some(ticket_id) = pick_ticket(user).await? else {
        return Ok(());
    };
    let Some(order) = place_order(user, &ticket_id).await? else {
        return Ok(());
    };
    cancel(user, &order.id).await?;
    let mut shown = show_order(user, &order.id).await?;
    let status = shown.body.as_ref().map(|o| o.status);
    if status != Some(OrderStatus::Cancelled) {
        let what = format!("cancelled order {} is {status:?}", order.id);
        return Err(wrong(user, &mut shown, what));
    }
    Ok(())
}

async fn cancel(user: &mut GooseUser, order_id: &str) -> TransactionResult {
    let path = format!("/api/orders/{order_id}");
    let _: Reply<serde_json::Value> = call(
        user,
        GooseMethod::Delete,
        &path,
        "/api/orders/{orderId}",
        NONE,
        &[],
    )
    .await?;
    Ok(())
}

/// Contention: everyone races for the same few tickets; a winner lets go at once so the
/// race goes on. The database lets one racer at a time hold a ticket (the audit checks
/// that no ticket ends with two).
async fn contend(user: &mut GooseUser) -> TransactionResult {
    timed("contention", contend_steps(user)).await
}

async fn contend_steps(user: &mut GooseUser) -> TransactionResult {
    let Some(ticket_id) = hot().choose(&mut rand::thread_rng()).cloned() else {
        return Ok(());
    };
    if let Some(order) = place_order(user, &ticket_id).await? {
        cancel(user, &order.id).await?;
    }
    Ok(())
}
