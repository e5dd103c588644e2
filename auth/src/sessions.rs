//! The `sessions` table: a row per session a token was issued for, so that sign-out
//! everywhere and a password change can end every session of an account; and the
//! `session:revoked` event that tells every service (this one included) which sessions
//! ended. See docs/decisions/0028-sessions-revocation.md.

use std::time::Duration;

use ticketing_bus::outbox;
use ticketing_bus::Envelope;
use ticketing_contracts::events::SessionRevoked;
use ticketing_contracts::time::{now_millis, Timestamp};
use ticketing_contracts::UserId;
use ticketing_kit::auth::{Claims, JwtKeys};
use ticketing_store::{query, Store, Tx};

/// A row outlives its token by this much (the token check's leeway, with a margin).
pub const KEEP_AFTER_EXPIRY: Duration = ticketing_kit::sessions::KEEP_AFTER_EXPIRY;

/// Sessions ended by one operation: (sid, when its token expires, ms).
pub type Ended = Vec<(String, i64)>;

/// Record the session `claims` were issued for.
pub async fn start(store: &Store, claims: &Claims) -> Result<(), ticketing_store::Error> {
    let Some(sid) = &claims.sid else {
        return Ok(());
    };
    query("INSERT INTO sessions (sid, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(sid.as_str())
        .bind(&claims.id)
        .bind(now_millis())
        .bind(claims.expires_at_millis())
        .execute(store.writer())
        .await?;
    Ok(())
}

/// Record, in `tx`, the session `claims` were issued for (a password change).
pub async fn start_in(tx: &mut Tx, claims: &Claims) -> Result<(), ticketing_store::Error> {
    let Some(sid) = &claims.sid else {
        return Ok(());
    };
    query("INSERT INTO sessions (sid, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(sid.as_str())
        .bind(&claims.id)
        .bind(now_millis())
        .bind(claims.expires_at_millis())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// End the session of `claims`, if it has one and it had not ended; a session this
/// table never saw (a token of another auth database) is ended all the same.
pub async fn end_one(tx: &mut Tx, claims: &Claims) -> Result<Ended, ticketing_store::Error> {
    let Some(sid) = &claims.sid else {
        return Ok(Vec::new());
    };
    let now = now_millis();
    let changed = query(
        "INSERT INTO sessions (sid, user_id, created_at, expires_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (sid) DO UPDATE SET revoked_at = excluded.revoked_at \
         WHERE sessions.revoked_at IS NULL",
    )
    .bind(sid.as_str())
    .bind(&claims.id)
    .bind(claims.iat.saturating_mul(1000))
    .bind(claims.expires_at_millis())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(if changed > 0 {
        vec![(sid.clone(), claims.expires_at_millis())]
    } else {
        Vec::new()
    })
}

/// End every session of `user` whose token has not expired, but `keep`.
pub async fn end_all(
    tx: &mut Tx,
    user: &UserId,
    keep: Option<&str>,
) -> Result<Ended, ticketing_store::Error> {
    let now = now_millis();
    let rows = query(
        "UPDATE sessions SET revoked_at = $1 \
         WHERE user_id = $2 AND revoked_at IS NULL AND expires_at > $3 AND sid <> $4 \
         RETURNING sid, expires_at",
    )
    .bind(now)
    .bind(user)
    .bind(now - KEEP_AFTER_EXPIRY.as_millis() as i64)
    .bind(keep.unwrap_or(""))
    .fetch_all(&mut *tx)
    .await?;
    rows.iter()
        .map(|row| Ok((row.get("sid")?, row.get("expires_at")?)))
        .collect()
}

/// Publish (through the outbox, in `tx`) that `ended` sessions of `user` ended.
pub async fn announce(
    tx: &mut Tx,
    user: &UserId,
    ended: &Ended,
) -> Result<(), ticketing_store::Error> {
    let Some(latest) = ended.iter().map(|(_, exp)| *exp).max() else {
        return Ok(());
    };
    let event = SessionRevoked {
        user_id: user.clone(),
        session_ids: ended.iter().map(|(sid, _)| sid.clone()).collect(),
        expires_at: Timestamp::from_millis(latest).to_rfc3339(),
    };
    outbox::enqueue(tx, &Envelope::new(&event)).await
}

/// After the commit: this process refuses `ended` at once (the others, and the other
/// services, once the event reached them).
pub fn refuse_here(keys: &JwtKeys, ended: Ended) {
    if let Some(revoked) = keys.revoked() {
        for (sid, expires_at) in ended {
            revoked.insert(sid, expires_at);
        }
    }
}
