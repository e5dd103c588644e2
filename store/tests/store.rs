//! The store's write path: whatever happens to a transaction — dropped before its
//! commit, its future cancelled mid-statement or mid-`BEGIN` — the next writer starts
//! clean and nothing of the abandoned one survives. On SQLite this is the one held
//! writer connection, so a leftover transaction would swallow every later write.

use std::time::Duration;

use ticketing_bus::{inbox, Envelope};
use ticketing_contracts::events::Subject;
use ticketing_kit::backend_tests;
use ticketing_kit::testing::{TestBackend, TestEnv};
use ticketing_store::{query, DbLocation, On, Store};

async fn store(env: &TestEnv) -> Store {
    let store = env.event_store("storetest").await;
    query("CREATE TABLE IF NOT EXISTS things (id TEXT PRIMARY KEY)")
        .execute(store.writer())
        .await
        .unwrap();
    store
}

async fn count(store: &Store) -> i64 {
    query("SELECT COUNT(*) FROM things")
        .scalar(store.reader())
        .await
        .unwrap()
}

async fn insert<'a>(on: impl Into<On<'a>>, id: &str) {
    query("INSERT INTO things (id) VALUES ($1)")
        .bind(id)
        .execute(on)
        .await
        .unwrap();
}

/// `children`, whose foreign key to `things` is checked only at commit: a deferred
/// constraint fails the commit rather than the statement (PostgreSQL's `DEFERRABLE
/// INITIALLY DEFERRED`, and SQLite's).
async fn create_children(store: &Store, backend: TestBackend) {
    let ddl = match backend {
        TestBackend::Sqlite => {
            "CREATE TABLE children (id TEXT PRIMARY KEY, parent TEXT NOT NULL \
             REFERENCES things (id) DEFERRABLE INITIALLY DEFERRED)"
        }
        TestBackend::Postgres => {
            "CREATE TABLE children (id TEXT PRIMARY KEY, parent TEXT NOT NULL, \
             FOREIGN KEY (parent) REFERENCES things (id) DEFERRABLE INITIALLY DEFERRED)"
        }
    };
    query(ddl).execute(store.writer()).await.unwrap();
}

async fn abandoned_transactions_leave_nothing_behind(backend: TestBackend) {
    let env = TestEnv::new(backend);
    let store = store(&env).await;

    // Dropped without a commit.
    let mut tx = store.begin().await.unwrap();
    insert(&mut tx, "dropped").await;
    drop(tx);

    // Cancelled in the middle of a statement (a client that went away).
    let mut tx = store.begin().await.unwrap();
    let statement = async {
        insert(&mut tx, "cancelled").await;
        std::future::pending::<()>().await
    };
    let _ = tokio::time::timeout(Duration::from_millis(50), statement).await;
    drop(tx);

    // Cancelled while beginning, over and over, at every point of `begin`.
    for _ in 0..50 {
        let begin = store.begin();
        let _ = tokio::time::timeout(Duration::from_micros(50), begin).await;
    }

    // The next writers work, in and out of transactions, and see a clean slate.
    let mut tx = store.begin().await.unwrap();
    insert(&mut tx, "kept").await;
    tx.commit().await.unwrap();
    insert(store.writer(), "autocommit").await;
    assert_eq!(count(&store).await, 2);
    let ids: Vec<String> = query("SELECT id FROM things ORDER BY id")
        .scalars(store.reader())
        .await
        .unwrap();
    assert_eq!(ids, ["autocommit", "kept"]);
    store.close().await;
}

async fn a_failed_commit_rolls_back(backend: TestBackend) {
    let env = TestEnv::new(backend);
    let store = store(&env).await;
    // A deferred constraint fails at commit on PostgreSQL; on SQLite a foreign key with
    // `DEFERRABLE INITIALLY DEFERRED` does the same.
    create_children(&store, backend).await;
    let mut tx = store.begin().await.unwrap();
    insert(&mut tx, "orphaned-parent").await;
    query("INSERT INTO children (id, parent) VALUES ('c', 'nobody')")
        .execute(&mut tx)
        .await
        .unwrap();
    assert!(tx.commit().await.is_err(), "the commit must fail");

    let mut tx = store.begin().await.unwrap();
    insert(&mut tx, "after").await;
    tx.commit().await.unwrap();
    let ids: Vec<String> = query("SELECT id FROM things")
        .scalars(store.reader())
        .await
        .unwrap();
    assert_eq!(ids, ["after"]);
    store.close().await;
}

