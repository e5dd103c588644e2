//! `loadgen drop`: drop day (issue 30). One listing of many units goes on sale a minute
//! after the start; a crowd of buyers (session tokens minted with the server's JWT key,
//! no sign-ups) joins its on-sale queue — most before the sale, the rest after — polls
//! it as told (`Retry-After`, `etaSeconds`), orders 1–`maxPerOrder` units once admitted,
//! pays most of them, and stops on sold-out.
//!
//! Not a goose scenario: every buyer arrives once, at a time of its own, and the run is
//! judged on what the queue did with them. The report: requests by kind (p50/p99, 5xx:
//! any is a failure, 503 included), units sold against units listed (no oversell), and
//! the queue's fairness: among those who joined before the sale, Spearman's ρ between
//! arrival order and admission order (a random draw: ρ ≈ 0, null σ ≈ 1/√(n−1)); those
//! who joined after, admitted in arrival order (inversions among buyers whose joins did
//! not overlap in time: 0). Admission order is the server's: `admittedUntil − 120 s`
//! from the first `GET` that says `admitted`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Client, Method, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};
use ticketing_contracts::api::queue::{QueueBody, QueuePlace, QueueStatus, ADMISSION_SECONDS};
use ticketing_contracts::time::Timestamp;
use tokio::sync::Semaphore;

#[derive(clap::Args, Debug, Clone)]
pub struct DropArgs {
    /// Base URL of the system (the `all` target, or the gateway in front of the services).
    #[arg(long, env = "LOADGEN_HOST", default_value = "http://127.0.0.1:3000")]
    pub host: String,
    /// The server's JWT signing key (`JWT_KEY`): buyers' session tokens are minted with
    /// it, as the system bench does, instead of signing up 100,000 accounts.
    #[arg(long, env = "JWT_KEY", hide_env_values = true)]
    pub jwt_key: Option<String>,
    /// Read the key from this file instead (embedded mode keeps it in
    /// `<data dir>/jwt.key`).
    #[arg(long, env = "LOADGEN_JWT_KEY_FILE", conflicts_with = "jwt_key")]
    pub jwt_key_file: Option<String>,
    /// Buyers in the crowd.
    #[arg(long, default_value_t = 100_000)]
    pub buyers: usize,
    /// Units listed.
    #[arg(long, default_value_t = 10_000)]
    pub units: usize,
    /// The listing's `maxPerOrder` (and `maxPerAccount`); each buyer wants 1 to this.
    #[arg(long, default_value_t = 4)]
    pub max_per_order: usize,
    /// Seconds from the start until the sale opens (`onSaleAt`).
    #[arg(long, default_value_t = 60)]
    pub on_sale_in: u64,
    /// Share of buyers arriving before the sale (spread over `--on-sale-in`).
    #[arg(long, default_value_t = 0.6)]
    pub early_share: f64,
    /// The rest arrive over this many seconds from the sale's start (default: as long as
    /// the early ones' spread).
    #[arg(long)]
    pub late_spread: Option<u64>,
    /// Share of the orders that are paid (`tok_visa`); the others are left to expire.
    #[arg(long, default_value_t = 0.9)]
    pub pay_share: f64,
    /// Share of buyers who, once the sale is open, poll by `POST /api/orders` (429 with
    /// `Retry-After` until admitted) instead of `GET /api/queue/{id}`; they are left out
    /// of the fairness figures (their admission time is not seen).
    #[arg(long, default_value_t = 0.1)]
    pub impatient_share: f64,
    /// Requests in flight at most (the client's connections).
    #[arg(long, default_value_t = 256)]
    pub connections: usize,
    /// A buyer still waiting this many seconds after the sale opened gives up.
    #[arg(long, default_value_t = 900)]
    pub give_up_after: u64,
    /// Per-request timeout, in seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Seed of the arrival times and choices (random when absent).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write one line per buyer here (CSV: arrival, admission, units, outcome).
    #[arg(long)]
    pub buyers_csv: Option<String>,
    /// Write one line per request here (CSV: seconds from the start when sent, kind,
    /// status, microseconds): where in the run the slow answers were.
    #[arg(long)]
    pub requests_csv: Option<String>,
    /// A small drop for CI-like runs: 1,000 buyers, 2,000 units, the sale 10 s after the
    /// start (so some late joiners are admitted too); explicit flags still win.
    #[arg(long)]
    pub smoke: bool,
}

impl DropArgs {
    /// `--smoke` sizes, for the flags left at their defaults.
    fn sized(mut self) -> DropArgs {
        if self.smoke {
            let defaults = <DropArgsDefaults as Default>::default();
            if self.buyers == defaults.buyers {
                self.buyers = 1_000;
            }
            if self.units == defaults.units {
                self.units = 2_000;
            }
            if self.on_sale_in == defaults.on_sale_in {
                self.on_sale_in = 10;
            }
            if self.give_up_after == defaults.give_up_after {
                self.give_up_after = 300;
            }
        }
        self
    }
}

