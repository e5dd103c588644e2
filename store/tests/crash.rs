//! A crash image of a store under group commit holds every acknowledged transaction.
//!
//! Concurrent transactions of ~60 KB each (and a change to one shared row) queue for the writer and commit in groups that
//! outgrow the page cache (SQLite spills mid-group, and a group then commits with the
//! transaction that made it spill), while the checkpointer runs beside them. After each
//! burst the files are copied as a kill leaves them (the process's writes, nothing it
//! still holds) and opened afresh: every acknowledged row there, `integrity_check` ok —
//! on the gathered log and on SQLite's default VFS, with `synchronous` `normal` and
//! `full`. A test binary of its own, with one test: the settings are the process's.

use std::path::Path;

use rusqlite::Connection;
use ticketing_store::{query, set_sqlite_gathered_log, set_sqlite_synchronous, Store, Synchronous};

/// The files as a kill leaves them, opened afresh (recovery reads the log).
fn crash_image(path: &Path, into: &Path) -> Connection {
    let name = path.file_name().unwrap().to_str().unwrap();
    std::fs::copy(path, into.join(name)).unwrap();
    let log = path.with_file_name(format!("{name}-wal"));
    if log.exists() {
        std::fs::copy(&log, into.join(format!("{name}-wal"))).unwrap();
    }
    Connection::open(into.join(name)).unwrap()
}

async fn groups_survive_a_crash(gathered: bool, synchronous: Synchronous) {
    set_sqlite_gathered_log(gathered);
    set_sqlite_synchronous(synchronous);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("groups.db");
    let store = Store::open_sqlite_unmigrated(&path).unwrap();
    query("CREATE TABLE blobs (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .execute(store.writer())
        .await
        .unwrap();
    query("CREATE TABLE totals (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        .execute(store.writer())
        .await
        .unwrap();
    query("INSERT INTO totals (id, n) VALUES (1, 0)")
        .execute(store.writer())
        .await
        .unwrap();
    let mut acknowledged = Vec::new();
    for burst in 0..4_i64 {
        let tasks: Vec<_> = (0..96_i64)
            .map(|i| {
                let store = store.clone();
                let id = burst * 1000 + i;
                tokio::spawn(async move {
                    let mut tx = store.begin().await.unwrap();
                    query("INSERT INTO blobs (id, body) VALUES ($1, $2)")
                        .bind(id)
                        .bind(format!("{id}:{}", "b".repeat(60_000)))
                        .execute(&mut tx)
                        .await
                        .unwrap();
                    // A page every member changes: changed again after a spill.
                    query("UPDATE totals SET n = n + 1 WHERE id = 1")
                        .execute(&mut tx)
                        .await
                        .unwrap();
                    // Every fifth rolls back, alone.
                    if i % 5 == 4 {
                        tx.rollback().await.unwrap();
                        None
                    } else {
                        tx.commit().await.unwrap();
                        Some(id)
                    }
                })
            })
            .collect();
        for task in tasks {
            acknowledged.extend(task.await.unwrap());
        }
        let image = tempfile::tempdir().unwrap();
        let crashed = crash_image(&path, image.path());
        let mut found: Vec<i64> = crashed
            .prepare("SELECT id FROM blobs ORDER BY id")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        found.sort_unstable();
        acknowledged.sort_unstable();
        assert_eq!(
            found, acknowledged,
            "burst {burst}, gathered {gathered}, {synchronous}: acknowledged != recovered"
        );
        let check: String = crashed
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(
            check, "ok",
            "burst {burst}, gathered {gathered}, {synchronous}"
        );
        let total: i64 = crashed
            .query_row("SELECT n FROM totals", [], |row| row.get(0))
            .unwrap();
        assert_eq!(total, acknowledged.len() as i64);
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_groups_survive_a_crash_on_both_logs_and_both_settings() {
    for gathered in [true, false] {
        for synchronous in [Synchronous::Normal, Synchronous::Full] {
            groups_survive_a_crash(gathered, synchronous).await;
        }
    }
}
