//! Revoked sessions (docs/decisions/0028): a denylist of session ids (`sid` claims) each
//! service keeps in its own `revoked_sessions` table, from `session:revoked` events, and
//! every process of the service in memory, where [`JwtKeys::verify`] looks it up.
//!
//! A consumer group hands an event to one process of a service only, so the table is
//! the service's shared truth: every process reads what was added to it since its last
//! look ([`REFRESH`]), by the time each row was written, and reads the whole table again
//! now and then ([`RELOAD`]), which also forgets what expired. A row lives until its
//! token would have expired anyway, so the table and the set stay as small as the
//! sessions revoked within one token lifetime.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::SessionRevoked;
use ticketing_contracts::time::{now_millis, Timestamp};
use ticketing_store::{query, retention, Backend, Store, Tx};

use crate::auth::JwtKeys;

/// How often every process reads what its service's table gained: the bound.
/// (At 100 ms the reads, one per service and process, were enough to slow a loaded
/// machine's PostgreSQL tests measurably; the process that handles the event refuses
/// at once anyway.)
pub const REFRESH: Duration = Duration::from_millis(200);

/// How often every process reads the whole table again (and forgets what expired).
pub const RELOAD: Duration = Duration::from_secs(60);

/// PostgreSQL: rows written this long before the newest one seen are read again at
/// every refresh, as a transaction that wrote earlier may commit later and its rows
/// must not fall behind the cursor. SQLite's transactions hold the one writer from
/// their first statement, so rows commit in the order of their `revoked_at`: only the
/// newest millisecond is read again.
pub const OVERLAP: Duration = Duration::from_secs(3);

/// How long a row outlives its token: the token check's leeway, with a margin.
pub const KEEP_AFTER_EXPIRY: Duration = Duration::from_secs(60);

const TABLE: [&str; 2] = [
    // `revoked_at`: when this service wrote the row (the refresh cursor), by its clock.
    "CREATE TABLE IF NOT EXISTS revoked_sessions (
        sid TEXT PRIMARY KEY,
        expires_at BIGINT NOT NULL,
        revoked_at BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS revoked_sessions_revoked_at ON revoked_sessions (revoked_at)",
];

/// A new session id: 128 random bits, as 32 hex digits.
pub fn new_session_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The sessions one service refuses (`sid` → until when, in ms); clones share it.
#[derive(Clone, Default)]
pub struct Revoked(Arc<RwLock<HashMap<String, i64>>>);

impl Revoked {
    pub fn contains(&self, sid: &str) -> bool {
        self.0.read().expect("revoked set").contains_key(sid)
    }

    /// Refuse `sid` until `expires_at` (ms since the epoch).
    pub fn insert(&self, sid: String, expires_at: i64) {
        self.0.write().expect("revoked set").insert(sid, expires_at);
    }

