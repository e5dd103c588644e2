//! The `passes` table: issued from `order:completed`, revoked by `order:cancelled`,
//! reissued by their holder. Each change publishes its event through the outbox and,
//! for what gates must know (revocations), writes the changes feed, in one transaction.

use ticketing_bus::{outbox, Envelope};
use ticketing_contracts::api::checkin::{ChangeKind, PassBody, PassStatus};
use ticketing_contracts::events::{PassIssued, PassRevoked};
use ticketing_contracts::time::{format_millis, now_millis};
use ticketing_contracts::{OrderId, PassId, TicketId, UserId};
use ticketing_store::{query, Row, Store, Tx};

use crate::changes;
use crate::code::{Payload, Signer};

/// A pass as the gate checks it.
#[derive(Debug, Clone)]
pub struct Pass {
    pub id: PassId,
    pub order_id: OrderId,
    pub ticket_id: TicketId,
    pub user_id: UserId,
    pub unit: i64,
    pub epoch: i64,
    pub revoked: bool,
}

const SELECT: &str = "SELECT p.id, p.order_id, p.ticket_id, p.user_id, p.unit, p.epoch, \
    p.revoked_at, c.scanned_at AS checked_in_at \
    FROM passes p LEFT JOIN checkins c ON c.pass_id = p.id";

fn pass_of(row: &Row) -> Result<Pass, ticketing_store::Error> {
    Ok(Pass {
        id: row.get("id")?,
        order_id: row.get("order_id")?,
        ticket_id: row.get("ticket_id")?,
        user_id: row.get("user_id")?,
        unit: row.get("unit")?,
        epoch: row.get("epoch")?,
        revoked: row.get::<Option<i64>>("revoked_at")?.is_some(),
    })
}

/// A pass as its holder sees it, with its current code.
fn body_of(row: &Row, signer: &Signer) -> Result<PassBody, ticketing_store::Error> {
    let pass = pass_of(row)?;
    let checked_in_at: Option<i64> = row.get("checked_in_at")?;
    let status = match (pass.revoked, checked_in_at) {
        (true, _) => PassStatus::Revoked,
        (false, Some(_)) => PassStatus::CheckedIn,
        (false, None) => PassStatus::Valid,
    };
    Ok(PassBody {
        code: signer.sign(&Payload {
            p: pass.id.to_string(),
            t: pass.ticket_id.to_string(),
            e: pass.epoch,
        }),
        id: pass.id.into_string(),
        order_id: pass.order_id.into_string(),
        ticket_id: pass.ticket_id.into_string(),
        unit: pass.unit,
        status,
        checked_in_at: checked_in_at.map(format_millis),
    })
}

