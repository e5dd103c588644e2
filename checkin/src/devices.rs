//! Gate devices: a seller registers one for listings of theirs and gets its token once;
//! the device sends it as `Authorization: Device <token>`. Only the token's SHA-256 is
//! kept. Every request looks the token up in the database (one indexed read): a deleted
//! device is refused by every process at once, with no cache to go stale.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use ticketing_contracts::api::checkin::DeviceBody;
use ticketing_contracts::time::{format_millis, now_millis};
use ticketing_contracts::{TicketId, UserId};
use ticketing_kit::ApiError;
use ticketing_store::{query, Store};

/// A device as its requests carry it.
#[derive(Debug, Clone)]
pub struct Device {
    pub id: String,
    pub ticket_ids: Vec<TicketId>,
}

impl Device {
    pub fn scans(&self, ticket: &TicketId) -> bool {
        self.ticket_ids.iter().any(|t| t == ticket)
    }
}

/// The prefix of a token: tells it apart from a session token at a glance.
const TOKEN_PREFIX: &str = "gd_";

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Register a device of `owner` for `tickets` (already checked to be theirs); the
/// answer carries the token, the only time it is shown.
pub async fn create(
    store: &Store,
    owner: &UserId,
    name: String,
    tickets: Vec<TicketId>,
) -> Result<DeviceBody, ticketing_store::Error> {
    let id = uuid::Uuid::now_v7().to_string();
    let token = format!(
        "{TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    );
    let created_at = now_millis();
    let mut tx = store.begin().await?;
    query(
        "INSERT INTO devices (id, user_id, name, token_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(owner)
    .bind(&name)
    .bind(hash(&token))
    .bind(created_at)
    .execute(&mut tx)
    .await?;
    for ticket in &tickets {
        query(
            "INSERT INTO device_listings (device_id, ticket_id) VALUES ($1, $2) \
             ON CONFLICT (device_id, ticket_id) DO NOTHING",
        )
        .bind(&id)
        .bind(ticket)
        .execute(&mut tx)
        .await?;
    }
    tx.commit().await?;
    Ok(DeviceBody {
        id,
        name,
        ticket_ids: tickets.into_iter().map(TicketId::into_string).collect(),
        token: Some(token),
        created_at: format_millis(created_at),
    })
}

/// `owner`'s devices, oldest first (without tokens).
pub async fn list(
    store: &Store,
    owner: &UserId,
) -> Result<Vec<DeviceBody>, ticketing_store::Error> {
    let rows = query(
        "SELECT d.id, d.name, d.created_at, l.ticket_id FROM devices d \
         JOIN device_listings l ON l.device_id = d.id \
         WHERE d.user_id = $1 ORDER BY d.id, l.ticket_id",
    )
    .bind(owner)
    .fetch_all(store.reader())
    .await?;
    let mut out: Vec<DeviceBody> = Vec::new();
    for row in rows {
        let id: String = row.get("id")?;
        let ticket: String = row.get("ticket_id")?;
        match out.last_mut() {
            Some(last) if last.id == id => last.ticket_ids.push(ticket),
            _ => out.push(DeviceBody {
                id,
                name: row.get("name")?,
                ticket_ids: vec![ticket],
                token: None,
                created_at: format_millis(row.get("created_at")?),
            }),
        }
    }
    Ok(out)
}

/// Remove `owner`'s device `id`: its token is refused from the commit on. `false` when
/// there is no such device of theirs.
pub async fn delete(
    store: &Store,
    owner: &UserId,
    id: &str,
) -> Result<bool, ticketing_store::Error> {
    let mut tx = store.begin().await?;
    let gone = query("DELETE FROM devices WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(owner)
        .execute(&mut tx)
        .await?;
    if gone == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    query("DELETE FROM device_listings WHERE device_id = $1")
        .bind(id)
        .execute(&mut tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// The device whose token this is.
pub async fn authenticate(
    store: &Store,
    token: &str,
) -> Result<Option<Device>, ticketing_store::Error> {
    let rows = query(
        "SELECT d.id, l.ticket_id FROM devices d JOIN device_listings l ON l.device_id = d.id \
         WHERE d.token_hash = $1",
    )
    .bind(hash(token))
    .fetch_all(store.reader())
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    Ok(Some(Device {
        id: first.get("id")?,
        ticket_ids: rows
            .iter()
            .map(|r| r.get("ticket_id"))
            .collect::<Result<_, _>>()?,
    }))
}

/// The device a request comes from; 401 `User not authorized.` otherwise.
pub struct RequireDevice(pub Device);

impl<S> FromRequestParts<S> for RequireDevice
where
    Store: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Device "))
            .map(str::trim)
            .filter(|t| t.starts_with(TOKEN_PREFIX) && t.len() <= 128)
            .ok_or(ApiError::NotAuthorized)?;
        let store = Store::from_ref(state);
        authenticate(&store, token)
            .await?
            .map(RequireDevice)
            .ok_or(ApiError::NotAuthorized)
    }
}
