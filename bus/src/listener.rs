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

use std::panic::AssertUnwindSafe;

use futures::FutureExt;

use crate::bus::{Handler, HandlerError, SharedBus, Together};
use crate::envelope::Envelope;
use crate::inbox;
use crate::telemetry;
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

    /// Every event in one transaction, optimistically: no savepoint per event (each
    /// costs two statements and a copy of every page the event touches), so the first
    /// failure rolls the whole batch back and the bus takes the events one by one.
    /// Failures are the exception (a database error, a bug), so the common case pays
    /// one transaction for the lot.
    async fn handle_together(&self, group: &str, events: &[&Envelope]) -> Together {
        match self.handle_in_one(group, events).await {
            Ok(true) => Together::Committed,
            Ok(false) => Together::Failed,
            Err(err) => Together::Broken(err.to_string()),
        }
    }
}

impl<L: Listener> Adapter<L> {
    /// See [`Handler::handle_together`]: whether the batch committed; an error when
    /// the transaction itself failed.
    async fn handle_in_one(
        &self,
        group: &str,
        events: &[&Envelope],
    ) -> Result<bool, ticketing_store::Error> {
        let decoded: Result<Vec<L::Event>, _> = events.iter().map(|e| e.decode()).collect();
        let Ok(decoded) = decoded else {
            return Ok(false);
        };
        // Effects outside the database first, for every event, before the transaction
        // holds anything (they are idempotent: a fallback or a redelivery runs them
        // again).
        let outside = self.listener.outside_effects();
        let handled = if outside {
            inbox::handled_all(&self.store, self.group, events).await?
        } else {
            vec![false; events.len()]
        };
        let mut traced = Vec::with_capacity(events.len());
        for ((envelope, event), handled) in events.iter().zip(&decoded).zip(handled) {
            let received_at = ticketing_contracts::time::now_millis();
            let span = telemetry::process_span(group, envelope);
            let trace = TraceContext::start(&span, telemetry::parent_of(envelope));
            if outside && !handled {
                let prepared = AssertUnwindSafe(self.listener.prepare(event)).catch_unwind();
                let scoped = trace.clone().scope_in(span.clone(), prepared).await;
                if !matches!(scoped, Ok(Ok(()))) {
                    return Ok(false);
                }
            }
            traced.push((received_at, span, trace));
        }
        let mut tx = self.store.begin().await?;
        let fresh = inbox::mark_all(&mut tx, self.group, events).await?;
        let batch: Vec<(L::Event, (tracing::Span, TraceContext))> = decoded
            .into_iter()
            .zip(&traced)
            .zip(fresh)
            .filter(|(_, fresh)| *fresh)
            .map(|((event, (_, span, trace)), _)| (event, (span.clone(), trace.clone())))
            .collect();
        let ok = if self.listener.batches() {
            let batch = batch
                .into_iter()
                .map(|(event, (_, trace))| Traced { event, trace })
                .collect();
            let handled = AssertUnwindSafe(self.listener.handle_all(&mut tx, batch))
                .catch_unwind()
                .await;
            matches!(handled, Ok(Ok(())))
        } else {
            let mut ok = true;
            for (event, (span, trace)) in batch {
                let handled = AssertUnwindSafe(self.listener.handle(&mut tx, event)).catch_unwind();
                if !matches!(trace.scope_in(span, handled).await, Ok(Ok(()))) {
                    ok = false;
                    break;
                }
            }
            ok
        };
        if !ok {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        self.committed();
        for (envelope, (received_at, span, _)) in events.iter().zip(&traced) {
            telemetry::handled(group, envelope, *received_at, span, &Ok(()));
        }
        Ok(true)
    }

    fn committed(&self) {
        self.listener.committed();
    }
}
