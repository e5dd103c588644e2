//! The deliveries: one row per (endpoint, event), from queueing to delivered or dead,
//! and while pending one in the queue (`delivery_queue`), where workers claim, promote
//! and release them (`tables`).
//!
//! A key's deliveries (an order's events, else a listing's) go out strictly in `seq`
//! order: only a key's head — its oldest pending delivery — is ever claimed. Claims are
//! leases: a worker that dies lets them lapse and another takes the head over. On
//! PostgreSQL the candidates are locked `FOR UPDATE SKIP LOCKED`, so concurrent workers
//! never claim the same head and never wait for each other.
//!
//! A queue row's `next_at` says when its delivery is due, so that a claim reads only what it
//! takes, whatever the backlog: a delivery queued behind its key's head waits at
//! [`WAITING`] until the head ends and promotes it; a claimed one is due again when its
//! lease lapses. (A claim that looked for heads among all pending deliveries read the
//! whole backlog each time: past a few thousand, claims slowed faster than deliveries
//! came in, and throughput collapsed.) Strict order never rests on the promotion: a
//! claim still takes only rows with no earlier pending delivery of their key.
//!
//! On PostgreSQL the outcomes' statement is planned at each execution
//! (`persistent(false)`). Its cached generic plan, made while the table held a few rows
//! (a sequential scan, a hash join), stayed in use as the table grew to thousands within
//! seconds: each batch of outcomes scanned the whole table, the marker fell behind, and
//! deliveries collapsed to a few hundred a second. (Planning the queueing and claiming
//! statements too cost more CPU than it saved in the benchmark; once the tables are
//! analyzed, every cached plan is made again from their statistics: the store's upkeep
//! analyzes them as they grow, and vacuums the queue every thousand dead rows or so.)

use std::collections::HashMap;
use std::time::Duration;

use ticketing_contracts::api::webhooks::{DeliveryStatus, DELIVERIES_PAGE};
use ticketing_contracts::time::now_millis;
use ticketing_store::{query, retention, Backend, Store, Tx};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// `next_at` of a delivery waiting behind its key's head: never due until promoted.
pub const WAITING: i64 = i64::MAX;

/// Is there an earlier pending delivery of the queue row's key (then it is not the head)?
/// The row is `h`.
const BEHIND: &str = "EXISTS (SELECT 1 FROM delivery_queue e WHERE e.endpoint_id = h.endpoint_id \
    AND e.order_key = h.order_key AND e.seq < h.seq)";

/// A delivery to queue: an event for one endpoint.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ToQueue {
    pub endpoint_id: String,
    pub event_id: String,
    pub subject: &'static str,
    pub order_key: String,
    pub body: String,
    pub created_at: i64,
    /// Whether it is the first of its endpoint's key among those queued together: the
    /// ones after it wait behind it whatever the table holds.
    pub first: bool,
}

const INSERT_SQLITE: &str = "INSERT INTO deliveries (endpoint_id, event_id, subject, order_key, \
    body, created_at, queued_at, status, attempts) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0) \
    ON CONFLICT (endpoint_id, event_id) DO NOTHING RETURNING seq";

