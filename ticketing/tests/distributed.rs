//! Distributed mode end to end: every service its own `ticketing --target X` process on
//! PostgreSQL, NATS JetStream and Redis, nginx in front, all started by `scripts/cluster`
//! exactly as a person would — and driven only through the gateway.
//!
//! Each test gets its own cluster: its own databases, stream, Redis keys, ports and state
//! directory, so the tests run in parallel. The crash tests `kill -9` one process at the
//! worst moment, start it again with `scripts/cluster up` and read the JetStream stream to
//! show that every event arrived once and every effect happened once.
//!
//! Needs nginx (`/usr/sbin/nginx`; `.ci/run` installs it), psql, and the machine's
//! PostgreSQL, NATS and Redis (`TEST_DATABASE_URL`, `TEST_NATS_URL`, `TEST_REDIS_URL`).

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use ticketing_contracts::time::{now_millis, parse_millis};
use ticketing_kit::testing::{
    id_of as id, nats_url, postgres_base_url, redis_url, reply, unique_prefix, Api, Patience,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "../../payments/tests/fake_stripe/mod.rs"]
mod fake_stripe;

/// How long anything asynchronous may take on a loaded 2-core machine. Requests through
/// the gateway are retried while a replica has not heard of the object yet (409 after
/// the service's own wait; 404 when a killed process held its event back beyond the
/// 10 s an id is waited for) or its service is restarting (503), and waits go on
/// through a restart's errors.
const PATIENCE: Patience = Patience {
    limit: Duration::from_secs(60),
    every: Duration::from_millis(100),
    retry_on: &[
        StatusCode::CONFLICT,
        StatusCode::NOT_FOUND,
        StatusCode::SERVICE_UNAVAILABLE,
    ],
    through_errors: true,
};

/// Taken by the tests that send 1,000 requests at once: two such rushes side by side on
/// a 2-core machine measure the machine, not the system.
static RUSH: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster")
}

/// Services and their port slots, as in `scripts/cluster`.
const SLOTS: [&str; 8] = [
    "auth",
    "tickets",
    "orders",
    "payments",
    "expiration",
    "web",
    "webhooks",
    "checkin",
];

/// A block of 100 ports below the ephemeral range (where port-0 listeners of other tests
/// land), free right now: the gateway at the block's end, instance N of slot S at
/// base + 10·S + N − 1.
fn free_block() -> (u16, u16) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id() % 97;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = 20_000 + ((start + n) % 120) as u16 * 100;
        let gateway = base + 99;
        let wanted = (0..8u16)
            .flat_map(|slot| (0..2u16).map(move |i| base + 10 * slot + i))
            .chain([gateway]);
        if wanted
            .into_iter()
            .all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        {
            return (base, gateway);
        }
    }
}

struct Options {
    order_ttl_seconds: u64,
    orders_replicas: u32,
    tickets_replicas: u32,
    auth_replicas: u32,
    payments_replicas: u32,
    /// More variables for every process (a payment provider's, a test's failpoint).
    env: Vec<(&'static str, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            order_ttl_seconds: 120,
            orders_replicas: 1,
            tickets_replicas: 1,
            auth_replicas: 1,
            payments_replicas: 1,
            env: Vec::new(),
        }
    }
}

/// One cluster started by `scripts/cluster up`; `down` when dropped.
struct Cluster {
    _dir: tempfile::TempDir,
    state: PathBuf,
    name: String,
    base_port: u16,
    gateway: String,
    env: Vec<(String, String)>,
    down: bool,
}

impl Cluster {
    async fn up(options: Options) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("cluster");
        let name = unique_prefix();
        let (base_port, gateway_port) = free_block();
        let env = vec![
            ("TICKETING_BIN", env!("CARGO_BIN_EXE_ticketing").to_owned()),
            ("CLUSTER_STATE_DIR", state.display().to_string()),
            ("CLUSTER_NAME", name.clone()),
            ("CLUSTER_BASE_PORT", base_port.to_string()),
            ("CLUSTER_GATEWAY_PORT", gateway_port.to_string()),
            ("CLUSTER_POSTGRES_URL", postgres_base_url()),
            ("CLUSTER_NATS_URL", nats_url()),
            ("CLUSTER_REDIS_URL", redis_url()),
            (
                "CLUSTER_ORDERS_REPLICAS",
                options.orders_replicas.to_string(),
            ),
            (
                "CLUSTER_TICKETS_REPLICAS",
                options.tickets_replicas.to_string(),
            ),
            ("CLUSTER_AUTH_REPLICAS", options.auth_replicas.to_string()),
            (
                "CLUSTER_PAYMENTS_REPLICAS",
                options.payments_replicas.to_string(),
            ),
            ("CLUSTER_READY_TIMEOUT", "180".to_owned()),
            // Whatever happens to this test process, the cluster goes down with it.
            ("CLUSTER_WATCH_PID", std::process::id().to_string()),
            ("JWT_KEY", format!("distributed-test-key-{name}")),
            (
                "TICKETING_ORDER_TTL_SECONDS",
                options.order_ttl_seconds.to_string(),
            ),
            ("TICKETING_COOKIE_SECURE", "false".to_owned()),
            // Clusters of this suite run side by side on one server of 100 connections.
            ("TICKETING_PG_MAX_CONNECTIONS", "4".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ]
        .into_iter()
        .chain(options.env)
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let cluster = Cluster {
            _dir: dir,
            state,
            name,
            base_port,
            gateway: format!("http://127.0.0.1:{gateway_port}"),
            env,
            down: false,
        };
        cluster.run("up").await;
        cluster
    }