/// The defaults above, to tell which flags `--smoke` may resize.
struct DropArgsDefaults {
    buyers: usize,
    units: usize,
    on_sale_in: u64,
    give_up_after: u64,
}

impl Default for DropArgsDefaults {
    fn default() -> Self {
        DropArgsDefaults {
            buyers: 100_000,
            units: 10_000,
            on_sale_in: 60,
            give_up_after: 900,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Session tokens

/// The claims the services read (`ticketing_kit::auth::Claims`).
#[derive(Serialize)]
struct Claims<'a> {
    id: &'a str,
    email: &'a str,
    iat: i64,
    exp: i64,
}

struct Minter {
    key: jsonwebtoken::EncodingKey,
    run: String,
}

impl Minter {
    fn new(secret: &[u8]) -> Minter {
        Minter {
            key: jsonwebtoken::EncodingKey::from_secret(secret),
            run: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
        }
    }

    /// A bearer token for account `who` of this run.
    fn token(&self, who: &str) -> String {
        let id = format!("drop-{}-{who}", self.run);
        let email = format!("{id}@loadgen.test");
        let iat = Timestamp::now().as_millis() / 1000;
        let claims = Claims {
            id: &id,
            email: &email,
            iat,
            exp: iat + 6 * 3600,
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &self.key,
        )
        .expect("HS256 signing does not fail")
    }
}

fn jwt_secret(args: &DropArgs) -> anyhow::Result<Vec<u8>> {
    if let Some(path) = &args.jwt_key_file {
        let key = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        anyhow::ensure!(!key.trim().is_empty(), "{path} is empty");
        return Ok(key.trim().as_bytes().to_vec());
    }
    match &args.jwt_key {
        Some(key) if !key.is_empty() => Ok(key.clone().into_bytes()),
        _ => anyhow::bail!(
            "the drop mints its buyers' tokens: give the server's key (--jwt-key, JWT_KEY) \
             or its file (--jwt-key-file <data dir>/jwt.key)"
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Requests and their figures

#[derive(Default)]
struct Kind {
    micros: Vec<u64>,
    statuses: BTreeMap<u16, usize>,
    transport: usize,
    /// Answers the contract does not allow at that point (5xx included).
    unexpected: usize,
}

#[derive(Default)]
struct Figures {
    kinds: BTreeMap<&'static str, Kind>,
    /// What went wrong, by kind and status, with the first body seen.
    errors: BTreeMap<String, (usize, String)>,
    /// Every request (with `--requests-csv`): when sent, kind, status (0: transport
    /// error), microseconds.
    timeline: Option<Vec<(f64, &'static str, u16, u64)>>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

struct Load {
    client: Client,
    base: String,
    /// The run's start, which the timeline counts from.
    start: Instant,
    in_flight: Semaphore,
    figures: Mutex<Figures>,
}

impl Load {
    /// One request, timed from its send (after waiting for a connection slot), recorded
    /// under `kind`; an answer not in `allowed` is recorded as an error. `None` on a
    /// transport error.
    async fn send(
        &self,
        kind: &'static str,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        allowed: &[u16],
    ) -> Option<Answer> {
        let _permit = self.in_flight.acquire().await.expect("never closed");
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request
                .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
                .json(body);
        }
        let started = Instant::now();
        let result = match request.send().await {
            Ok(response) => {
                let status = response.status();
                let headers = response.headers().clone();
                response
                    .text()
                    .await
                    .map(|body| Answer {
                        status,
                        headers,
                        body,
                    })
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        let micros = started.elapsed().as_micros() as u64;
        let mut figures = self.figures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(timeline) = &mut figures.timeline {
            let status = result.as_ref().map_or(0, |a| a.status.as_u16());
            let sent = started.duration_since(self.start).as_secs_f64();
            timeline.push((sent, kind, status, micros));
        }
        let line = figures.kinds.entry(kind).or_default();
        line.micros.push(micros);
        match result {
            Ok(answer) => {
                let status = answer.status.as_u16();
                *line.statuses.entry(status).or_default() += 1;
                if !allowed.contains(&status) {
                    line.unexpected += 1;
                    let shown: String = answer.body.chars().take(200).collect();
                    let entry = figures
                        .errors
                        .entry(format!("{kind}: {status}"))
                        .or_insert((0, shown));
                    entry.0 += 1;
                }
                Some(answer)
            }
            Err(error) => {
                line.transport += 1;
                line.unexpected += 1;
                let entry = figures
                    .errors
                    .entry(format!("{kind}: transport error"))
                    .or_insert((0, error));
                entry.0 += 1;
                None
            }
        }
    }

    /// A refusal of the kind's own (a 4xx the flow did not expect here).
    fn refused(&self, kind: &'static str, what: &str) {
        let mut figures = self.figures.lock().unwrap_or_else(|e| e.into_inner());
        figures.kinds.entry(kind).or_default().unexpected += 1;
        figures
            .errors
            .entry(format!("{kind}: {what}"))
            .or_insert((0, String::new()))
            .0 += 1;
    }
}

fn message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// `Retry-After` in seconds, when the answer has one.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

// ---------------------------------------------------------------------------------------
// Buyers

/// Seconds kept clear of `onSaleAt` by the arrivals.
const GUARD: f64 = 0.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// Placed an order (paid or not).
    Ordered,
    /// Told sold out (by the queue or by the order).
    SoldOut,
    /// Still waiting at `--give-up-after`.
    GaveUp,
    /// Admitted, but the admission ran out before the order.
    Expired,
    /// Something failed (an error is recorded).
    Failed,
    /// Never ran (the run was cut short).
    NotRun,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ordered => "ordered",
            Outcome::SoldOut => "sold-out",
            Outcome::GaveUp => "gave-up",
            Outcome::Expired => "expired",
            Outcome::Failed => "failed",
            Outcome::NotRun => "not-run",
        }
    }
}

/// One buyer's plan and what happened to it; times are seconds since the start.
#[derive(Debug, Clone)]
struct Buyer {
    early: bool,
    impatient: bool,
    /// Units wanted.
    wants: usize,
    pays: bool,
    arrives: f64,
    join_sent: Option<f64>,
    join_answered: Option<f64>,
    /// The position the join answered (null before the sale).
    join_position: Option<i64>,
    /// The first answer that said admitted (a `GET`, or an impatient buyer's 201).
    admitted_seen: Option<f64>,
    /// The server's admission instant (`admittedUntil − 120 s`), ms since the epoch.
    admitted_at: Option<i64>,
    units: usize,
    paid: bool,
    outcome: Outcome,
}

struct Crowd {
    load: Load,
    listing: String,
    minter: Minter,
    start: Instant,
    opens: Instant,
    give_up: Instant,
    units_ordered: AtomicUsize,
    sold_out_seen: AtomicUsize,
}

impl Crowd {
    fn at(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    async fn buyer(&self, index: usize, mut buyer: Buyer) -> Buyer {
        tokio::time::sleep_until((self.start + Duration::from_secs_f64(buyer.arrives)).into())
            .await;
        let token = self.minter.token(&format!("buyer{index}"));
        buyer.outcome = match self.steps(&token, &mut buyer).await {
            Ok(outcome) => outcome,
            Err(()) => Outcome::Failed,
        };
        buyer
    }

    async fn steps(&self, token: &str, buyer: &mut Buyer) -> Result<Outcome, ()> {
        let queue = format!("/api/queue/{}", self.listing);
        // Join (the orders service may not know the listing for a moment).
        buyer.join_sent = Some(self.at());
        let mut place = loop {
            let answer = self.send_join(&queue, token).await.ok_or(())?;
            match answer.status.as_u16() {
                200 | 201 => break parse_queue(&answer.body).ok_or(())?,
                // Retried under the same name: the report's 404s and 409s are these (the
                // service waits up to 2 s for a listing on its way, then says 409).
                404 | 409 if self.at() < 10.0 => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    buyer.join_sent = Some(self.at());
                }
                404 => {
                    self.load
                        .refused("POST /api/queue/{id}", "404 10 s after the listing");
                    return Err(());
                }
                _ => return Err(()),
            }
        };
        buyer.join_answered = Some(self.at());
        buyer.join_position = place.position;
        let mut retry: Option<Duration> = None;
        loop {
            match place.status {
                QueueStatus::Admitted => {
                    if buyer.admitted_seen.is_none() {
                        buyer.admitted_seen = Some(self.at());
                        buyer.admitted_at = place.admitted_until.as_deref().and_then(|u| {
                            Timestamp::parse_rfc3339(u)
                                .map(|t| t.as_millis() - ADMISSION_SECONDS * 1000)
                        });
                    }
                    // `None`: 429, the admission is not (or no longer) there; back in line.
                    if let Some(outcome) = self.order(token, buyer).await? {
                        return Ok(outcome);
                    }
                }
                QueueStatus::SoldOut => {
                    self.sold_out_seen.fetch_add(1, Ordering::Relaxed);
                    return Ok(Outcome::SoldOut);
                }
                QueueStatus::Expired => return Ok(Outcome::Expired),
                QueueStatus::Used => return Ok(Outcome::Ordered),
                QueueStatus::Waiting => {}
            }
            if Instant::now() >= self.give_up {
                return Ok(Outcome::GaveUp);
            }
            tokio::time::sleep(self.pause(&place, retry.take())).await;
            if buyer.impatient && Instant::now() >= self.opens {
                // Poll by ordering: 429 with `Retry-After` until admitted.
                match self.place_order(token, buyer).await? {
                    Placed::Done(outcome) => return Ok(outcome),
                    Placed::Queued(after, queued) => {
                        retry = after;
                        place.position = queued.position;
                        place.eta_seconds = queued.eta_seconds;
                        continue;
                    }
                }
            }
            let answer = self
                .load
                .send(
                    "GET /api/queue/{id}",
                    Method::GET,
                    &queue,
                    token,
                    None,
                    &[200],
                )
                .await
                .ok_or(())?;
            if answer.status != StatusCode::OK {
                return Err(());
            }
            retry = retry_after(&answer.headers);
            place = parse_queue(&answer.body).ok_or_else(|| {
                self.load
                    .refused("GET /api/queue/{id}", "body is not a queue place")
            })?;
        }
    }

    async fn send_join(&self, queue: &str, token: &str) -> Option<Answer> {
        self.load
            .send(
                "POST /api/queue/{id}",
                Method::POST,
                queue,
                token,
                Some(&json!({})),
                &[200, 201, 404, 409],
            )
            .await
    }

    /// How long to wait before asking again: until the sale opens while there is no
    /// place yet (and a moment more, so the crowd does not ask at the same instant);
    /// else `Retry-After`, or half the estimate (1–30 s).
    fn pause(&self, place: &QueueBody, retry: Option<Duration>) -> Duration {
        let mut rng = rand::thread_rng();
        let now = Instant::now();
        if now < self.opens {
            let until = self.opens - now;
            return until + Duration::from_millis(rng.gen_range(0..3_000));
        }
        if let Some(retry) = retry {
            return retry + Duration::from_millis(rng.gen_range(0..250));
        }
        let eta = place.eta_seconds.unwrap_or(2).max(0) as f64;
        Duration::from_secs_f64((eta / 2.0).clamp(1.0, 30.0))
            + Duration::from_millis(rng.gen_range(0..500))
    }

    /// Admitted: order, then pay. `None` when the order was answered 429.
    async fn order(&self, token: &str, buyer: &mut Buyer) -> Result<Option<Outcome>, ()> {
        match self.place_order(token, buyer).await? {
            Placed::Done(outcome) => Ok(Some(outcome)),
            Placed::Queued(..) => Ok(None),
        }
    }

    async fn place_order(&self, token: &str, buyer: &mut Buyer) -> Result<Placed, ()> {
        const KIND: &str = "POST /api/orders";
        let mut wants = buyer.wants;
        loop {
            let body = json!({ "ticketId": self.listing, "quantity": wants });
            let answer = self
                .load
                .send(
                    KIND,
                    Method::POST,
                    "/api/orders",
                    token,
                    Some(&body),
                    &[201, 400, 429],
                )
                .await
                .ok_or(())?;
            match answer.status.as_u16() {
                201 => {
                    let order: Value = serde_json::from_str(&answer.body).map_err(|_| ())?;
                    let units = order["quantity"].as_u64().unwrap_or(0) as usize;
                    if units != wants {
                        self.load
                            .refused(KIND, "order holds other units than asked");
                    }
                    if buyer.admitted_seen.is_none() {
                        buyer.admitted_seen = Some(self.at());
                    }
                    buyer.units = units;
                    self.units_ordered.fetch_add(units, Ordering::Relaxed);
                    if buyer.pays {
                        let id = order["id"].as_str().unwrap_or_default().to_owned();
                        buyer.paid = self.pay(token, &id).await?;
                    }
                    return Ok(Placed::Done(Outcome::Ordered));
                }
                429 => {
                    let queued = serde_json::from_str::<Value>(&answer.body)
                        .ok()
                        .and_then(|v| serde_json::from_value::<QueuePlace>(v["queue"].clone()).ok())
                        .unwrap_or(QueuePlace {
                            position: None,
                            eta_seconds: None,
                        });
                    let after = retry_after(&answer.headers);
                    if after.is_none_or(|a| a.is_zero() || a > Duration::from_secs(30)) {
                        self.load.refused(KIND, "429 without Retry-After of 1–30 s");
                    }
                    return Ok(Placed::Queued(after, queued));
                }
                _ => {
                    let said = message(&answer.body);
                    if said == "Ticket is sold out" {
                        self.sold_out_seen.fetch_add(1, Ordering::Relaxed);
                        return Ok(Placed::Done(Outcome::SoldOut));
                    }
                    if let Some(left) = said
                        .strip_prefix("Only ")
                        .and_then(|r| r.strip_suffix(" left"))
                        .and_then(|n| n.replace(',', "").parse::<usize>().ok())
                    {
                        if left > 0 && left < wants {
                            // Take what is left.
                            wants = left;
                            continue;
                        }
                    }
                    self.load.refused(KIND, &format!("400 {said}"));
                    return Err(());
                }
            }
        }
    }

    /// Pay with a card that succeeds. The payments service waits for an order it has
    /// not heard of yet, and answers 409 (`Retry-After: 1`) if it is still on its way:
    /// that is retried after the pause; a 404 is a failure (docs/decisions/0029).
    async fn pay(&self, token: &str, order_id: &str) -> Result<bool, ()> {
        const KIND: &str = "POST /api/payments";
        let body = json!({ "orderId": order_id, "token": "tok_visa" });
        let patience = Instant::now() + Duration::from_secs(5);
        loop {
            let allowed: &[u16] = if Instant::now() < patience {
                &[201, 409]
            } else {
                &[201]
            };
            let answer = self
                .load
                .send(
                    KIND,
                    Method::POST,
                    "/api/payments",
                    token,
                    Some(&body),
                    allowed,
                )
                .await
                .ok_or(())?;
            match answer.status.as_u16() {
                201 => return Ok(true),
                409 if Instant::now() < patience => {
                    tokio::time::sleep(Duration::from_secs(1)).await
                }
                _ => return Err(()),
            }
        }
    }
}

enum Placed {
    Done(Outcome),
    /// 429: `Retry-After` and the place the body gave.
    Queued(Option<Duration>, QueuePlace),
}

fn parse_queue(body: &str) -> Option<QueueBody> {
    serde_json::from_str(body).ok()
}

// ---------------------------------------------------------------------------------------
// Fairness

/// Ranks from 1, ties given their mean rank.
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = mean;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman's ρ: Pearson's correlation of the ranks (ties averaged).
fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() < 3 {
        return None;
    }
    let (rx, ry) = (ranks(x), ranks(y));
    let n = x.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Pairs (a, b) where a's join was answered before b's was sent (their order is
/// certain) but b was admitted strictly first: `(inversions, ordered pairs)`. A sweep
/// over time with a Fenwick tree over admission ranks, O(n log n).
fn inversions(joins: &[(f64, f64, i64)]) -> (u64, u64) {
    // (sent, answered, admitted at)
    let mut admitted: Vec<i64> = joins.iter().map(|j| j.2).collect();
    admitted.sort_unstable();
    admitted.dedup();
    let rank = |at: i64| admitted.partition_point(|&a| a < at);
    let mut tree = vec![0u64; admitted.len() + 1];
    let add = |tree: &mut Vec<u64>, i: usize| {
        let mut i = i + 1;
        while i < tree.len() {
            tree[i] += 1;
            i += i & i.wrapping_neg();
        }
    };
    let below = |tree: &Vec<u64>, i: usize| {
        // Inserted with rank < i.
        let (mut i, mut sum) = (i, 0);
        while i > 0 {
            sum += tree[i];
            i -= i & i.wrapping_neg();
        }
        sum
    };
    // Events: a join answered (insert) and a join sent (query); at equal times the
    // query first (strictly before).
    let mut events: Vec<(f64, u8, usize)> = Vec::with_capacity(joins.len() * 2);
    for (i, j) in joins.iter().enumerate() {
        events.push((j.0, 0, i));
        events.push((j.1, 1, i));
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut inserted, mut inverted, mut pairs) = (0u64, 0u64, 0u64);
    for (_, what, i) in events {
        let r = rank(joins[i].2);
        if what == 0 {
            // Earlier joiners admitted strictly later than this one.
            pairs += inserted;
            inverted += inserted - below(&tree, r + 1);
        } else {
            add(&mut tree, r);
            inserted += 1;
        }
    }
    (inverted, pairs)
}

// ---------------------------------------------------------------------------------------
// The run

pub async fn run(args: DropArgs) -> anyhow::Result<ExitCode> {
    let args = args.sized();
    anyhow::ensure!(args.buyers > 0, "--buyers must be at least 1");
    anyhow::ensure!(args.on_sale_in >= 2, "--on-sale-in must be at least 2 s");
    anyhow::ensure!(
        (1..=100_000).contains(&args.units),
        "--units must be from 1 to 100,000"
    );
    anyhow::ensure!(
        args.max_per_order >= 1 && args.max_per_order <= args.units,
        "--max-per-order must be from 1 to --units"
    );
    let secret = jwt_secret(&args)?;
    let minter = Minter::new(&secret);
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let early_spread = args.on_sale_in as f64;
    let late_spread = args.late_spread.unwrap_or(args.on_sale_in).max(1) as f64;
    let early_count = ((args.buyers as f64) * args.early_share.clamp(0.0, 1.0)).round() as usize;
    let plans: Vec<Buyer> = (0..args.buyers)
        .map(|i| {
            let early = i < early_count;
            // Half a second clear of `onSaleAt` on either side: which side of it a join
            // fell is then not a matter of the client's and server's clocks.
            let arrives = if early {
                rng.gen_range(0.0..(early_spread - GUARD).max(1e-3))
            } else {
                early_spread + GUARD + rng.gen_range(0.0..late_spread)
            };
            Buyer {
                early,
                impatient: rng.gen_bool(args.impatient_share.clamp(0.0, 1.0)),
                wants: rng.gen_range(1..=args.max_per_order),
                pays: rng.gen_bool(args.pay_share.clamp(0.0, 1.0)),
                arrives,
                join_sent: None,
                join_answered: None,
                join_position: None,
                admitted_seen: None,
                admitted_at: None,
                units: 0,
                paid: false,
                outcome: Outcome::NotRun,
            }
        })
        .collect();

    let client = Client::builder()
        .timeout(Duration::from_secs(args.timeout))
        .pool_max_idle_per_host(args.connections)
        .tcp_nodelay(true)
        .build()?;
    let load = Load {
        client,
        base: args.host.trim_end_matches('/').to_owned(),
        start: Instant::now(),
        in_flight: Semaphore::new(args.connections.max(1)),
        figures: Mutex::new(Figures {
            timeline: args.requests_csv.is_some().then(Vec::new),
            ..Figures::default()
        }),
    };

    // The listing, on sale `--on-sale-in` seconds from now; arrivals count from now.
    let seller = minter.token("seller");
    let start = load.start;
    let opens = start + Duration::from_secs(args.on_sale_in);
    let on_sale_at =
        Timestamp::from_millis(Timestamp::now().as_millis() + (args.on_sale_in as i64) * 1000);
    let listing = json!({
        "title": format!("Drop day: {} units", args.units),
        "price": 45,
        "quantity": args.units,
        "maxPerOrder": args.max_per_order,
        "maxPerAccount": args.max_per_order,
        "onSaleAt": on_sale_at.to_rfc3339(),
    });
    let created = load
        .send(
            "setup: POST /api/tickets",
            Method::POST,
            "/api/tickets",
            &seller,
            Some(&listing),
            &[201],
        )
        .await
        .context("listing the drop")?;
    anyhow::ensure!(
        created.status == StatusCode::CREATED,
        "listing the drop: {} {}",
        created.status,
        created.body
    );
    let ticket: Value = serde_json::from_str(&created.body)?;
    let listing_id = ticket["id"]
        .as_str()
        .context("the listing has no id")?
        .to_owned();
    println!(
        "loadgen drop: {} buyers ({early_count} before the sale, {} after, over {late_spread:.0} s), \
         {} units (at most {} an order and an account), on sale at {} (in {} s), listing {listing_id}, seed {seed}",
        args.buyers,
        args.buyers - early_count,
        args.units,
        args.max_per_order,
        on_sale_at.to_rfc3339(),
        args.on_sale_in,
    );
    let drop = Arc::new(Crowd {
        load,
        listing: listing_id.clone(),
        minter,
        start,
        opens,
        give_up: opens + Duration::from_secs(args.give_up_after),
        units_ordered: AtomicUsize::new(0),
        sold_out_seen: AtomicUsize::new(0),
    });
    // Progress once every 10 s.
    let progress = {
        let drop = drop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            tick.tick().await;
            loop {
                tick.tick().await;
                let requests: usize = drop
                    .load
                    .figures
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .kinds
                    .values()
                    .map(|k| k.micros.len())
                    .sum();
                println!(
                    "  {:>5.0} s: {requests} requests, {} units ordered, {} buyers told sold out",
                    drop.at(),
                    drop.units_ordered.load(Ordering::Relaxed),
                    drop.sold_out_seen.load(Ordering::Relaxed)
                );
            }
        })
    };
    let tasks: Vec<_> = plans
        .into_iter()
        .enumerate()
        .map(|(i, plan)| {
            let drop = drop.clone();
            tokio::spawn(async move { drop.buyer(i, plan).await })
        })
        .collect();
    let mut buyers = Vec::with_capacity(tasks.len());
    for task in tasks {
        buyers.push(task.await?);
    }
    progress.abort();
    let wall = drop.at();

    // What the tickets service shows once the crowd is done.
    let shown = drop
        .load
        .send(
            "setup: GET /api/tickets/{id}",
            Method::GET,
            &format!("/api/tickets/{listing_id}"),
            &seller,
            None,
            &[200],
        )
        .await
        .and_then(|a| serde_json::from_str::<Value>(&a.body).ok());
    let available = shown.as_ref().and_then(|t| t["available"].as_i64());

    let report = Report::new(&args, &buyers, wall, available, &drop.load);
    print!("{}", report.text);
    if let Some(path) = &args.buyers_csv {
        write_csv(path, &buyers)?;
        println!("per buyer: {path}");
    }
    if let Some(path) = &args.requests_csv {
        write_requests_csv(path, &drop.load)?;
        println!("per request: {path}");
    }
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("loadgen drop: gate failed: {}", report.failed.join("; "));
        ExitCode::from(2)
    })
}

fn write_requests_csv(path: &str, load: &Load) -> anyhow::Result<()> {
    let figures = load.figures.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = String::from("sent_s,kind,status,micros\n");
    for (sent, kind, status, micros) in figures.timeline.iter().flatten() {
        let _ = writeln!(out, "{sent:.3},{kind},{status},{micros}");
    }
    std::fs::write(path, out).with_context(|| format!("writing {path}"))
}

fn write_csv(path: &str, buyers: &[Buyer]) -> anyhow::Result<()> {
    let mut out = String::from(
        "buyer,early,impatient,arrives_s,join_sent_s,join_answered_s,join_position,admitted_seen_s,admitted_at_ms,wants,units,paid,outcome\n",
    );
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
    for (i, b) in buyers.iter().enumerate() {
        let _ = writeln!(
            out,
            "{i},{},{},{:.3},{},{},{},{},{},{},{},{},{}",
            b.early,
            b.impatient,
            b.arrives,
            opt(b.join_sent),
            opt(b.join_answered),
            b.join_position.map(|p| p.to_string()).unwrap_or_default(),
            opt(b.admitted_seen),
            b.admitted_at.map(|p| p.to_string()).unwrap_or_default(),
            b.wants,
            b.units,
            b.paid,
            b.outcome.as_str()
        );
    }
    std::fs::write(path, out).with_context(|| format!("writing {path}"))
}

struct Report {
    text: String,
    failed: Vec<String>,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64) * p).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1] as f64 / 1000.0
}

