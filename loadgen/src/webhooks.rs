//! `loadgen webhooks`: a webhook sink under load. Sellers register an endpoint each at
//! this process's sink (`<sink>/hook/<n>`, every subject); for `--seconds`, sellers list
//! tickets and buyers order and pay them. Then the sink waits until every delivery each
//! endpoint lists is `delivered` and arrived, and reports: requests and their 5xx and
//! 404s, deliveries queued, arrived (distinct), repeated, with a bad signature, and the
//! lag from each event's production to its arrival (p50/p99). Exit code 2 when any 5xx,
//! any delivery missing, any signature that does not verify, or any purchase that failed
//! (after the retries the contract asks for: 409 "not known here yet" with `Retry-After`).
//!
//! The services must be allowed to reach the sink (`--webhooks-allow-private` for a sink
//! on this machine's loopback address).

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::post;
use axum::Router;
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use ticketing_contracts::time::{now_millis, parse_millis};
use ticketing_contracts::webhook;

#[derive(clap::Args, Debug, Clone)]
pub struct WebhookArgs {
    /// Base URL of the system (the `all` target, or the gateway in front of the services).
    #[arg(long, env = "LOADGEN_HOST", default_value = "http://127.0.0.1:3000")]
    pub host: String,
    /// Where the sink listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub sink_listen: String,
    /// The sink's URL as the webhooks service reaches it (default: `http://<listen>`).
    #[arg(long)]
    pub sink_url: Option<String>,
    /// Sellers, each with an endpoint.
    #[arg(long, default_value_t = 8)]
    pub sellers: usize,
    /// Purchases (list, order, pay) running at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// How long to generate events.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// How long deliveries may take to arrive after the load stops.
    #[arg(long, default_value_t = 120)]
    pub drain_seconds: u64,
}

#[derive(Default)]
struct Sink {
    secrets: HashMap<usize, String>,
    /// Per endpoint, the distinct event ids arrived.
    arrived: HashMap<usize, HashSet<String>>,
    repeats: usize,
    bad_signatures: usize,
    lag_ms: Vec<i64>,
}

async fn receive(
    State(sink): State<Arc<Mutex<Sink>>>,
    Path(n): Path<usize>,
    headers: HeaderMap,
    raw: Bytes,
) -> AxumStatus {
    let at = now_millis();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let id = header(webhook::ID_HEADER);
    let timestamp: i64 = header(webhook::TIMESTAMP_HEADER).parse().unwrap_or(0);
    let signature = header(webhook::SIGNATURE_HEADER);
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
    let verified = sink
        .secrets
        .get(&n)
        .is_some_and(|s| webhook::verify(s, &id, timestamp, &raw, &signature));
    if !verified {
        sink.bad_signatures += 1;
        return AxumStatus::UNAUTHORIZED;
    }
    if sink.arrived.entry(n).or_default().insert(id) {
        if let Some(produced) = body["createdAt"].as_str().and_then(parse_millis) {
            sink.lag_ms.push(at - produced);
        }
    } else {
        sink.repeats += 1;
    }
    AxumStatus::NO_CONTENT
}

#[derive(Default)]
struct Counts {
    requests: AtomicUsize,
    server_errors: AtomicUsize,
    not_found: AtomicUsize,
    /// 409s with `Retry-After`: the service has not heard of the object yet (issue 31).
    not_yet_known: AtomicUsize,
    purchases: AtomicUsize,
}

struct Person {
    cookie: String,
}

async fn call(
    http: &Client,
    host: &str,
    counts: &Counts,
    who: Option<&Person>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, HeaderMap, Value)> {
    let mut req = http.request(method, format!("{host}{path}"));
    if let Some(p) = who {
        req = req.header(reqwest::header::COOKIE, &p.cookie);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.with_context(|| path.to_owned())?;
    counts.requests.fetch_add(1, Ordering::Relaxed);
    let status = res.status();
    if status.is_server_error() {
        counts.server_errors.fetch_add(1, Ordering::Relaxed);
    }
    if status == StatusCode::NOT_FOUND {
        counts.not_found.fetch_add(1, Ordering::Relaxed);
    }
    let headers = res.headers().clone();
    let body = res.json().await.unwrap_or(Value::Null);
    Ok((status, headers, body))
}

async fn sign_up(
    http: &Client,
    host: &str,
    counts: &Counts,
    email: &str,
) -> anyhow::Result<Person> {
    let (status, headers, body) = call(
        http,
        host,
        counts,
        None,
        Method::POST,
        "/api/users/signup",
        Some(json!({"email": email, "password": "load-password-1"})),
    )
    .await?;
    anyhow::ensure!(
        status == StatusCode::CREATED,
        "sign up {email}: {status} {body}"
    );
    let cookie = headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("session="))
        .and_then(|c| c.split(';').next())
        .context("no session cookie")?
        .to_owned();
    Ok(Person { cookie })
}

