//! `loadgen gate`: gates under load. Sellers list a listing each and register two
//! devices (an online gate, an offline one); buyers buy and pay orders of several units.
//! Then, for `--seconds`, online gates redeem passes at `--concurrency` — one scan in ten
//! a duplicate (the same scan resent, or the pass scanned again) — while offline gates
//! upload batches of their own passes, one scan in ten a second scan of a pass of the
//! batch and one batch in ten uploaded twice. Reports requests, 5xx, results and the
//! redeem latency; exit code 2 on any 5xx or any answer the guarantees exclude (a pass
//! admitted twice, a resent scan answered differently).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use ticketing_contracts::time::format_millis;
use ticketing_contracts::time::now_millis;

#[derive(clap::Args, Debug, Clone)]
pub struct GateArgs {
    /// Base URL of the system (the `all` target, or the gateway in front of the services).
    #[arg(long, env = "LOADGEN_HOST", default_value = "http://127.0.0.1:3000")]
    pub host: String,
    /// Sellers, each with a listing and two devices.
    #[arg(long, default_value_t = 4)]
    pub sellers: usize,
    /// Orders of 10 units per seller's listing.
    #[arg(long, default_value_t = 10)]
    pub orders: usize,
    /// Online redeems running at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Scans per offline batch.
    #[arg(long, default_value_t = 50)]
    pub batch: usize,
    /// How long the gates scan.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
}

#[derive(Default)]
struct Tally {
    requests: usize,
    server_errors: usize,
    /// Answers the guarantees exclude.
    violations: Vec<String>,
    results: HashMap<String, usize>,
    redeem_ms: Vec<f64>,
}

struct Gate {
    http: Client,
    host: String,
    token: String,
}

impl Gate {
    async fn post(&self, path: &str, body: Value, tally: &Mutex<Tally>) -> Option<Value> {
        let res = self
            .http
            .post(format!("{}{path}", self.host))
            .header("Authorization", format!("Device {}", self.token))
            .json(&body)
            .send()
            .await;
        tally.lock().unwrap().requests += 1;
        match res {
            Ok(r) if r.status().is_success() => r.json().await.ok(),
            Ok(r) => {
                let mut t = tally.lock().unwrap();
                if r.status().is_server_error() {
                    t.server_errors += 1;
                }
                t.violations.push(format!("{path}: {}", r.status()));
                None
            }
            Err(e) => {
                tally
                    .lock()
                    .unwrap()
                    .violations
                    .push(format!("{path}: {e}"));
                None
            }
        }
    }
}

async fn call(
    http: &Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut req = http.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await?;
    let status = res.status();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

async fn sign_up(http: &Client, host: &str, who: &str) -> anyhow::Result<String> {
    let email = format!("{who}-{}@loadgen.test", uuid::Uuid::new_v4().simple());
    let res = http
        .post(format!("{host}/api/users/signup"))
        .json(&json!({"email": email, "password": "loadgen-password"}))
        .send()
        .await?;
    anyhow::ensure!(
        res.status() == StatusCode::CREATED,
        "sign-up: {}",
        res.status()
    );
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("session="))
        .and_then(|c| c.split(';').next())
        .context("no session cookie")?;
    let decoded = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, cookie)?;
    let session: Value = serde_json::from_slice(&decoded)?;
    Ok(session["jwt"].as_str().context("no jwt")?.to_owned())
}

