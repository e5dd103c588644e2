//! `order:cancelled`, `payment:created` → the order is finished: drop its pending job,
//! and remember it so that its expiry never fires.

use std::marker::PhantomData;

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::{Event, OrderCancelled, PaymentCreated};
use ticketing_contracts::OrderId;
use ticketing_store::Tx;

use super::{cancel, mark_finished, State};

/// An event after which an order can no longer expire.
pub trait Finishes: Event {
    fn finished_order(&self) -> &OrderId;
}

impl Finishes for OrderCancelled {
    fn finished_order(&self) -> &OrderId {
        &self.id
    }
}

impl Finishes for PaymentCreated {
    fn finished_order(&self) -> &OrderId {
        &self.order_id
    }
}

/// The listener of `E` (`OrderCancelled` or `PaymentCreated`).
pub struct FinishedListener<E>(State, PhantomData<fn(E)>);

impl<E> FinishedListener<E> {
    pub fn new(state: State) -> Self {
        FinishedListener(state, PhantomData)
    }
}

#[async_trait]
impl<E: Finishes> Listener for FinishedListener<E> {
    type Event = E;

    fn outside_effects(&self) -> bool {
        self.0.queue_outside()
    }

    async fn prepare(&self, event: &E) -> Result<(), HandlerError> {
        cancel(&self.0, None, event.finished_order()).await
    }

    async fn handle(&self, tx: &mut Tx, event: E) -> Result<(), HandlerError> {
        cancel(&self.0, Some(&mut *tx), event.finished_order()).await?;
        mark_finished(tx, event.finished_order()).await
    }
}
