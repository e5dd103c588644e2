//! The intake: every subject, consumed as the `webhooks-service` group. For each event it
//! keeps the replicas that route it (listing → owner, order → listing) and queues a
//! delivery for each of the owner's endpoints that takes the subject, in the transaction
//! that marks the event handled (the inbox): an event is queued once, or not at all.
//!
//! A handler of its own rather than a typed listener: a delivery carries the event's id
//! (the `webhook-id`), which only the envelope has.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use ticketing_bus::{inbox, Envelope, Handler, HandlerError, Together};
use ticketing_contracts::events::{
    groups, CheckinRecorded, ExpirationComplete, OrderCancelRequested, OrderCancelled,
    OrderCompleted, OrderCreated, PassIssued, PaymentCreated, PaymentRefundFailed, PaymentRefunded,
    Subject, TicketCreated, TicketUpdated, WaitlistOffered,
};
use ticketing_contracts::time::{format_millis, now_millis};
use ticketing_contracts::{OrderId, TicketId, UserId};
use ticketing_store::{query, Store, Tx};
use tokio::sync::Notify;

use crate::deliveries::{self, ToQueue};
use crate::endpoints;

/// An event whose listing or order this service has never heard of, older than this,
/// is not routed (it predates the service, or its predecessor was lost); younger, it
/// waits for the predecessor (which is on its way).
const WAIT_FOR_PREDECESSOR_MS: i64 = 10 * 60 * 1000;

pub struct Intake {
    store: Store,
    wake: Arc<Notify>,
}

impl Intake {
    pub fn new(store: Store, wake: Arc<Notify>) -> Intake {
        Intake { store, wake }
    }
}

#[async_trait]
impl Handler for Intake {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let Some(mut tx) = inbox::begin(&self.store, groups::WEBHOOKS, envelope).await? else {
            return Ok(());
        };
        let mut batch = Batch::default();
        batch.take(&mut tx, envelope).await?;
        let queued = batch.queue(&mut tx).await?;
        tx.commit().await?;
        if queued > 0 {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// A batch in one transaction; any failure (an event waiting for its predecessor)
    /// rolls it back and the bus takes the events one by one.
    async fn handle_together(&self, group: &str, events: &[&Envelope]) -> Together {
        let _ = group;
        let mut tx = match self.store.begin().await {
            Ok(tx) => tx,
            Err(err) => return Together::Broken(err.to_string()),
        };
        let fresh = match inbox::mark_all(&mut tx, groups::WEBHOOKS, events).await {
            Ok(fresh) => fresh,
            Err(err) => return Together::Broken(err.to_string()),
        };
        let mut batch = Batch::default();
        for (envelope, fresh) in events.iter().zip(fresh) {
            if !fresh {
                continue;
            }
            if batch.take(&mut tx, envelope).await.is_err() {
                let _ = tx.rollback().await;
                return Together::Failed;
            }
        }
        let queued = match batch.queue(&mut tx).await {
            Ok(queued) => queued,
            Err(err) => return Together::Broken(err.to_string()),
        };
        if let Err(err) = tx.commit().await {
            return Together::Broken(err.to_string());
        }
        if queued > 0 {
            self.wake.notify_one();
        }
        Together::Committed
    }
}

/// Who an event concerns: the seller, and the key its deliveries are ordered by.
struct Route {
    owner: UserId,
    key: String,
}

fn decode<E: ticketing_contracts::events::Event>(envelope: &Envelope) -> Result<E, HandlerError> {
    envelope
        .decode()
        .map_err(|e| HandlerError::Poison(e.to_string()))
}

/// The deliveries of the events one transaction takes, queued together at its end.
#[derive(Default)]
struct Batch {
    /// Each owner's enabled endpoints (id, subjects), read once per transaction.
    endpoints: HashMap<UserId, Vec<(String, Vec<Subject>)>>,
    /// The (endpoint, key) pairs with a row in `rows` already.
    keys: HashSet<(String, String)>,
    rows: Vec<ToQueue>,
}

impl Batch {
    /// Keep the replicas `envelope` changes, and add its deliveries.
    async fn take(&mut self, tx: &mut Tx, envelope: &Envelope) -> Result<(), HandlerError> {
        let Some(route) = route(tx, envelope).await? else {
            return Ok(());
        };
        let endpoints = match self.endpoints.entry(route.owner) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(unknown) => {
                let found = endpoints::enabled(tx, unknown.key()).await?;
                unknown.insert(found)
            }
        };
        let mut targets = endpoints
            .iter()
            .filter(|(_, subjects)| subjects.contains(&envelope.subject))
            .map(|(id, _)| id)
            .peekable();
        if targets.peek().is_none() {
            return Ok(());
        }
        let data: Value = serde_json::from_slice(&envelope.payload)
            .map_err(|e| HandlerError::Poison(e.to_string()))?;
        let body = serde_json::json!({
            "id": envelope.id,
            "type": envelope.subject.as_str(),
            "createdAt": format_millis(envelope.produced_at),
            "data": data,
        })
        .to_string();
        for endpoint in targets {
            let first = self.keys.insert((endpoint.clone(), route.key.clone()));
            self.rows.push(ToQueue {
                endpoint_id: endpoint.clone(),
                event_id: envelope.id.clone(),
                subject: envelope.subject.as_str(),
                order_key: route.key.clone(),
                body: body.clone(),
                created_at: envelope.produced_at,
                first,
            });
        }
        Ok(())
    }

