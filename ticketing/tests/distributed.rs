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
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long anything asynchronous may take on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(60);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster")
}

// The same servers and variables as every other test of the workspace.
fn postgres_base_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

fn nats_url() -> String {
    std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A name for this test's databases, stream and keys, in the shape `.ci/run` cleans up.
fn unique_prefix() -> String {
    format!("t{:016x}", rand::random::<u64>())
}

/// Services and their port slots, as in `scripts/cluster`.
const SLOTS: [&str; 6] = ["auth", "tickets", "orders", "payments", "expiration", "web"];

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
        let wanted = (0..6u16)
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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            order_ttl_seconds: 120,
            orders_replicas: 1,
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
            ("CLUSTER_READY_TIMEOUT", "180".to_owned()),
            // Whatever happens to this test process, the cluster goes down with it.
            ("CLUSTER_WATCH_PID", std::process::id().to_string()),
            ("JWT_KEY", format!("distributed-test-key-{name}")),
            (
                "TICKETING_ORDER_TTL_SECONDS",
                options.order_ttl_seconds.to_string(),
            ),
            ("TICKETING_COOKIE_SECURE", "false".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ]
        .into_iter()
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
            .arg(verb)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_else(|_| "/".into()))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null());
        cmd
    }

    /// Run `scripts/cluster VERB`; panic with its output if it fails.
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

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway)
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
        eventually(&format!("{service}-{n} to die"), || async move {
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

/// Poll `check` until it returns something, for at most `PATIENCE`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn client() -> Client {
    Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn now_millis() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    i64::try_from(now.unwrap().as_millis()).unwrap()
}

/// Milliseconds since the epoch of the API's timestamps (`2026-11-24T10:00:00.000Z`).
fn millis_of(iso: &str) -> i64 {
    let n = |range: std::ops::Range<usize>| -> i64 {
        iso.get(range)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a timestamp: {iso}"))
    };
    assert!(
        iso.len() == 24 && iso.ends_with('Z'),
        "not a timestamp: {iso}"
    );
    let (year, month, day) = (n(0..4), n(5..7), n(8..10));
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + n(11..13)) * 60 + n(14..16)) * 60_000 + n(17..19) * 1000 + n(20..23)
}

/// A person at a browser, through the gateway.
struct User {
    client: Client,
    id: String,
}