/// Order `order` is complete: a pass per unit, unless the order is known cancelled at a
/// newer version (its cancellation came first). Repeats issue nothing more.
pub async fn issue(
    tx: &mut Tx,
    order: &OrderId,
    version: i64,
    buyer: &UserId,
    ticket: &TicketId,
    quantity: i64,
) -> Result<usize, ticketing_store::Error> {
    let fresh = query(
        "INSERT INTO orders (id, ticket_id, status, version) VALUES ($1, $2, 'complete', $3) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(order)
    .bind(ticket)
    .bind(version)
    .execute(&mut *tx)
    .await?;
    if fresh == 0 {
        // Cancelled first (or completed already): nothing to issue.
        return Ok(0);
    }
    let now = now_millis();
    let mut issued = 0;
    for unit in 1..=quantity.max(1) {
        let id = PassId::generate();
        let inserted = query(
            "INSERT INTO passes (id, order_id, ticket_id, user_id, unit, epoch, issued_at) \
             VALUES ($1, $2, $3, $4, $5, 1, $6) ON CONFLICT (order_id, unit) DO NOTHING",
        )
        .bind(&id)
        .bind(order)
        .bind(ticket)
        .bind(buyer)
        .bind(unit)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if inserted == 0 {
            continue;
        }
        issued += 1;
        outbox::enqueue(
            tx,
            &Envelope::new(&PassIssued {
                id,
                order_id: order.clone(),
                ticket_id: ticket.clone(),
                user_id: buyer.clone(),
                unit,
                epoch: 1,
            }),
        )
        .await?;
    }
    Ok(issued)
}

/// Order `order` was cancelled (`reason`: its `cancelReason`, e.g. `refunded`): every
/// pass of it is revoked. Returns how many were.
pub async fn revoke_order(
    tx: &mut Tx,
    order: &OrderId,
    version: i64,
    ticket: &TicketId,
    reason: &str,
) -> Result<usize, ticketing_store::Error> {
    query(
        "INSERT INTO orders (id, ticket_id, status, version) VALUES ($1, $2, 'cancelled', $3) \
         ON CONFLICT (id) DO UPDATE SET status = 'cancelled', version = excluded.version \
         WHERE orders.version < excluded.version",
    )
    .bind(order)
    .bind(ticket)
    .bind(version)
    .execute(&mut *tx)
    .await?;
    let revoked = query(
        "UPDATE passes SET revoked_at = $2, revoke_reason = $3 \
         WHERE order_id = $1 AND revoked_at IS NULL RETURNING id, ticket_id, epoch",
    )
    .bind(order)
    .bind(now_millis())
    .bind(reason)
    .fetch_all(&mut *tx)
    .await?;
    for row in &revoked {
        let (id, ticket, epoch): (PassId, TicketId, i64) =
            (row.get("id")?, row.get("ticket_id")?, row.get("epoch")?);
        outbox::enqueue(
            tx,
            &Envelope::new(&PassRevoked {
                id: id.clone(),
                epoch,
                reason: reason.to_owned(),
            }),
        )
        .await?;
        changes::record(tx, &ticket, ChangeKind::Revoked, &id, epoch).await?;
    }
    Ok(revoked.len())
}

/// Why a pass was not reissued.
#[derive(Debug)]
pub enum ReissueError {
    /// Unknown, or not the caller's.
    NotFound,
    Revoked,
    CheckedIn,
    Db(ticketing_store::Error),
}

impl From<ticketing_store::Error> for ReissueError {
    fn from(err: ticketing_store::Error) -> Self {
        ReissueError::Db(err)
    }
}

/// A new code for `holder`'s pass `id`: its epoch raised, every older code revoked.
pub async fn reissue(
    store: &Store,
    signer: &Signer,
    id: &PassId,
    holder: &UserId,
) -> Result<PassBody, ReissueError> {
    let mut tx = store.begin().await?;
    let row = query(
        "UPDATE passes SET epoch = epoch + 1 \
         WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL \
         AND NOT EXISTS (SELECT 1 FROM checkins c WHERE c.pass_id = passes.id) \
         RETURNING ticket_id, order_id, unit, epoch",
    )
    .bind(id)
    .bind(holder)
    .fetch_optional(&mut tx)
    .await?;
    let Some(row) = row else {
        tx.rollback().await?;
        return Err(match find(store, id).await? {
            Some((pass, _)) if &pass.user_id == holder && pass.revoked => ReissueError::Revoked,
            Some((pass, Some(_))) if &pass.user_id == holder => ReissueError::CheckedIn,
            _ => ReissueError::NotFound,
        });
    };
    let (ticket, order, unit, epoch): (TicketId, OrderId, i64, i64) = (
        row.get("ticket_id")?,
        row.get("order_id")?,
        row.get("unit")?,
        row.get("epoch")?,
    );
    outbox::enqueue(
        &mut tx,
        &Envelope::new(&PassRevoked {
            id: id.clone(),
            epoch: epoch - 1,
            reason: "reissued".to_owned(),
        }),
    )
    .await?;
    outbox::enqueue(
        &mut tx,
        &Envelope::new(&PassIssued {
            id: id.clone(),
            order_id: order.clone(),
            ticket_id: ticket.clone(),
            user_id: holder.clone(),
            unit,
            epoch,
        }),
    )
    .await?;
    changes::record(&mut tx, &ticket, ChangeKind::Revoked, id, epoch - 1).await?;
    tx.commit().await?;
    Ok(PassBody {
        code: signer.sign(&Payload {
            p: id.to_string(),
            t: ticket.to_string(),
            e: epoch,
        }),
        id: id.to_string(),
        order_id: order.into_string(),
        ticket_id: ticket.into_string(),
        unit,
        status: PassStatus::Valid,
        checked_in_at: None,
    })
}

/// Pass `id` and when it was checked in.
pub async fn find(
    store: &Store,
    id: &PassId,
) -> Result<Option<(Pass, Option<i64>)>, ticketing_store::Error> {
    let row = query(&format!("{SELECT} WHERE p.id = $1"))
        .bind(id)
        .fetch_optional(store.reader())
        .await?;
    row.map(|row| Ok((pass_of(&row)?, row.get("checked_in_at")?)))
        .transpose()
}

/// Pass `id` in `tx` (a gate's transaction).
pub async fn find_in(tx: &mut Tx, id: &PassId) -> Result<Option<Pass>, ticketing_store::Error> {
    let row = query(
        "SELECT id, order_id, ticket_id, user_id, unit, epoch, revoked_at FROM passes WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    row.as_ref().map(pass_of).transpose()
}

/// `buyer`'s passes of order `order`, by unit.
pub async fn of_order(
    store: &Store,
    signer: &Signer,
    order: &OrderId,
    buyer: &UserId,
) -> Result<Vec<PassBody>, ticketing_store::Error> {
    let rows = query(&format!(
        "{SELECT} WHERE p.order_id = $1 AND p.user_id = $2 ORDER BY p.unit"
    ))
    .bind(order)
    .bind(buyer)
    .fetch_all(store.reader())
    .await?;
    rows.iter().map(|row| body_of(row, signer)).collect()
}
