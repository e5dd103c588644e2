//! State that only grows is pruned on a schedule: the tickets service's memory of
//! cancelled orders and the expiration service's of finished ones go once no event about
//! them can arrive any more (the bus keeps events 7 days; these, a day longer).

use std::time::Duration;

use ticketing_contracts::time::now_millis;
use ticketing_kit::backend_tests;
use ticketing_kit::testing::{TestBackend, TestEnv};
use ticketing_store::retention::prune_older_than;
use ticketing_store::{query, Migrations, Store};

async fn open(env: &TestEnv, service: &str, migrations: &Migrations) -> Store {
    Store::open(&env.runtime.location(service).unwrap(), migrations)
        .await
        .unwrap()
}

/// Rows aged `ages` (ms before now) into `table`; prune with `keep`; the survivors' ids.
async fn prune(
    store: &Store,
    (table, column, key): (&'static str, &'static str, &'static str),
    keep: Duration,
    ages: &[i64],
) -> Vec<String> {
    for (n, age) in ages.iter().enumerate() {
        query(&format!(
            "INSERT INTO {table} ({key}, {column}) VALUES ($1, $2)"
        ))
        .bind(format!("o{n}"))
        .bind(now_millis() - age)
        .execute(store.writer())
        .await
        .unwrap();
    }
    prune_older_than(store, table, column, key, keep)
        .await
        .unwrap();
    query(&format!("SELECT {key} FROM {table} ORDER BY {key}"))
        .scalars(store.reader())
        .await
        .unwrap()
}

async fn old_memories_of_finished_orders_are_pruned(backend: TestBackend) {
    let env = TestEnv::new(backend);
    let keep = ticketing_tickets::CANCELLED_ORDERS_KEEP;
    assert!(keep >= Duration::from_secs(8 * 24 * 3600));
    let day = 24 * 3600 * 1000;
    let ages = [9 * day, keep.as_millis() as i64 + 60_000, 7 * day, 1_000];

    let tickets = open(&env, "tickets", &ticketing_tickets::MIGRATIONS).await;
    let kept = prune(&tickets, ticketing_tickets::CANCELLED_ORDERS, keep, &ages).await;
    assert_eq!(kept, ["o2", "o3"]);

    let expiration = open(&env, "expiration", &ticketing_expiration::MIGRATIONS).await;
    let kept = prune(
        &expiration,
        ticketing_expiration::FINISHED_ORDERS,
        ticketing_expiration::FINISHED_ORDERS_KEEP,
        &ages,
    )
    .await;
    assert_eq!(kept, ["o2", "o3"]);
}

async fn prunes_in_batches_past_the_batch_size(backend: TestBackend) {
    let env = TestEnv::new(backend);
    let tickets = open(&env, "tickets", &ticketing_tickets::MIGRATIONS).await;
    let old = now_millis() - 30 * 24 * 3600 * 1000;
    let n = ticketing_store::retention::PRUNE_BATCH * 2 + 7;
    let mut tx = tickets.begin().await.unwrap();
    for i in 0..n {
        query("INSERT INTO cancelled_orders (order_id, cancelled_at) VALUES ($1, $2)")
            .bind(format!("old{i}"))
            .bind(old)
            .execute(&mut tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let (table, column, key) = ticketing_tickets::CANCELLED_ORDERS;
    let pruned = prune_older_than(&tickets, table, column, key, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(pruned, n as u64);
}

backend_tests!(
    old_memories_of_finished_orders_are_pruned,
    prunes_in_batches_past_the_batch_size,
);
