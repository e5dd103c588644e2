//! System benchmark of the tickets and orders services (not a timed test: it prints
//! figures beside the targets and never fails on a missed one).
//!
//! It spawns the real `ticketing` binary (`--target all`, embedded mode, a fresh data
//! directory, a free port), mints its own session tokens with the same `JWT_KEY`, and
//! measures over HTTP:
//!
//! 1. resident memory (VmRSS) idle after start, before load and after load;
//! 2. `POST /api/tickets` rate;
//! 3. `POST /api/orders` closed-loop rate and latency at fixed concurrencies, the time the
//!    tickets service then needs to show every ordered ticket reserved (the backlog), and
//!    an open-loop run at a fixed target rate;
//! 4. `order created → ticket shows reserved` latency, one order at a time;
//! 5. `GET /api/tickets` (100 items) requests per second.
//! 6. `GET /`, the web page listing the same 100 tickets, requests per second.
//!
//! The client runs on the same machine as the server, so every phase also prints the CPU
//! the server and the client used.
//!
//! Knobs (environment): `BENCH_TICKETS` (tickets created, default 30000),
//! `BENCH_SECONDS` (length of each closed-loop run, default 10), `BENCH_CONCURRENCY`
//! (tickets and list load, default 32), `BENCH_ORDER_CONCURRENCY` (comma list, default
//! `32,64`), `BENCH_OPEN_RATE` (orders/s, default 2000, 0 to skip), `BENCH_OPEN_SECONDS`
//! (default 5), `BENCH_LATENCY_ORDERS` (default 300), `BENCH_BUYERS` (default 1000),
//! `BENCH_CLIENT_THREADS` (client runtime workers, default 1), `BENCH_RUST_LOG` (the
//! server's `RUST_LOG`, default: the server's own default).
//!
//! Run: `cargo bench -p ticketing --bench system`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use ticketing_kit::auth::JwtKeys;

/// Cap of concurrent requests of the open-loop run.
const OPEN_LOOP_MAX_IN_FLIGHT: usize = 256;

const JWT_KEY: &str = "bench-only-hs256-key-0123456789abcdef";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

struct Knobs {
    tickets: usize,
    seconds: u64,
    concurrency: usize,
    order_concurrency: Vec<usize>,
    open_rate: u64,
    open_seconds: u64,
    latency_orders: usize,
    buyers: usize,
    client_threads: usize,
}

impl Knobs {
    fn from_env() -> Knobs {
        let order_concurrency = std::env::var("BENCH_ORDER_CONCURRENCY")
            .ok()
            .map(|v| {
                v.split(',')
                    .filter_map(|s| s.trim().parse().ok())
                    .filter(|&c| c > 0)
                    .collect::<Vec<usize>>()
            })
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| vec![32, 64]);
        Knobs {
            tickets: env_or("BENCH_TICKETS", 30_000),
            seconds: env_or("BENCH_SECONDS", 10),
            concurrency: env_or("BENCH_CONCURRENCY", 32usize).max(1),
            order_concurrency,
            open_rate: env_or("BENCH_OPEN_RATE", 2_000),
            open_seconds: env_or("BENCH_OPEN_SECONDS", 5),
            latency_orders: env_or("BENCH_LATENCY_ORDERS", 300),
            buyers: env_or("BENCH_BUYERS", 1_000usize).max(1),
            client_threads: env_or("BENCH_CLIENT_THREADS", 1usize).max(1),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Process figures from /proc

/// A process's CPU time (user + system) in seconds, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after `state` (field 3).
    (ticks(11) + ticks(12)) as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    // USER_HZ is 100 on every Linux ABI that matters; `getconf CLK_TCK` would say so.
    100.0
}

/// A `/proc/<pid>/status` field in kB (e.g. `VmRSS`).
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn mb(kb: Option<u64>) -> String {
    kb.map(|kb| format!("{:.1} MB", kb as f64 / 1024.0))
        .unwrap_or_else(|| "n/a".into())
}

/// CPU used by the server and by this process over one phase.
struct CpuMeter {
    server: String,
    start: Instant,
    server0: f64,
    client0: f64,
}

struct CpuUse {
    wall: f64,
    server: f64,
    client: f64,
}

impl CpuMeter {
    fn start(server_pid: u32) -> CpuMeter {
        let server = server_pid.to_string();
        CpuMeter {
            server0: cpu_seconds(&server),
            client0: cpu_seconds("self"),
            server,
            start: Instant::now(),
        }
    }

