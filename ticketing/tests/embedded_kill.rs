//! Embedded mode keeps the promise distributed mode keeps under a crash: the `ticketing`
//! binary (`--target all`, SQLite in a data directory) is `kill -9`ed at a random moment
//! 0.05–1.5 s into a burst of concurrent orders — many buyers and tickets, a quarter of
//! the orders on a few hot tickets — and started again on the same data, 20 rounds per
//! `--sqlite-synchronous` setting. After every kill and restart:
//!
//! - `PRAGMA integrity_check` is `ok` on every database file, read as the kill left it;
//! - every order answered 201 is there (`GET /api/orders/{id}` as its buyer; and in the
//!   buyer's list, for the orders of every round so far), and still live;
//! - no ticket has two live orders (created, awaiting:payment, complete);
//! - every ticket of the round shows its live order, or none (`GET /api/tickets/{id}`,
//!   once the events are delivered);
//! - `ticketing audit` finds no divergence across the services' databases.

mod process;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use ticketing_kit::testing::{reply, Api, Patience};

use process::{free_port, Running};

const ROUNDS: usize = 20;
const BUYERS: usize = 12;
/// Tickets listed per round, per millisecond to the kill: more than the buyers can
/// order by then (~2 a millisecond on one debug process), so orders are committing when
/// the kill comes. Buyers take them in turn, except a quarter of the orders, which go to
/// the round's first `HOT` tickets.
const TICKETS_PER_MS: usize = 3;
const HOT: usize = 3;

const LIVE: [&str; 3] = ["created", "awaiting:payment", "complete"];

/// Waits for the system to catch up (a ticket's events on their way to the other
/// services, after a restart too).
const PATIENCE: Patience = Patience {
    limit: Duration::from_secs(30),
    every: Duration::from_millis(20),
    retry_on: &[StatusCode::NOT_FOUND],
    through_errors: false,
};

/// What one buyer saw during a burst.
#[derive(Default)]
struct Burst {
    /// Orders answered 201, body read: (order, ticket).
    placed: Vec<(String, String)>,
    /// Answers other than 201, 404 (the orders service has not heard of the ticket yet)
    /// and 400 `Ticket is already reserved`.
    unexpected: Vec<String>,
}

/// Order tickets as fast as answered until the process is gone.
async fn order_until_killed(
    buyer: Api,
    tickets: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    seed: u64,
) -> Burst {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut burst = Burst::default();
    loop {
        let ticket = if rng.gen_bool(0.25) {
            &tickets[rng.gen_range(0..HOT)]
        } else {
            let n = next.fetch_add(1, Ordering::Relaxed);
            &tickets[HOT + n % (tickets.len() - HOT)]
        };
        let sent = buyer
            .request(Method::POST, "/api/orders")
            .json(&json!({ "ticketId": ticket }))
            .send()
            .await;
        let Ok(res) = sent else { break };
        let status = res.status();
        // A body cut short by the kill: the client never learnt the order.
        let Ok(body) = res.json::<Value>().await else {
            break;
        };
        match status {
            StatusCode::CREATED => {
                let id = body["id"].as_str().expect("an order id").to_owned();
                assert_eq!(body["ticket"]["id"], ticket.as_str(), "{body}");
                burst.placed.push((id, ticket.clone()));
            }
            StatusCode::NOT_FOUND => tokio::time::sleep(Duration::from_millis(5)).await,
            StatusCode::BAD_REQUEST
                if body["errors"][0]["message"] == "Ticket is already reserved" => {}
            _ => burst.unexpected.push(format!("{status} {body}")),
        }
    }
    burst
}

/// Every SQLite database file of the data directory.
fn database_files(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data)
        .expect("the data directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "db"))
        .collect();
    files.sort();
    files
}

