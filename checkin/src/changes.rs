//! The changes feed gates sync from: a row per revocation and per check-in, numbered in
//! commit order, read by listing after a cursor (`GET /api/checkin/changes`).
//!
//! `seq` is the engine's counter. SQLite commits one writer at a time, so rows become
//! visible in `seq` order. On PostgreSQL a transaction that took a number may commit
//! after one that took a later number, and a reader past the later one would skip it:
//! the writers of this table take one transaction-scoped advisory lock first, so numbers
//! are taken and committed one writer after the other.

use std::time::Duration;

use ticketing_contracts::api::checkin::{Change, ChangeKind, CHANGES_PAGE};
use ticketing_contracts::time::{format_millis, now_millis};
use ticketing_contracts::{PassId, TicketId};
use ticketing_store::{query, Backend, Store, Tx};

/// The advisory lock of the table's writers (PostgreSQL).
const WRITERS: i64 = 7_301_000_000_000_033;

/// How often a long poll looks at the table (changes committed by other processes).
pub const POLL: Duration = Duration::from_millis(100);

fn table(seq: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS changes (
            seq {seq},
            ticket_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            pass_id TEXT NOT NULL,
            epoch BIGINT NOT NULL,
            at BIGINT NOT NULL
        )"
    )
}

const INDEX: &str = "CREATE INDEX IF NOT EXISTS changes_by_ticket ON changes (ticket_id, seq)";

pub async fn install(store: &Store) -> anyhow::Result<()> {
    let table = table(match store.backend() {
        Backend::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
        Backend::Postgres => "BIGSERIAL PRIMARY KEY",
    });
    store
        .install(7301000000000033, [table.as_str(), INDEX])
        .await?;
    Ok(())
}

/// Record a change of `pass` in `tx`; call it last in the transaction, once every row
/// the transaction writes is locked (on PostgreSQL it holds the writers' lock until the
/// commit: a holder that waited for a row could wait in a cycle).
pub async fn record(
    tx: &mut Tx,
    ticket: &TicketId,
    kind: ChangeKind,
    pass: &PassId,
    epoch: i64,
) -> Result<(), ticketing_store::Error> {
    lock(tx).await?;
    query("INSERT INTO changes (ticket_id, kind, pass_id, epoch, at) VALUES ($1, $2, $3, $4, $5)")
        .bind(ticket)
        .bind(kind.as_str())
        .bind(pass)
        .bind(epoch)
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Take the writers' lock for the rest of `tx` (PostgreSQL; taken again by the same
/// transaction it is simply held).
async fn lock(tx: &mut Tx) -> Result<(), ticketing_store::Error> {
    if tx.backend() == Backend::Postgres {
        query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITERS)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// The changes of `device`'s listings after `cursor`, oldest first, and the cursor after
/// them.
pub async fn after(
    store: &Store,
    device: &str,
    cursor: i64,
) -> Result<(Vec<Change>, i64), ticketing_store::Error> {
    let rows = query(
        "SELECT seq, kind, pass_id, epoch, at FROM changes \
         WHERE seq > $1 AND ticket_id IN (SELECT ticket_id FROM device_listings WHERE device_id = $2) \
         ORDER BY seq LIMIT $3",
    )
    .bind(cursor)
    .bind(device)
    .bind(CHANGES_PAGE)
    .fetch_all(store.reader())
    .await?;
    let mut last = cursor;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        last = row.get("seq")?;
        let kind = match row.get::<String>("kind")?.as_str() {
            "revoked" => ChangeKind::Revoked,
            _ => ChangeKind::CheckedIn,
        };
        out.push(Change {
            kind,
            pass_id: row.get("pass_id")?,
            epoch: row.get("epoch")?,
            at: format_millis(row.get("at")?),
        });
    }
    Ok((out, last))
}