    fn stop(&self) -> CpuUse {
        CpuUse {
            wall: self.start.elapsed().as_secs_f64(),
            server: cpu_seconds(&self.server) - self.server0,
            client: cpu_seconds("self") - self.client0,
        }
    }
}

impl std::fmt::Display for CpuUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |s: f64| 100.0 * s / self.wall.max(1e-9);
        write!(
            f,
            "server {:.0}% / client {:.0}% of one core ({:.1}s wall)",
            pct(self.server),
            pct(self.client),
            self.wall
        )
    }
}

// ---------------------------------------------------------------------------------------
// Latency statistics

#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn merge(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    fn pct(&mut self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        self.0.sort_unstable();
        let i = ((p / 100.0) * (self.0.len() - 1) as f64).round() as usize;
        self.0[i.min(self.0.len() - 1)]
    }

    fn summary(&mut self) -> String {
        format!(
            "p50 {} p99 {} max {}",
            ms(self.pct(50.0)),
            ms(self.pct(99.0)),
            ms(self.pct(100.0))
        )
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

// ---------------------------------------------------------------------------------------
// The server

struct Server {
    child: Child,
    base: String,
    pid: u32,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn spawn_server(data_dir: &Path) -> Server {
    let port = free_port();
    let log = std::fs::File::create(data_dir.join("server.log")).expect("server log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ticketing"));
    cmd.arg("--target")
        .arg("all")
        .arg("--data-dir")
        .arg(data_dir.join("data"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("JWT_KEY", JWT_KEY)
        // Orders must not expire during the run.
        .env("TICKETING_ORDER_TTL_SECONDS", "3600")
        .env_remove("TICKETING_DATABASE_URL")
        .env_remove("NATS_URL")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("server log"))
        .stderr(log);
    if let Ok(filter) = std::env::var("BENCH_RUST_LOG") {
        cmd.env("RUST_LOG", filter);
    }
    let child = cmd.spawn().expect("spawning the ticketing binary");
    Server {
        pid: child.id(),
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

async fn wait_ready(client: &Client, server: &mut Server) -> Duration {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("the server exited during start: {status}");
        }
        if let Ok(r) = client.get(format!("{}/readyz", server.base)).send().await {
            if r.status().is_success() {
                return start.elapsed();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the server was not ready within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Requests

struct Api {
    client: Client,
    base: String,
    sellers: Vec<String>,
    buyers: Vec<String>,
}

impl Api {
    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    async fn create_ticket(&self, i: usize) -> Result<String, String> {
        let seller = &self.sellers[i % self.sellers.len()];
        let r = self
            .client
            .post(format!("{}/api/tickets", self.base))
            .header("authorization", Self::bearer(seller))
            .json(&json!({ "title": format!("Bench concert {i}"), "price": 10 + (i % 90) }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status() != StatusCode::CREATED {
            return Err(format!("status {}", r.status()));
        }
        let body: Value = r.json().await.map_err(|e| e.to_string())?;
        body["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "no id".into())
    }

    /// `POST /api/orders`; the status (201 on success).
    async fn create_order(&self, ticket_id: &str, buyer: usize) -> Result<StatusCode, String> {
        let token = &self.buyers[buyer % self.buyers.len()];
        let r = self
            .client
            .post(format!("{}/api/orders", self.base))
            .header("authorization", Self::bearer(token))
            .json(&json!({ "ticketId": ticket_id }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status();
        // Read the body so that the connection goes back to the pool.
        let _ = r.bytes().await;
        Ok(status)
    }

    /// Does `GET /api/tickets/{id}` show the ticket reserved?
    async fn is_reserved(&self, ticket_id: &str) -> bool {
        let Ok(r) = self
            .client
            .get(format!("{}/api/tickets/{ticket_id}", self.base))
            .send()
            .await
        else {
            return false;
        };
        match r.json::<Value>().await {
            Ok(v) => v.get("orderId").is_some_and(|o| !o.is_null()),
            Err(_) => false,
        }
    }

    /// Every available ticket id, following the cursor 1000 at a time.
    async fn available_ids(&self) -> HashSet<String> {
        let mut ids = HashSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{}/api/tickets?limit=1000", self.base);
            if let Some(c) = &cursor {
                let _ = write!(url, "&cursor={c}");
            }
            let r = self.client.get(url).send().await.expect("listing tickets");
            cursor = r
                .headers()
                .get("x-next-cursor")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let page: Vec<Value> = r.json().await.expect("a ticket list");
            ids.extend(
                page.iter()
                    .filter_map(|t| t["id"].as_str().map(str::to_owned)),
            );
            if cursor.is_none() {
                return ids;
            }
        }
    }
}

/// A pool of ticket ids handed out once each.
struct Pool {
    ids: Vec<String>,
    next: AtomicUsize,
}

impl Pool {
    fn take(&self) -> Option<&str> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.ids.get(i).map(String::as_str)
    }

    fn left(&self) -> usize {
        self.ids
            .len()
            .saturating_sub(self.next.load(Ordering::Relaxed))
    }
}

// ---------------------------------------------------------------------------------------
// Report

struct Row {
    metric: String,
    figure: String,
    target: String,
    verdict: &'static str,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Report {
    fn row(&mut self, metric: impl Into<String>, figure: impl Into<String>) {
        self.rows.push(Row {
            metric: metric.into(),
            figure: figure.into(),
            target: String::new(),
            verdict: "",
        });
    }

    fn check(
        &mut self,
        metric: impl Into<String>,
        figure: impl Into<String>,
        target: impl Into<String>,
        met: bool,
    ) {
        self.rows.push(Row {
            metric: metric.into(),
            figure: figure.into(),
            target: target.into(),
            verdict: if met { "ok" } else { "MISSED" },
        });
    }

    fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        println!("  · {note}");
        self.notes.push(note);
    }

    fn print(&self) {
        let w0 = self
            .rows
            .iter()
            .map(|r| r.metric.chars().count())
            .max()
            .unwrap_or(0);
        let w1 = self
            .rows
            .iter()
            .map(|r| r.figure.chars().count())
            .max()
            .unwrap_or(0);
        let w2 = self
            .rows
            .iter()
            .map(|r| r.target.chars().count())
            .max()
            .unwrap_or(0);
        let rule = "-".repeat(w0 + w1 + w2 + 16);
        println!("\n{rule}");
        println!(
            "{:w0$} | {:w1$} | {:w2$} | verdict",
            "metric", "figure", "target"
        );
        println!("{rule}");
        for r in &self.rows {
            println!(
                "{:w0$} | {:w1$} | {:w2$} | {}",
                r.metric, r.figure, r.target, r.verdict
            );
        }
        println!("{rule}");
        for n in &self.notes {
            println!("  · {n}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Phases

/// Create `n` tickets with `concurrency` workers; the ids in creation order.
async fn create_tickets(api: &Arc<Api>, n: usize, concurrency: usize) -> (Vec<String>, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let errors = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (api, next, out, errors) = (api.clone(), next.clone(), out.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                match api.create_ticket(i).await {
                    Ok(id) => out.lock().unwrap().push(id),
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("ticket create failed: {e}");
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let ids = std::mem::take(&mut *out.lock().unwrap());
    (ids, errors.load(Ordering::Relaxed))
}

struct OrderRun {
    ok: usize,
    not_found: usize,
    other: usize,
    wall: Duration,
    latency: Samples,
    ordered: Vec<String>,
    exhausted: bool,
}

/// Closed loop: `concurrency` workers each issue one order after another for `secs`.
async fn closed_loop_orders(
    api: &Arc<Api>,
    pool: &Arc<Pool>,
    concurrency: usize,
    secs: u64,
) -> OrderRun {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let exhausted = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (api, pool, exhausted) = (api.clone(), pool.clone(), exhausted.clone());
        tasks.push(tokio::spawn(async move {
            let mut latency = Samples::default();
            let mut ordered = Vec::new();
            let (mut not_found, mut other) = (0, 0);
            let mut buyer = w;
            while Instant::now() < deadline {
                let Some(id) = pool.take() else {
                    exhausted.store(true, Ordering::Relaxed);
                    break;
                };
                buyer += concurrency;
                let t0 = Instant::now();
                match api.create_order(id, buyer).await {
                    Ok(StatusCode::CREATED) => {
                        latency.0.push(t0.elapsed());
                        ordered.push(id.to_owned());
                    }
                    Ok(StatusCode::NOT_FOUND) => not_found += 1,
                    Ok(s) => {
                        if other < 3 {
                            eprintln!("order: status {s}");
                        }
                        other += 1;
                    }
                    Err(e) => {
                        if other < 3 {
                            eprintln!("order: {e}");
                        }
                        other += 1;
                    }
                }
            }
            (latency, ordered, not_found, other)
        }));
    }
    let mut run = OrderRun {
        ok: 0,
        not_found: 0,
        other: 0,
        wall: Duration::ZERO,
        latency: Samples::default(),
        ordered: Vec::new(),
        exhausted: false,
    };
    for t in tasks {
        let (latency, ordered, not_found, other) = t.await.unwrap();
        run.ok += ordered.len();
        run.ordered.extend(ordered);
        run.latency.merge(latency);
        run.not_found += not_found;
        run.other += other;
    }
    run.wall = start.elapsed();
    run.exhausted = exhausted.load(Ordering::Relaxed);
    run
}

/// Open loop: order `i` is due at `start + i / rate`; its latency counts from then, so a
/// server that falls behind shows it (no coordinated omission).
async fn open_loop_orders(api: &Arc<Api>, pool: &Arc<Pool>, rate: u64, secs: u64) -> OrderRun {
    let n = (rate * secs) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        match pool.take() {
            Some(id) => ids.push(id.to_owned()),
            None => break,
        }
    }
    let exhausted = ids.len() < n;
    // At most this many requests in flight (and so connections): a server that falls
    // behind delays the next sends, and their latency still counts from their due time.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(OPEN_LOOP_MAX_IN_FLIGHT));
    for (i, id) in ids.into_iter().enumerate() {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("open semaphore");
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let status = api.create_order(&id, i).await;
            drop(permit);
            (status, due.elapsed(), id)
        }));
    }
    let mut run = OrderRun {
        ok: 0,
        not_found: 0,
        other: 0,
        wall: Duration::ZERO,
        latency: Samples::default(),
        ordered: Vec::new(),
        exhausted,
    };
    for t in tasks {
        let (status, latency, id) = t.await.unwrap();
        match status {
            Ok(StatusCode::CREATED) => {
                run.ok += 1;
                run.latency.0.push(latency);
                run.ordered.push(id);
            }
            Ok(StatusCode::NOT_FOUND) => run.not_found += 1,
            _ => run.other += 1,
        }
    }
    run.wall = start.elapsed();
    run
}

/// After a load: how long until the tickets service shows the ordered tickets reserved.
/// A sample (the last orders placed, plus every k-th) is polled by id; then a full scan
/// of the available list checks that none of the ordered tickets is still listed.
async fn drain(api: &Arc<Api>, ordered: &[String]) -> (Duration, Duration, usize) {
    let start = Instant::now();
    let step = (ordered.len() / 200).max(1);
    let mut pending: Vec<String> = ordered
        .iter()
        .rev()
        .take(200)
        .chain(ordered.iter().step_by(step))
        .cloned()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let sampled = pending.len();
    while !pending.is_empty() && start.elapsed() < Duration::from_secs(120) {
        let reserved: Vec<bool> = stream::iter(pending.iter())
            .map(|id| api.is_reserved(id))
            .buffered(16)
            .collect()
            .await;
        let mut keep = reserved.iter();
        pending.retain(|_| !*keep.next().unwrap());
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let sample_drained = start.elapsed();
    let ordered: HashSet<&str> = ordered.iter().map(String::as_str).collect();
    loop {
        let available = api.available_ids().await;
        let still = available
            .iter()
            .filter(|id| ordered.contains(id.as_str()))
            .count();
        if still == 0 || start.elapsed() > Duration::from_secs(120) {
            return (sample_drained, start.elapsed(), sampled);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn order_to_reserved(api: &Arc<Api>, ids: &[String]) -> (Samples, Samples, usize) {
    let mut post = Samples::default();
    let mut reserved = Samples::default();
    let mut failed = 0;
    for (i, id) in ids.iter().enumerate() {
        let t0 = Instant::now();
        match api.create_order(id, i).await {
            Ok(StatusCode::CREATED) => {}
            _ => {
                failed += 1;
                continue;
            }
        }
        let created = Instant::now();
        post.0.push(created - t0);
        loop {
            if api.is_reserved(id).await {
                reserved.0.push(created.elapsed());
                break;
            }
            if created.elapsed() > Duration::from_secs(10) {
                failed += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    (post, reserved, failed)
}

async fn list_load(
    api: &Arc<Api>,
    path: &'static str,
    concurrency: usize,
    secs: u64,
) -> (usize, usize, Samples) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let url = format!("{}{path}", api.base);
            let (mut ok, mut bad) = (0usize, 0usize);
            let mut latency = Samples::default();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match api.client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => {
                        if r.bytes().await.is_ok() {
                            ok += 1;
                            latency.0.push(t0.elapsed());
                        } else {
                            bad += 1;
                        }
                    }
                    _ => bad += 1,
                }
            }
            (ok, bad, latency)
        }));
    }
    let (mut ok, mut bad, mut latency) = (0, 0, Samples::default());
    for t in tasks {
        let (o, b, l) = t.await.unwrap();
        ok += o;
        bad += b;
        latency.merge(l);
    }
    (ok, bad, latency)
}

// ---------------------------------------------------------------------------------------

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is ignored.
    let knobs = Knobs::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(knobs.client_threads)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(knobs));
}

async fn run(k: Knobs) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "ticketing system bench: {} cores, client threads {}, binary {}",
        cores,
        k.client_threads,
        env!("CARGO_BIN_EXE_ticketing")
    );
    println!(
        "knobs: BENCH_TICKETS={} BENCH_SECONDS={} BENCH_CONCURRENCY={} BENCH_ORDER_CONCURRENCY={:?} BENCH_OPEN_RATE={} BENCH_OPEN_SECONDS={} BENCH_LATENCY_ORDERS={} BENCH_BUYERS={}",
        k.tickets, k.seconds, k.concurrency, k.order_concurrency, k.open_rate, k.open_seconds, k.latency_orders, k.buyers
    );
    let mut report = Report::default();

    let client = Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()
        .expect("an HTTP client");
    let mut server = spawn_server(dir.path());
    let ready = wait_ready(&client, &mut server).await;
    let pid = server.pid;
    println!("server pid {pid} ready in {} at {}", ms(ready), server.base);
    let rss_start = status_kb(pid, "VmRSS");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = status_kb(pid, "VmRSS");
    report.row("RSS at ready", mb(rss_start));
    report.check(
        "RSS idle after start (2 s)",
        mb(rss_idle),
        "≤ 50 MB",
        rss_idle.is_some_and(|kb| kb <= 50 * 1024),
    );

    let keys = JwtKeys::new(JWT_KEY.as_bytes(), Duration::from_secs(3600));
    let token = |who: &str, i: usize| {
        keys.issue(&format!("bench-{who}-{i}"), &format!("{who}{i}@bench.test"))
            .expect("a token")
            .0
    };
    let api = Arc::new(Api {
        client: client.clone(),
        base: server.base.clone(),
        sellers: (0..16).map(|i| token("seller", i)).collect(),
        buyers: (0..k.buyers).map(|i| token("buyer", i)).collect(),
    });

    // Warm up the connections and the code paths.
    let _ = create_tickets(&api, k.concurrency, k.concurrency).await;
    let rss_before = status_kb(pid, "VmRSS");
    report.row("RSS before load", mb(rss_before));

    // 2. Tickets.
    println!(
        "\n[tickets] POST /api/tickets ×{} (c={})",
        k.tickets, k.concurrency
    );
    let cpu = CpuMeter::start(pid);
    let (ids, errors) = create_tickets(&api, k.tickets, k.concurrency).await;
    let cpu = cpu.stop();
    let rate = ids.len() as f64 / cpu.wall;
    report.row(
        format!("POST /api/tickets (c={})", k.concurrency),
        format!("{rate:.0}/s ({} ok, {errors} failed)", ids.len()),
    );
    report.note(format!("tickets: {cpu}"));

    // The orders service learns tickets from `ticket:created`: wait until it knows the
    // last ticket created (a sacrificial order), and say how long that took.
    let (pool_ids, rest) = ids.split_at(ids.len().saturating_sub(k.latency_orders + 200));
    let (latency_ids, list_ids) = rest.split_at(rest.len().saturating_sub(200));
    let (probe, pool_ids) = pool_ids.split_last().expect("tickets created");
    let t0 = Instant::now();
    loop {
        match api.create_order(probe, 0).await {
            Ok(StatusCode::CREATED) => break,
            Ok(StatusCode::NOT_FOUND) if t0.elapsed() < Duration::from_secs(120) => {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            other => panic!("probe order: {other:?}"),
        }
    }
    report.row(
        "ticket:created backlog in orders after creates",
        ms(t0.elapsed()),
    );
    let pool = Arc::new(Pool {
        ids: pool_ids.to_vec(),
        next: AtomicUsize::new(0),
    });

    // 3. Orders, closed loop.
    for &c in &k.order_concurrency {
        if pool.left() == 0 {
            report.note(format!("orders c={c}: skipped, no tickets left"));
            continue;
        }
        println!(
            "\n[orders] POST /api/orders closed loop c={c} for {} s",
            k.seconds
        );
        let cpu = CpuMeter::start(pid);
        let mut run = closed_loop_orders(&api, &pool, c, k.seconds).await;
        let cpu = cpu.stop();
        let rate = run.ok as f64 / run.wall.as_secs_f64();
        let p99 = run.latency.pct(99.0);
        report.check(
            format!("POST /api/orders closed loop c={c}"),
            format!("{rate:.0}/s, {}", run.latency.summary()),
            "≥ 2000/s, p99 < 20 ms",
            rate >= 2000.0 && p99 < Duration::from_millis(20),
        );
        report.note(format!(
            "orders c={c}: {} ok, {} unknown ticket (404), {} other errors{}; {cpu}",
            run.ok,
            run.not_found,
            run.other,
            if run.exhausted {
                " — ticket pool exhausted early, raise BENCH_TICKETS"
            } else {
                ""
            }
        ));
        let (sample, full, sampled) = drain(&api, &run.ordered).await;
        report.row(
            format!("  backlog: all ordered tickets reserved (c={c})"),
            format!(
                "{} after load ({sampled} sampled by id: {})",
                ms(full),
                ms(sample)
            ),
        );
    }

    // 3b. Orders, open loop.
    if k.open_rate > 0 && pool.left() > 0 {
        println!(
            "\n[orders] POST /api/orders open loop at {}/s for {} s",
            k.open_rate, k.open_seconds
        );
        let cpu = CpuMeter::start(pid);
        let mut run = open_loop_orders(&api, &pool, k.open_rate, k.open_seconds).await;
        let cpu = cpu.stop();
        let rate = run.ok as f64 / run.wall.as_secs_f64();
        let p99 = run.latency.pct(99.0);
        report.check(
            format!("POST /api/orders open loop at {}/s", k.open_rate),
            format!("{rate:.0}/s done, {}", run.latency.summary()),
            "≥ 2000/s, p99 < 20 ms",
            rate >= 0.95 * k.open_rate as f64 && p99 < Duration::from_millis(20),
        );
        report.note(format!(
            "open loop: {} ok, {} unknown ticket, {} other errors{}; {cpu}",
            run.ok,
            run.not_found,
            run.other,
            if run.exhausted {
                " — ticket pool ran short, raise BENCH_TICKETS"
            } else {
                ""
            }
        ));
        let (sample, full, sampled) = drain(&api, &run.ordered).await;
        report.row(
            "  backlog: all ordered tickets reserved (open loop)",
            format!(
                "{} after load ({sampled} sampled by id: {})",
                ms(full),
                ms(sample)
            ),
        );
    }

    // 4. Order created → ticket reserved.
    println!(
        "\n[reserve] order created → ticket reserved, {} orders one at a time",
        latency_ids.len()
    );
    let cpu = CpuMeter::start(pid);
    let (mut post, mut reserved, failed) = order_to_reserved(&api, latency_ids).await;
    let cpu = cpu.stop();
    report.row("POST /api/orders, one at a time", post.summary());
    report.check(
        "order created → ticket shows reserved",
        reserved.summary(),
        "p99 < 20 ms",
        reserved.pct(99.0) < Duration::from_millis(20) && failed == 0,
    );
    report.note(format!(
        "order→reserved: {} measured, {failed} failed; polled GET /api/tickets/{{id}} every ~1 ms; {cpu}",
        reserved.0.len()
    ));

    // 5. GET /api/tickets.
    let first: Vec<Value> = client
        .get(format!("{}/api/tickets", server.base))
        .send()
        .await
        .expect("listing tickets")
        .json()
        .await
        .expect("a ticket list");
    println!(
        "\n[list] GET /api/tickets ({} items, {} kept available) c={} for {} s",
        first.len(),
        list_ids.len(),
        k.concurrency,
        k.seconds
    );
    let cpu = CpuMeter::start(pid);
    let (ok, bad, mut latency) = list_load(&api, "/api/tickets", k.concurrency, k.seconds).await;
    let cpu = cpu.stop();
    let rate = ok as f64 / cpu.wall;
    report.check(
        format!(
            "GET /api/tickets ({} items, c={})",
            first.len(),
            k.concurrency
        ),
        format!("{rate:.0} req/s, {}", latency.summary()),
        "≥ 10000 req/s",
        rate >= 10_000.0 && first.len() == 100,
    );
    report.note(format!("list: {ok} ok, {bad} failed; {cpu}"));

    // 6. GET /: the same page of tickets as the web page (anonymous: the pages call
    // the API in-process, then render HTML).
    println!(
        "\n[page] GET / (the listing page) c={} for {} s",
        k.concurrency, k.seconds
    );
    let cpu = CpuMeter::start(pid);
    let (ok, bad, mut latency) = list_load(&api, "/", k.concurrency, k.seconds).await;
    let cpu = cpu.stop();
    report.row(
        format!("GET / page ({} tickets, c={})", first.len(), k.concurrency),
        format!("{:.0} req/s, {}", ok as f64 / cpu.wall, latency.summary()),
    );
    report.note(format!("page: {ok} ok, {bad} failed; {cpu}"));

    let rss_after = status_kb(pid, "VmRSS");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after_idle = status_kb(pid, "VmRSS");
    report.row("RSS right after load", mb(rss_after));
    report.row("RSS after load, idle 2 s", mb(rss_after_idle));
    report.row("RSS peak (VmHWM)", mb(status_kb(pid, "VmHWM")));
    let db_size: u64 = std::fs::read_dir(dir.path().join("data"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    report.row(
        "data directory size",
        format!("{:.1} MB", db_size as f64 / 1_048_576.0),
    );

    if let Ok(Some(status)) = server.child.try_wait() {
        report.note(format!("the server exited during the run: {status}"));
    }
    println!("\n== ticketing system bench ({cores} cores; client and server share them) ==");
    report.print();
    drop(server);
}