/// POST, sent again while the answer is 404, a 409 with `Retry-After` (a service that has
/// not heard of the object yet, after its own wait) or 503, for up to 10 s; a
/// `Retry-After` is waited out.
async fn post_known(
    http: &Client,
    host: &str,
    counts: &Counts,
    who: &Person,
    path: &str,
    body: Value,
) -> anyhow::Result<(StatusCode, Value)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, headers, reply) = call(
            http,
            host,
            counts,
            Some(who),
            Method::POST,
            path,
            Some(body.clone()),
        )
        .await?;
        let retry_after = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .map(Duration::from_secs);
        let not_yet_known = status == StatusCode::CONFLICT && retry_after.is_some();
        if not_yet_known {
            counts.not_yet_known.fetch_add(1, Ordering::Relaxed);
        }
        let retry = not_yet_known
            || matches!(
                status,
                StatusCode::NOT_FOUND | StatusCode::SERVICE_UNAVAILABLE
            );
        if !retry || Instant::now() > deadline {
            return Ok((status, reply));
        }
        tokio::time::sleep(retry_after.unwrap_or(Duration::from_millis(50))).await;
    }
}

async fn purchase(
    http: &Client,
    host: &str,
    counts: &Counts,
    seller: &Person,
    buyer: &Person,
) -> anyhow::Result<()> {
    let title = format!("Webhook load {}", uuid::Uuid::new_v4());
    let (status, ticket) = post_known(
        http,
        host,
        counts,
        seller,
        "/api/tickets",
        json!({"title": title, "price": 12}),
    )
    .await?;
    anyhow::ensure!(status == StatusCode::CREATED, "sell: {status} {ticket}");
    let ticket = ticket["id"].as_str().context("ticket id")?.to_owned();
    let (status, order) = post_known(
        http,
        host,
        counts,
        buyer,
        "/api/orders",
        json!({"ticketId": ticket}),
    )
    .await?;
    anyhow::ensure!(status == StatusCode::CREATED, "order: {status} {order}");
    let order = order["id"].as_str().context("order id")?.to_owned();
    let (status, payment) = post_known(
        http,
        host,
        counts,
        buyer,
        "/api/payments",
        json!({"orderId": order, "token": "tok_visa"}),
    )
    .await?;
    anyhow::ensure!(status == StatusCode::CREATED, "pay: {status} {payment}");
    counts.purchases.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Every delivery an endpoint lists: (event id, status).
async fn deliveries(
    http: &Client,
    host: &str,
    counts: &Counts,
    who: &Person,
    hook: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut all = Vec::new();
    let mut cursor = 0;
    loop {
        let path = format!("/api/webhooks/{hook}/deliveries?cursor={cursor}");
        let (status, _, page) =
            call(http, host, counts, Some(who), Method::GET, &path, None).await?;
        anyhow::ensure!(status == StatusCode::OK, "{path}: {status} {page}");
        let page = page.as_array().cloned().unwrap_or_default();
        let Some(last) = page.last() else {
            return Ok(all);
        };
        cursor = last["seq"].as_i64().unwrap_or(0);
        for d in &page {
            all.push((
                d["eventId"].as_str().unwrap_or_default().to_owned(),
                d["status"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

pub async fn run(args: WebhookArgs) -> anyhow::Result<ExitCode> {
    let host = args.host.trim_end_matches('/').to_owned();
    let http = Client::builder().timeout(Duration::from_secs(30)).build()?;
    let counts = Arc::new(Counts::default());
    let sink = Arc::new(Mutex::new(Sink::default()));
    let listener = tokio::net::TcpListener::bind(&args.sink_listen)
        .await
        .with_context(|| format!("binding the sink on {}", args.sink_listen))?;
    let sink_url = args
        .sink_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", listener.local_addr().expect("address")));
    let app = Router::new()
        .route("/hook/{n}", post(receive))
        .with_state(sink.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    eprintln!("loadgen: webhook sink at {sink_url}");

    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let mut sellers = Vec::new();
    let mut hooks = Vec::new();
    for n in 0..args.sellers.max(1) {
        let seller = sign_up(
            &http,
            &host,
            &counts,
            &format!("hook-seller-{n}-{run_id}@load.test"),
        )
        .await?;
        let (status, _, hook) = call(
            &http,
            &host,
            &counts,
            Some(&seller),
            Method::POST,
            "/api/webhooks",
            Some(json!({
                "url": format!("{sink_url}/hook/{n}"),
                "events": ["ticket:created", "ticket:updated", "order:created", "order:cancelled",
                           "expiration:complete", "payment:created", "payment:refunded", "waitlist:offered"],
            })),
        )
        .await?;
        anyhow::ensure!(
            status == StatusCode::CREATED,
            "POST /api/webhooks: {status} {hook}"
        );
        let secret = hook["secret"].as_str().context("secret")?.to_owned();
        sink.lock()
            .unwrap_or_else(|e| e.into_inner())
            .secrets
            .insert(n, secret);
        hooks.push(hook["id"].as_str().context("id")?.to_owned());
        sellers.push(seller);
    }
    let sellers = Arc::new(sellers);
    let mut buyers = Vec::new();
    for n in 0..args.concurrency.max(1) {
        buyers.push(
            sign_up(
                &http,
                &host,
                &counts,
                &format!("hook-buyer-{n}-{run_id}@load.test"),
            )
            .await?,
        );
    }

    let stop = Instant::now() + Duration::from_secs(args.seconds);
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for (w, buyer) in buyers.into_iter().enumerate() {
        let (http, host, counts, sellers, failures) = (
            http.clone(),
            host.clone(),
            counts.clone(),
            sellers.clone(),
            failures.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while Instant::now() < stop {
                let seller = &sellers[i % sellers.len()];
                if let Err(err) = purchase(&http, &host, &counts, seller, &buyer).await {
                    failures
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(format!("{err:#}"));
                }
                i += 1;
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let load_done = Instant::now();

    // Drain: every delivery listed is delivered and arrived.
    let deadline = load_done + Duration::from_secs(args.drain_seconds);
    let (mut queued, mut missing);
    loop {
        queued = 0;
        missing = 0;
        let mut pending = 0;
        for (n, hook) in hooks.iter().enumerate() {
            let list = deliveries(&http, &host, &counts, &sellers[n], hook).await?;
            queued += list.len();
            pending += list.iter().filter(|(_, s)| s != "delivered").count();
            let sink = sink.lock().unwrap_or_else(|e| e.into_inner());
            let arrived = sink.arrived.get(&n);
            missing += list
                .iter()
                .filter(|(id, _)| !arrived.is_some_and(|a| a.contains(id)))
                .count();
        }
        if (pending == 0 && missing == 0) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let drain = load_done.elapsed();
    let sink = sink.lock().unwrap_or_else(|e| e.into_inner());
    let mut lag = sink.lag_ms.clone();
    lag.sort_unstable();
    let arrived: usize = sink.arrived.values().map(HashSet::len).sum();
    let failures = failures.lock().unwrap_or_else(|e| e.into_inner());
    let server_errors = counts.server_errors.load(Ordering::Relaxed);
    println!(
        "webhooks under load against {host}: {} sellers' endpoints, {} purchases in {} s",
        hooks.len(),
        counts.purchases.load(Ordering::Relaxed),
        args.seconds
    );
    println!(
        "  requests {}: 5xx {server_errors}, 404 {} and 409 not yet known {} (retried), failed purchases {}",
        counts.requests.load(Ordering::Relaxed),
        counts.not_found.load(Ordering::Relaxed),
        counts.not_yet_known.load(Ordering::Relaxed),
        failures.len()
    );
    for f in failures.iter().take(5) {
        println!("    {f}");
    }
    println!(
        "  deliveries queued {queued}, arrived {arrived} (missing {missing}), repeated {}, bad signatures {}; drained {:.1} s after the load",
        sink.repeats,
        sink.bad_signatures,
        drain.as_secs_f64()
    );
    println!(
        "  lag from production: p50 {} ms, p99 {} ms, max {} ms",
        percentile(&lag, 0.5),
        percentile(&lag, 0.99),
        lag.last().copied().unwrap_or(0)
    );
    Ok(
        if server_errors > 0 || missing > 0 || sink.bad_signatures > 0 || !failures.is_empty() {
            eprintln!(
                "loadgen: gate failed: {server_errors} 5xx, {missing} deliveries missing, {} bad signatures, {} failed purchases",
                sink.bad_signatures,
                failures.len()
            );
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        },
    )
}