/// Queue `rows` in their order (a row already queued is left as it is): each due now when
/// its key has nothing pending, else waiting for its turn. On PostgreSQL one statement
/// for them all (an intake batch's round trips were most of its cost).
pub async fn queue(tx: &mut Tx, rows: &[ToQueue]) -> Result<(), ticketing_store::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let now = now_millis();
    match tx.backend() {
        Backend::Sqlite => {
            let enqueue = format!(
                "INSERT INTO delivery_queue (seq, endpoint_id, order_key, queued_at, next_at, \
                    lease_until) \
                 VALUES ($1, $2, $3, $4, CASE WHEN {KEY_PENDING} THEN $5 ELSE $4 END, 0)",
                KEY_PENDING = key_pending("$2", "$3", "")
            );
            for row in rows {
                let inserted = query(INSERT_SQLITE)
                    .bind(&row.endpoint_id)
                    .bind(&row.event_id)
                    .bind(row.subject)
                    .bind(&row.order_key)
                    .bind(&row.body)
                    .bind(row.created_at)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(inserted) = inserted else { continue };
                query(&enqueue)
                    .bind(inserted.get::<i64>("seq")?)
                    .bind(&row.endpoint_id)
                    .bind(&row.order_key)
                    .bind(now)
                    .bind(WAITING)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        Backend::Postgres => {
            // The queue row found is locked (shared) until the commit. Without it, a head
            // ending at this very moment is seen still pending here, while its outcome's
            // promotion does not see this uncommitted row: the row would wait for the
            // sweep, a second or two. Locked, one waits for the other: either this
            // statement sees the head gone, or the promotion runs after this commit and
            // sees the row. The rows of one statement do not see each other: a key's
            // later rows in it wait (`first`), as they would have one statement each.
            let rows = serde_json::to_string(rows).map_err(ticketing_store::Error::other)?;
            query(&format!(
                "WITH r AS ( \
                    SELECT * FROM ROWS FROM (json_to_recordset($1::json) AS (endpoint_id text, \
                        event_id text, subject text, order_key text, body text, \
                        created_at bigint, first boolean)) WITH ORDINALITY \
                    AS r(endpoint_id, event_id, subject, order_key, body, created_at, first, n)), \
                 inserted AS ( \
                    INSERT INTO deliveries (endpoint_id, event_id, subject, order_key, body, \
                        created_at, queued_at, status, attempts) \
                    SELECT endpoint_id, event_id, subject, order_key, body, created_at, $2, \
                        'pending', 0 \
                    FROM r ORDER BY n \
                    ON CONFLICT (endpoint_id, event_id) DO NOTHING \
                    RETURNING seq, endpoint_id, event_id, order_key) \
                 INSERT INTO delivery_queue (seq, endpoint_id, order_key, queued_at, next_at, \
                    lease_until) \
                 SELECT i.seq, i.endpoint_id, i.order_key, $2, \
                    CASE WHEN NOT r.first OR {KEY_PENDING} THEN $3 ELSE $2 END, 0 \
                 FROM inserted i JOIN r ON r.endpoint_id = i.endpoint_id \
                    AND r.event_id = i.event_id",
                KEY_PENDING = key_pending("i.endpoint_id", "i.order_key", "FOR SHARE")
            ))
            .bind(rows)
            .bind(now)
            .bind(WAITING)
            .execute(tx)
            .await?;
        }
    }
    Ok(())
}

/// Has the endpoint's key a pending delivery?
fn key_pending(endpoint: &str, key: &str, lock: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM delivery_queue e WHERE e.endpoint_id = {endpoint} \
         AND e.order_key = {key} {lock})"
    )
}

/// A delivery claimed by a worker, with where it goes.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub seq: i64,
    pub endpoint_id: String,
    pub order_key: String,
    pub event_id: String,
    pub body: String,
    pub attempts: i64,
    /// When the event was produced (the lag is measured from it).
    pub created_at: i64,
    pub queued_at: i64,
    pub url: String,
    pub secret: String,
    /// The claim's token: its outcome is written only while the claim is still its.
    pub claim: String,
}

/// SQLite's candidates of a claim: the due deliveries, longest due first, of endpoints
/// with room (`$3`, a JSON array of those without), read in the due-time index's order up
/// to a window (`$2` rows), then only heads of enabled endpoints. One process, one
/// worker: rows of full endpoints are skipped in memory.
fn heads_sqlite() -> String {
    format!(
        "SELECT h.seq, h.endpoint_id FROM ( \
            SELECT seq, endpoint_id, order_key, next_at FROM delivery_queue \
            WHERE next_at <= $1 AND endpoint_id NOT IN (SELECT value FROM json_each($3)) \
            ORDER BY next_at, seq LIMIT $2) h \
         WHERE NOT {BEHIND} \
         AND EXISTS (SELECT 1 FROM endpoints p WHERE p.id = h.endpoint_id AND p.disabled_at IS NULL) \
         ORDER BY h.next_at, h.seq"
    )
}

/// The claimed rows (`taken`: their `seq` and `queued_at`) with what a worker sends.
const CLAIMED: &str = "SELECT d.seq, d.endpoint_id, d.order_key, d.event_id, d.body, d.attempts, \
    d.created_at, t.queued_at, p.url, p.secret \
    FROM taken t JOIN deliveries d ON d.seq = t.seq JOIN endpoints p ON p.id = d.endpoint_id";

