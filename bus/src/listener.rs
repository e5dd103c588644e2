//! The one shape of a service's listeners: a typed event and a transaction in, a result
//! out. Decoding, deduplication (the inbox mark) and the commit are done here once, for
//! every listener of every service (a commit that enqueued events wakes the outbox relay
//! by itself).
//!
//! ```text
//! Consumers::new(groups::ORDERS, &store)
//!     .listen(TicketCreatedListener(state.clone()))
//!     .start(&bus, shutdown)
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use ticketing_contracts::events::{Event, Subject};
use ticketing_store::{Store, Tx};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bus::{Batch, Handler, HandlerError, SharedBus};
use crate::envelope::Envelope;
use crate::inbox;
use crate::trace::TraceContext;

/// A service's reaction to one kind of event.
#[async_trait]
pub trait Listener: Send + Sync + 'static {
    type Event: Event;

    /// Does this listener have effects outside the service's database (a Redis queue, a
    /// payment provider)? They run in [`prepare`](Listener::prepare), before the
    /// transaction, only while the event is not yet marked handled, and must be
    /// idempotent (a crash before the commit runs them again). For a backlog, they run
    /// for each of its events before the events share one transaction. Most listeners
    /// have none; a listener whose effects live in the database in one mode and
    /// outside it in another says so here, per instance.
    fn outside_effects(&self) -> bool {
        false
    }

    /// The effects outside the database; see [`Listener::outside_effects`].
    async fn prepare(&self, event: &Self::Event) -> Result<(), HandlerError> {
        let _ = event;
        Ok(())
    }

    /// Make the change in `tx`, where the event is already marked handled: it commits
    /// when this returns `Ok`, and rolls back (mark included) otherwise, so the bus
    /// redelivers the event.
    async fn handle(&self, tx: &mut Tx, event: Self::Event) -> Result<(), HandlerError>;

    /// Does [`handle_all`](Listener::handle_all) write a batch of events in fewer
    /// statements than one [`handle`](Listener::handle) each? Then the bus hands it a
    /// batch whole.
    fn batches(&self) -> bool {
        false
    }

    /// Make the changes of several events, in order, in `tx`, where they are all marked
    /// handled; as for [`handle`](Listener::handle), an error rolls back the lot, and
    /// the bus then handles the events one transaction each. Called only when
    /// [`batches`](Listener::batches) says so.
    ///
    /// Each event comes with the trace of the operation that published it: make what
    /// answers an event (the events a listener publishes) in its
    /// [`scope`](TraceContext::scope), as `handle` is run.
    async fn handle_all(
        &self,
        tx: &mut Tx,
        events: Vec<Traced<Self::Event>>,
    ) -> Result<(), HandlerError> {
        for Traced { event, trace } in events {
            trace.scope(self.handle(tx, event)).await?;
        }
        Ok(())
    }

    /// After the transaction that handled one or more events of this listener committed
    /// (wake what waits for the change).
    fn committed(&self) {}
}

/// An event of a batch and the context of the trace it continues (the operation that
/// published it is its parent).
pub struct Traced<E> {
    pub event: E,
    pub trace: TraceContext,
}

/// The listeners of one service, subscribed as its consumer group.
pub struct Consumers {
    group: &'static str,
    store: Store,
    handlers: Vec<(Subject, Arc<dyn Handler>)>,
}

impl Consumers {
    /// Listeners of consumer `group` whose inbox marks and changes go to `store`.
    pub fn new(group: &'static str, store: &Store) -> Consumers {
        Consumers {
            group,
            store: store.clone(),
            handlers: Vec::new(),
        }
    }

    pub fn listen<L: Listener>(mut self, listener: L) -> Consumers {
        let adapter = Adapter {
            listener,
            group: self.group,
            store: self.store.clone(),
        };
        self.handlers
            .push((L::Event::SUBJECT, Arc::new(adapter) as Arc<dyn Handler>));
        self
    }

    /// Subscribe every listener, and keep the inbox pruned; the tasks end at `shutdown`.
    pub async fn start(
        self,
        bus: &SharedBus,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let mut tasks = Vec::with_capacity(self.handlers.len() + 1);
        for (subject, handler) in self.handlers {
            crate::telemetry::register(self.group, subject);
            tasks.push(
                bus.subscribe(self.group, subject, handler, shutdown.clone())
                    .await?,
            );
        }
        tasks.push(inbox::spawn_pruner(self.store, shutdown.clone()));
        Ok(tasks)
    }
}

/// A [`Listener`] as the bus sees it.
struct Adapter<L> {
    listener: L,
    group: &'static str,
    store: Store,
}

#[async_trait]
impl<L: Listener> Handler for Adapter<L> {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let event: L::Event = envelope
            .decode()
            .map_err(|e| HandlerError::Poison(e.to_string()))?;
        if self.listener.outside_effects() {
            if inbox::handled(&self.store, self.group, envelope).await? {
                return Ok(());
            }
            self.listener.prepare(&event).await?;
        }
        let Some(mut tx) = inbox::begin(&self.store, self.group, envelope).await? else {
            return Ok(());
        };
        self.listener.handle(&mut tx, event).await?;
        tx.commit().await?;
        self.committed();
        Ok(())
    }

    fn batch(&self) -> Option<&dyn Batch> {
        Some(self)
    }
}

#[async_trait]
impl<L: Listener> Batch for Adapter<L> {
    async fn handled(&self, events: &[&Envelope]) -> Result<Vec<bool>, ticketing_store::Error> {
        if !self.listener.outside_effects() {
            return Ok(vec![false; events.len()]);
        }
        inbox::handled_all(&self.store, self.group, events).await
    }

    async fn prepare(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        if !self.listener.outside_effects() {
            return Ok(());
        }
        let event: L::Event = envelope
            .decode()
            .map_err(|e| HandlerError::Poison(e.to_string()))?;
        self.listener.prepare(&event).await
    }

    async fn begin(&self) -> Result<Tx, ticketing_store::Error> {
        self.store.begin().await
    }

    async fn mark(
        &self,
        tx: &mut Tx,
        events: &[&Envelope],
    ) -> Result<Vec<bool>, ticketing_store::Error> {
        inbox::mark_all(tx, self.group, events).await
    }

    async fn handle_in(&self, tx: &mut Tx, envelope: &Envelope) -> Result<(), HandlerError> {
        let event: L::Event = envelope
            .decode()
            .map_err(|e| HandlerError::Poison(e.to_string()))?;
        self.listener.handle(tx, event).await
    }

    fn handles_all(&self) -> bool {
        self.listener.batches()
    }

    async fn handle_all(
        &self,
        tx: &mut Tx,
        events: Vec<(&Envelope, TraceContext)>,
    ) -> Result<(), HandlerError> {
        let events = events
            .into_iter()
            .map(|(envelope, trace)| {
                Ok(Traced {
                    event: envelope.decode()?,
                    trace,
                })
            })
            .collect::<anyhow::Result<Vec<Traced<L::Event>>>>()
            .map_err(|e| HandlerError::Poison(e.to_string()))?;
        self.listener.handle_all(tx, events).await
    }

    fn committed(&self) {
        self.listener.committed();
    }
}