async fn inbox_pruning_forgets_old_marks_only(backend: TestBackend) {
    let env = TestEnv::new(backend);
    let store = store(&env).await;
    let old = Envelope::raw(Subject::TicketCreated, b"old".to_vec());
    let new = Envelope::raw(Subject::TicketCreated, b"new".to_vec());
    for event in [&old, &new] {
        inbox::begin(&store, "g", event)
            .await
            .unwrap()
            .unwrap()
            .commit()
            .await
            .unwrap();
    }
    query("UPDATE inbox SET processed_at = processed_at - 7200000 WHERE event_id = $1")
        .bind(&old.id)
        .execute(store.writer())
        .await
        .unwrap();
    assert_eq!(inbox::prune(&store, 3_600_000).await.unwrap(), 1);
    // The old event would be handled again; the new one is still a duplicate.
    assert!(inbox::begin(&store, "g", &old).await.unwrap().is_some());
    assert!(inbox::begin(&store, "g", &new).await.unwrap().is_none());
    store.close().await;
}

/// Under steady writes the write-ahead log still starts over and stays small: the
/// background checkpoint finishes on the writer (a checkpoint beside the writer alone
/// never catches up with commits landing meanwhile, and the log grew without bound).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_log_stays_bounded_under_steady_writes() {
    let env = TestEnv::new(TestBackend::Sqlite);
    let store = store(&env).await;
    let wal = match env.runtime.location("storetest").unwrap() {
        DbLocation::Sqlite { path } => path.with_extension("db-wal"),
        DbLocation::Postgres { .. } => unreachable!(),
    };
    let size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    let limit = 16 << 20;
    // Each transaction dirties at least two 4 KiB pages: 20,000 of them write over
    // 150 MiB of log, here at about 100 MiB/s. Writes never pause, so no quiet moment
    // helps. The log is let grow to the limit before a reset, and keeps growing while a
    // checkpoint copies it (measured: up to about 40 MiB); without resets it would hold
    // everything written.
    let mut largest = 0;
    for i in 0..20_000 {
        let mut tx = store.begin().await.unwrap();
        query("INSERT INTO things (id) VALUES ($1)")
            .bind(format!("{i:06}-{}", "x".repeat(1000)))
            .execute(&mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        largest = largest.max(size());
    }
    assert_eq!(count(&store).await, 20_000);
    assert!(
        largest <= 4 * limit,
        "the log reached {largest} bytes (limit {limit})"
    );
    store.close().await;
}

/// The SQLite the store runs on is built without the process-wide page cache and
/// allocation statistics (`.cargo/config.toml`): both put a global mutex on the path of
/// every statement, which two executor threads working on different files took turns
/// on. A build that lost the setting (a new machine, another build tool) fails here.
#[tokio::test]
async fn sqlite_is_built_without_process_wide_locks() {
    let env = TestEnv::new(TestBackend::Sqlite);
    let store = store(&env).await;
    let rows = query("PRAGMA compile_options")
        .fetch_all(store.reader())
        .await
        .unwrap();
    let options: Vec<String> = rows
        .iter()
        .map(|row| row.get::<String>("compile_options").unwrap())
        .collect();
    assert!(
        !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
        "{options:?}"
    );
    assert!(
        options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
        "{options:?}"
    );
    store.close().await;
}

/// One query text for both engines: `$n` in any order and repeated, nulls of either
/// type, and a unique violation reported as such (the services map it to a 4xx).
async fn queries_read_the_same_on_both_engines(backend: TestBackend) {
    let env = TestEnv::new(backend);
    let store = store(&env).await;
    let row = query("SELECT $2 AS second, $1 AS first, $2 AS again, $3 AS absent")
        .bind(7_i64)
        .bind("two")
        .bind(None::<i64>)
        .fetch_one(store.reader())
        .await
        .unwrap();
    assert_eq!(row.get::<String>("second").unwrap(), "two");
    assert_eq!(row.get::<i64>("first").unwrap(), 7);
    assert_eq!(row.get::<String>("again").unwrap(), "two");
    assert_eq!(row.get::<Option<i64>>("absent").unwrap(), None);
    assert!(row.get::<i64>("missing").is_err());

    insert(store.writer(), "same").await;
    let err = query("INSERT INTO things (id) VALUES ($1)")
        .bind("same")
        .execute(store.writer())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ticketing_store::Error::Unique { constraint } if !constraint.is_empty()),
        "{err:?}"
    );
    // A statement that does not bind what it is given fails instead of guessing.
    assert!(query("SELECT $2 AS x")
        .bind(1_i64)
        .fetch_one(store.reader())
        .await
        .is_err());
    store.close().await;
}

