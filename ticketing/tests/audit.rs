//! `ticketing audit`: silent on a system that agrees with itself, and each kind of
//! divergence, planted in the services' databases, is found (exit code 1).

mod process;

use std::time::Duration;

use serde_json::json;
use ticketing_kit::testing::{id_of, Api, Patience};

use process::{audit, sqlite, Running};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_finds_each_planted_divergence() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let running = Running::start(&["--data-dir", data], &[]).await;
    let api = Api::new(running.base.clone()).with_patience(Patience {
        every: Duration::from_millis(50),
        ..Patience::default()
    });

    let seller = api.as_user(&api.sign_up("seller@test.com").await);
    let buyer = api.as_user(&api.sign_up("buyer@test.com").await);
    let mut tickets = Vec::new();
    for i in 0..8 {
        tickets.push(seller.sell(&format!("Ticket {i}"), json!(10)).await);
    }
    // An order placed as soon as the orders service knows the ticket.
    let order = async |ticket: &str| id_of(&buyer.order_ok(ticket).await);
    // T0: cancelled; T1: paid; T2, T3: open orders; the rest free.
    let cancelled = order(&tickets[0]).await;
    let res = buyer.delete(&format!("/api/orders/{cancelled}")).await;
    assert_eq!(res.status(), 204);
    let paid = order(&tickets[1]).await;
    // The payments service learns about the order by event.
    let res = buyer.pay(&paid).await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let open = order(&tickets[2]).await;
    let overdue = order(&tickets[3]).await;
    // A listing of five units, two of them ordered.
    let created = seller
        .post_json(
            "/api/tickets",
            json!({"title": "Festival", "price": 10, "quantity": 5}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let listing = id_of(&created.json().await.unwrap());
    let units = json!({"ticketId": listing, "quantity": 2});
    let placed = buyer.post_once_known("/api/orders", units).await;
    assert_eq!(placed.status(), 201, "{}", placed.text().await.unwrap());

    // A system that agrees with itself: nothing to report, once events have landed.
    let clean = audit(data, "20");
    let stdout = String::from_utf8_lossy(&clean.stdout);
    assert!(
        clean.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    assert!(stdout.contains("audit: 0 divergences"), "{stdout}");
    running.stop();
    let clean = audit(data, "0");
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );

    let now = ticketing_contracts::time::now_millis();
    let tickets_db = sqlite(dir.path(), "tickets");
    let orders_db = sqlite(dir.path(), "orders");
    let payments_db = sqlite(dir.path(), "payments");
    // A free ticket marked reserved by the cancelled order.
    tickets_db
        .execute(
            "UPDATE tickets SET order_id = ?1 WHERE id = ?2",
            (&cancelled, &tickets[4]),
        )
        .unwrap();
    // An active order whose ticket is free.
    orders_db
        .execute(
            "INSERT INTO orders (id, user_id, ticket_id, status, expires_at, version) \
             VALUES ('planted-free', 'u', ?1, 'created', ?2, 0)",
            (&tickets[5], now + 600_000),
        )
        .unwrap();
    // A second active order for T2, written around the claim (which would refuse it).
    orders_db
        .execute(
            "INSERT INTO orders (id, user_id, ticket_id, status, expires_at, version) \
             VALUES ('planted-second', 'u', ?1, 'awaiting:payment', ?2, 0)",
            (&tickets[2], now + 600_000),
        )
        .unwrap();
    // The orders service's replica of T6 ahead of the tickets service.
    orders_db
        .execute(
            "UPDATE tickets SET version = version + 7 WHERE id = ?1",
            [&tickets[6]],
        )
        .unwrap();
    // The payments service's replica of the open order at another version.
    payments_db
        .execute(
            "UPDATE orders SET version = version + 3 WHERE id = ?1",
            [&open],
        )
        .unwrap();
    // A completed order nobody paid: the open one (its replica is now off too).
    orders_db
        .execute(
            "UPDATE orders SET expires_at = ?1 WHERE id = ?2",
            (now - 600_000, &overdue),
        )
        .unwrap();
    let unpaid_complete = "planted-complete";
    orders_db
        .execute(
            "INSERT INTO orders (id, user_id, ticket_id, status, expires_at, version) \
             VALUES (?1, 'u', ?2, 'complete', ?3, 1)",
            (unpaid_complete, &tickets[7], now),
        )
        .unwrap();
    // A payment of an order the orders service never had.
    payments_db
        .execute(
            "INSERT INTO payments (id, order_id, stripe_id, created_at) \
             VALUES ('planted-payment', 'planted-no-such-order', 'ch_planted', ?1)",
            [now],
        )
        .unwrap();
    // The tickets service counting a unit no order holds.
    tickets_db
        .execute(
            "UPDATE tickets SET held = held + 1 WHERE id = ?1",
            [&listing],
        )
        .unwrap();
    // An outbox row the relay left behind two minutes ago.
    tickets_db
        .execute(
            "INSERT INTO outbox (event_id, subject, payload, produced_at) \
             VALUES ('planted-event', 'ticket:created', x'7b7d', ?1)",
            [now - 120_000],
        )
        .unwrap();
    // And one of auth's: a session revocation that never left.
    let auth_db = sqlite(dir.path(), "auth");
    auth_db
        .execute(
            "INSERT INTO outbox (event_id, subject, payload, produced_at) \
             VALUES ('planted-revocation', 'session:revoked', x'7b7d', ?1)",
            [now - 120_000],
        )
        .unwrap();
    drop((tickets_db, orders_db, payments_db, auth_db));

    let found = audit(data, "0");
    let stdout = String::from_utf8_lossy(&found.stdout).into_owned();
    assert_eq!(found.status.code(), Some(1), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    let has = |kind: &str, id: &str| {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{kind}\t")) && l.contains(id)),
            "no {kind} naming {id} in:\n{stdout}"
        );
    };
    has("ticket-held-by-inactive-order", &tickets[4]);
    has("active-order-ticket-not-reserved", "planted-free");
    has("ticket-with-several-active-orders", &tickets[2]);
    has("listing-oversold", &tickets[2]);
    has("listing-held-count", &tickets[2]);
    has("listing-available", &listing);
    has("ticket-replica-version", &tickets[6]);
    has("order-replica-version", &open);
    has("complete-order-without-payment", unpaid_complete);
    has("payment-without-order", "planted-payment");
    has("stale-outbox", "tickets: 1 outbox rows");
    has("stale-outbox", "auth: 1 outbox rows");
    has("open-order-past-expiry", &overdue);
    assert!(stdout.contains("audit: "), "{stdout}");
}

/// The check-in service's checks (issue 32): a pass of a refunded (cancelled) order that
/// still admits, and a pass admitted by two scans, planted in the databases, are found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_finds_pass_divergences() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let running = Running::start(&["--data-dir", data], &[]).await;
    let api = Api::new(running.base.clone());
    let seller = api.as_user(&api.sign_up("seller@test.com").await);
    let buyer = api.as_user(&api.sign_up("buyer@test.com").await);
    let ticket = seller.sell("Concert", json!(10)).await;
    let order = id_of(&buyer.order_ok(&ticket).await);
    let res = buyer.pay(&order).await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let passes = buyer
        .wait_for(&format!("/api/passes?orderId={order}"), |list| {
            list.as_array().is_some_and(|l| l.len() == 1)
        })
        .await;
    let pass = passes[0]["id"].as_str().unwrap().to_owned();
    let clean = audit(data, "20");
    let stdout = String::from_utf8_lossy(&clean.stdout);
    assert!(stdout.contains("audit: 0 divergences"), "{stdout}");
    running.stop();

    let orders_db = sqlite(dir.path(), "orders");
    orders_db
        .execute(
            "UPDATE orders SET status = 'cancelled', cancel_reason = 'refunded' WHERE id = ?1",
            [&order],
        )
        .unwrap();
    let checkin_db = sqlite(dir.path(), "checkin");
    for device in ["gate-a", "gate-b"] {
        checkin_db
            .execute(
                "INSERT INTO scans (device_id, nonce, pass_id, ticket_id, scanned_at, result, admits, answer) \
                 VALUES (?1, 'n', ?2, ?3, 0, 'ok', 1, '{}')",
                (device, &pass, &ticket),
            )
            .unwrap();
    }
    drop((orders_db, checkin_db));
    let found = audit(data, "0");
    let stdout = String::from_utf8_lossy(&found.stdout).into_owned();
    assert_eq!(found.status.code(), Some(1), "{stdout}");
    for (kind, id) in [
        ("pass-of-cancelled-order", &pass),
        ("pass-checked-in-twice", &pass),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("{kind}\t")) && l.contains(id.as_str())),
            "no {kind} naming {id} in:\n{stdout}"
        );
    }
}
