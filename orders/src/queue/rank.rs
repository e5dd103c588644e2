//! Ranking a queue's joins and admitting its head: the pacer's step (issue 30).

use std::time::Duration;

use ticketing_contracts::api::queue::ADMISSION_SECONDS;
use ticketing_contracts::{TicketId, Timestamp};
use ticketing_store::{query, Store, Tx};

use super::Rate;

/// The queue's next rank, taken (the queue's row stays locked until the commit).
pub(super) async fn take_rank(
    tx: &mut Tx,
    ticket: &TicketId,
) -> Result<i64, ticketing_store::Error> {
    query(
        "UPDATE queues SET next_rank = next_rank + 1 WHERE ticket_id = $1 \
         RETURNING next_rank - 1 AS rank",
    )
    .bind(ticket)
    .fetch_one(tx)
    .await?
    .get("rank")
}

/// At the sale, once: rank the early joins by their draw, and start the late ones after
/// them. Whoever comes first does it (a join, the pacer); the conditional update makes
/// it once.
pub(super) async fn rank_early_joins(
    tx: &mut Tx,
    ticket: &TicketId,
) -> Result<(), ticketing_store::Error> {
    let first = query("UPDATE queues SET ranked = 1 WHERE ticket_id = $1 AND ranked = 0")
        .bind(ticket)
        .execute(&mut *tx)
        .await?;
    if first == 0 {
        return Ok(());
    }
    query(
        "UPDATE queue_entries SET rank = drawn.n \
         FROM (SELECT user_id, row_number() OVER (ORDER BY draw, user_id) AS n \
               FROM queue_entries WHERE ticket_id = $1 AND rank IS NULL) AS drawn \
         WHERE queue_entries.ticket_id = $1 AND queue_entries.user_id = drawn.user_id",
    )
    .bind(ticket)
    .execute(&mut *tx)
    .await?;
    query(
        "UPDATE queues SET next_rank = \
           (SELECT count(*) FROM queue_entries WHERE ticket_id = $1) + 1 \
         WHERE ticket_id = $1",
    )
    .bind(ticket)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Early joins drawn after the draws were ranked: a join that read the clock just before
/// the sale and wrote just after (nothing orders the two; locking the queue's row in
/// every early join would make 1,000 joins a second queue on it). They take the next
/// ranks, as late joins, in arrival order. An index probe when there are none.
async fn rank_stragglers(tx: &mut Tx, ticket: &TicketId) -> Result<(), ticketing_store::Error> {
    let stragglers: Vec<String> = query(
        "SELECT user_id FROM queue_entries WHERE ticket_id = $1 AND rank IS NULL \
         ORDER BY joined_at, user_id LIMIT 100",
    )
    .bind(ticket)
    .scalars(&mut *tx)
    .await?;
    for user in stragglers {
        let rank = take_rank(tx, ticket).await?;
        query(
            "UPDATE queue_entries SET rank = $3 \
             WHERE ticket_id = $1 AND user_id = $2 AND rank IS NULL",
        )
        .bind(ticket)
        .bind(&user)
        .bind(rank)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// One step of the pacer for every queue in force at `now`: admit the head, as many as
/// the rate allows since the last admission (at most a second's worth), never more
/// unused admissions than free units. Returns how many were admitted.
pub async fn pace(
    store: &Store,
    now: Timestamp,
    rate: Rate,
) -> Result<i64, ticketing_store::Error> {
    let due = query(
        "SELECT q.ticket_id FROM queues q JOIN tickets t ON t.id = q.ticket_id \
         WHERE t.on_sale_at <= $1 AND (q.ranked = 0 OR q.admitted_through < q.next_rank - 1 \
           OR EXISTS (SELECT 1 FROM queue_entries e WHERE e.ticket_id = q.ticket_id \
             AND e.rank IS NULL))",
    )
    .bind(now.as_millis())
    .fetch_all(store.reader())
    .await?;
    let mut admitted = 0;
    for row in due {
        let ticket: TicketId = row.get("ticket_id")?;
        admitted += admit(store, &ticket, now, rate).await?;
    }
    Ok(admitted)
}

async fn admit(
    store: &Store,
    ticket: &TicketId,
    now: Timestamp,
    rate: Rate,
) -> Result<i64, ticketing_store::Error> {
    let mut tx = store.begin().await?;
    rank_early_joins(&mut tx, ticket).await?;
    rank_stragglers(&mut tx, ticket).await?;
    let row = query(
        "SELECT q.admitted_through, q.next_rank, q.admitted_at, \
         COALESCE(t.quantity, 1) - t.held AS free, \
         (SELECT count(*) FROM queue_entries e WHERE e.ticket_id = q.ticket_id \
            AND e.admitted_until IS NOT NULL AND e.admitted_until > $2 \
            AND e.used_at IS NULL) AS unused \
         FROM queues q JOIN tickets t ON t.id = q.ticket_id WHERE q.ticket_id = $1",
    )
    .bind(ticket)
    .bind(now.as_millis())
    .fetch_one(&mut tx)
    .await?;
    let seen: i64 = row.get("admitted_through")?;
    let waiting = row.get::<i64>("next_rank")? - 1 - seen;
    let room = row.get::<i64>("free")? - row.get::<i64>("unused")?;
    let since = now.as_millis() - row.get::<i64>("admitted_at")?;
    let allowed = (rate.per_second() * since / 1000).min(rate.per_second());
    let n = waiting.min(room).min(allowed);
    if n <= 0 {
        tx.commit().await?;
        return Ok(0);
    }
    let moved = query(
        "UPDATE queues SET admitted_through = admitted_through + $3, admitted_at = $4 \
         WHERE ticket_id = $1 AND admitted_through = $2",
    )
    .bind(ticket)
    .bind(seen)
    .bind(n)
    .bind(now.as_millis())
    .execute(&mut tx)
    .await?;
    if moved == 0 {
        // Another process moved the cursor meanwhile: its admissions stand.
        return Ok(0);
    }
    let until = now + Duration::from_secs(ADMISSION_SECONDS as u64);
    query(
        "UPDATE queue_entries SET admitted_until = $4 \
         WHERE ticket_id = $1 AND rank > $2 AND rank <= $3 AND admitted_until IS NULL",
    )
    .bind(ticket)
    .bind(seen)
    .bind(seen + n)
    .bind(until.as_millis())
    .execute(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(n)
}