impl Report {
    fn new(
        args: &DropArgs,
        buyers: &[Buyer],
        wall: f64,
        available: Option<i64>,
        load: &Load,
    ) -> Report {
        let mut out = String::new();
        let mut failed = Vec::new();
        let figures = load.figures.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "\n== loadgen drop: {wall:.0} s ==");
        let _ = writeln!(
            out,
            "{:<30} {:>8} {:>8} {:>9} {:>9} {:>9} {:>7} {:>6}  statuses",
            "request", "count", "per s", "p50 ms", "p99 ms", "max ms", "errors", "5xx"
        );
        let (mut total, mut errors, mut server_errors) = (0, 0, 0);
        for (kind, line) in &figures.kinds {
            let mut sorted = line.micros.clone();
            sorted.sort_unstable();
            let fives: usize = line
                .statuses
                .iter()
                .filter(|(s, _)| **s >= 500)
                .map(|(_, n)| n)
                .sum();
            let statuses = line
                .statuses
                .iter()
                .map(|(s, n)| format!("{s}×{n}"))
                .chain((line.transport > 0).then(|| format!("transport×{}", line.transport)))
                .collect::<Vec<_>>()
                .join(" ");
            let _ = writeln!(
                out,
                "{kind:<30} {:>8} {:>8.1} {:>9.1} {:>9.1} {:>9.1} {:>7} {:>6}  {statuses}",
                sorted.len(),
                sorted.len() as f64 / wall.max(1e-9),
                percentile(&sorted, 0.50),
                percentile(&sorted, 0.99),
                percentile(&sorted, 1.0),
                line.unexpected,
                fives,
            );
            total += sorted.len();
            errors += line.unexpected;
            server_errors += fives;
        }
        let _ = writeln!(
            out,
            "requests: {total} ({:.1}/s), errors: {errors}, 5xx: {server_errors}",
            total as f64 / wall.max(1e-9)
        );
        for (what, (n, body)) in &figures.errors {
            let _ = writeln!(out, "  {n} × {what} {body}");
        }
        if server_errors > 0 {
            failed.push(format!("{server_errors} × 5xx"));
        }
        if errors > 0 {
            failed.push(format!("{errors} errors"));
        }