/// Many transactions at once (on SQLite they queue for the writer and commit in
/// groups): each is all or nothing whatever its neighbours do — a rollback, a failed
/// statement, a deferred constraint that fails its commit, a caller that goes away — and
/// every commit answered is in the database.
async fn concurrent_transactions_stay_atomic(backend: TestBackend) {
    let env = TestEnv::new(backend);
    let store = store(&env).await;
    create_children(&store, backend).await;
    let changes_before = store.changes();

    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tx = store.begin().await.unwrap();
                insert(&mut tx, &format!("a{i}")).await;
                match i % 5 {
                    // Commits: both rows.
                    0 | 1 => {
                        insert(&mut tx, &format!("b{i}")).await;
                        tx.commit().await.map(|()| true)
                    }
                    // Rolls back.
                    2 => tx.rollback().await.map(|()| false),
                    // A statement fails (a duplicate), then the caller gives up: dropped.
                    3 => {
                        let dup = query("INSERT INTO things (id) VALUES ($1)")
                            .bind(format!("a{i}"))
                            .execute(&mut tx)
                            .await;
                        assert!(dup.is_err());
                        Ok(false)
                    }
                    // A deferred foreign key fails this commit alone.
                    _ => {
                        query("INSERT INTO children (id, parent) VALUES ($1, 'nobody')")
                            .bind(format!("c{i}"))
                            .execute(&mut tx)
                            .await
                            .unwrap();
                        assert!(tx.commit().await.is_err(), "the commit must fail");
                        Ok(false)
                    }
                }
            })
        })
        .collect();
    let mut committed = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        if task.await.unwrap().unwrap() {
            committed.push(i);
        }
    }
    let mut expected: Vec<String> = committed
        .iter()
        .flat_map(|i| [format!("a{i}"), format!("b{i}")])
        .collect();
    expected.sort();
    let ids: Vec<String> = query("SELECT id FROM things ORDER BY id")
        .scalars(store.reader())
        .await
        .unwrap();
    assert_eq!(ids, expected);
    let orphans: i64 = query("SELECT COUNT(*) FROM children")
        .scalar(store.reader())
        .await
        .unwrap();
    assert_eq!(orphans, 0);
    assert!(store.changes() >= changes_before + committed.len() as u64);

    // Callers that go away while their commit is pending: whatever they were told,
    // the next writer starts clean and sees a consistent database.
    for round in 0..20 {
        let pending: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut tx = store.begin().await.unwrap();
                    insert(&mut tx, &format!("gone{round}-{i}")).await;
                    tx.commit().await.unwrap();
                })
            })
            .collect();
        tokio::task::yield_now().await;
        for task in pending.iter().step_by(2) {
            task.abort();
        }
        for task in pending {
            let _ = task.await;
        }
    }
    let mut tx = store.begin().await.unwrap();
    insert(&mut tx, "last").await;
    tx.commit().await.unwrap();
    let gone: i64 = query("SELECT COUNT(*) FROM things WHERE id LIKE 'gone%'")
        .scalar(store.reader())
        .await
        .unwrap();
    assert!(gone <= 160, "{gone}");
    assert_eq!(count(&store).await, expected.len() as i64 + gone + 1);
    store.close().await;
}

/// PostgreSQL: a queue-like table (rows inserted, then deleted) is vacuumed and analyzed
/// by the store's own upkeep within seconds, whatever the server's autovacuum does.
#[tokio::test]
async fn postgres_upkeep_vacuums_a_churned_table() {
    let env = TestEnv::new(TestBackend::Postgres);
    let store = store(&env).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let task = ticketing_store::upkeep::spawn(&store, stop.clone()).expect("upkeep on PostgreSQL");
    query("INSERT INTO things (id) SELECT 'id-' || n FROM generate_series(1, 3000) AS n")
        .execute(store.writer())
        .await
        .unwrap();
    query("DELETE FROM things")
        .execute(store.writer())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let done: i64 = query(
            "SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'things' \
             AND vacuum_count + autovacuum_count > 0 AND analyze_count + autoanalyze_count > 0",
        )
        .scalar(store.reader())
        .await
        .unwrap();
        if done > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not vacuumed and analyzed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
    task.await.unwrap();
}

backend_tests!(
    concurrent_transactions_stay_atomic,
    queries_read_the_same_on_both_engines,
    abandoned_transactions_leave_nothing_behind,
    a_failed_commit_rolls_back,
    inbox_pruning_forgets_old_marks_only,
);
