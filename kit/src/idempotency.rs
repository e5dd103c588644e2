//! Writes a client can retry: an optional `Idempotency-Key` header on `POST` (orders,
//! tickets, payments). The first answer to a key — status and body — is stored with the
//! request's effect, in the transaction that makes it; a repeat with the same key and
//! the same request gets that answer again, without a second effect; the same key with
//! another request is a 422. Keys are per caller and route, and live 24 hours.
//!
//! Only successful answers are stored: a refused request changed nothing, so running it
//! again is as safe as answering it again, and its answer may rightly have changed (a
//! ticket freed since). A repeat that arrives while the first is still running waits
//! for it where the database makes it (PostgreSQL: the key's primary key) or runs its
//! own effect and, refused by the first one's (the ticket already reserved, the order
//! already paid), finds the first's answer stored and gives that. See
//! docs/decisions/0024-idempotency-keys.md.

use std::sync::LazyLock;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use ticketing_contracts::time::now_millis;
use ticketing_contracts::UserId;
use ticketing_store::retention;
use ticketing_store::{query, On, Store, Tx};

use crate::{ApiError, ApiResult};

pub const HEADER: &str = "idempotency-key";

/// How long a key is remembered.
pub const KEEP: Duration = Duration::from_secs(24 * 3600);

const TABLE: [&str; 2] = [
    // `scope`: the caller and the route; `request`: the body as parsed, written again.
    "CREATE TABLE IF NOT EXISTS idempotency_keys (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        request TEXT NOT NULL,
        status INTEGER NOT NULL,
        response TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (scope, key)
    )",
    "CREATE INDEX IF NOT EXISTS idempotency_keys_created_at ON idempotency_keys (created_at)",
];

/// Create the `idempotency_keys` table when missing (a service that takes keys calls it
/// after `Store::open`, like the event tables).
pub async fn install(store: &Store) -> anyhow::Result<()> {
    store.install(7301000000000002, TABLE).await?;
    Ok(())
}

/// The `Idempotency-Key` header, if the request has one: 1 to 255 visible ASCII
/// characters, else a 400 naming the header. A route documents it with
/// `params(IdempotencyKey)`.
#[derive(utoipa::IntoParams)]
#[into_params(names("Idempotency-Key"), parameter_in = Header)]
pub struct IdempotencyKey(
    /// Makes the request safe to retry: a repeat with the same key and body within 24 h
    /// returns the first answer; the same key with another body is a 422.
    #[param(min_length = 1, max_length = 255, pattern = "^[!-~]{1,255}$")]
    pub Option<String>,
);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(HEADER) else {
            return Ok(IdempotencyKey(None));
        };
        match value.to_str() {
            Ok(key)
                if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Ok(IdempotencyKey(Some(key.to_owned())))
            }
            _ => Err(ApiError::field(
                "Idempotency-Key",
                "Idempotency-Key must be 1 to 255 visible characters",
            )),
        }
    }
}

impl IdempotencyKey {
    /// The key of `user`'s request to `route` with `body`; None without a header.
    pub fn scoped(self, user: &UserId, route: &str, body: &impl Serialize) -> Option<Keyed> {
        let key = self.0?;
        Some(Keyed {
            scope: format!("{route} {user}"),
            key,
            // Serialising a parsed request body cannot fail (plain JSON values).
            request: serde_json::to_string(body).unwrap_or_default(),
        })
    }
}

/// A request that carries a key.
pub struct Keyed {
    scope: String,
    key: String,
    request: String,
}