async fn signup(cluster: &Cluster, email: &str) -> User {
    let client = client();
    let res = client
        .post(cluster.url("/api/users/signup"))
        .json(&json!({"email": email, "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let user: Value = res.json().await.unwrap();
    User {
        client,
        id: user["id"].as_str().unwrap().to_owned(),
    }
}

/// POST through the gateway, retried while a replica has not heard of the object yet
/// (404) or its service is restarting (503).
async fn post(cluster: &Cluster, user: &User, path: &str, body: Value) -> (StatusCode, Value) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let res = user
            .client
            .post(cluster.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body_out = res.json().await.unwrap_or(Value::Null);
        let transient =
            status == StatusCode::NOT_FOUND || status == StatusCode::SERVICE_UNAVAILABLE;
        if !transient || Instant::now() > deadline {
            return (status, body_out);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(cluster: &Cluster, user: &User, path: &str) -> (StatusCode, Value) {
    let res = user.client.get(cluster.url(path)).send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// GET `path` until `ok` holds.
async fn wait_for(
    cluster: &Cluster,
    user: &User,
    path: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, value) = get(cluster, user, path).await;
        if status == StatusCode::OK && ok(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{path} stuck at {} {value}",
            status.as_u16()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sell(cluster: &Cluster, seller: &User, title: &str) -> String {
    let (status, ticket) = post(
        cluster,
        seller,
        "/api/tickets",
        json!({"title": title, "price": "20.50"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{ticket}");
    ticket["id"].as_str().unwrap().to_owned()
}

async fn order(cluster: &Cluster, buyer: &User, ticket: &str) -> Value {
    let (status, order) = post(cluster, buyer, "/api/orders", json!({"ticketId": ticket})).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    order
}

async fn pay(cluster: &Cluster, buyer: &User, order_id: &str) -> (StatusCode, Value) {
    post(
        cluster,
        buyer,
        "/api/payments",
        json!({"orderId": order_id, "token": "tok_visa"}),
    )
    .await
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
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
    let client = client();
    let res = client
        .post(cluster.url("/api/users/signup"))
        .json(&json!({"email": "seller@test.com", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("session="), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    let seller = User {
        id: res.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned(),
        client,
    };
    let (status, me) = get(&cluster, &seller, "/api/users/currentuser").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["currentUser"]["id"], seller.id.as_str());
    let buyer = signup(&cluster, "buyer@test.com").await;

    let ticket = sell(&cluster, &seller, "Concert").await;
    let before = now_millis();
    let order = order(&cluster, &buyer, &ticket).await;
    let after = now_millis();
    let order_id = id(&order);
    assert_eq!(order["status"], "created");
    assert_eq!(order["userId"], buyer.id.as_str());
    // TICKETING_ORDER_TTL_SECONDS=120 reached the orders process.
    let expires = millis_of(order["expiresAt"].as_str().unwrap());
    assert!(
        (before + 119_000..=after + 121_000).contains(&expires),
        "expiresAt is {} ms after the request",
        expires - before
    );
    wait_for(&cluster, &buyer, &format!("/api/tickets/{ticket}"), |t| {
        t["orderId"] == order_id.as_str()
    })
    .await;

    let (status, payment) = pay(&cluster, &buyer, &order_id).await;
    assert_eq!(status, StatusCode::CREATED, "{payment}");
    assert_eq!(payment["orderId"], order_id.as_str());
    assert!(payment["stripeId"].as_str().is_some_and(|s| !s.is_empty()));
    wait_for(&cluster, &buyer, &format!("/api/orders/{order_id}"), |o| {
        o["status"] == "complete"
    })
    .await;
    let (_, mine) = get(&cluster, &buyer, "/api/orders").await;
    assert_eq!(mine.as_array().unwrap().len(), 1);
    let (status, again) = pay(&cluster, &buyer, &order_id).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(again["errors"][0]["message"], "Order is already paid");

    // The gateway: unknown API paths and the catch-all answer 404; a body above the
    // services' 1 MiB limit reaches the service and gets its 413 in the error format.
    let (status, _) = get(&cluster, &buyer, "/api/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let big = "x".repeat(1_200_000);
    let res = seller
        .client
        .post(cluster.url("/api/tickets"))
        .json(&json!({"title": big, "price": 1}))
        .send()
        .await
        .unwrap();
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
    let seller = signup(&cluster, "seller@test.com").await;
    let buyer = signup(&cluster, "buyer@test.com").await;
    let ticket = sell(&cluster, &seller, "Unpaid").await;
    let first = id(&order(&cluster, &buyer, &ticket).await);

    wait_for(&cluster, &buyer, &format!("/api/orders/{first}"), |o| {
        o["status"] == "cancelled"
    })
    .await;
    wait_for(&cluster, &buyer, &format!("/api/tickets/{ticket}"), |t| {
        t.get("orderId").is_none()
    })
    .await;
    let (status, late) = pay(&cluster, &buyer, &first).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{late}");
    // The ticket can be ordered again.
    let second = id(&order(&cluster, &buyer, &ticket).await);
    assert_ne!(first, second);
    assert_eq!(cluster.count("order:cancelled", "id", &first).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_killed_right_after_an_order_loses_nothing() {
    let cluster = Cluster::up(Options::default()).await;
    let seller = signup(&cluster, "seller@test.com").await;
    let buyer = signup(&cluster, "buyer@test.com").await;
    let ticket = sell(&cluster, &seller, "Crash").await;

    // The order is committed (201): kill -9 at once, before its events may have left.
    let order_id = id(&order(&cluster, &buyer, &ticket).await);
    cluster.kill9("orders", 1).await;
    let (status, body) = get(&cluster, &buyer, "/api/orders").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["errors"][0]["message"], "Service unavailable.");

    cluster.run("up").await;
    let o = wait_for(&cluster, &buyer, &format!("/api/orders/{order_id}"), |_| {
        true
    })
    .await;
    assert_eq!(o["status"], "created");
    // order:created reached tickets and payments: the ticket is reserved, the order payable.
    wait_for(&cluster, &buyer, &format!("/api/tickets/{ticket}"), |t| {
        t["orderId"] == order_id.as_str()
    })
    .await;
    let (status, payment) = pay(&cluster, &buyer, &order_id).await;
    assert_eq!(status, StatusCode::CREATED, "{payment}");
    wait_for(&cluster, &buyer, &format!("/api/orders/{order_id}"), |o| {
        o["status"] == "complete"
    })
    .await;

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
    let seller = signup(&cluster, "seller@test.com").await;
    let buyer = signup(&cluster, "buyer@test.com").await;
    let ticket = sell(&cluster, &seller, "Crash").await;
    let order_id = id(&order(&cluster, &buyer, &ticket).await);

    // Charged and committed (201): kill -9 at once.
    let (status, payment) = pay(&cluster, &buyer, &order_id).await;
    assert_eq!(status, StatusCode::CREATED, "{payment}");
    cluster.kill9("payments", 1).await;

    cluster.run("up").await;
    wait_for(&cluster, &buyer, &format!("/api/orders/{order_id}"), |o| {
        o["status"] == "complete"
    })
    .await;
    // Paying again charges nothing: the payment survived the crash.
    let (status, again) = pay(&cluster, &buyer, &order_id).await;
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
    let seller = signup(&cluster, "seller@test.com").await;
    let buyer = signup(&cluster, "buyer@test.com").await;
    let mut placed = Vec::new();
    for i in 0..3 {
        let ticket = sell(&cluster, &seller, &format!("Pending {i}")).await;
        let order = order(&cluster, &buyer, &ticket).await;
        placed.push((
            ticket,
            id(&order),
            order["expiresAt"].as_str().unwrap().to_owned(),
        ));
    }
    // Every job is in the queue, none due yet: kill -9 the expiration service.
    let jobs = format!("ZCARD {{{}-expiration}}:jobs", cluster.name);
    eventually("three pending jobs", || {
        let jobs = jobs.clone();
        async move { (redis(&jobs).await == ":3").then_some(()) }
    })
    .await;
    let due: Vec<i64> = placed.iter().map(|(_, _, at)| millis_of(at)).collect();
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
        let (_, o) = get(&cluster, &buyer, &format!("/api/orders/{order_id}")).await;
        assert_eq!(
            o["status"], "created",
            "cancelled without the expiration service"
        );
    }

    cluster.run("up").await;
    for (ticket, order_id, _) in &placed {
        wait_for(&cluster, &buyer, &format!("/api/orders/{order_id}"), |o| {
            o["status"] == "cancelled"
        })
        .await;
        wait_for(&cluster, &buyer, &format!("/api/tickets/{ticket}"), |t| {
            t.get("orderId").is_none()
        })
        .await;
    }
    eventually("the queue to empty", || {
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
    let seller = signup(&cluster, "seller@test.com").await;
    let mut buyers = Vec::new();
    for i in 0..BUYERS {
        buyers.push(signup(&cluster, &format!("buyer{i}@test.com")).await);
    }

    for t in 0..TICKETS {
        let ticket = sell(&cluster, &seller, &format!("Hot {t}")).await;
        let attempts = buyers.iter().map(|buyer| {
            let ticket = ticket.clone();
            let cluster = &cluster;
            async move { post(cluster, buyer, "/api/orders", json!({"ticketId": ticket})).await }
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
        wait_for(&cluster, &seller, &format!("/api/tickets/{ticket}"), |t| {
            t["orderId"] == winner.as_str()
        })
        .await;
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
        let ticket = sell(&cluster, &seller, &format!("After the crash {t}")).await;
        let deadline = Instant::now() + PATIENCE;
        loop {
            let res = buyer
                .client
                .post(cluster.url("/api/orders"))
                .json(&json!({"ticketId": ticket}))
                .send()
                .await
                .unwrap();
            let status = res.status();
            // 404: the replica has not heard of the new ticket yet; anything else is final.
            if status != StatusCode::NOT_FOUND || Instant::now() > deadline {
                let body: Value = res.json().await.unwrap_or(Value::Null);
                assert_eq!(status, StatusCode::CREATED, "{body}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