/// PostgreSQL's claim, one statement (no round trips between reading and taking): each
/// enabled endpoint's live leases, its first due rows up to its room, locked `FOR UPDATE
/// SKIP LOCKED` (concurrent workers never take the same row), only heads, the `$3`
/// longest due of them all taken for a lease until `$4` under claim `$5`, returned with
/// their endpoint's URL and secret.
///
/// Each endpoint reads its own due rows. (Read in one due-time order, a claim walked past
/// every due row of the full endpoints to find another's: when a few busy endpoints had
/// a backlog of thousands, each claim took tens to hundreds of milliseconds and
/// deliveries fell to a few hundred a second.) An endpoint with nothing due costs one
/// probe of an empty range. Two workers claiming at once may each see room an endpoint
/// has once: its cap can be passed by one claim's worth, briefly.
fn claim_pg() -> String {
    format!(
        "WITH busy AS ( \
            SELECT endpoint_id, count(*) AS n FROM delivery_queue WHERE lease_until > $1 \
            GROUP BY endpoint_id), \
         due AS ( \
            SELECT h.seq, h.next_at FROM endpoints p \
            LEFT JOIN busy b ON b.endpoint_id = p.id \
            CROSS JOIN LATERAL ( \
                SELECT seq, endpoint_id, order_key, next_at FROM delivery_queue \
                WHERE endpoint_id = p.id AND next_at <= $1 \
                ORDER BY next_at, seq LIMIT greatest($2 - coalesce(b.n, 0), 0) \
                FOR UPDATE SKIP LOCKED) h \
            WHERE p.disabled_at IS NULL AND NOT {BEHIND}), \
         chosen AS (SELECT seq FROM due ORDER BY next_at, seq LIMIT $3), \
         taken AS ( \
            UPDATE delivery_queue q SET lease_until = $4, next_at = $4, claim = $5 \
            WHERE q.seq IN (SELECT seq FROM chosen) RETURNING q.seq, q.queued_at) \
         {CLAIMED}"
    )
}

const IN_FLIGHT: &str = "SELECT endpoint_id, count(*) AS n FROM delivery_queue \
    WHERE lease_until > $1 GROUP BY endpoint_id";

// A claimed delivery is due again when its lease lapses (its worker died).
const TAKE_SQLITE: &str = "UPDATE delivery_queue SET lease_until = $1, next_at = $1, claim = $2 \
    WHERE seq IN (SELECT value FROM json_each($3))";

/// Claim up to `limit` due heads for `lease`, at most `per_endpoint` in flight per
/// endpoint (counting every worker's live leases).
pub async fn claim(
    store: &Store,
    limit: usize,
    per_endpoint: usize,
    lease: Duration,
) -> Result<Vec<Claimed>, ticketing_store::Error> {
    let now = now_millis();
    let token = uuid::Uuid::new_v4().to_string();
    let until = now + lease.as_millis() as i64;
    let rows = match store.backend() {
        Backend::Postgres => {
            query(&claim_pg())
                .bind(now)
                .bind(per_endpoint as i64)
                .bind(limit as i64)
                .bind(until)
                .bind(&token)
                .fetch_all(store.writer())
                .await?
        }
        Backend::Sqlite => claim_sqlite(store, now, limit, per_endpoint, until, &token).await?,
    };
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        claimed.push(Claimed {
            seq: row.get("seq")?,
            endpoint_id: row.get("endpoint_id")?,
            order_key: row.get("order_key")?,
            event_id: row.get("event_id")?,
            body: row.get("body")?,
            attempts: row.get("attempts")?,
            created_at: row.get("created_at")?,
            queued_at: row.get("queued_at")?,
            url: row.get("url")?,
            secret: row.get("secret")?,
            claim: token.clone(),
        });
    }
    claimed.sort_by_key(|c| c.seq);
    Ok(claimed)
}

