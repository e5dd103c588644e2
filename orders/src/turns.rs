//! Turns at a listing's row, taken in the process before its lock is.
//!
//! Every claim on a listing of many units locks the listing's row until its commit. In
//! a drop's rush a process's claims queued for that lock inside PostgreSQL, and every
//! commit woke the queue to contend again (the lock manager's contention, a context
//! switch each). Taking turns here first leaves at most one claim per process waiting
//! in PostgreSQL; the others wait in memory, in arrival order (tokio's mutex is fair),
//! their transactions open. The row's lock still decides: a turn only orders this
//! process's claims.

use std::hash::{BuildHasher, RandomState};
use std::sync::LazyLock;

use ticketing_contracts::TicketId;
use ticketing_store::Backend;
use tokio::sync::{Mutex, MutexGuard};

/// Listings share a turn when their ids hash alike: enough that a drop's few hot
/// listings rarely do.
const STRIPES: usize = 256;

static TURNS: LazyLock<(RandomState, Vec<Mutex<()>>)> = LazyLock::new(|| {
    let stripes = (0..STRIPES).map(|_| Mutex::new(())).collect();
    (RandomState::new(), stripes)
});

/// A turn at a listing's row, or none; hold it until the claim commits.
#[must_use = "the turn ends when dropped: hold it until the commit"]
pub struct Turn {
    _held: Option<MutexGuard<'static, ()>>,
}

/// Wait for this process's turn at `ticket`'s row when `contended` (a listing of many
/// units, which many buyers claim) and `backend` is PostgreSQL. No turn otherwise: a
/// listing of one unit goes to one buyer; and SQLite's one writer has no lock queue,
/// while a transaction waiting here would hold it from the one with the turn.
pub async fn take(backend: Backend, ticket: &TicketId, contended: bool) -> Turn {
    if !contended || backend != Backend::Postgres {
        return Turn { _held: None };
    }
    let (hasher, stripes) = &*TURNS;
    let stripe = hasher.hash_one(ticket.as_str()) as usize % STRIPES;
    Turn {
        _held: Some(stripes[stripe].lock().await),
    }
}
