//! Newest-wins replicas (docs/decisions/0023): a service's copy of another's rows, kept
//! from events that carry the whole row, written so that the newest version wins
//! whatever the arrival order.

use std::marker::PhantomData;

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener, Traced};
use ticketing_contracts::events::Event;
use ticketing_store::{query, Backend, Query, Tx};

use crate::arrival::Arrivals;

/// A copy kept newest-wins: its two upserts, which keep a row unless the replica already
/// holds its version or a newer one.
pub trait Replicated: Sized + Send + Sync + 'static {
    /// One copy, its columns bound by [`Replicated::bind`].
    const UPSERT: &'static str;
    /// A batch on PostgreSQL, one statement: `$1` the copies as a JSON array of
    /// [`Replicated::json`], of which it keeps the newest of each row (a row changes once
    /// per statement), in key order like every other writer of the table, so that two
    /// batches wait for each other and never deadlock.
    const UPSERT_ALL: &'static str;

    fn bind<'q>(&self, upsert: Query<'q>) -> Query<'q>;

    fn json(&self) -> serde_json::Value;
}

/// Apply `copies` (from events in any order, duplicates included) newest-wins: on
/// PostgreSQL one statement for a batch, on SQLite one per copy (a statement costs no
/// round trip there).
pub async fn apply_all<T: Replicated>(
    tx: &mut Tx,
    copies: &[T],
) -> Result<(), ticketing_store::Error> {
    if tx.backend() == Backend::Postgres && copies.len() > 1 {
        let rows: Vec<serde_json::Value> = copies.iter().map(T::json).collect();
        query(T::UPSERT_ALL)
            .bind(serde_json::Value::from(rows).to_string())
            .execute(&mut *tx)
            .await?;
        return Ok(());
    }
    for copy in copies {
        copy.bind(query(T::UPSERT)).execute(&mut *tx).await?;
    }
    Ok(())
}

/// A copy read from event `E`, which carries the whole row.
pub trait CopyOf<E>: Replicated {
    /// The copy, or [`HandlerError::Poison`] for an event it cannot read.
    fn copy_of(event: E) -> Result<Self, HandlerError>;
}

/// The id of a copy, as its arrival is announced.
type IdOf<C> = fn(&C) -> &str;

/// The listener that keeps copy `C` from event `E`: a batch of events is one statement
/// on PostgreSQL ([`apply_all`]).
pub struct CopyListener<E, C> {
    /// Requests waiting for copies to arrive, and the id of a copy.
    announce: Option<(Arrivals, IdOf<C>)>,
    _event: PhantomData<fn(E) -> C>,
}

impl<E, C> Default for CopyListener<E, C> {
    fn default() -> Self {
        CopyListener {
            announce: None,
            _event: PhantomData,
        }
    }
}

impl<E, C> CopyListener<E, C> {
    /// A listener that tells `arrivals` of each copy it commits (`id`: the copy's id),
    /// waking the requests that wait for it (docs/decisions/0029).
    pub fn announcing(arrivals: Arrivals, id: IdOf<C>) -> Self {
        CopyListener {
            announce: Some((arrivals, id)),
            _event: PhantomData,
        }
    }

    fn written(&self, copies: &[C]) {
        if let Some((arrivals, id)) = &self.announce {
            for copy in copies {
                arrivals.written(id(copy));
            }
        }
    }
}

#[async_trait]
impl<E, C> Listener for CopyListener<E, C>
where
    E: Event + Send + 'static,
    C: CopyOf<E>,
{
    type Event = E;

    async fn handle(&self, tx: &mut Tx, event: E) -> Result<(), HandlerError> {
        let copies = [C::copy_of(event)?];
        apply_all(tx, &copies).await?;
        self.written(&copies);
        Ok(())
    }

    fn batches(&self) -> bool {
        true
    }

    async fn handle_all(&self, tx: &mut Tx, events: Vec<Traced<E>>) -> Result<(), HandlerError> {
        let copies = events
            .into_iter()
            .map(|t| C::copy_of(t.event))
            .collect::<Result<Vec<C>, _>>()?;
        apply_all(tx, &copies).await?;
        self.written(&copies);
        Ok(())
    }

    fn committed(&self) {
        if let Some((arrivals, _)) = &self.announce {
            arrivals.committed();
        }
    }
}
