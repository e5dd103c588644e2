//! The replica of listings' owners (who may register devices for them) and event times
//! (when their gate records may go), newest wins.

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::{TicketCreated, TicketUpdated};
use ticketing_contracts::terms::RefundTerms;
use ticketing_contracts::time::parse_millis;
use ticketing_contracts::{TicketId, UserId};
use ticketing_kit::arrival::Arrivals;
use ticketing_store::{query, On, Tx};

async fn upsert(
    tx: &mut Tx,
    id: &TicketId,
    owner: &UserId,
    version: i64,
    refund: &RefundTerms,
) -> Result<(), ticketing_store::Error> {
    let event_at = refund.event_at.as_deref().and_then(parse_millis);
    query(
        "INSERT INTO listings (id, user_id, version, event_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, version = excluded.version, \
         event_at = excluded.event_at \
         WHERE listings.version < excluded.version",
    )
    .bind(id)
    .bind(owner)
    .bind(version)
    .bind(event_at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The owner of each of `ids` the replica knows.
pub async fn owners(
    on: On<'_>,
    ids: &[TicketId],
) -> Result<Vec<(TicketId, UserId)>, ticketing_store::Error> {
    let mut on = on;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let row = query("SELECT user_id FROM listings WHERE id = $1")
            .bind(id)
            .fetch_optional(on.reborrow())
            .await?;
        if let Some(row) = row {
            out.push((id.clone(), row.get("user_id")?));
        }
    }
    Ok(out)
}

pub async fn exists(on: On<'_>, id: &TicketId) -> Result<bool, ticketing_store::Error> {
    Ok(query("SELECT 1 AS one FROM listings WHERE id = $1")
        .bind(id)
        .fetch_optional(on)
        .await?
        .is_some())
}

/// `ticket:created` → the listing's owner, announced to requests waiting for it.
pub struct CreatedListener(pub Arrivals);

#[async_trait]
impl Listener for CreatedListener {
    type Event = TicketCreated;

    async fn handle(&self, tx: &mut Tx, t: TicketCreated) -> Result<(), HandlerError> {
        upsert(tx, &t.id, &t.user_id, t.version, &t.refund).await?;
        self.0.written(t.id.as_str());
        Ok(())
    }

    fn committed(&self) {
        self.0.committed();
    }
}

/// `ticket:updated` → the same, at its version.
pub struct UpdatedListener(pub Arrivals);

#[async_trait]
impl Listener for UpdatedListener {
    type Event = TicketUpdated;

    async fn handle(&self, tx: &mut Tx, t: TicketUpdated) -> Result<(), HandlerError> {
        upsert(tx, &t.id, &t.user_id, t.version, &t.refund).await?;
        self.0.written(t.id.as_str());
        Ok(())
    }

    fn committed(&self) {
        self.0.committed();
    }
}