        // Units.
        let ordered: usize = buyers.iter().map(|b| b.units).sum();
        let orders = buyers.iter().filter(|b| b.units > 0).count();
        let paid: usize = buyers.iter().filter(|b| b.paid).map(|b| b.units).sum();
        let oversold = ordered.saturating_sub(args.units);
        let _ = writeln!(
            out,
            "\nunits: {ordered} of {} ordered in {orders} orders ({paid} paid), oversold: {oversold}; \
             the listing shows {} available{}",
            args.units,
            available.map_or("n/a".to_owned(), |a| a.to_string()),
            match available {
                Some(a) if a + ordered as i64 == args.units as i64 => " (= listed − ordered)".to_owned(),
                Some(_) => format!(" — listed − ordered is {}", args.units as i64 - ordered as i64),
                None => String::new(),
            }
        );
        if oversold > 0 {
            failed.push(format!("{oversold} units oversold"));
        }
        let mut outcomes: BTreeMap<Outcome, (usize, usize)> = BTreeMap::new();
        for b in buyers {
            let e = outcomes.entry(b.outcome).or_default();
            if b.early {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
        let _ = writeln!(
            out,
            "buyers by outcome (joined before the sale / after): {}",
            outcomes
                .iter()
                .map(|(o, (e, l))| format!("{} {e}/{l}", o.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let waits: Vec<f64> = buyers
            .iter()
            .filter_map(|b| Some(b.admitted_seen? - b.join_sent?))
            .collect();
        if !waits.is_empty() {
            let mut w: Vec<u64> = waits.iter().map(|s| (s * 1e6) as u64).collect();
            w.sort_unstable();
            let _ = writeln!(
                out,
                "join → admitted (as the buyer saw it): p50 {:.1} s, p99 {:.1} s, max {:.1} s ({} buyers)",
                percentile(&w, 0.5) / 1000.0,
                percentile(&w, 0.99) / 1000.0,
                percentile(&w, 1.0) / 1000.0,
                w.len()
            );
        }
        if ordered < args.units && outcomes.contains_key(&Outcome::SoldOut) {
            let _ = writeln!(
                out,
                "  ({} units not ordered while buyers were told sold out: held by admissions not yet used, or refused)",
                args.units - ordered
            );
        }

        // Fairness.
        let patient = |early: bool| {
            buyers
                .iter()
                .filter(move |b| b.early == early && !b.impatient)
                .filter_map(|b| Some((b.join_sent?, b.join_answered?, b.admitted_at?)))
        };
        let early: Vec<(f64, f64, i64)> = patient(true).collect();
        let _ = writeln!(
            out,
            "\nfairness (buyers polling GET; admission order: the server's admittedUntil):"
        );
        let n = early.len();
        let sigma = if n > 1 {
            1.0 / ((n - 1) as f64).sqrt()
        } else {
            f64::NAN
        };
        let arrival: Vec<f64> = early.iter().map(|e| e.0).collect();
        let admission: Vec<f64> = early.iter().map(|e| e.2 as f64).collect();
        match spearman(&arrival, &admission) {
            Some(rho) => {
                let ok = rho.abs() < 0.05_f64.max(4.0 * sigma);
                let _ = writeln!(
                    out,
                    "  joined before the sale, admitted: n = {n}, Spearman ρ(arrival, admission) = {rho:+.4} \
                     (null σ ≈ 1/√(n−1) = {sigma:.4}; |ρ|/σ = {:.1}); expected |ρ| < 0.05 — {}",
                    rho.abs() / sigma,
                    if rho.abs() < 0.05 { "ok" } else if ok { "above 0.05 but within 4σ" } else { "NOT RANDOM" }
                );
                if !ok {
                    failed.push(format!("early joiners' ρ = {rho:+.4}"));
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    "  joined before the sale, admitted: n = {n} (too few for ρ)"
                );
            }
        }
        let late: Vec<(f64, f64, i64)> = patient(false).collect();
        let (inverted, pairs) = inversions(&late);
        let _ = writeln!(
            out,
            "  joined after the sale opened, admitted: n = {}, inversions {inverted} of {pairs} pairs whose joins did not overlap (expected 0)",
            late.len()
        );
        if inverted > 0 {
            failed.push(format!(
                "{inverted} late joiners admitted out of arrival order"
            ));
        }
        // Everyone who joined before the sale is ahead of everyone after.
        let last_early = early.iter().map(|e| e.2).max();
        let ahead = late
            .iter()
            .filter(|l| last_early.is_some_and(|e| l.2 < e))
            .count();
        let early_waiting_left = buyers
            .iter()
            .filter(|b| b.early && b.admitted_at.is_none() && b.admitted_seen.is_none())
            .count();
        let _ = writeln!(
            out,
            "  late joiners admitted before the last early joiner: {ahead} (expected 0); early joiners never admitted: {early_waiting_left}, late joiners admitted: {}",
            buyers.iter().filter(|b| !b.early && b.admitted_seen.is_some()).count()
        );
        if ahead > 0 {
            failed.push(format!("{ahead} late joiners admitted ahead of early ones"));
        }
        if late.is_empty() && !early.is_empty() {
            let _ = writeln!(
                out,
                "  (no late joiner was admitted: the early ones took every unit, so arrival order is not checked; \
                 a smaller crowd or more units, e.g. --smoke, checks it)"
            );
        }
        Report { text: out, failed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_a_perfect_order_and_its_reverse() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [10.0, 20.0, 30.0, 40.0, 50.0];
        assert!((spearman(&x, &y).unwrap() - 1.0).abs() < 1e-12);
        let r: Vec<f64> = y.iter().rev().copied().collect();
        assert!((spearman(&x, &r).unwrap() + 1.0).abs() < 1e-12);
    }

    #[test]
    fn inversions_count_only_joins_in_a_certain_order() {
        // Three joins one after another, admitted 1, 3, 2: one inversion.
        let joins = [(0.0, 0.1, 1), (1.0, 1.1, 3), (2.0, 2.1, 2)];
        assert_eq!(inversions(&joins), (1, 3));
        // The last two overlap: their order is not known, no pair between them.
        let joins = [(0.0, 0.1, 1), (1.0, 2.5, 3), (2.0, 2.1, 2)];
        assert_eq!(inversions(&joins), (0, 2));
        // Ties in admission are not inversions.
        let joins = [(0.0, 0.1, 5), (1.0, 1.1, 5)];
        assert_eq!(inversions(&joins), (0, 1));
    }
}
