//! SIGTERM under load: the binary stops accepting, finishes the requests in flight,
//! publishes what they committed and exits 0. No request fails before the signal, and
//! no event is lost: after a restart every created ticket is known to the orders
//! service's replica.

mod process;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use ticketing_kit::testing::{Api, Patience};

use process::Running;

/// What one load client saw.
#[derive(Default)]
struct Outcomes {
    created: Vec<String>,
    /// Transport errors and non-2xx answers, with when they were seen.
    failures: Vec<(Instant, String)>,
}

async fn create_tickets(seller: Api, worker: usize) -> Outcomes {
    let mut outcomes = Outcomes::default();
    let give_up = Instant::now() + Duration::from_secs(60);
    for i in 0.. {
        if Instant::now() > give_up {
            break;
        }
        let sent = seller
            .request(reqwest::Method::POST, "/api/tickets")
            .json(&json!({"title": format!("t{worker}-{i}"), "price": 10}))
            .timeout(Duration::from_secs(20))
            .send()
            .await;
        match sent {
            Ok(res) if res.status() == 201 => {
                let ticket: Value = res.json().await.expect("a ticket");
                outcomes
                    .created
                    .push(ticket["id"].as_str().unwrap().to_owned());
            }
            Ok(res) => {
                let status = res.status();
                let body = res.text().await.unwrap_or_default();
                outcomes
                    .failures
                    .push((Instant::now(), format!("{status}: {body}")));
            }
            Err(err) => {
                // The server is gone (or going): a refusal ends this client.
                outcomes.failures.push((Instant::now(), format!("{err:?}")));
                break;
            }
        }
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_load_finishes_in_flight_requests_and_loses_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut first = Running::start(&["--data-dir", data], &[]).await;

    let api = Api::new(first.base.clone());
    let seller = api.as_user(&api.sign_up("seller@test.com").await);

    // Eight clients create tickets as fast as they are answered (keep-alive
    // connections), until the server refuses them.
    let workers: Vec<_> = (0..8)
        .map(|w| tokio::spawn(create_tickets(seller.clone(), w)))
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let signalled = Instant::now();
    first.terminate();
    let status = first.wait(Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status}");
    let stopped_in = signalled.elapsed();

    let mut created = Vec::new();
    for worker in workers {
        let outcomes = worker.await.unwrap();
        for (at, failure) in &outcomes.failures {
            assert!(
                *at >= signalled,
                "a request failed before the signal: {failure}"
            );
            assert!(
                !failure.starts_with(|c: char| c.is_ascii_digit()),
                "a request was answered with an error: {failure}"
            );
        }
        assert_eq!(outcomes.failures.len(), 1, "each client ends on a refusal");
        created.extend(outcomes.created);
    }
    assert!(
        created.len() >= 8,
        "the load ran: {} tickets",
        created.len()
    );
    assert!(stopped_in < Duration::from_secs(15), "{stopped_in:?}");

    // Restart on the same data: every created ticket is there and reached the orders
    // service's replica (an order for it is accepted, not 404).
    let second = Running::start(&["--data-dir", data], &[]).await;
    let api = Api::new(second.base.clone()).with_patience(Patience {
        limit: Duration::from_secs(30),
        every: Duration::from_millis(100),
        ..Patience::default()
    });
    let buyer = api.as_user(&api.sign_up("buyer@test.com").await);
    for id in &created {
        let res = buyer.get(&format!("/api/tickets/{id}")).await;
        assert_eq!(
            res.status(),
            200,
            "ticket {id} was answered 201, so it exists"
        );
        // Retried while 404: the ticket's ticket:created has not reached the replica.
        let res = buyer.order(id).await;
        assert_eq!(
            res.status(),
            201,
            "ticket {id}'s ticket:created never reached the orders replica: {}",
            res.text().await.unwrap()
        );
    }
    second.stop();
}

/// With a drain period, SIGTERM first turns `/readyz` to 503 while the process goes on
/// serving (load balancers take it out before it stops accepting); a second signal ends
/// the drain at once, and the process stops cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_readyz_503_first_while_still_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut server =
        Running::start(&["--data-dir", data, "--shutdown-drain-seconds", "30"], &[]).await;
    let api = Api::new(server.base.clone());
    let seller = api.as_user(&api.sign_up("seller@test.com").await);

    server.terminate();
    let readyz = server.url("/readyz");
    let body: Value = Patience::default()
        .eventually("/readyz to answer 503", || {
            let readyz = readyz.clone();
            async move {
                let res = reqwest::get(&readyz).await.ok()?;
                (res.status() == 503).then_some(())?;
                res.json().await.ok()
            }
        })
        .await;
    assert_eq!(body["status"], "unavailable", "{body}");
    assert_eq!(body["checks"]["serving"], "unavailable", "{body}");
    assert_eq!(body["checks"]["bus"], "ok", "{body}");

    // Still serving, on new connections too: reads and writes.
    let fresh = Api::new(server.base.clone());
    assert_eq!(fresh.get("/api/tickets").await.status(), 200);
    seller.sell("During the drain", json!(10)).await;
    assert_eq!(
        reqwest::get(server.url("/healthz")).await.unwrap().status(),
        200
    );

    // A second signal cuts the drain short.
    let signalled = Instant::now();
    server.terminate();
    let status = server.wait(Duration::from_secs(20)).await;
    assert!(status.success(), "exit status {status}");
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "the second SIGTERM did not end the drain: {:?}",
        signalled.elapsed()
    );
}
