//! `--sqlite-synchronous full`: every connection the store opens syncs at commit, and
//! group commit (whose commit then runs on a blocking thread) keeps every transaction
//! atomic. A test binary of its own: the setting is the process's.

use ticketing_kit::testing::{TestBackend, TestEnv};
use ticketing_store::{query, set_sqlite_synchronous, Synchronous};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_synchronous_applies_to_every_connection_and_groups_commits() {
    set_sqlite_synchronous(Synchronous::Full);
    let env = TestEnv::new(TestBackend::Sqlite);
    let store = env.event_store("durable").await;
    query("CREATE TABLE things (id TEXT PRIMARY KEY)")
        .execute(store.writer())
        .await
        .unwrap();
    // 2 is FULL; the writer and a reader both say so.
    let mut tx = store.begin().await.unwrap();
    let on_writer: i64 = query("PRAGMA synchronous").scalar(&mut tx).await.unwrap();
    tx.rollback().await.unwrap();
    let on_reader: i64 = query("PRAGMA synchronous")
        .scalar(store.reader())
        .await
        .unwrap();
    assert_eq!((on_writer, on_reader), (2, 2));

    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tx = store.begin().await.unwrap();
                query("INSERT INTO things (id) VALUES ($1)")
                    .bind(format!("t{i}"))
                    .execute(&mut tx)
                    .await
                    .unwrap();
                if i % 3 == 0 {
                    tx.rollback().await.unwrap();
                    false
                } else {
                    tx.commit().await.unwrap();
                    true
                }
            })
        })
        .collect();
    let mut committed = 0;
    for task in tasks {
        committed += i64::from(task.await.unwrap());
    }
    let stored: i64 = query("SELECT COUNT(*) FROM things")
        .scalar(store.reader())
        .await
        .unwrap();
    assert_eq!(stored, committed);
    store.close().await;
}