/// `PRAGMA integrity_check` on every database file, opened read-only as they are.
fn check_integrity(data: &Path, when: &str) {
    let files = database_files(data);
    assert!(
        files.len() >= 6,
        "{when}: expected a file per service and the bus': {files:?}"
    );
    for file in files {
        let conn = rusqlite::Connection::open_with_flags(
            &file,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .unwrap_or_else(|e| panic!("{when}: open {}: {e}", file.display()));
        let result: Vec<String> = conn
            .prepare("PRAGMA integrity_check")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{when}: integrity_check of {}: {e}", file.display()));
        assert_eq!(
            result,
            ["ok"],
            "{when}: integrity_check of {}",
            file.display()
        );
    }
}

/// `ticketing audit` on the data directory: no divergence within `settle` seconds.
async fn audit(data: &Path, settle: &str, when: &str) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ticketing"))
        .arg("audit")
        .arg("--data-dir")
        .arg(data)
        .args(["--settle-seconds", settle])
        .env_remove("TICKETING_DATABASE_URL")
        .output()
        .await
        .expect("run the audit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("audit: 0 divergences"),
        "{when}: the audit found divergences:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sign up `n` buyers at once.
async fn sign_up(api: &Api, prefix: &str, n: usize) -> Vec<Api> {
    futures::future::join_all((0..n).map(|i| async move {
        let user = api.sign_up(&format!("{prefix}{i}@test.com")).await;
        api.as_user(&user)
    }))
    .await
}

async fn kill_rounds(synchronous: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("ticketing.log");
    let data_arg = data.to_str().unwrap().to_owned();
    let args = [
        "--data-dir",
        data_arg.as_str(),
        "--sqlite-synchronous",
        synchronous,
    ];
    // No order expires during the test: a live order stays live.
    let envs = [("TICKETING_ORDER_TTL_SECONDS", "3600")];
    // The same port every round, so the buyers' cookies and clients carry over.
    let port = free_port();
    let start = || Running::start_logged(port, &args, &envs, Some(log.as_path()));
    let mut server = start().await;
    let api = Api::new(server.base.clone())
        .with_patience(PATIENCE)
        .with_timeout(Duration::from_secs(30));
    let seller = api.as_user(&api.sign_up("seller@test.com").await);
    let buyers = sign_up(&api, "buyer", BUYERS).await;

    let mut rng = StdRng::from_entropy();
    // Every order answered 201 so far: (buyer, order, ticket).
    let mut acknowledged: Vec<(usize, String, String)> = Vec::new();
    // Orders kept, time to restart, rounds killed while tickets were still left.
    let mut totals = (0usize, Duration::ZERO, 0usize);
    for round in 0..ROUNDS {
        let when = format!("{synchronous}, round {round}");
        let at = Duration::from_millis(rng.gen_range(50..=1500));
        let pool = (at.as_millis() as usize * TICKETS_PER_MS).max(HOT + BUYERS);
        let tickets: Vec<String> = futures::stream::iter(0..pool)
            .map(|t| {
                let seller = &seller;
                async move { seller.sell(&format!("r{round} t{t}"), json!(10 + t)).await }
            })
            .buffered(16)
            .collect()
            .await;
        let tickets = Arc::new(tickets);

        // The burst, and the kill at a random moment into it.
        let next = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = buyers
            .iter()
            .enumerate()
            .map(|(b, buyer)| {
                tokio::spawn(order_until_killed(
                    buyer.clone(),
                    tickets.clone(),
                    next.clone(),
                    rng.gen::<u64>() ^ b as u64,
                ))
            })
            .collect();
        tokio::time::sleep(at).await;
        let taken = next.load(Ordering::Relaxed);
        server.kill9();
        if taken < pool - HOT {
            totals.2 += 1;
        }
        let mut placed_now = Vec::new();
        for (b, worker) in workers.into_iter().enumerate() {
            let burst = worker.await.unwrap();
            assert!(
                burst.unexpected.is_empty(),
                "{when}: unexpected answers: {:?}",
                burst.unexpected
            );
            placed_now.extend(
                burst
                    .placed
                    .into_iter()
                    .map(|(order, ticket)| (b, order, ticket)),
            );
        }
        check_integrity(&data, &format!("{when}, after the kill"));

        let restarted = Instant::now();
        server = start().await;
        totals.1 += restarted.elapsed();
        totals.0 += placed_now.len();

        // Every order of this round answered 201 is there, as its buyer sees it.
        for (b, order, ticket) in &placed_now {
            let (status, body) = reply(buyers[*b].get(&format!("/api/orders/{order}")).await).await;
            assert_eq!(
                status,
                StatusCode::OK,
                "{when}: order {order} was answered 201 and is gone: {body}"
            );
            assert_eq!(body["ticket"]["id"], ticket.as_str(), "{when}: {body}");
            assert!(
                LIVE.contains(&body["status"].as_str().unwrap_or_default()),
                "{when}: order {order} is no longer live: {body}"
            );
        }
        acknowledged.extend(placed_now);

        // Every buyer's orders (acknowledged or not), as the orders service has them.
        let mut orders: HashMap<String, (String, String)> = HashMap::new();
        for buyer in &buyers {
            let list = buyer.get_json("/api/orders").await;
            for order in list.as_array().expect("a list of orders") {
                orders.insert(
                    order["id"].as_str().unwrap().to_owned(),
                    (
                        order["ticket"]["id"].as_str().unwrap().to_owned(),
                        order["status"].as_str().unwrap().to_owned(),
                    ),
                );
            }
        }
        for (_, order, ticket) in &acknowledged {
            let held = orders.get(order).map(|(t, s)| (t.as_str(), s.as_str()));
            assert!(
                held.is_some_and(|(t, s)| t == ticket && LIVE.contains(&s)),
                "{when}: order {order} of ticket {ticket}, answered 201, is {held:?}"
            );
        }
        let mut live: HashMap<&str, Vec<&str>> = HashMap::new();
        for (order, (ticket, status)) in &orders {
            if LIVE.contains(&status.as_str()) {
                live.entry(ticket).or_default().push(order);
            }
        }
        for (ticket, holders) in &live {
            assert_eq!(
                holders.len(),
                1,
                "{when}: ticket {ticket} has several live orders: {holders:?}"
            );
        }

        // Every ticket of the round shows its live order, or none, once the events of
        // the orders reached the tickets service.
        futures::stream::iter(tickets.iter())
            .for_each_concurrent(8, |ticket| {
                let holder = live.get(ticket.as_str()).map(|h| h[0]);
                let seller = &seller;
                async move {
                    seller.wait_ticket_held_by(ticket, holder).await;
                }
            })
            .await;

        audit(&data, "30", &when).await;
    }
    eprintln!(
        "{synchronous}: {ROUNDS} kills ({} with tickets still to order), {} orders answered 201 \
         and kept, restarts took {:?} on average",
        totals.2,
        totals.0,
        totals.1 / ROUNDS as u32
    );
    assert!(totals.0 >= ROUNDS, "the bursts placed orders: {}", totals.0);

    // A clean stop leaves every file whole as well.
    server.stop();
    check_integrity(&data, &format!("{synchronous}, after a clean stop"));
    audit(&data, "0", &format!("{synchronous}, stopped")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_burst_loses_no_order_synchronous_normal() {
    kill_rounds("normal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_burst_loses_no_order_synchronous_full() {
    kill_rounds("full").await;
}