/// Retry `f` while the answer is 404/409 (an object on its way to another service).
async fn known(
    mut f: impl AsyncFnMut() -> anyhow::Result<(StatusCode, Value)>,
) -> anyhow::Result<(StatusCode, Value)> {
    for _ in 0..100 {
        let (status, body) = f().await?;
        if status != StatusCode::NOT_FOUND && status != StatusCode::CONFLICT {
            return Ok((status, body));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f().await
}

/// A seller's listing sold out to buyers: its passes' codes, and its two devices.
async fn prepare(
    http: &Client,
    args: &GateArgs,
    n: usize,
) -> anyhow::Result<(Vec<String>, Gate, Gate)> {
    use reqwest::Method;
    let host = &args.host;
    let seller = sign_up(http, host, &format!("gate-seller{n}")).await?;
    let buyer = sign_up(http, host, &format!("gate-buyer{n}")).await?;
    let units = args.orders * 10;
    let (status, listing) = call(http, Method::POST, format!("{host}/api/tickets"), &seller,
        Some(json!({"title": format!("Gate {n}"), "price": 10, "quantity": units, "maxPerOrder": 10, "maxPerAccount": units}))).await?;
    anyhow::ensure!(status == StatusCode::CREATED, "listing: {status} {listing}");
    let ticket = listing["id"].as_str().context("listing id")?.to_owned();
    let mut codes = Vec::new();
    for _ in 0..args.orders {
        let (status, order) = known(async || {
            call(
                http,
                Method::POST,
                format!("{host}/api/orders"),
                &buyer,
                Some(json!({"ticketId": ticket, "quantity": 10})),
            )
            .await
        })
        .await?;
        anyhow::ensure!(status == StatusCode::CREATED, "order: {status} {order}");
        let order = order["id"].as_str().context("order id")?.to_owned();
        let (status, paid) = known(async || {
            call(
                http,
                Method::POST,
                format!("{host}/api/payments"),
                &buyer,
                Some(json!({"orderId": order, "token": "tok_visa"})),
            )
            .await
        })
        .await?;
        anyhow::ensure!(status == StatusCode::CREATED, "payment: {status} {paid}");
        let started = Instant::now();
        loop {
            let (_, list) = call(
                http,
                Method::GET,
                format!("{host}/api/passes?orderId={order}"),
                &buyer,
                None,
            )
            .await?;
            let list = list.as_array().cloned().unwrap_or_default();
            if list.len() == 10 {
                codes.extend(
                    list.iter()
                        .filter_map(|p| p["code"].as_str().map(str::to_owned)),
                );
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "passes of {order} never came"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut gates = Vec::new();
    for name in ["online", "offline"] {
        let (status, device) = known(async || {
            call(
                http,
                Method::POST,
                format!("{host}/api/checkin/devices"),
                &seller,
                Some(json!({"name": name, "ticketIds": [ticket]})),
            )
            .await
        })
        .await?;
        anyhow::ensure!(status == StatusCode::CREATED, "device: {status} {device}");
        gates.push(Gate {
            http: http.clone(),
            host: host.clone(),
            token: device["token"].as_str().context("token")?.to_owned(),
        });
    }
    let offline = gates.pop().unwrap();
    let online = gates.pop().unwrap();
    Ok((codes, online, offline))
}

pub async fn run(args: GateArgs) -> anyhow::Result<ExitCode> {
    let http = Client::builder().timeout(Duration::from_secs(30)).build()?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut sellers = Vec::new();
    for n in 0..args.sellers {
        sellers.push(prepare(&http, &args, n).await?);
    }
    println!(
        "gate: {} sellers, {} passes each; scanning for {} s",
        args.sellers,
        args.orders * 10,
        args.seconds
    );
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for (codes, online, offline) in sellers {
        // Half the passes for the online gate, half for the offline one: a pass is
        // admitted by one gate only, so every second `ok` is a violation.
        let (online_codes, offline_codes) = codes.split_at(codes.len() / 2);
        let online_codes: Arc<Vec<String>> = Arc::new(online_codes.to_vec());
        let online = Arc::new(online);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..args.concurrency.div_ceil(args.sellers.max(1)) {
            let (gate, codes, next, tally) = (
                online.clone(),
                online_codes.clone(),
                next.clone(),
                tally.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut answered: Vec<(String, Value)> = Vec::new();
                while Instant::now() < until {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let dup = !answered.is_empty() && rand::thread_rng().gen_bool(0.1);
                    let pick = rand::thread_rng().gen_range(0..answered.len().max(1));
                    if i >= codes.len() && !dup {
                        break;
                    }
                    let (code, nonce) = if dup {
                        let (nonce, _) = &answered[pick];
                        (
                            codes[nonce[1..].parse::<usize>().unwrap()].clone(),
                            nonce.clone(),
                        )
                    } else {
                        (codes[i].clone(), format!("n{i}"))
                    };
                    let started = Instant::now();
                    let Some(answer) = gate
                        .post(
                            "/api/checkin/redeem",
                            json!({"code": code, "nonce": nonce}),
                            &tally,
                        )
                        .await
                    else {
                        continue;
                    };
                    let keep = {
                        let mut t = tally.lock().unwrap();
                        t.redeem_ms.push(started.elapsed().as_secs_f64() * 1e3);
                        *t.results
                            .entry(answer["result"].as_str().unwrap_or("?").to_owned())
                            .or_default() += 1;
                        if dup {
                            let first = answered.iter().find(|(n, _)| *n == nonce).map(|(_, a)| a);
                            if first != Some(&answer) {
                                t.violations.push(format!(
                                    "scan {nonce} resent: {answer}, first {first:?}"
                                ));
                            }
                            false
                        } else if answer["result"] != "ok" {
                            t.violations.push(format!("first scan of a pass: {answer}"));
                            false
                        } else {
                            true
                        }
                    };
                    if keep {
                        answered.push((nonce, answer));
                    }
                }
            }));
        }
        let (offline, codes, tally, size) = (
            offline,
            offline_codes.to_vec(),
            tally.clone(),
            args.batch.max(1),
        );
        tasks.push(tokio::spawn(async move {
            for (b, chunk) in codes.chunks(size).enumerate() {
                if Instant::now() >= until {
                    break;
                }
                let at = now_millis() - 60_000;
                let mut scans: Vec<Value> = chunk.iter().enumerate().map(|(i, code)|
                    json!({"code": code, "nonce": format!("b{b}-{i}"), "scannedAt": format_millis(at + i as i64 * 10)})).collect();
                let extra: Vec<Value> = chunk.iter().enumerate().filter(|_| rand::thread_rng().gen_bool(0.1)).map(|(i, code)|
                    json!({"code": code, "nonce": format!("b{b}-{i}-again"), "scannedAt": format_millis(at + 5_000 + i as i64)})).collect();
                let duplicates = extra.len();
                scans.extend(extra);
                let Some(answer) = offline.post("/api/checkin/batch", json!({"scans": scans}), &tally).await else { continue };
                let results = answer["results"].as_array().cloned().unwrap_or_default();
                {
                    let mut t = tally.lock().unwrap();
                    let oks = results.iter().filter(|r| r["result"] == "ok").count();
                    for r in &results {
                        *t.results.entry(format!("batch {}", r["result"].as_str().unwrap_or("?"))).or_default() += 1;
                    }
                    if oks != chunk.len() || results.len() != chunk.len() + duplicates {
                        t.violations.push(format!("batch {b}: {oks} ok of {} passes", chunk.len()));
                    }
                }
                let resend = rand::thread_rng().gen_bool(0.1);
                if resend {
                    let again = offline.post("/api/checkin/batch", json!({"scans": scans}), &tally).await;
                    if again.as_ref() != Some(&answer) {
                        tally.lock().unwrap().violations.push(format!("batch {b} uploaded again answered differently"));
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let mut t = Arc::try_unwrap(tally)
        .ok()
        .context("tally")?
        .into_inner()
        .unwrap();
    t.redeem_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        t.redeem_ms
            .get(((t.redeem_ms.len().max(1) - 1) as f64 * p) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "requests: {}  5xx: {}  violations: {}",
        t.requests,
        t.server_errors,
        t.violations.len()
    );
    let mut results: Vec<_> = t.results.iter().collect();
    results.sort();
    for (result, n) in results {
        println!("  {result:<28} {n}");
    }
    println!(
        "redeem latency: p50 {:.1} ms  p99 {:.1} ms  (n={})",
        pct(0.5),
        pct(0.99),
        t.redeem_ms.len()
    );
    for v in t.violations.iter().take(10) {
        println!("  violation: {v}");
    }
    Ok(if t.server_errors > 0 || !t.violations.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
