//! The user journeys, one goose scenario each: their weights, the shared set-up and the
//! times they took. Each journey's steps are in a file of its own; the requests they
//! share are in `steps.rs`.

mod account;
mod browse;
mod buy;
mod contention;
mod refund;
mod revoke;
mod sell;
mod steps;

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use goose::prelude::*;
use ticketing_contracts::api::tickets::TicketInput;

use crate::Args;
use account::sign_up_and_in;
use browse::{browse, view_ticket};
use buy::{buy_and_abandon, buy_and_cancel, buy_and_pay};
use contention::contend;
use refund::refund;
pub use refund::tally as refund_tally;
use revoke::revoke;
use sell::sell;
use steps::sign_up;

pub const JOURNEYS: [(&str, usize); 10] = [
    ("browse", 6),
    ("view", 5),
    ("account", 1),
    ("sell", 3),
    ("buy", 3),
    ("abandon", 1),
    ("cancel", 2),
    ("contention", 3),
    // Off unless asked for (`--weights revoke=1`): it signs up an account every time.
    ("revoke", 0),
    // Off unless asked for (`--weights refund=1`): buy, pay, cancel for a refund, wait
    // for it.
    ("refund", 0),
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
            "revoke" => transaction!(revoke),
            "refund" => transaction!(refund),
            _ => unreachable!("weights() knows only the journeys"),
        };
        let (min_wait, max_wait) = match *name {
            "browse" | "view" => (100, 500),
            "account" | "revoke" => (1000, 2000),
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

/// How long each journey's iterations took, in ms, and how many failed. Kept here
/// rather than read from goose: goose 0.18 rounds transaction times above 500 ms to a
/// tenth of their value.
#[derive(Default)]
pub struct JourneyTimes {
    pub millis: Vec<u32>,
    pub failures: usize,
}

static TIMES: Mutex<BTreeMap<&'static str, JourneyTimes>> = Mutex::new(BTreeMap::new());

/// Failures by what went wrong (goose's own error list also keeps the refusals a
/// journey then accepted, such as a lost race).
static FAILURES: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

fn record_failure(tag: &str) {
    *FAILURES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(tag.to_owned())
        .or_default() += 1;
}

/// Tries of keyed POSTs that failed and were then retried to success, per request
/// name: by status (`None`: a transport error).
static RECOVERED: Mutex<BTreeMap<String, BTreeMap<Option<u16>, usize>>> =
    Mutex::new(BTreeMap::new());

fn record_recovered(name: &str, status: Option<u16>) {
    *RECOVERED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(name.to_owned())
        .or_default()
        .entry(status)
        .or_default() += 1;
}

/// The recovered tries so far (see `steps::call`).
pub fn recovered() -> BTreeMap<String, BTreeMap<Option<u16>, usize>> {
    std::mem::take(&mut *RECOVERED.lock().unwrap_or_else(|e| e.into_inner()))
}

/// What failed, and how often.
pub fn failures() -> BTreeMap<String, usize> {
    std::mem::take(&mut *FAILURES.lock().unwrap_or_else(|e| e.into_inner()))
}

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

/// `pub async fn $journey(user)`: goose's transaction, its steps (`$steps`) timed under
/// `$name`.
macro_rules! journey {
    ($journey:ident, $name:literal, $steps:ident) => {
        pub async fn $journey(user: &mut GooseUser) -> TransactionResult {
            super::timed($name, $steps(user)).await
        }
    };
}
use journey;

/// Once before the users start: the contention journey's hot tickets, and a first
/// stock of tickets for the buyers.
pub async fn setup(user: &mut GooseUser) -> TransactionResult {
    let config = CONFIG.get().expect("configured");
    sign_up(user).await?;
    let mut hot = Vec::new();
    for i in 0..config.hot_tickets + config.seed_tickets {
        let input = TicketInput::new(format!("Seed ticket {i}"), "25.00");
        let reply = steps::create_ticket(user, &input).await?;
        if let (Some(ticket), true) = (reply.body, i < config.hot_tickets) {
            hot.push(ticket.id);
        }
    }
    let _ = HOT.set(hot);
    // Let the orders service's replica learn about them before the races start.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}