    pub fn len(&self) -> usize {
        self.0.read().expect("revoked set").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn extend(&self, rows: Vec<(String, i64)>) {
        if rows.is_empty() {
            return;
        }
        let mut set = self.0.write().expect("revoked set");
        set.extend(rows);
    }

    fn replace(&self, rows: Vec<(String, i64)>) {
        *self.0.write().expect("revoked set") = rows.into_iter().collect();
    }
}

/// Create the `revoked_sessions` table when missing (like the event tables).
pub async fn install(store: &Store) -> anyhow::Result<()> {
    store.install(7301000000000003, TABLE).await?;
    Ok(())
}

/// Write `sids` (tokens expiring at `expires_at`) into `tx`'s `revoked_sessions`; a sid
/// already there is kept as it is.
pub async fn record(
    tx: &mut Tx,
    sids: &[String],
    expires_at: i64,
) -> Result<(), ticketing_store::Error> {
    let now = now_millis();
    if tx.backend() == Backend::Postgres {
        if sids.is_empty() {
            return Ok(());
        }
        query(
            "INSERT INTO revoked_sessions (sid, expires_at, revoked_at) \
             SELECT s, $2, $3 FROM jsonb_array_elements_text($1::jsonb) AS s \
             ON CONFLICT (sid) DO NOTHING",
        )
        .bind(serde_json::to_string(sids).expect("strings serialise"))
        .bind(expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        return Ok(());
    }
    for sid in sids {
        query(
            "INSERT INTO revoked_sessions (sid, expires_at, revoked_at) VALUES ($1, $2, $3) \
             ON CONFLICT (sid) DO NOTHING",
        )
        .bind(sid.as_str())
        .bind(expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// `session:revoked` → the sessions go into the service's table (and at once into this
/// process's set; the service's other processes read them from the table).
pub struct RevokedListener(pub Revoked);

#[async_trait]
impl Listener for RevokedListener {
    type Event = SessionRevoked;

    async fn handle(&self, tx: &mut Tx, event: SessionRevoked) -> Result<(), HandlerError> {
        let expires_at = Timestamp::parse_rfc3339(&event.expires_at)
            .ok_or_else(|| HandlerError::Poison(format!("expiresAt {:?}", event.expires_at)))?
            .as_millis();
        if expires_at + (KEEP_AFTER_EXPIRY.as_millis() as i64) < now_millis() {
            // Every token of these sessions has expired: nothing left to refuse.
            return Ok(());
        }
        record(tx, &event.session_ids, expires_at).await?;
        for sid in event.session_ids {
            self.0.insert(sid, expires_at);
        }
        Ok(())
    }
}

/// The rows of `revoked_sessions` not yet expired and written at `since` or later
/// (ms): (sid, expires_at), and the newest `revoked_at` among them.
async fn read_since(
    store: &Store,
    since: i64,
) -> Result<(Vec<(String, i64)>, Option<i64>), ticketing_store::Error> {
    let rows = query(
        "SELECT sid, expires_at, revoked_at FROM revoked_sessions \
         WHERE revoked_at >= $1 AND expires_at >= $2",
    )
    .bind(since)
    .bind(now_millis() - KEEP_AFTER_EXPIRY.as_millis() as i64)
    .fetch_all(store.reader())
    .await?;
    let mut newest = None;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let revoked_at: i64 = row.get("revoked_at")?;
        newest = newest.max(Some(revoked_at));
        out.push((row.get("sid")?, row.get("expires_at")?));
    }
    Ok((out, newest))
}

/// Keeps one process's [`Revoked`] set in step with its service's table.
struct Refresher {
    store: Store,
    revoked: Revoked,
    /// The newest `revoked_at` read so far.
    cursor: i64,
    /// How far before the cursor each refresh reads again ([`OVERLAP`]), in ms.
    overlap: i64,
}

impl Refresher {
    async fn reload(&mut self) -> Result<(), ticketing_store::Error> {
        let (rows, newest) = read_since(&self.store, i64::MIN).await?;
        self.revoked.replace(rows);
        self.cursor = self.cursor.max(newest.unwrap_or(i64::MIN));
        Ok(())
    }

    async fn refresh(&mut self) -> Result<(), ticketing_store::Error> {
        let since = self.cursor.saturating_sub(self.overlap);
        let (rows, newest) = read_since(&self.store, since).await?;
        self.revoked.extend(rows);
        self.cursor = self.cursor.max(newest.unwrap_or(i64::MIN));
        Ok(())
    }

    async fn run(mut self, shutdown: CancellationToken) {
        let mut refresh = tokio::time::interval(REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reload = tokio::time::interval_at(tokio::time::Instant::now() + RELOAD, RELOAD);
        loop {
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = reload.tick() => self.reload().await,
                _ = refresh.tick() => self.refresh().await,
            };
            match result {
                Ok(()) => {}
                Err(ticketing_store::Error::Closed) => return,
                Err(err) => tracing::warn!(error = %err, "revoked sessions: refresh failed"),
            }
        }
    }
}

/// A service's revoked sessions, watched: its table installed and read, this process's
/// set kept in step with it, and the table pruned of expired rows (tasks pushed to
/// `tasks`). The keys refuse the set's sessions; the listener feeds the table.
pub async fn watch(
    store: &Store,
    keys: &JwtKeys,
    shutdown: &CancellationToken,
    tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<(JwtKeys, RevokedListener)> {
    install(store).await?;
    let revoked = Revoked::default();
    let mut refresher = Refresher {
        store: store.clone(),
        revoked: revoked.clone(),
        cursor: i64::MIN,
        overlap: match store.backend() {
            Backend::Postgres => OVERLAP.as_millis() as i64,
            Backend::Sqlite => 0,
        },
    };
    refresher.reload().await?;
    tasks.push(tokio::spawn(refresher.run(shutdown.clone())));
    tasks.push(retention::spawn_table_pruner(
        store.clone(),
        "revoked_sessions",
        "expires_at",
        "sid",
        KEEP_AFTER_EXPIRY,
        shutdown.clone(),
    ));
    Ok((keys.with_revoked(revoked.clone()), RevokedListener(revoked)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_random_and_long() {
        let a = new_session_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_session_id());
    }

    #[test]
    fn the_set_refuses_what_it_holds() {
        let set = Revoked::default();
        assert!(set.is_empty());
        set.insert("a".into(), 1);
        set.extend(vec![("b".into(), 2)]);
        assert!(set.contains("a") && set.contains("b") && !set.contains("c"));
        set.replace(vec![("c".into(), 3)]);
        assert!(!set.contains("a") && set.contains("c"));
    }
}
