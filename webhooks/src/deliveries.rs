//! The deliveries: one row per (endpoint, event), from queueing to delivered or dead.
//!
//! A key's deliveries (an order's events, else a listing's) go out strictly in `seq`
//! order: only a key's head — its oldest pending delivery — is ever claimed. Claims are
//! leases: a worker that dies lets them lapse and another takes the head over. On
//! PostgreSQL the candidates are locked `FOR UPDATE SKIP LOCKED`, so concurrent workers
//! never claim the same head and never wait for each other.

use std::collections::HashMap;
use std::time::Duration;

use ticketing_bus::Envelope;
use ticketing_contracts::api::webhooks::{DeliveryStatus, DELIVERIES_PAGE};
use ticketing_contracts::time::now_millis;
use ticketing_store::{query, retention, Backend, Store, Tx};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Queue `envelope` for `endpoint` (nothing when it is queued already).
pub async fn queue(
    tx: &mut Tx,
    endpoint: &str,
    envelope: &Envelope,
    key: &str,
    body: &str,
) -> Result<(), ticketing_store::Error> {
    let now = now_millis();
    query(
        "INSERT INTO deliveries (endpoint_id, event_id, subject, order_key, body, created_at, \
         queued_at, status, attempts, next_at, lease_until) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $7, 0) \
         ON CONFLICT (endpoint_id, event_id) DO NOTHING",
    )
    .bind(endpoint)
    .bind(&envelope.id)
    .bind(envelope.subject.as_str())
    .bind(key)
    .bind(body)
    .bind(envelope.produced_at)
    .bind(now)
    .execute(tx)
    .await?;
    Ok(())
}

/// A delivery claimed by a worker, with where it goes.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub seq: i64,
    pub endpoint_id: String,
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

/// Candidates of a claim: the due heads, oldest first.
const HEADS: &str = "SELECT h.seq, h.endpoint_id FROM deliveries h \
    WHERE h.status = 'pending' AND h.next_at <= $1 AND h.lease_until <= $1 \
    AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.endpoint_id = h.endpoint_id \
        AND e.order_key = h.order_key AND e.status = 'pending' AND e.seq < h.seq) \
    AND EXISTS (SELECT 1 FROM endpoints p WHERE p.id = h.endpoint_id AND p.disabled_at IS NULL) \
    ORDER BY h.seq LIMIT $2";

const IN_FLIGHT: &str = "SELECT endpoint_id, count(*) AS n FROM deliveries \
    WHERE status = 'pending' AND lease_until > $1 GROUP BY endpoint_id";

const TAKE_PG: &str = "UPDATE deliveries SET lease_until = $1, claim = $2 \
    WHERE seq IN (SELECT value::bigint FROM json_array_elements_text($3::json)) \
    RETURNING seq, endpoint_id, event_id, body, attempts, created_at, queued_at";

const TAKE_SQLITE: &str = "UPDATE deliveries SET lease_until = $1, claim = $2 \
    WHERE seq IN (SELECT value FROM json_each($3)) \
    RETURNING seq, endpoint_id, event_id, body, attempts, created_at, queued_at";

const ENDPOINTS_PG: &str = "SELECT id, url, secret FROM endpoints \
    WHERE id IN (SELECT value FROM json_array_elements_text($1::json))";
const ENDPOINTS_SQLITE: &str =
    "SELECT id, url, secret FROM endpoints WHERE id IN (SELECT value FROM json_each($1))";

/// Claim up to `limit` due heads for `lease`, at most `per_endpoint` in flight per
/// endpoint (counting every worker's live leases), in one transaction.
pub async fn claim(
    store: &Store,
    limit: usize,
    per_endpoint: usize,
    lease: Duration,
) -> Result<Vec<Claimed>, ticketing_store::Error> {
    let now = now_millis();
    let pg = store.backend() == Backend::Postgres;
    let mut tx = store.begin().await?;
    let heads_sql = if pg {
        format!("{HEADS} FOR UPDATE OF h SKIP LOCKED")
    } else {
        HEADS.to_owned()
    };
    let heads = query(&heads_sql)
        .bind(now)
        .bind(limit as i64 * 2)
        .fetch_all(&mut tx)
        .await?;
    if heads.is_empty() {
        tx.rollback().await?;
        return Ok(Vec::new());
    }
    let mut in_flight: HashMap<String, usize> = HashMap::new();
    for row in query(IN_FLIGHT).bind(now).fetch_all(&mut tx).await? {
        let n: i64 = row.get("n")?;
        in_flight.insert(row.get("endpoint_id")?, n as usize);
    }
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
    let token = uuid::Uuid::new_v4().to_string();
    let until = now + lease.as_millis() as i64;
    let seqs = serde_json::to_string(&chosen).map_err(ticketing_store::Error::other)?;
    let rows = query(if pg { TAKE_PG } else { TAKE_SQLITE })
        .bind(until)
        .bind(&token)
        .bind(seqs)
        .fetch_all(&mut tx)
        .await?;
    let mut ids: Vec<String> = Vec::new();
    for row in &rows {
        let id: String = row.get("endpoint_id")?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let ids_json = serde_json::to_string(&ids).map_err(ticketing_store::Error::other)?;
    let mut targets: HashMap<String, (String, String)> = HashMap::new();
    for row in query(if pg { ENDPOINTS_PG } else { ENDPOINTS_SQLITE })
        .bind(ids_json)
        .fetch_all(&mut tx)
        .await?
    {
        targets.insert(row.get("id")?, (row.get("url")?, row.get("secret")?));
    }
    tx.commit().await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let endpoint_id: String = row.get("endpoint_id")?;
        let Some((url, secret)) = targets.get(&endpoint_id).cloned() else {
            continue;
        };
        claimed.push(Claimed {
            seq: row.get("seq")?,
            endpoint_id,
            event_id: row.get("event_id")?,
            body: row.get("body")?,
            attempts: row.get("attempts")?,
            created_at: row.get("created_at")?,
            queued_at: row.get("queued_at")?,
            url,
            secret,
            claim: token.clone(),
        });
    }
    claimed.sort_by_key(|c| c.seq);
    Ok(claimed)
}

