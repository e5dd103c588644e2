//! What a store and its transactions hold of their engine: the layer between the face
//! (`store.rs`, `tx.rs`, `query.rs`) and the wings (`sqlite/`, `postgres.rs`), so that a
//! query reaches its connection without knowing the `Store` or `Tx` it came from.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::AnyPool;

use crate::postgres::PgTx;
use crate::sqlite::{self, Lite};

/// A store's engine: its SQLite connections or its PostgreSQL pool.
#[derive(Clone, Debug)]
pub(crate) enum Engine {
    Lite(Arc<Lite>),
    Pg(AnyPool),
}

/// What a write transaction holds.
pub(crate) enum TxConn {
    /// The SQLite writer, held until the transaction ends.
    Lite(sqlite::Held),
    Pg(PgTx),
    /// Handed to the commit.
    Ended,
}

/// A count of the writes committed through a store (all its clones), bumped once each
/// is committed: a cache of query results taken with the count read *before* the query
/// is current while the count has not moved.
#[derive(Debug, Clone, Default)]
pub(crate) struct Changes(Arc<AtomicU64>);

impl Changes {
    pub(crate) fn committed(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}