    /// Queue what was taken: how many deliveries.
    async fn queue(self, tx: &mut Tx) -> Result<usize, ticketing_store::Error> {
        deliveries::queue(tx, &self.rows).await?;
        Ok(self.rows.len())
    }
}

async fn route(tx: &mut Tx, envelope: &Envelope) -> Result<Option<Route>, HandlerError> {
    let waited = |what: String| -> Result<Option<Route>, HandlerError> {
        if now_millis() - envelope.produced_at > WAIT_FOR_PREDECESSOR_MS {
            tracing::debug!(event = %envelope.id, "{what}: not routed");
            Ok(None)
        } else {
            Err(HandlerError::Retry(what))
        }
    };
    Ok(Some(match envelope.subject {
        Subject::TicketCreated => {
            let t: TicketCreated = decode(envelope)?;
            keep_listing(tx, &t.id, &t.user_id, t.version).await?;
            Route {
                owner: t.user_id,
                key: t.id.into_string(),
            }
        }
        Subject::TicketUpdated => {
            let t: TicketUpdated = decode(envelope)?;
            keep_listing(tx, &t.id, &t.user_id, t.version).await?;
            let key = match &t.order_id {
                // Reserved by an order: in line with that order's events, after its
                // order:created.
                Some(order) => {
                    if listing_of(tx, order).await?.is_none() {
                        return waited(format!("ticket:updated of {order} before its order"));
                    }
                    order.to_string()
                }
                None => t.id.to_string(),
            };
            Route {
                owner: t.user_id,
                key,
            }
        }
        Subject::OrderCreated => {
            let o: OrderCreated = decode(envelope)?;
            let Some(owner) = owner_of(tx, &o.ticket.id).await? else {
                return waited(format!("order:created of {} before its listing", o.id));
            };
            query("INSERT INTO orders (id, ticket_id) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
                .bind(&o.id)
                .bind(&o.ticket.id)
                .execute(&mut *tx)
                .await?;
            Route {
                owner,
                key: o.id.into_string(),
            }
        }
        Subject::OrderCancelled => {
            let o: OrderCancelled = decode(envelope)?;
            return by_order(tx, &o.id, "order:cancelled", waited).await;
        }
        Subject::ExpirationComplete => {
            let e: ExpirationComplete = decode(envelope)?;
            return by_order(tx, &e.order_id, "expiration:complete", waited).await;
        }
        Subject::PaymentCreated => {
            let p: PaymentCreated = decode(envelope)?;
            return by_order(tx, &p.order_id, "payment:created", waited).await;
        }
        Subject::PaymentRefunded => {
            let p: PaymentRefunded = decode(envelope)?;
            return by_order(tx, &p.order_id, "payment:refunded", waited).await;
        }
        Subject::OrderCancelRequested => {
            let c: OrderCancelRequested = decode(envelope)?;
            return by_order(tx, &c.order_id, "order:cancel-requested", waited).await;
        }
        Subject::PaymentRefundFailed => {
            let f: PaymentRefundFailed = decode(envelope)?;
            return by_order(tx, &f.order_id, "payment:refund-failed", waited).await;
        }
        Subject::OrderCompleted => {
            let o: OrderCompleted = decode(envelope)?;
            return by_order(tx, &o.id, "order:completed", waited).await;
        }
        Subject::PassIssued => {
            let p: PassIssued = decode(envelope)?;
            return by_order(tx, &p.order_id, "pass:issued", waited).await;
        }
        Subject::CheckinRecorded => {
            let c: CheckinRecorded = decode(envelope)?;
            let Some(owner) = owner_of(tx, &c.ticket_id).await? else {
                return waited(format!(
                    "checkin:recorded on {} before its listing",
                    c.ticket_id
                ));
            };
            Route {
                owner,
                key: c.ticket_id.into_string(),
            }
        }
        // An account's own affair, never a seller's: not delivered (not subscribed). A
        // pass's revocation names no order or listing to route it by.
        Subject::SessionRevoked | Subject::PassRevoked => return Ok(None),
        Subject::WaitlistOffered => {
            let w: WaitlistOffered = decode(envelope)?;
            let Some(owner) = owner_of(tx, &w.ticket_id).await? else {
                return waited(format!(
                    "waitlist:offered on {} before its listing",
                    w.ticket_id
                ));
            };
            Route {
                owner,
                key: w.order_id.into_string(),
            }
        }
    }))
}

/// An event of an order: to its listing's seller, after the order's order:created.
async fn by_order(
    tx: &mut Tx,
    order: &OrderId,
    what: &str,
    waited: impl Fn(String) -> Result<Option<Route>, HandlerError>,
) -> Result<Option<Route>, HandlerError> {
    let Some(ticket) = listing_of(tx, order).await? else {
        return waited(format!("{what} of {order} before its order:created"));
    };
    let Some(owner) = owner_of(tx, &ticket).await? else {
        return waited(format!("{what} of {order}: listing {ticket} unknown"));
    };
    Ok(Some(Route {
        owner,
        key: order.to_string(),
    }))
}

/// The listing replica, newest version wins (a listing never changes owner, but an
/// update may arrive before its creation).
async fn keep_listing(
    tx: &mut Tx,
    id: &TicketId,
    owner: &UserId,
    version: i64,
) -> Result<(), ticketing_store::Error> {
    query(
        "INSERT INTO listings (id, user_id, version) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, version = excluded.version \
         WHERE listings.version < excluded.version",
    )
    .bind(id)
    .bind(owner)
    .bind(version)
    .execute(tx)
    .await?;
    Ok(())
}

async fn owner_of(
    tx: &mut Tx,
    ticket: &TicketId,
) -> Result<Option<UserId>, ticketing_store::Error> {
    let row = query("SELECT user_id FROM listings WHERE id = $1")
        .bind(ticket)
        .fetch_optional(tx)
        .await?;
    row.map(|r| r.get("user_id")).transpose()
}

async fn listing_of(
    tx: &mut Tx,
    order: &OrderId,
) -> Result<Option<TicketId>, ticketing_store::Error> {
    let row = query("SELECT ticket_id FROM orders WHERE id = $1")
        .bind(order)
        .fetch_optional(tx)
        .await?;
    row.map(|r| r.get("ticket_id")).transpose()
}
