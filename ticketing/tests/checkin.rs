//! Passes and gates through the whole system (issue 32, items 3–4), in both modes: a
//! paid order gets a pass per unit whose codes verify with the public key; two devices
//! redeeming one pass at once get one `ok` and one `already-checked-in` carrying the
//! first's time (proof 4); a reissue revokes the old code and reaches a device's long
//! poll within a second (proof 7); a removed device is refused at once, by every process.
//!
//! Embedded: the `ticketing` binary (`--target all`, SQLite). Distributed:
//! `scripts/cluster` with two check-in processes behind nginx; the two devices talk to
//! one process each, and every refusal is checked on both.

#[path = "../../checkin/tests/gate/mod.rs"]
mod gate;
mod process;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use ticketing_kit::testing::{
    id_of, nats_url, postgres_base_url, redis_url, reply, unique_prefix, Api, Patience,
};

use gate::Gate;
use process::Running;

const PATIENCE: Patience = Patience {
    limit: Duration::from_secs(60),
    every: Duration::from_millis(100),
    retry_on: &[StatusCode::NOT_FOUND, StatusCode::SERVICE_UNAVAILABLE],
    through_errors: true,
};

/// Orders of 10 units paid, so 10 × `ORDERS` passes.
const ORDERS: usize = 3;