impl Keyed {
    /// The stored answer to this key, if any (a 422 if it answered another request).
    async fn stored<'a>(&self, on: impl Into<On<'a>>) -> ApiResult<Option<Response>> {
        let row = query(
            "SELECT request, status, response FROM idempotency_keys \
             WHERE scope = $1 AND key = $2 AND created_at >= $3",
        )
        .bind(&self.scope)
        .bind(&self.key)
        .bind(now_millis() - KEEP.as_millis() as i64)
        .fetch_optional(on)
        .await?;
        let Some(row) = row else { return Ok(None) };
        if row.get::<String>("request")? != self.request {
            return Err(ApiError::Unprocessable(
                "This Idempotency-Key was used with a different request".to_owned(),
            ));
        }
        let status = StatusCode::from_u16(row.get::<i64>("status")? as u16)
            .map_err(|err| ApiError::Internal(err.into()))?;
        let body: String = row.get("response")?;
        let json = HeaderValue::from_static("application/json");
        Ok(Some(
            (status, [(header::CONTENT_TYPE, json)], body).into_response(),
        ))
    }

    /// The stored answer to this key, if any, read before anything else decides (a
    /// 422 if it answered another request).
    pub async fn answer(&self, store: &Store) -> ApiResult<Option<Response>> {
        self.stored(store.reader()).await
    }

    /// Store `status` and `body` as the answer to this key in `tx`, the effect's
    /// transaction. False when the key was answered meanwhile (a concurrent repeat
    /// committed first; on PostgreSQL this waited for it): roll the effect back, and
    /// [`once`] gives that answer.
    pub async fn record(
        &self,
        tx: &mut Tx,
        status: StatusCode,
        body: &impl Serialize,
    ) -> Result<bool, ticketing_store::Error> {
        let response = serde_json::to_string(body).map_err(ticketing_store::Error::other)?;
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "INSERT INTO idempotency_keys (scope, key, request, status, response, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) {}",
                taken_over()
            )
        });
        let written = query(&SQL)
            .bind(&self.scope)
            .bind(&self.key)
            .bind(&self.request)
            .bind(i64::from(status.as_u16()))
            .bind(response)
            .bind(now_millis())
            .execute(tx)
            .await?;
        Ok(written == 1)
    }

    /// `status` and `body` as this key's answer, one element of a JSON array that
    /// [`record_from_json`] reads: effects decided together store their answers in
    /// the statement that makes them (the orders placer).
    pub fn json_row(&self, status: StatusCode, body: &impl Serialize) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "scope": self.scope,
            "key": self.key,
            "request": self.request,
            "status": status.as_u16(),
            "response": serde_json::to_string(body).ok()?,
            "createdAt": now_millis(),
        }))
    }

    /// Who holds a claim taken for this request (payments): the same for every repeat.
    pub fn claimant(&self) -> String {
        format!("{} {}", self.scope, self.key)
    }
}

/// PostgreSQL: `INSERT INTO idempotency_keys ... SELECT` of the answers `k`, JSON values
/// made by [`Keyed::json_row`], from `from` (the caller's `FROM ... WHERE ...`), stored as
/// [`Keyed::record`] stores one: a key answered within [`KEEP`] is left as it is (its row
/// not returned: the caller adds `RETURNING`, and an effect whose key was not written
/// must not commit).
pub fn record_from_json(k: &str, from: &str) -> String {
    format!(
        "INSERT INTO idempotency_keys (scope, key, request, status, response, created_at) \
         SELECT {k}->>'scope', {k}->>'key', {k}->>'request', ({k}->>'status')::integer, \
         {k}->>'response', ({k}->>'createdAt')::bigint {from} {}",
        taken_over()
    )
}

/// A key stored again: taken over only once past its 24 hours, as if new.
fn taken_over() -> String {
    format!(
        "ON CONFLICT (scope, key) DO UPDATE SET request = excluded.request, \
         status = excluded.status, response = excluded.response, \
         created_at = excluded.created_at \
         WHERE idempotency_keys.created_at < excluded.created_at - {}",
        KEEP.as_millis()
    )
}

/// Answer a request: without a key, `effect`'s answer; with one, its stored answer if it
/// has one, else `effect`'s (which stores it with [`Keyed::record`]). An effect refused — perhaps by a repeat of the same request that
/// committed first — looks for the stored answer again before refusing.
pub async fn once<F>(store: &Store, keyed: Option<&Keyed>, effect: F) -> ApiResult<Response>
where
    F: AsyncFnOnce() -> ApiResult<Response>,
{
    let Some(keyed) = keyed else {
        return effect().await;
    };
    if let Some(answer) = keyed.stored(store.reader()).await? {
        return Ok(answer);
    }
    match effect().await {
        Ok(answer) => Ok(answer),
        Err(err) => match stored_after_writes(store, keyed).await? {
            Some(answer) => Ok(answer),
            None => Err(err),
        },
    }
}

/// The key's answer as the writes before this call leave it. A refusal may come from a
/// repeat's effect that a reader cannot see yet: on SQLite, one in the writer's group
/// not yet committed (docs/decisions/0016). Read in a write transaction, queued behind
/// it, and answered once its group commits.
async fn stored_after_writes(store: &Store, keyed: &Keyed) -> ApiResult<Option<Response>> {
    let mut tx = store.begin().await?;
    let answer = keyed.stored(&mut tx).await?;
    tx.commit().await?;
    Ok(answer)
}

/// The keys' retention: (table, time column, key).
const KEYS: (&str, &str, &str) = ("idempotency_keys", "created_at", "scope, key");

/// Forget keys older than [`KEEP`], a batch per statement.
pub async fn prune(store: &Store) -> Result<u64, ticketing_store::Error> {
    let (table, column, key) = KEYS;
    retention::prune_older_than(store, table, column, key, KEEP).await
}

/// Prune expired keys every hour until `shutdown`.
pub fn spawn_pruner(store: Store, shutdown: CancellationToken) -> JoinHandle<()> {
    let (table, column, key) = KEYS;
    retention::spawn_table_pruner(store, table, column, key, KEEP, shutdown)
}
