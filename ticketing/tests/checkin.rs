//! Passes and gates through the whole system (issue 32, items 3–4), in both modes: a
//! paid order gets a pass per unit whose codes verify with the public key; two devices
//! redeeming one pass at once get one `ok` and one `already-checked-in` carrying the
//! first's time (proof 4); a reissue revokes the old code and reaches a device's long
//! poll within a second (proof 7); a removed device is refused at once, by every process.
//!
//! Embedded: the `ticketing` binary (`--target all`, SQLite). Distributed:
//! `scripts/cluster` with two check-in processes behind nginx; the two devices talk to
//! one process each, and every refusal is checked on both.

mod cluster;
#[path = "../../checkin/tests/gate/mod.rs"]
mod gate;
mod process;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use ticketing_kit::testing::{id_of, reply, Api, Patience};

use cluster::Cluster;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_passes_and_gates_on_two_processes() {
    // Two check-in processes (slot 7), the other services one each.
    let cluster = Cluster::up(15_000, &[("CLUSTER_CHECKIN_REPLICAS", "2")]).await;
    let processes = [cluster.instance(7, 1), cluster.instance(7, 2)];
    prove(&cluster.gateway.clone(), &processes).await;
}