/// SQLite's claim, in one transaction of its one writer: the live leases per endpoint,
/// the candidates ([`heads_sqlite`]), capped per endpoint here, then taken.
async fn claim_sqlite(
    store: &Store,
    now: i64,
    limit: usize,
    per_endpoint: usize,
    until: i64,
    token: &str,
) -> Result<Vec<ticketing_store::Row>, ticketing_store::Error> {
    let mut tx = store.begin().await?;
    let mut in_flight: HashMap<String, usize> = HashMap::new();
    for row in query(IN_FLIGHT).bind(now).fetch_all(&mut tx).await? {
        let n: i64 = row.get("n")?;
        in_flight.insert(row.get("endpoint_id")?, n as usize);
    }
    let full: Vec<&String> = in_flight
        .iter()
        .filter(|(_, n)| **n >= per_endpoint)
        .map(|(id, _)| id)
        .collect();
    let full = serde_json::to_string(&full).map_err(ticketing_store::Error::other)?;
    // A window a few endpoints' room wide: a claim reads about what it takes, and the
    // worker claims again while claims bring something.
    let window = (limit * 2).min(per_endpoint.max(1) * 16);
    let heads = query(&heads_sqlite())
        .bind(now)
        .bind(window as i64)
        .bind(full)
        .fetch_all(&mut tx)
        .await?;
    let mut chosen = Vec::new();
    for row in heads {
        if chosen.len() >= limit {
            break;
        }
        let endpoint: String = row.get("endpoint_id")?;
        let n = in_flight.entry(endpoint).or_default();
        if *n >= per_endpoint {
            continue;
        }
        *n += 1;
        chosen.push(row.get::<i64>("seq")?);
    }
    if chosen.is_empty() {
        tx.rollback().await?;
        return Ok(Vec::new());
    }
    let seqs = serde_json::to_string(&chosen).map_err(ticketing_store::Error::other)?;
    query(TAKE_SQLITE)
        .bind(until)
        .bind(token)
        .bind(&seqs)
        .execute(&mut tx)
        .await?;
    let rows = query(&format!(
        "WITH taken AS (SELECT seq, queued_at FROM delivery_queue \
            WHERE seq IN (SELECT value FROM json_each($1))) {CLAIMED}"
    ))
    .bind(seqs)
    .fetch_all(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(rows)
}

/// How an attempt ended, to be written.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seq: i64,
    pub claim: String,
    pub endpoint_id: String,
    pub order_key: String,
    pub status: DeliveryStatus,
    /// Pending: when to try again.
    pub next_at: i64,
    /// Delivered: when.
    pub delivered_at: Option<i64>,
    /// The endpoint answered 410 Gone: disable it.
    pub gone: bool,
}

/// The outcomes (`$1`, JSON) whose claim still holds: an ended delivery leaves the queue,
/// one to retry is due again at its `next_at`; both are counted an attempt.
const MARK_PG: &str = "WITH o AS ( \
        SELECT * FROM json_to_recordset($1::json) AS o(seq bigint, claim text, status text, \
            next_at bigint, delivered_at bigint, ended_at bigint)), \
    ended AS ( \
        DELETE FROM delivery_queue q USING o \
        WHERE q.seq = o.seq AND q.claim = o.claim AND o.status <> 'pending' RETURNING q.seq), \
    retried AS ( \
        UPDATE delivery_queue q SET next_at = o.next_at, lease_until = 0, claim = NULL FROM o \
        WHERE q.seq = o.seq AND q.claim = o.claim AND o.status = 'pending' RETURNING q.seq) \
    UPDATE deliveries d SET status = o.status, attempts = d.attempts + 1, \
        delivered_at = o.delivered_at, ended_at = o.ended_at \
    FROM o WHERE d.seq = o.seq \
    AND d.seq IN (SELECT seq FROM ended UNION ALL SELECT seq FROM retried)";

const END_SQLITE: &str = "DELETE FROM delivery_queue WHERE seq = $1 AND claim = $2";

const RETRY_SQLITE: &str = "UPDATE delivery_queue SET next_at = $1, lease_until = 0, claim = NULL \
    WHERE seq = $2 AND claim = $3";

const ATTEMPTED_SQLITE: &str = "UPDATE deliveries SET status = $1, attempts = attempts + 1, \
    delivered_at = $2, ended_at = $3 WHERE seq = $4";

/// Promote the next delivery of each key given (JSON `[{endpoint_id, order_key}]`) whose
/// head ended: its oldest queued one, if it waits. A key whose head did not end (its
/// outcome was dropped, or it is in backoff) has that head as its oldest: nothing moves.
const PROMOTE_PG: &str = "UPDATE delivery_queue SET next_at = $1 WHERE next_at = $2 AND seq IN ( \
    SELECT (SELECT min(q.seq) FROM delivery_queue q WHERE q.endpoint_id = k.endpoint_id \
        AND q.order_key = k.order_key) \
    FROM json_to_recordset($3::json) AS k(endpoint_id text, order_key text))";

const PROMOTE_SQLITE: &str =
    "UPDATE delivery_queue SET next_at = $1 WHERE next_at = $2 AND seq = ( \
    SELECT min(q.seq) FROM delivery_queue q WHERE q.endpoint_id = $3 AND q.order_key = $4)";