/// How an attempt ended, to be written.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seq: i64,
    pub claim: String,
    pub endpoint_id: String,
    pub status: DeliveryStatus,
    /// Pending: when to try again.
    pub next_at: i64,
    /// Delivered: when.
    pub delivered_at: Option<i64>,
    /// The endpoint answered 410 Gone: disable it.
    pub gone: bool,
}

const MARK_PG: &str = "UPDATE deliveries AS d SET status = o.status, attempts = d.attempts + 1, \
    next_at = o.next_at, lease_until = 0, claim = NULL, delivered_at = o.delivered_at, \
    ended_at = o.ended_at \
    FROM json_to_recordset($1::json) AS o(seq bigint, claim text, status text, next_at bigint, \
        delivered_at bigint, ended_at bigint) \
    WHERE d.seq = o.seq AND d.claim = o.claim";

const MARK_SQLITE: &str = "UPDATE deliveries SET status = $1, attempts = attempts + 1, \
    next_at = $2, lease_until = 0, claim = NULL, delivered_at = $3, ended_at = $4 \
    WHERE seq = $5 AND claim = $6";

/// Write the outcomes of attempts, all in one transaction (on PostgreSQL one statement
/// for the deliveries); an outcome whose claim lapsed and was taken over is dropped.
pub async fn mark(store: &Store, outcomes: &[Outcome]) -> Result<(), ticketing_store::Error> {
    let now = now_millis();
    let mut tx = store.begin().await?;
    if store.backend() == Backend::Postgres {
        let rows: Vec<serde_json::Value> = outcomes
            .iter()
            .map(|o| {
                serde_json::json!({
                    "seq": o.seq, "claim": o.claim, "status": o.status.as_str(),
                    "next_at": o.next_at, "delivered_at": o.delivered_at,
                    "ended_at": (o.status != DeliveryStatus::Pending).then_some(now),
                })
            })
            .collect();
        query(MARK_PG)
            .bind(serde_json::Value::Array(rows).to_string())
            .execute(&mut tx)
            .await?;
    } else {
        for o in outcomes {
            query(MARK_SQLITE)
                .bind(o.status.as_str())
                .bind(o.next_at)
                .bind(o.delivered_at)
                .bind((o.status != DeliveryStatus::Pending).then_some(now))
                .bind(o.seq)
                .bind(&o.claim)
                .execute(&mut tx)
                .await?;
        }
    }
    let mut gone: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.gone)
        .map(|o| o.endpoint_id.as_str())
        .collect();
    gone.dedup();
    for endpoint in gone {
        query("UPDATE endpoints SET disabled_at = $1 WHERE id = $2 AND disabled_at IS NULL")
            .bind(now)
            .bind(endpoint)
            .execute(&mut tx)
            .await?;
    }
    tx.commit().await
}

/// Embedded mode has one worker, this process's: leases left by a process that was
/// killed are void at start-up.
pub async fn release_all(store: &Store) -> Result<u64, ticketing_store::Error> {
    query("UPDATE deliveries SET lease_until = 0, claim = NULL WHERE status = 'pending' AND lease_until > 0")
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
    query(
        "UPDATE deliveries SET status = 'pending', next_at = $1, queued_at = $1, lease_until = 0, \
         claim = NULL, ended_at = NULL \
         WHERE endpoint_id = $2 AND seq >= $3 AND status <> 'pending'",
    )
    .bind(now)
    .bind(endpoint)
    .bind(from_seq)
    .execute(store.writer())
    .await
}

/// Delivered and dead deliveries older than `retention` are deleted, every hour.
pub fn spawn_pruner(store: Store, retention: Duration, stop: CancellationToken) -> JoinHandle<()> {
    retention::spawn_table_pruner(store, "deliveries", "ended_at", "seq", retention, stop)
}

/// Pending deliveries and the oldest's age in seconds (metrics).
pub async fn backlog(store: &Store) -> Result<(i64, f64), ticketing_store::Error> {
    let row = query(
        "SELECT count(*) AS n, min(queued_at) AS oldest FROM deliveries WHERE status = 'pending'",
    )
    .fetch_one(store.reader())
    .await?;
    let n: i64 = row.get("n")?;
    let oldest: Option<i64> = row.get("oldest")?;
    let age = oldest.map_or(0.0, |t| (now_millis() - t).max(0) as f64 / 1000.0);
    Ok((n, age))
}