/// The proof against a system at `gateway`; `processes` are the check-in processes'
/// own addresses (the gateway itself in embedded mode).
async fn prove(gateway: &str, processes: &[String]) {
    let api = Api::new(gateway.to_owned())
        .with_patience(PATIENCE)
        .with_timeout(Duration::from_secs(40));
    let seller = api.as_user(&api.sign_up("seller@test.com").await);
    let buyer = api.as_user(&api.sign_up("buyer@test.com").await);
    let (status, listing) = reply(
        seller
            .post_json(
                "/api/tickets",
                json!({"title": "Gig", "price": 10, "quantity": 100, "maxPerOrder": 10, "maxPerAccount": 100}),
            )
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{listing}");
    let ticket = id_of(&listing);
    let key = api.get_json("/api/checkin/key").await;
    let mut passes = Vec::new();
    for _ in 0..ORDERS {
        let placed = buyer
            .post_once_known("/api/orders", json!({"ticketId": ticket, "quantity": 10}))
            .await;
        let (status, order) = reply(placed).await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        let order = id_of(&order);
        let (status, payment) = reply(buyer.pay(&order).await).await;
        assert_eq!(status, StatusCode::CREATED, "{payment}");
        let list = buyer
            .wait_for(&format!("/api/passes?orderId={order}"), |l| {
                l.as_array().is_some_and(|l| l.len() == 10)
            })
            .await;
        for pass in list.as_array().unwrap() {
            assert_eq!(pass["status"], "valid");
            let payload = gate::verify(&key, pass["code"].as_str().unwrap()).expect("verifies");
            assert_eq!(payload["p"], pass["id"]);
            assert_eq!(payload["t"], ticket.as_str());
            passes.push(pass.clone());
        }
    }

    // Two devices, each on its own process when there are two.
    let device = async |name: &str| {
        let (status, body) = reply(
            seller
                .post_once_known(
                    "/api/checkin/devices",
                    json!({"name": name, "ticketIds": [ticket]}),
                )
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        Gate::new(gateway, &body)
    };
    let a = device("A").await.at(&processes[0]);
    let b = device("B").await.at(&processes[processes.len() - 1]);

    // Proof 4, but for the last pass (kept for the reissue below).
    let (last, raced) = passes.split_last().unwrap();
    for pass in raced {
        let code = pass["code"].as_str().unwrap();
        let nonce = format!("scan-{}", pass["id"].as_str().unwrap());
        let (x, y) = tokio::join!(a.redeem_ok(code, &nonce), b.redeem_ok(code, &nonce));
        let (first, second, winner) = match (x["result"].as_str(), y["result"].as_str()) {
            (Some("ok"), Some("already-checked-in")) => (&x, &y, &a),
            (Some("already-checked-in"), Some("ok")) => (&y, &x, &b),
            other => panic!("{other:?}: {x} {y}"),
        };
        assert_eq!(second["checkedInAt"], first["checkedInAt"]);
        assert_eq!(second["firstDevice"], winner.id.as_str());
    }

    // Proof 7: a reissue through the gateway reaches a long poll on each process.
    let mut cursors = Vec::new();
    for process in processes {
        let (_, start) = b.at(process).changes("", 0).await;
        cursors.push(start["cursor"].as_str().unwrap().to_owned());
    }
    let mut code = last["code"].as_str().unwrap().to_owned();
    let id = last["id"].as_str().unwrap().to_owned();
    for round in 0..4 {
        let polls: Vec<_> = processes
            .iter()
            .zip(&cursors)
            .map(|(process, cursor)| {
                let (gate, cursor) = (b.at(process), cursor.clone());
                tokio::spawn(async move {
                    let answer = gate.changes(&cursor, 25).await;
                    (answer, Instant::now())
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let reissued_at = Instant::now();
        let (status, fresh) = reply(
            buyer
                .post_json(&format!("/api/passes/{id}/reissue"), json!({}))
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{fresh}");
        for (i, poll) in polls.into_iter().enumerate() {
            let ((status, feed), seen_at) = poll.await.unwrap();
            assert_eq!(status, StatusCode::OK, "{feed}");
            let change = &feed["changes"][0];
            assert_eq!(change["kind"], "revoked", "{feed}");
            assert_eq!(change["passId"], id.as_str());
            assert_eq!(change["epoch"], round + 1);
            let lag = seen_at.saturating_duration_since(reissued_at);
            assert!(lag < Duration::from_secs(1), "seen after {lag:?}");
            cursors[i] = feed["cursor"].as_str().unwrap().to_owned();
        }
        assert_eq!(
            a.redeem_ok(&code, &format!("old-{round}")).await["result"],
            "revoked"
        );
        code = fresh["code"].as_str().unwrap().to_owned();
    }
    assert_eq!(a.redeem_ok(&code, "new").await["result"], "ok");

    // A removed device is refused at once, on every process.
    let res = seller
        .delete(&format!("/api/checkin/devices/{}", b.id))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    for process in processes {
        let (status, _) = b.at(process).changes("", 0).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{process}");
    }
    assert_eq!(
        a.at(&processes[processes.len() - 1]).changes("", 0).await.0,
        StatusCode::OK
    );

    // The buyer's pages show the order's passes as QR codes.
    let shown = buyer
        .get_json(&format!(
            "/api/passes?orderId={}",
            passes[0]["orderId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(shown[0]["status"], "checked-in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_passes_and_gates() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().display().to_string();
    let running = Running::start(&["--target", "all", "--data-dir", &data_dir], &[]).await;
    let base = running.base.clone();
    prove(&base, std::slice::from_ref(&base)).await;
    running.stop();
}

/// One cluster of `scripts/cluster` with two check-in processes.
struct Cluster {
    _dir: tempfile::TempDir,
    base: u16,
    gateway: String,
    env: Vec<(String, String)>,
}

impl Cluster {
    async fn up() -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("cluster");
        let name = unique_prefix();
        let (base, gateway) = free_block();
        let env: Vec<(String, String)> = [
            ("TICKETING_BIN", env!("CARGO_BIN_EXE_ticketing").to_owned()),
            ("CLUSTER_STATE_DIR", state.display().to_string()),
            ("CLUSTER_NAME", name.clone()),
            ("CLUSTER_BASE_PORT", base.to_string()),
            ("CLUSTER_GATEWAY_PORT", gateway.to_string()),
            ("CLUSTER_POSTGRES_URL", postgres_base_url()),
            ("CLUSTER_NATS_URL", nats_url()),
            ("CLUSTER_REDIS_URL", redis_url()),
            ("CLUSTER_CHECKIN_REPLICAS", "2".to_owned()),
            ("CLUSTER_READY_TIMEOUT", "180".to_owned()),
            ("CLUSTER_WATCH_PID", std::process::id().to_string()),
            ("JWT_KEY", format!("checkin-test-key-{name}")),
            ("TICKETING_COOKIE_SECURE", "false".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let cluster = Cluster {
            _dir: dir,
            base,
            gateway: format!("http://127.0.0.1:{gateway}"),
            env,
        };
        cluster.run("up").await;
        cluster
    }

    fn command(&self, verb: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster"))
            .args(verb.split_whitespace())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_else(|_| "/".into()))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null());
        cmd
    }

    async fn run(&self, verb: &str) {
        let out = tokio::process::Command::from(self.command(verb))
            .output()
            .await
            .expect("run scripts/cluster");
        assert!(
            out.status.success(),
            "scripts/cluster {verb} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Check-in instance `n` (from 1): slot 7.
    fn checkin(&self, n: u16) -> String {
        format!("http://127.0.0.1:{}", self.base + 70 + n - 1)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("down")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A block of 100 free ports below the ephemeral range, away from the other cluster
/// tests' blocks: instance N of slot S at base + 10·S + N − 1, the gateway at base + 99.
fn free_block() -> (u16, u16) {
    let start = std::process::id() % 50;
    for n in 0..50u32 {
        let base = 15_000 + ((start + n) % 50) as u16 * 100;
        let gateway = base + 99;
        let wanted = (0..8u16)
            .flat_map(|slot| (0..2u16).map(move |i| base + 10 * slot + i))
            .chain([gateway]);
        if wanted
            .into_iter()
            .all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        {
            return (base, gateway);
        }
    }
    panic!("no free block of ports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_passes_and_gates_on_two_processes() {
    let cluster = Cluster::up().await;
    let processes = [cluster.checkin(1), cluster.checkin(2)];
    prove(&cluster.gateway.clone(), &processes).await;
}
