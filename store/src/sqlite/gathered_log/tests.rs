use std::cell::Cell;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

thread_local! {
    /// Writes of gathered frames by this thread.
    pub(super) static WRITES: Cell<u64> = const { Cell::new(0) };
}

/// A connection on the gathered log, or on the default VFS.
fn connect_with(path: &Path, gathered: bool, synchronous: &str) -> Connection {
    assert!(super::install());
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
    let conn = if gathered {
        Connection::open_with_flags_and_vfs(path, flags, super::VFS)
    } else {
        Connection::open_with_flags(path, flags)
    }
    .unwrap();
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
         PRAGMA wal_autocheckpoint = 0"
    ))
    .unwrap();
    conn
}

fn connect(path: &Path) -> Connection {
    connect_with(path, true, "NORMAL")
}

/// Rows `ids`, ~3 KB each (a page apiece, or nearly).
fn insert(conn: &Connection, ids: std::ops::Range<i64>) {
    let body = "x".repeat(3000);
    for id in ids {
        conn.execute("INSERT INTO t (id, body) VALUES (?1, ?2)", (id, &body))
            .unwrap();
    }
}

fn count(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap()
}

fn integrity(conn: &Connection) -> String {
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_commit_is_one_write_and_visible_to_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gathered.db");
    let writer = connect(&path);
    writer
        .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .unwrap();
    let reader = connect(&path);
    let plain = Connection::open(&path).unwrap();
    let page: usize = writer
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    assert_eq!(page, super::gathering::PAGE, "the page size gathered");
    for round in 0..50 {
        let before = WRITES.with(Cell::get);
        // Many pages in one transaction: one write of gathered frames.
        writer.execute_batch("BEGIN").unwrap();
        insert(&writer, round * 20..(round + 1) * 20);
        writer.execute_batch("COMMIT").unwrap();
        assert_eq!(WRITES.with(Cell::get) - before, 1, "round {round}");
        let expected = (round + 1) * 20;
        assert_eq!(count(&reader), expected);
        assert_eq!(count(&plain), expected);
        if round % 10 == 9 {
            // A checkpoint, then a log started over from its header.
            reader
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .unwrap();
        }
    }
    // A transaction larger than the page cache spills pages mid-transaction and
    // reads them back, and one larger than what is held is written in pieces; a
    // rolled back one leaves nothing.
    writer
        .execute_batch("PRAGMA cache_size = 10; BEGIN")
        .unwrap();
    insert(&writer, 10_000..10_500);
    assert_eq!(count(&writer), 1000 + 500);
    writer.execute_batch("ROLLBACK").unwrap();
    assert_eq!(count(&plain), 1000);
    writer.execute_batch("BEGIN").unwrap();
    insert(&writer, 20_000..20_500);
    writer.execute_batch("COMMIT").unwrap();
    assert_eq!(count(&reader), 1500);
    assert_eq!(integrity(&plain), "ok");
    drop((writer, reader, plain));
    // Reopened: everything committed is there.
    assert_eq!(count(&connect(&path)), 1500);
}

/// The files as a kill leaves them at this instant (every write the process made,
/// nothing it still holds), copied aside while the connections stay open, then
/// opened afresh on the default VFS: recovery reads the log as after a crash.
fn crash_image(path: &Path, into: &Path) -> Connection {
    let name = path.file_name().unwrap().to_str().unwrap();
    let copy = into.join(name);
    std::fs::copy(path, &copy).unwrap();
    let log = path.with_file_name(format!("{name}-wal"));
    if log.exists() {
        std::fs::copy(&log, into.join(format!("{name}-wal"))).unwrap();
    }
    Connection::open(&copy).unwrap()
}