/// Write the outcomes of attempts, all in one transaction (on PostgreSQL one statement
/// for the deliveries, one for the promotions); an outcome whose claim lapsed and was
/// taken over is dropped.
pub async fn mark(store: &Store, outcomes: &[Outcome]) -> Result<(), ticketing_store::Error> {
    let now = now_millis();
    let pg = store.backend() == Backend::Postgres;
    let ended_at = |o: &Outcome| (o.status != DeliveryStatus::Pending).then_some(now);
    let mut tx = store.begin().await?;
    if pg {
        let rows: Vec<serde_json::Value> = outcomes
            .iter()
            .map(|o| {
                serde_json::json!({
                    "seq": o.seq, "claim": o.claim, "status": o.status.as_str(),
                    "next_at": o.next_at, "delivered_at": o.delivered_at,
                    "ended_at": ended_at(o),
                })
            })
            .collect();
        query(MARK_PG)
            .persistent(false)
            .bind(serde_json::Value::Array(rows).to_string())
            .execute(&mut tx)
            .await?;
    } else {
        for o in outcomes {
            let held = if o.status == DeliveryStatus::Pending {
                query(RETRY_SQLITE).bind(o.next_at)
            } else {
                query(END_SQLITE)
            }
            .bind(o.seq)
            .bind(&o.claim)
            .execute(&mut tx)
            .await?;
            if held == 0 {
                continue;
            }
            query(ATTEMPTED_SQLITE)
                .bind(o.status.as_str())
                .bind(o.delivered_at)
                .bind(ended_at(o))
                .bind(o.seq)
                .execute(&mut tx)
                .await?;
        }
    }
    let mut ended: Vec<(&str, &str)> = outcomes
        .iter()
        .filter(|o| o.status != DeliveryStatus::Pending)
        .map(|o| (o.endpoint_id.as_str(), o.order_key.as_str()))
        .collect();
    ended.sort_unstable();
    ended.dedup();
    if pg && !ended.is_empty() {
        let keys: Vec<serde_json::Value> = ended
            .iter()
            .map(|(e, k)| serde_json::json!({"endpoint_id": e, "order_key": k}))
            .collect();
        query(PROMOTE_PG)
            .persistent(false)
            .bind(now)
            .bind(WAITING)
            .bind(serde_json::Value::Array(keys).to_string())
            .execute(&mut tx)
            .await?;
    } else {
        for (endpoint, key) in &ended {
            query(PROMOTE_SQLITE)
                .bind(now)
                .bind(WAITING)
                .bind(*endpoint)
                .bind(*key)
                .execute(&mut tx)
                .await?;
        }
    }
    let mut gone: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.gone)
        .map(|o| o.endpoint_id.as_str())
        .collect();
    gone.sort_unstable();
    gone.dedup();
    for endpoint in gone {
        query("UPDATE endpoints SET disabled_at = $1 WHERE id = $2 AND disabled_at IS NULL")
            .bind(now)
            .bind(endpoint)
            .execute(&mut tx)
            .await?;
        // Nothing more goes to it: its deliveries stop being due, so claims never read
        // them again.
        query("UPDATE delivery_queue SET next_at = $1 WHERE endpoint_id = $2")
            .bind(WAITING)
            .bind(endpoint)
            .execute(&mut tx)
            .await?;
    }
    tx.commit().await
}

/// Promote, every so often, the heads whose promotion was missed: a delivery queued
/// while its key's head was ending (each transaction saw the other's row as still
/// there). Rows of disabled endpoints stay put. How many moved.
pub async fn promote_missed(store: &Store) -> Result<u64, ticketing_store::Error> {
    let now = now_millis();
    // Most seconds nothing waits: a read says so without a write transaction.
    let waiting = query("SELECT 1 AS w FROM delivery_queue WHERE next_at = $1 LIMIT 1")
        .bind(WAITING)
        .fetch_optional(store.reader())
        .await?;
    if waiting.is_none() {
        return Ok(0);
    }
    query(&format!(
        "UPDATE delivery_queue SET next_at = $1 WHERE seq IN ( \
            SELECT h.seq FROM delivery_queue h WHERE h.next_at = $2 \
            AND h.queued_at < $3 AND NOT {BEHIND} \
            AND EXISTS (SELECT 1 FROM endpoints p WHERE p.id = h.endpoint_id \
                AND p.disabled_at IS NULL))"
    ))
    .bind(now)
    .bind(WAITING)
    .bind(now - 1000)
    .execute(store.writer())
    .await
}