    fn command(&self, verb: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .args(verb.split_whitespace())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_else(|_| "/".into()))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null());
        cmd
    }

    /// Run `scripts/cluster VERB` (with its arguments, e.g. `restart orders-2`); panic
    /// with its output if it fails.
    async fn run(&self, verb: &str) -> String {
        let out = tokio::process::Command::from(self.command(verb))
            .output()
            .await
            .expect("run scripts/cluster");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "scripts/cluster {verb} failed:\n{text}"
        );
        text
    }

    /// The gateway's API, for nobody yet.
    fn api(&self) -> Api {
        Api::new(self.gateway.clone())
            .with_patience(PATIENCE)
            .with_timeout(Duration::from_secs(30))
    }

    /// A person at a browser of their own, signed up through the gateway.
    async fn user(&self, email: &str) -> Api {
        let api = self.api();
        api.as_user(&api.sign_up(email).await)
    }

    fn port(&self, service: &str, n: u16) -> u16 {
        let slot = SLOTS.iter().position(|s| *s == service).unwrap() as u16;
        self.base_port + 10 * slot + n - 1
    }

    fn database(&self, service: &str) -> String {
        format!("{}/{}_{service}", postgres_base_url(), self.name)
    }

    fn pid(&self, instance: &str) -> u32 {
        let file = self.state.join("run").join(format!("{instance}.pid"));
        std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .trim()
            .parse()
            .unwrap()
    }

    /// `kill -9` one instance and wait until its port is closed.
    async fn kill9(&self, service: &str, n: u16) {
        let pid = self.pid(&format!("{service}-{n}"));
        let status = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -9 {pid}");
        let port = self.port(service, n);
        PATIENCE
            .eventually(&format!("{service}-{n} to die"), || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_err()
                    .then_some(())
            })
            .await;
    }

    /// Stop everything and remove every trace; then check that nothing is left.
    async fn down(mut self) {
        let pids: Vec<u32> = std::fs::read_dir(self.state.join("run"))
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
            .filter_map(|p| p.trim().parse().ok())
            .collect();
        self.run("down").await;
        self.down = true;
        for pid in pids {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            assert!(cmdline.is_empty(), "process {pid} is still running");
        }
        assert!(!self.state.exists(), "the state directory is left");
        let databases = psql(
            &format!("{}/postgres", postgres_base_url()),
            &format!(
                "SELECT count(*) FROM pg_database WHERE datname LIKE '{}\\_%'",
                self.name
            ),
        );
        assert_eq!(databases, "0", "databases are left");
        let js = async_nats::jetstream::new(async_nats::connect(nats_url()).await.unwrap());
        assert!(
            js.get_stream(format!("{}-events", self.name))
                .await
                .is_err(),
            "the stream is left"
        );
        let keys = redis(&format!("KEYS {{{}-expiration}}:*", self.name)).await;
        assert_eq!(keys, "*0", "Redis keys are left");
        let keys = redis(&format!("KEYS {}-limits:*", self.name)).await;
        assert_eq!(keys, "*0", "rate limit keys are left");
    }

    /// Every event on the cluster's stream: (subject without the prefix, payload).
    async fn events(&self) -> Vec<(String, Value)> {
        let js = async_nats::jetstream::new(async_nats::connect(nats_url()).await.unwrap());
        let mut stream = js
            .get_stream(format!("{}-events", self.name))
            .await
            .unwrap();
        let state = stream.info().await.unwrap().state.clone();
        let mut events = Vec::new();
        if state.messages == 0 {
            return events;
        }
        let prefix = format!("{}.", self.name);
        for seq in state.first_sequence..=state.last_sequence {
            let Ok(message) = stream.get_raw_message(seq).await else {
                continue;
            };
            let subject = message.subject.to_string();
            let subject = subject.strip_prefix(&prefix).unwrap_or(&subject).to_owned();
            let payload = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
            events.push((subject, payload));
        }
        events
    }

    /// How many events on `subject` have `field` = `value` (dead letters excluded).
    async fn count(&self, subject: &str, field: &str, value: &str) -> usize {
        self.events()
            .await
            .iter()
            .filter(|(s, p)| s == subject && p[field] == value)
            .count()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.down {
            let _ = self
                .command("down")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-Atc", sql])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// One Redis command (inline protocol); the first line of the answer.
async fn redis(command: &str) -> String {
    let url = redis_url();
    let addr = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("Redis");
    conn.write_all(format!("{command}\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0; 4096];
    let n = conn.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchase_journey_through_the_gateway() {
    let cluster = Cluster::up(Options::default()).await;
    let status = cluster.run("status").await;
    for instance in [
        "auth-1",
        "tickets-1",
        "orders-1",
        "payments-1",
        "expiration-1",
    ] {
        assert!(
            status.lines().any(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                fields.first() == Some(&instance) && fields.last() == Some(&"ready")
            }),
            "{status}"
        );
    }

    // The session cookie set by auth comes back through nginx and every other service
    // reads it; TICKETING_COOKIE_SECURE=false reached auth.
    let api = cluster.api();
    let (seller_user, headers) = api.sign_up_with_headers("seller@test.com").await;
    let cookie = headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("session="), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    let seller = api.as_user(&seller_user);
    let (status, me) = reply(seller.get("/api/users/currentuser").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["currentUser"]["id"], seller_user.id.as_str());
    let buyer_user = api.sign_up("buyer@test.com").await;
    let buyer = api.as_user(&buyer_user);

    let ticket = seller.sell("Concert", json!("20.50")).await;
    let before = now_millis();
    let order = buyer.order_ok(&ticket).await;
    let after = now_millis();
    let order_id = id(&order);
    assert_eq!(order["status"], "created");
    assert_eq!(order["userId"], buyer_user.id.as_str());
    // TICKETING_ORDER_TTL_SECONDS=120 reached the orders process.
    let expires = parse_millis(order["expiresAt"].as_str().unwrap()).unwrap();
    assert!(
        (before + 119_000..=after + 121_000).contains(&expires),
        "expiresAt is {} ms after the request",
        expires - before
    );
    buyer.wait_ticket_held_by(&ticket, Some(&order_id)).await;

    let (status, payment) = reply(buyer.pay(&order_id).await).await;
    assert_eq!(status, StatusCode::CREATED, "{payment}");
    assert_eq!(payment["orderId"], order_id.as_str());
    assert!(payment["stripeId"].as_str().is_some_and(|s| !s.is_empty()));
    buyer.wait_order(&order_id, "complete").await;
    let (_, mine) = reply(buyer.get("/api/orders").await).await;
    assert_eq!(mine.as_array().unwrap().len(), 1);
    let (status, again) = reply(buyer.pay(&order_id).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(again["errors"][0]["message"], "Order is already paid");

    // The gateway: unknown API paths and the catch-all answer 404; a body above the
    // services' 1 MiB limit reaches the service and gets its 413 in the error format.
    let (status, _) = reply(buyer.get("/api/nothing-here").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let big = "x".repeat(1_200_000);
    let res = seller
        .post_json("/api/tickets", json!({"title": big, "price": 1}))
        .await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = res.json().await.unwrap();
    assert!(body["errors"][0]["message"].is_string(), "{body}");

    // Every series the Grafana dashboard queries is one the processes serve.
    let mut served = String::new();
    for service in ["auth", "tickets", "orders", "payments", "expiration"] {
        let url = format!("http://127.0.0.1:{}/metrics", cluster.port(service, 1));
        served += &reqwest::get(url).await.unwrap().text().await.unwrap();
    }
    for name in dashboard_series() {
        assert!(
            served.lines().any(|l| l
                .strip_prefix(name.as_str())
                .is_some_and(|rest| rest.starts_with(['{', ' ']))),
            "the dashboard queries {name}, which no process serves"
        );
    }

    cluster.down().await;
}

/// The metric names the dashboard's queries select (`name{` or `name[`), less `up` (made
/// by the scraper), the shed counter (registered when a process first sheds) and the
/// expiration lateness (when an order first expires: tests/observability.rs has one).
fn dashboard_series() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/observability/grafana-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut names = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut word = String::new();
            let mut in_braces = false;
            for c in expr.chars() {
                if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                    word.push(c);
                    continue;
                }
                if !in_braces && (c == '{' || c == '[') && !word.is_empty() {
                    names.push(std::mem::take(&mut word));
                }
                word.clear();
                match c {
                    '{' => in_braces = true,
                    '}' => in_braces = false,
                    _ => {}
                }
            }
        }
    }
    names.retain(|n| {
        !matches!(
            n.as_str(),
            "up" | "http_requests_shed_total" | "ticketing_expiration_lateness_seconds_bucket"
        )
    });
    names.sort();
    names.dedup();
    assert!(!names.is_empty());
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_journey_frees_the_ticket() {
    let cluster = Cluster::up(Options {
        order_ttl_seconds: 3,
        ..Options::default()
    })
    .await;
    let seller = cluster.user("seller@test.com").await;
    let buyer = cluster.user("buyer@test.com").await;
    let ticket = seller.sell("Unpaid", json!("20.50")).await;
    let first = id(&buyer.order_ok(&ticket).await);

    buyer.wait_order(&first, "cancelled").await;
    buyer.wait_ticket_held_by(&ticket, None).await;
    let (status, late) = reply(buyer.pay(&first).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{late}");
    // The ticket can be ordered again.
    let second = id(&buyer.order_ok(&ticket).await);
    assert_ne!(first, second);
    assert_eq!(cluster.count("order:cancelled", "id", &first).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_killed_right_after_an_order_loses_nothing() {
    let cluster = Cluster::up(Options::default()).await;
    let seller = cluster.user("seller@test.com").await;
    let buyer = cluster.user("buyer@test.com").await;
    let ticket = seller.sell("Crash", json!("20.50")).await;

    // The order is committed (201): kill -9 at once, before its events may have left.
    let order_id = id(&buyer.order_ok(&ticket).await);
    cluster.kill9("orders", 1).await;
    let (status, body) = reply(buyer.get("/api/orders").await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["errors"][0]["message"], "Service unavailable.");

    cluster.run("up").await;
    let o = buyer
        .wait_for(&format!("/api/orders/{order_id}"), |_| true)
        .await;
    assert_eq!(o["status"], "created");
    // order:created reached tickets and payments: the ticket is reserved, the order payable.
    buyer.wait_ticket_held_by(&ticket, Some(&order_id)).await;
    let (status, payment) = reply(buyer.pay(&order_id).await).await;
    assert_eq!(status, StatusCode::CREATED, "{payment}");
    buyer.wait_order(&order_id, "complete").await;

    assert_eq!(cluster.count("order:created", "id", &order_id).await, 1);
    assert_eq!(
        cluster.count("payment:created", "orderId", &order_id).await,
        1
    );
    assert_eq!(cluster.count("order:cancelled", "id", &order_id).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_killed_right_after_a_charge_loses_nothing() {
    let cluster = Cluster::up(Options::default()).await;
    let seller = cluster.user("seller@test.com").await;
    let buyer = cluster.user("buyer@test.com").await;
    let ticket = seller.sell("Crash", json!("20.50")).await;
    let order_id = id(&buyer.order_ok(&ticket).await);

    // Charged and committed (201): kill -9 at once.
    let (status, payment) = reply(buyer.pay(&order_id).await).await;
    assert_eq!(status, StatusCode::CREATED, "{payment}");
    cluster.kill9("payments", 1).await;

    cluster.run("up").await;
    buyer.wait_order(&order_id, "complete").await;
    // Paying again charges nothing: the payment survived the crash.
    let (status, again) = reply(buyer.pay(&order_id).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{again}");
    assert_eq!(again["errors"][0]["message"], "Order is already paid");
    let rows = psql(
        &cluster.database("payments"),
        &format!("SELECT count(*) FROM payments WHERE order_id = '{order_id}'"),
    );
    assert_eq!(rows, "1", "payments recorded for the order");
    assert_eq!(
        cluster.count("payment:created", "orderId", &order_id).await,
        1
    );
    assert_eq!(
        cluster
            .count("payment:created", "id", payment["id"].as_str().unwrap())
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiration_killed_with_jobs_pending_fires_each_once() {
    // Long enough to place three orders and see their jobs queued on a loaded machine.
    const TTL: u64 = 12;
    let cluster = Cluster::up(Options {
        order_ttl_seconds: TTL,
        ..Options::default()
    })
    .await;
    let seller = cluster.user("seller@test.com").await;
    let buyer = cluster.user("buyer@test.com").await;
    let mut placed = Vec::new();
    for i in 0..3 {
        let ticket = seller.sell(&format!("Pending {i}"), json!("20.50")).await;
        let order = buyer.order_ok(&ticket).await;
        placed.push((
            ticket,
            id(&order),
            order["expiresAt"].as_str().unwrap().to_owned(),
        ));
    }
    // Every job is in the queue, none due yet: kill -9 the expiration service.
    let jobs = format!("ZCARD {{{}-expiration}}:jobs", cluster.name);
    PATIENCE
        .eventually("three pending jobs", || {
            let jobs = jobs.clone();
            async move { (redis(&jobs).await == ":3").then_some(()) }
        })
        .await;
    let due: Vec<i64> = placed
        .iter()
        .map(|(_, _, at)| parse_millis(at).unwrap())
        .collect();
    let latest_due = *due.iter().max().unwrap();
    assert!(
        now_millis() + 500 < *due.iter().min().unwrap(),
        "an order expired before the kill: raise TTL"
    );
    cluster.kill9("expiration", 1).await;

    // While it is down and past every expiry (and the orders service's 2 s grace),
    // nothing cancels the orders.
    let wait = (latest_due + 2_500 - now_millis()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    for (_, order_id, _) in &placed {
        let (_, o) = reply(buyer.get(&format!("/api/orders/{order_id}")).await).await;
        assert_eq!(
            o["status"], "created",
            "cancelled without the expiration service"
        );
    }

    cluster.run("up").await;
    for (ticket, order_id, _) in &placed {
        buyer.wait_order(order_id, "cancelled").await;
        buyer.wait_ticket_held_by(ticket, None).await;
    }
    PATIENCE
        .eventually("the queue to empty", || {
            let jobs = jobs.clone();
            async move { (redis(&jobs).await == ":0").then_some(()) }
        })
        .await;
    for (_, order_id, _) in &placed {
        assert!(
            cluster
                .count("expiration:complete", "orderId", order_id)
                .await
                >= 1
        );
        assert_eq!(
            cluster.count("order:cancelled", "id", order_id).await,
            1,
            "order {order_id} cancelled once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_orders_processes_sell_each_ticket_once() {
    const TICKETS: usize = 3;
    const BUYERS: usize = 12;
    let cluster = Cluster::up(Options {
        orders_replicas: 2,
        ..Options::default()
    })
    .await;
    let seller = cluster.user("seller@test.com").await;
    let mut buyers = Vec::new();
    for i in 0..BUYERS {
        buyers.push(cluster.user(&format!("buyer{i}@test.com")).await);
    }

    for t in 0..TICKETS {
        let ticket = seller.sell(&format!("Hot {t}"), json!("20.50")).await;
        let attempts = buyers.iter().map(|buyer| {
            let ticket = ticket.clone();
            async move { reply(buyer.order(&ticket).await).await }
        });
        let results = futures::future::join_all(attempts).await;
        let winners: Vec<&Value> = results
            .iter()
            .filter(|(s, _)| *s == StatusCode::CREATED)
            .map(|(_, o)| o)
            .collect();
        assert_eq!(winners.len(), 1, "ticket {t}: {results:?}");
        for (status, body) in &results {
            if *status != StatusCode::CREATED {
                assert_eq!(*status, StatusCode::BAD_REQUEST, "{body}");
                assert_eq!(body["errors"][0]["message"], "Ticket is already reserved");
            }
        }
        let winner = id(winners[0]);
        seller.wait_ticket_held_by(&ticket, Some(&winner)).await;
    }

    // Both orders processes took orders.
    let mut served = HashMap::new();
    for n in 1..=2 {
        let metrics = reqwest::get(format!(
            "http://127.0.0.1:{}/metrics",
            cluster.port("orders", n)
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        let posts: f64 = metrics
            .lines()
            .filter(|l| {
                l.starts_with("http_requests_total{")
                    && l.contains("method=\"POST\"")
                    && l.contains("path=\"/api/orders\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        served.insert(n, posts);
    }
    assert!(
        served.values().all(|n| *n > 0.0),
        "orders per process: {served:?}"
    );

    // One orders process dies: the gateway sends the next orders to the other one at
    // once (a refused connection goes to the next server), no request fails.
    cluster.kill9("orders", 1).await;
    for (t, buyer) in buyers.iter().enumerate().take(3) {
        let ticket = seller
            .sell(&format!("After the crash {t}"), json!("20.50"))
            .await;
        // 409: the replica has not heard of the new ticket within the orders service's
        // wait; anything else is final.
        let patient = buyer.clone().with_patience(Patience {
            retry_on: &[StatusCode::CONFLICT],
            ..PATIENCE
        });
        let (status, body) = reply(patient.order(&ticket).await).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

/// Drop day through nginx and two orders processes: 1,000 buyers of 1–4 units rush a
/// 100-unit listing; the 201s hold exactly 100 units, each its own quantity, the rest are
/// told why, nobody gets a 5xx. One account capped at 4 sends 10 one-unit orders at once:
/// exactly 4 placed. Unpaid, the units all come back: `available` is 100 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rush_on_units_through_the_gateway_sells_each_once() {
    let _rush = RUSH.lock().await;
    let cluster = Cluster::up(Options {
        order_ttl_seconds: 8,
        orders_replicas: 2,
        ..Options::default()
    })
    .await;
    let seller = cluster.user("seller@test.com").await;
    let listing = |quantity: i64, per_order: i64, per_account: i64| {
        let seller = seller.clone();
        async move {
            let body = json!({"title": "Drop", "price": 10, "quantity": quantity,
                "maxPerOrder": per_order, "maxPerAccount": per_account});
            let (status, created) = reply(seller.post_json("/api/tickets", body).await).await;
            assert_eq!(status, StatusCode::CREATED, "{created}");
            id(&created)
        }
    };
    let drop = listing(100, 4, 4).await;
    let capped = listing(50, 4, 4).await;
    // Buyers with minted tokens (signing up 1,000 accounts would measure the hashing).
    let key = cluster
        .env
        .iter()
        .find(|(k, _)| k == "JWT_KEY")
        .map(|(_, v)| v.clone())
        .unwrap();
    let keys = ticketing_kit::auth::JwtKeys::new(key.as_bytes(), Duration::from_secs(3600));
    let buyer = |name: String| {
        cluster
            .api()
            .as_user(&ticketing_kit::testing::User::bearer(&keys, &name))
    };
    // Both orders processes know the listings (one database): wait for one.
    for listing in [&drop, &capped] {
        let probe = buyer("probe".into()).with_patience(Patience {
            retry_on: &[StatusCode::CONFLICT],
            ..PATIENCE
        });
        let units = json!({"ticketId": listing, "quantity": 0});
        let (status, _) = reply(probe.post_once_known("/api/orders", units).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    let rush = (0..1000).map(|i| {
        let api = buyer(format!("rush{i}"));
        let drop = drop.clone();
        async move {
            let wanted = i % 4 + 1;
            let body = json!({"ticketId": drop, "quantity": wanted});
            (
                wanted,
                reply(api.post_json("/api/orders", body).await).await,
            )
        }
    });
    let mut sold = 0;
    for (wanted, (status, body)) in futures::future::join_all(rush).await {
        match status {
            StatusCode::CREATED => {
                assert_eq!(body["quantity"], wanted, "{body}");
                sold += wanted;
            }
            StatusCode::BAD_REQUEST => {
                let message = body["errors"][0]["message"].as_str().unwrap();
                assert!(
                    message == "Ticket is sold out" || message.starts_with("Only "),
                    "{body}"
                );
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(sold, 100);

    let collector = buyer("collector".into());
    let tries = (0..10).map(|_| {
        let (api, capped) = (collector.clone(), capped.clone());
        async move {
            let body = json!({"ticketId": capped, "quantity": 1});
            reply(api.post_json("/api/orders", body).await).await
        }
    });
    let results = futures::future::join_all(tries).await;
    let placed = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(placed, 4, "{results:?}");
    for (status, body) in &results {
        if *status != StatusCode::CREATED {
            assert_eq!(*status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(body["errors"][0]["message"], "At most 4 per account");
        }
    }

    // Nobody pays: every order expires, every unit comes back.
    let shown = seller
        .clone()
        .with_patience(Patience {
            limit: Duration::from_secs(90),
            every: Duration::from_millis(250),
            ..PATIENCE
        })
        .wait_for(&format!("/api/tickets/{drop}"), |t| t["available"] == 100)
        .await;
    assert_eq!(shown["quantity"], 100);
}

/// An on-sale queue paced by two orders processes at once: 60 accounts join before the
/// sale of 20 units; each polls its place and orders one unit once admitted. Exactly 20
/// units are sold, nobody is admitted twice, and those left over are told it is sold out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pacers_admit_each_account_once() {
    let cluster = Cluster::up(Options {
        orders_replicas: 2,
        ..Options::default()
    })
    .await;
    let seller = cluster.user("seller@test.com").await;
    let on_sale_at = now_millis() + 4000;
    let body = json!({"title": "Queued", "price": 10, "quantity": 20, "maxPerOrder": 1,
        "onSaleAt": ticketing_contracts::Timestamp::from_millis(on_sale_at).to_rfc3339()});
    let (status, created) = reply(seller.post_json("/api/tickets", body).await).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let listing = id(&created);
    let key = cluster
        .env
        .iter()
        .find(|(k, _)| k == "JWT_KEY")
        .map(|(_, v)| v.clone())
        .unwrap();
    let keys = ticketing_kit::auth::JwtKeys::new(key.as_bytes(), Duration::from_secs(3600));
    let buyers: Vec<Api> = (0..60)
        .map(|i| {
            cluster.api().as_user(&ticketing_kit::testing::User::bearer(
                &keys,
                &format!("q{i}"),
            ))
        })
        .collect();
    let patient = buyers[0].clone().with_patience(Patience {
        retry_on: &[StatusCode::NOT_FOUND],
        ..PATIENCE
    });
    let (status, place) = reply(
        patient
            .post_once_known(&format!("/api/queue/{listing}"), json!({}))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{place}");
    let journeys = buyers.iter().map(|buyer| {
        let (buyer, listing) = (buyer.clone(), listing.clone());
        async move {
            let (status, _) = reply(
                buyer
                    .post_json(&format!("/api/queue/{listing}"), json!({}))
                    .await,
            )
            .await;
            assert_eq!(status, StatusCode::OK);
            loop {
                let place = buyer.get_json(&format!("/api/queue/{listing}")).await;
                match place["status"].as_str().unwrap() {
                    "admitted" => {
                        let body = json!({"ticketId": listing, "quantity": 1});
                        let (status, order) =
                            reply(buyer.post_json("/api/orders", body).await).await;
                        return (status, order);
                    }
                    "sold-out" => return (StatusCode::GONE, place),
                    "waiting" => tokio::time::sleep(Duration::from_millis(100)).await,
                    other => panic!("{other}: {place}"),
                }
            }
        }
    });
    let outcomes =
        tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(journeys))
            .await
            .expect("every buyer admitted or told it is sold out");
    let sold = outcomes
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(sold, 20, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|(s, _)| *s == StatusCode::CREATED || *s == StatusCode::GONE),
        "{outcomes:?}"
    );
    assert!(now_millis() >= on_sale_at);
    // Each admission once: as many admitted as ranks the cursor passed, no rank twice.
    let admitted = psql(
        &cluster.database("orders"),
        &format!(
            "SELECT count(*) FROM queue_entries WHERE ticket_id = '{listing}' \
             AND admitted_until IS NOT NULL"
        ),
    );
    assert_eq!(admitted.trim(), "20");
}

/// Reads through the gateway, each sent once, while `stop` is not set: how many were
/// answered 200, and every other outcome.
async fn read_until(api: Api, paths: Vec<String>, stop: Arc<AtomicBool>) -> (usize, Vec<String>) {
    let mut ok = 0;
    let mut failures = Vec::new();
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let path = &paths[i % paths.len()];
        let method = if i % 5 == 4 {
            reqwest::Method::HEAD
        } else {
            reqwest::Method::GET
        };
        match api.request(method.clone(), path).send().await {
            Ok(res) if res.status() == StatusCode::OK => {
                // The whole body, so that a response cut short by the kill counts.
                match res.bytes().await {
                    Ok(_) => ok += 1,
                    Err(e) => failures.push(format!("{method} {path}: body: {e}")),
                }
            }
            Ok(res) => {
                let status = res.status();
                let body = res.text().await.unwrap_or_default();
                failures.push(format!("{method} {path}: {status} {body}"));
            }
            Err(e) => failures.push(format!("{method} {path}: {e:?}")),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (ok, failures)
}

/// Two tickets processes; one is killed, started again, then the other is stopped by
/// SIGTERM and started again, all while clients read through nginx. The gateway sends
/// a read that meets a dead, starting or stopping process to the other one
/// (`proxy_next_upstream`), so every read succeeds at the first try of the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_survive_a_dying_replica() {
    let cluster = Cluster::up(Options {
        tickets_replicas: 2,
        ..Options::default()
    })
    .await;
    let seller = cluster.user("seller@test.com").await;
    let mut paths = vec!["/api/tickets".to_owned()];
    for t in 0..4 {
        let ticket = seller.sell(&format!("Read me {t}"), json!("12.00")).await;
        // Both replicas share one database: once one knows the ticket, both do.
        paths.push(format!("/api/tickets/{ticket}"));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|r| {
            let mut paths = paths.clone();
            paths.rotate_left(r);
            let api = Api::new(cluster.gateway.clone()).with_timeout(Duration::from_secs(30));
            tokio::spawn(read_until(api, paths, stop.clone()))
        })
        .collect();
    let served = |n: u16| {
        let port = cluster.port("tickets", n);
        async move {
            let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            metrics
                .lines()
                .filter(|l| l.starts_with("http_requests_total{") && l.contains("method=\"GET\""))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        }
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        served(1).await > 0.0,
        "tickets-1 served reads before the kill"
    );

    // Killed mid-load: its connections break, its port refuses, then it starts again
    // (and refuses until its stores and bus are ready).
    cluster.kill9("tickets", 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.run("up").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        served(1).await > 0.0,
        "the restarted tickets-1 serves reads"
    );

    // Stopped gracefully mid-load (SIGTERM: it closes its idle connections and its port),
    // then started again.
    cluster.run("restart tickets-2").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    stop.store(true, Ordering::Relaxed);
    let mut reads = 0;
    let mut failures = Vec::new();
    for reader in readers {
        let (ok, failed) = reader.await.unwrap();
        reads += ok;
        failures.extend(failed);
    }
    assert!(
        failures.is_empty(),
        "{} of {} reads failed: {failures:#?}",
        failures.len(),
        reads + failures.len()
    );
    assert!(reads > 100, "the readers ran: {reads} reads");
    // nginx logs every replica a request went to: `upstream=A, B`; its log is buffered
    // for up to a second.
    let retried = || {
        let access = std::fs::read_to_string(cluster.state.join("logs/nginx-access.log")).unwrap();
        access
            .lines()
            .filter(|l| {
                l.split(" upstream=")
                    .nth(1)
                    .and_then(|rest| rest.split(" upstream_status=").next())
                    .is_some_and(|addrs| addrs.contains(','))
            })
            .count()
    };
    let logged = tokio::time::Instant::now() + Duration::from_secs(3);
    while retried() == 0 && tokio::time::Instant::now() < logged {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let retried = retried();
    assert!(
        retried > 0,
        "no read met a dead replica: the test tested nothing"
    );
    cluster.down().await;
}

/// Issue 31's proof 1, distributed: 2 processes each of auth, tickets, orders and
/// payments behind nginx. Sessions A and B of one account; A signs out: every service
/// refuses A within a second (p99 of 100 trials), B goes on; B changes the password:
/// every old token is refused within a second (p99 of 100 trials).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_sessions_are_refused_everywhere_within_a_second() {
    use std::time::Instant;
    use ticketing_kit::testing::sessions::{
        quantile, sign_in_token, sign_up_token, standing, time_until_refused, token_of,
    };
    use ticketing_kit::testing::PASSWORD;

    const TRIALS: usize = 100;
    const WITHIN: Duration = Duration::from_secs(1);
    let cluster = Cluster::up(Options {
        orders_replicas: 2,
        tickets_replicas: 2,
        auth_replicas: 2,
        payments_replicas: 2,
        ..Options::default()
    })
    .await;
    let api = cluster.api();
    let mut sign_outs = Vec::with_capacity(TRIALS);
    let mut changes = Vec::with_capacity(TRIALS);
    for n in 0..TRIALS {
        let email = format!("revoke{n}@test.com");
        let a = sign_up_token(&api, &email).await;
        let b = sign_in_token(&api, &email, PASSWORD).await;
        let res = api
            .with_token(&a)
            .post_json("/api/users/signout", json!({}))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.json::<Value>().await.unwrap(), json!({}));
        sign_outs.push(time_until_refused(&api, &a, Instant::now(), WITHIN * 10).await);
        let b_now = standing(&api, &b).await;
        assert!(b_now.accepted(), "B must still work: {b_now:?}");

        let res = api
            .with_token(&b)
            .put_json(
                "/api/users/password",
                json!({"currentPassword": PASSWORD, "newPassword": "another password"}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let new = token_of(&res);
        changes.push(time_until_refused(&api, &b, Instant::now(), WITHIN * 10).await);
        assert!(standing(&api, &a).await.refused());
        assert!(standing(&api, &new).await.accepted());
    }
    let (p99_out, p99_change) = (quantile(&sign_outs, 0.99), quantile(&changes, 0.99));
    let (p50_out, p50_change) = (quantile(&sign_outs, 0.5), quantile(&changes, 0.5));
    println!(
        "distributed, {TRIALS} trials: sign-out refused everywhere after p50 {p50_out:?}, p99 {p99_out:?}; \
         password change p50 {p50_change:?}, p99 {p99_change:?}"
    );
    assert!(p99_out <= WITHIN, "sign-out p99 {p99_out:?}");
    assert!(p99_change <= WITHIN, "password change p99 {p99_change:?}");

    // Sign out everywhere.
    let a = sign_up_token(&api, "everywhere@test.com").await;
    let b = sign_in_token(&api, "everywhere@test.com", PASSWORD).await;
    let res = api
        .with_token(&a)
        .post_json("/api/users/signout", json!({"everywhere": true}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let since = Instant::now();
    for token in [&a, &b] {
        let took = time_until_refused(&api, token, since, WITHIN * 10).await;
        assert!(took <= WITHIN, "{took:?}");
    }
    cluster.down().await;
}

/// No 404 right after creation (issue 31, docs/decisions/0029), through nginx with two
/// orders and two payments processes: 1,000 buyers each order a listing the moment it is
/// listed and pay the moment the order is answered, all at once. Each payments process
/// gets half the `order:created` events (one consumer group), so a payment reaching the
/// other one is found by its look at the database. No 404 anywhere; every order and
/// payment is 201, or 409 (`Retry-After: 1`) then 201.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_orders_paid_at_once_through_the_gateway_never_404() {
    let _rush = RUSH.lock().await;
    let cluster = Cluster::up(Options {
        orders_replicas: 2,
        payments_replicas: 2,
        ..Options::default()
    })
    .await;
    let key = cluster
        .env
        .iter()
        .find(|(k, _)| k == "JWT_KEY")
        .map(|(_, v)| v.clone())
        .unwrap();
    let keys = ticketing_kit::auth::JwtKeys::new(key.as_bytes(), Duration::from_secs(3600));
    // Minted tokens, no retries of any kind: every answer is counted as it comes.
    let as_user = |name: &str| {
        Api::new(cluster.gateway.clone())
            .with_timeout(Duration::from_secs(60))
            .as_user(&ticketing_kit::testing::User::bearer(&keys, name))
    };
    /// POST until the answer is not a 409 of an object on its way (nor a 503 of a
    /// database out of connections, should the machine's other tests take them all):
    /// every status seen. Both come with `Retry-After: 1`.
    async fn until_known(api: &Api, path: &str, body: Value) -> (Vec<StatusCode>, Value) {
        let mut seen = Vec::new();
        loop {
            let res = api.post_json(path, body.clone()).await;
            let retry_after = res.headers().get("retry-after").cloned();
            let (status, body) = reply(res).await;
            seen.push(status);
            let again = [StatusCode::CONFLICT, StatusCode::SERVICE_UNAVAILABLE];
            if !again.contains(&status) || seen.len() > 10 {
                return (seen, body);
            }
            assert_eq!(retry_after.unwrap(), "1", "{status} {body}");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let seller = as_user("seller");
    let barrier = Arc::new(tokio::sync::Barrier::new(1000));
    let started = std::time::Instant::now();
    let buyers = (0..1000).map(|i| {
        let (seller, buyer, barrier) = (
            seller.clone(),
            as_user(&format!("buyer{i}")),
            barrier.clone(),
        );
        tokio::spawn(async move {
            barrier.wait().await;
            let body = json!({"title": format!("Seat {i}"), "price": "10"});
            let (status, ticket) = reply(seller.post_json("/api/tickets", body).await).await;
            assert_eq!(status, StatusCode::CREATED, "{ticket}");
            let (ordered, order) =
                until_known(&buyer, "/api/orders", json!({"ticketId": id(&ticket)})).await;
            assert_eq!(
                ordered.last(),
                Some(&StatusCode::CREATED),
                "{ordered:?} {order}"
            );
            let (paid, payment) = until_known(
                &buyer,
                "/api/payments",
                json!({"orderId": id(&order), "token": "tok_visa"}),
            )
            .await;
            assert_eq!(
                paid.last(),
                Some(&StatusCode::CREATED),
                "{paid:?} {payment}"
            );
            (ordered, paid)
        })
    });
    let results: Vec<(Vec<StatusCode>, Vec<StatusCode>)> = futures::future::join_all(buyers)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let took = started.elapsed();
    let conflicts_then_created = |seen: &[StatusCode]| {
        seen.last() == Some(&StatusCode::CREATED)
            && seen[..seen.len() - 1]
                .iter()
                .all(|s| [StatusCode::CONFLICT, StatusCode::SERVICE_UNAVAILABLE].contains(s))
    };
    for (ordered, paid) in &results {
        assert!(conflicts_then_created(ordered), "an order saw {ordered:?}");
        assert!(conflicts_then_created(paid), "a payment saw {paid:?}");
    }
    let orders_retried = results.iter().filter(|r| r.0.len() > 1).count();
    let payments_retried = results.iter().filter(|r| r.1.len() > 1).count();
    // Both payments processes took payments.
    for n in 1..=2 {
        let metrics = reqwest::get(format!(
            "http://127.0.0.1:{}/metrics",
            cluster.port("payments", n)
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        let waits: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("arrival_waits_total"))
            .collect();
        eprintln!("payments-{n}: {waits:?}");
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("http_requests_total") && l.contains("/api/payments")),
            "payments-{n} took no payment"
        );
    }
    for n in 1..=2 {
        let metrics = reqwest::get(format!(
            "http://127.0.0.1:{}/metrics",
            cluster.port("orders", n)
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        let waits: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("arrival_waits_total"))
            .collect();
        eprintln!("orders-{n}: {waits:?}");
    }
    eprintln!(
        "distributed: 1,000 listed, ordered and paid at once in {took:?}: 404s 0, orders retried after a 409: {orders_retried}, payments: {payments_retried}"
    );
    cluster.down().await;
}

/// Shared rate limits (issue 31, docs/decisions/0030): two auth processes behind nginx
/// count in Redis, so one account gets 5 sign-ins a minute in all, not 5 per process —
/// 12 tries: exactly 5 through, 7 refused with 429 and `Retry-After`, both processes
/// refusing some.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_auth_processes_share_the_sign_in_limit() {
    let cluster = Cluster::up(Options {
        auth_replicas: 2,
        ..Options::default()
    })
    .await;
    let api = Api::new(cluster.gateway.clone()).with_timeout(Duration::from_secs(30));
    api.sign_up("limited@test.com").await;
    // The sign-up was one attempt on the account: after 12 s (60 s / 5) the whole
    // allowance is back.
    tokio::time::sleep(Duration::from_millis(12_500)).await;
    let mut through = 0;
    let mut refused = 0;
    for _ in 0..12 {
        let res = api
            .post_json(
                "/api/users/signin",
                json!({"email": "limited@test.com", "password": "password123"}),
            )
            .await;
        match res.status() {
            StatusCode::OK => through += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                let retry_after: u64 = res.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=12).contains(&retry_after), "{retry_after}");
                refused += 1;
            }
            other => panic!("{other}: {}", res.text().await.unwrap()),
        }
    }
    assert_eq!((through, refused), (5, 7));
    for n in 1..=2 {
        let metrics = reqwest::get(format!(
            "http://127.0.0.1:{}/metrics",
            cluster.port("auth", n)
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("auth_rate_limited_total{")
                    && l.contains("limit=\"account\"")),
            "auth-{n} refused nothing: both processes count in Redis"
        );
        assert!(
            !metrics
                .lines()
                .any(|l| l.starts_with("rate_limit_fallback_total")),
            "auth-{n} fell back to its own count"
        );
    }
    cluster.down().await;
}

/// Issue 32 through the gateway, with two payments processes refunding at a fake Stripe:
/// ten parallel cancels of a paid order give one 202 body and one refund of the total
/// less the fee, the order ends `cancelled` (`refunded`) with its unit offered to the
/// waiting list; and in each of 10 rounds the payments process that made the refund is
/// `kill -9`ed before its commit (a test-only pause there) — the other one finishes the
/// saga, and the provider has still refunded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_survive_a_payments_process_killed_before_its_commit() {
    const ROUNDS: usize = 10;
    let (stripe_url, stripe) = fake_stripe::spawn_fake().await;
    let pauses = tempfile::tempdir().unwrap();
    let cluster = Cluster::up(Options {
        payments_replicas: 2,
        env: vec![
            ("STRIPE_KEY", fake_stripe::SECRET.to_owned()),
            ("STRIPE_BASE_URL", stripe_url),
            (
                "TICKETING_TEST_PAUSE_AFTER_REFUND",
                pauses.path().display().to_string(),
            ),
        ],
        ..Options::default()
    })
    .await;
    let seller = cluster.user("seller@test.com").await;
    let buyer = Arc::new(cluster.user("buyer@test.com").await);
    let waiter = cluster.user("waiter@test.com").await;
    let event_at = ticketing_contracts::time::format_millis(now_millis() + 30 * 86_400_000);
    let mut cancellations = Vec::new();
    for round in 0..ROUNDS {
        let listing = json!({"title": format!("Refundable {round}"), "price": 20, "quantity": 1,
                             "eventAt": event_at,
                             "refundPolicy": {"cutoffHours": 48, "feePercent": 12.5}});
        let (status, ticket) = reply(seller.post_once_known("/api/tickets", listing).await).await;
        assert_eq!(status, StatusCode::CREATED, "{ticket}");
        let order = id(&buyer.order_ok(&id(&ticket)).await);
        let (status, paid) = reply(buyer.pay(&order).await).await;
        assert_eq!(status, StatusCode::CREATED, "{paid}");
        buyer.wait_order(&order, "complete").await;
        let entry = if round == 0 {
            let (status, entry) = reply(
                waiter
                    .post_once_known(
                        "/api/waitlist",
                        json!({"ticketId": id(&ticket), "quantity": 1}),
                    )
                    .await,
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{entry}");
            Some(id(&entry))
        } else {
            None
        };

        let path = format!("/api/orders/{order}/cancellation");
        let cancels = (0..10).map(|_| {
            let (buyer, path) = (buyer.clone(), path.clone());
            tokio::spawn(async move { reply(buyer.post_json(&path, json!(null)).await).await })
        });
        let answers: Vec<(StatusCode, Value)> = futures::future::join_all(cancels)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        for (status, body) in &answers {
            assert_eq!(*status, StatusCode::ACCEPTED, "{body}");
            assert_eq!(body, &answers[0].1, "one body for every cancel");
        }
        let cancellation = id(&answers[0].1);
        assert_eq!(answers[0].1["refund"], json!(17.5));
        assert_eq!(answers[0].1["fee"], json!(2.5));

        // Refunded at the provider, not recorded: kill that process.
        let marker = pauses.path().join(&cancellation);
        let pid = PATIENCE
            .eventually("the refund's pause", || {
                let marker = marker.clone();
                async move {
                    std::fs::read_to_string(&marker)
                        .ok()
                        .and_then(|pid| pid.trim().parse::<u32>().ok())
                }
            })
            .await;
        let killed = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success(), "kill -9 {pid}");

        let done = buyer.wait_for(&path, |c| c["status"] != "requested").await;
        assert_eq!(done["status"], "refunded", "round {round}: {done}");
        let shown = buyer.wait_order(&order, "cancelled").await;
        assert_eq!(shown["cancelReason"], "refunded");
        if let Some(entry) = entry {
            // Offered in the transaction that cancelled the order.
            let entry = waiter.get_json(&format!("/api/waitlist/{entry}")).await;
            assert_eq!(entry["status"], "offered", "{entry}");
        }
        let made = stripe.refunds_made.lock().unwrap().clone();
        assert_eq!(made.len(), round + 1, "round {round}: {made:?}");
        assert!(
            made.iter().all(|(_, cents)| *cents == Some(1750)),
            "{made:?}"
        );
        cancellations.push(cancellation);
        // The killed process back for the next round.
        cluster.run("up").await;
    }
    for cancellation in &cancellations {
        assert_eq!(
            cluster
                .count("payment:refunded", "cancellationId", cancellation)
                .await,
            1,
            "{cancellation}"
        );
        let key = format!("cancellation-{cancellation}");
        let sent = stripe
            .refund_requests
            .lock()
            .unwrap()
            .iter()
            .filter(|k| **k == key)
            .count();
        assert!(sent >= 2, "{key} reached the provider {sent} times");
    }
    cluster.down().await;
}