/// What the rows committed so far add up to: (count, sum of ids, sum of versions).
fn digest(conn: &Connection) -> (i64, i64, i64) {
    conn.query_row(
        "SELECT count(*), coalesce(sum(id), 0), coalesce(sum(version), 0) FROM t",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap()
}

/// Commits of every shape, each followed by a crash image that must hold every
/// acknowledged commit and pass `integrity_check`: small ones; one larger than the
/// page cache that changes pages it already spilled (SQLite rewrites those frames
/// and then every later frame header in place); one larger than what is held; a
/// spilling one rolled back and the next committed over its frames; checkpoints
/// and a log started over between them.
fn survives_crashes(gathered: bool, synchronous: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let writer = connect_with(&path, gathered, synchronous);
    writer
        .execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL, \
             version INTEGER NOT NULL DEFAULT 0); CREATE INDEX t_body ON t (body)",
        )
        .unwrap();
    let checkpointer = connect_with(&path, gathered, synchronous);
    let body = |id: i64, len: usize| format!("{id:08}{}", "x".repeat(len));
    let mut next = 0_i64;
    let mut step = 0;
    let mut check = |writer: &Connection, what: &str| {
        step += 1;
        let image = tempfile::tempdir().unwrap();
        let crashed = crash_image(&path, image.path());
        assert_eq!(
            digest(&crashed),
            digest(writer),
            "{what} (gathered {gathered}, {synchronous}): acknowledged commits lost"
        );
        assert_eq!(integrity(&crashed), "ok", "{what}");
    };
    for round in 0..3 {
        // Small commits, one row each.
        for _ in 0..40 {
            writer
                .execute(
                    "INSERT INTO t (id, body) VALUES (?1, ?2)",
                    (next, body(next, 200)),
                )
                .unwrap();
            next += 1;
        }
        check(&writer, "small commits");
        // A transaction past the page cache that changes what it spilled.
        writer
            .execute_batch("PRAGMA cache_size = 10; BEGIN")
            .unwrap();
        let first = next;
        for _ in 0..300 {
            writer
                .execute(
                    "INSERT INTO t (id, body) VALUES (?1, ?2)",
                    (next, body(next, 3000)),
                )
                .unwrap();
            next += 1;
        }
        writer
            .execute(
                "UPDATE t SET version = version + 1 WHERE id BETWEEN ?1 AND ?1 + 60",
                [first],
            )
            .unwrap();
        writer.execute_batch("COMMIT").unwrap();
        check(&writer, "a spilled and re-dirtied transaction");
        // A spilling transaction rolled back, then one committed over its frames.
        writer.execute_batch("BEGIN").unwrap();
        for id in 0..200 {
            writer
                .execute(
                    "INSERT INTO t (id, body) VALUES (?1, ?2)",
                    (-1 - id, body(id, 3000)),
                )
                .unwrap();
        }
        writer.execute_batch("ROLLBACK").unwrap();
        writer
            .execute(
                "UPDATE t SET version = version + 1 WHERE id % 7 = ?1",
                [round],
            )
            .unwrap();
        check(&writer, "a commit after a rolled back spill");
        // Larger than what is held (written in several gathered writes), in the
        // default cache.
        writer
            .execute_batch("PRAGMA cache_size = -2000; BEGIN")
            .unwrap();
        for _ in 0..700 {
            writer
                .execute(
                    "INSERT INTO t (id, body) VALUES (?1, ?2)",
                    (next, body(next, 3000)),
                )
                .unwrap();
            next += 1;
        }
        writer.execute_batch("COMMIT").unwrap();
        check(&writer, "a large transaction");
        // A checkpoint beside the writer, then commits on the checkpointed log.
        checkpointer
            .execute_batch("PRAGMA wal_checkpoint(PASSIVE)")
            .unwrap();
        writer
            .execute(
                "UPDATE t SET version = version + 1 WHERE id < ?1",
                [next / 3],
            )
            .unwrap();
        check(&writer, "a commit after a checkpoint");
        if round == 1 {
            // The log started over: the next commit writes its header anew.
            writer
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .unwrap();
            writer
                .execute(
                    "INSERT INTO t (id, body) VALUES (?1, ?2)",
                    (next, body(next, 10)),
                )
                .unwrap();
            next += 1;
            check(&writer, "a commit on a log started over");
        }
    }
    assert!(step >= 16);
}

#[test]
fn every_acknowledged_commit_survives_a_crash_gathered_normal() {
    survives_crashes(true, "NORMAL");
}

#[test]
fn every_acknowledged_commit_survives_a_crash_gathered_full() {
    survives_crashes(true, "FULL");
}

#[test]
fn every_acknowledged_commit_survives_a_crash_default_normal() {
    survives_crashes(false, "NORMAL");
}

#[test]
fn every_acknowledged_commit_survives_a_crash_default_full() {
    survives_crashes(false, "FULL");
}

/// A log handle with no file behind it, for the gathering rules alone.
fn rules() -> super::gathering::LogFile {
    let dir = tempfile::tempdir().unwrap();
    super::gathering::LogFile {
        base: rusqlite::ffi::sqlite3_file {
            pMethods: std::ptr::null(),
        },
        real: std::ptr::null_mut(),
        out: Some(std::fs::File::create(dir.path().join("log")).unwrap()),
        held: Vec::new(),
        start: 0,
        frame: super::gathering::Frame::Between,
        frontier: 0,
        lost: None,
    }
}

#[test]
fn only_appends_are_gathered_and_nothing_builds_on_lost_frames() {
    use super::gathering::{FRAME, LOG_HEADER};
    let mut log = rules();
    let header = [0_u8; 24];
    let commit_header = [
        0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    // The log's header, then two frames appended.
    log.advance(32, 0);
    assert_eq!(log.frontier, LOG_HEADER);
    for frame in 0..2 {
        let at = LOG_HEADER + frame * FRAME;
        assert!(log.gathers(&header, at).is_some(), "frame {frame}");
        log.advance(24, at);
        log.advance(4096, at + 24);
    }
    assert_eq!(log.frontier, LOG_HEADER + 2 * FRAME);
    // A header rewritten in place, the commit frame's included, goes through.
    assert!(log.gathers(&commit_header, LOG_HEADER + FRAME).is_none());
    assert!(log.gathers(&header, LOG_HEADER).is_none());
    // The next append is gathered.
    assert!(log
        .gathers(&commit_header, LOG_HEADER + 2 * FRAME)
        .is_some());
    // Frames lost from the second on: nothing at or past it, until a transaction
    // starts from a committed point (or the log starts over).
    log.lost = Some(LOG_HEADER + FRAME);
    assert!(!log.may_write(24, LOG_HEADER + 2 * FRAME));
    assert!(!log.may_write(4096, LOG_HEADER + FRAME + 24));
    assert!(
        log.may_write(4096, LOG_HEADER + 24),
        "a page rewritten before"
    );
    assert!(log.lost.is_some());
    assert!(log.may_write(24, LOG_HEADER + FRAME));
    assert!(log.lost.is_none());
    log.lost = Some(LOG_HEADER + FRAME);
    assert!(log.may_write(32, 0));
    assert!(log.lost.is_none());
}