/// Embedded mode has one worker, this process's: leases left by a process that was
/// killed are void at start-up.
pub async fn release_all(store: &Store) -> Result<u64, ticketing_store::Error> {
    query(
        "UPDATE delivery_queue SET lease_until = 0, claim = NULL, next_at = $1 \
         WHERE lease_until > 0",
    )
    .bind(now_millis())
    .execute(store.writer())
    .await
}

/// A delivery as the API lists it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub seq: i64,
    pub event_id: String,
    pub subject: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub delivered_at: Option<i64>,
}

ticketing_kit::from_row!(|row| Listed {
    seq,
    event_id,
    subject,
    status: DeliveryStatus::parse(&row.get::<String>("status")?).unwrap_or(DeliveryStatus::Pending),
    attempts,
    delivered_at,
});

/// A page of an endpoint's deliveries after `cursor`, oldest first.
pub async fn list(
    store: &Store,
    endpoint: &str,
    cursor: i64,
) -> Result<Vec<Listed>, ticketing_store::Error> {
    query(
        "SELECT seq, event_id, subject, status, attempts, delivered_at FROM deliveries \
         WHERE endpoint_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(endpoint)
    .bind(cursor)
    .bind(DELIVERIES_PAGE)
    .fetch_all_as(store.reader())
    .await
}

/// Queue again every delivery of `endpoint` from `from_seq` on that is not pending: sent
/// anew in the same order, with the same event ids. How many.
pub async fn replay(
    store: &Store,
    endpoint: &str,
    from_seq: i64,
) -> Result<u64, ticketing_store::Error> {
    let now = now_millis();
    let mut tx = store.begin().await?;
    // Into the queue first, while their status still tells them apart. A replay at the
    // same moment queued them already: they are left to it.
    query(
        "INSERT INTO delivery_queue (seq, endpoint_id, order_key, queued_at, next_at, lease_until) \
         SELECT seq, endpoint_id, order_key, $1, $2, 0 FROM deliveries \
         WHERE endpoint_id = $3 AND seq >= $4 AND status <> 'pending' \
         ON CONFLICT (seq) DO NOTHING",
    )
    .bind(now)
    .bind(WAITING)
    .bind(endpoint)
    .bind(from_seq)
    .execute(&mut tx)
    .await?;
    let replayed = query(
        "UPDATE deliveries SET status = 'pending', queued_at = $1, ended_at = NULL \
         WHERE endpoint_id = $2 AND seq >= $3 AND status <> 'pending'",
    )
    .bind(now)
    .bind(endpoint)
    .bind(from_seq)
    .execute(&mut tx)
    .await?;
    // Each key's oldest now goes first; the rest wait for it.
    query(&format!(
        "UPDATE delivery_queue SET next_at = $1 WHERE seq IN ( \
            SELECT h.seq FROM delivery_queue h WHERE h.endpoint_id = $2 \
            AND h.next_at = $3 AND NOT {BEHIND})"
    ))
    .bind(now)
    .bind(endpoint)
    .bind(WAITING)
    .execute(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(replayed)
}

/// Delivered and dead deliveries older than `retention` are deleted, every hour.
pub fn spawn_pruner(store: Store, retention: Duration, stop: CancellationToken) -> JoinHandle<()> {
    retention::spawn_table_pruner(store, "deliveries", "ended_at", "seq", retention, stop)
}

/// [`promote_missed`] every second (PostgreSQL: its transactions run side by side).
pub fn spawn_promoter(store: Store, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            match promote_missed(&store).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(deliveries = n, "promoted heads whose turn was missed"),
                Err(ticketing_store::Error::Closed) => return,
                Err(err) => tracing::warn!(error = %err, "promoting webhook heads failed"),
            }
        }
    })
}

/// Pending deliveries and the oldest's age in seconds (metrics).
pub async fn backlog(store: &Store) -> Result<(i64, f64), ticketing_store::Error> {
    let row = query("SELECT count(*) AS n, min(queued_at) AS oldest FROM delivery_queue")
        .fetch_one(store.reader())
        .await?;
    let n: i64 = row.get("n")?;
    let oldest: Option<i64> = row.get("oldest")?;
    let age = oldest.map_or(0.0, |t| (now_millis() - t).max(0) as f64 / 1000.0);
    Ok((n, age))
}
