//! What every write that takes an `Idempotency-Key` shares (orders, tickets, payments):
//! the answers the key adds to the route's, and an effect made in one transaction whose
//! answer commits with it. The key itself: [`crate::idempotency`].

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use ticketing_store::{Store, Tx};

use crate::error::ErrorBody;
use crate::idempotency::{self, Keyed};
use crate::{ApiError, ApiResult};

/// The refusals of a request because of its key, for a route's
/// `responses(..., KeyRefusals)` (the key's header: `params(IdempotencyKey)`).
#[derive(utoipa::IntoResponses)]
pub enum KeyRefusals {
    /// A request with the same `Idempotency-Key` is still in progress
    #[response(status = 409)]
    InProgress(ErrorBody),
    /// The `Idempotency-Key` was used with a different request
    #[response(status = 422)]
    OtherRequest(ErrorBody),
}

/// Answer a write whose effect is made in one transaction, begun here and committed
/// with its answer — `status` and the body `effect` returns — which a key stores in
/// that same transaction ([`Keyed::record`]); a repeat gets the stored answer
/// ([`idempotency::once`]).
pub async fn once_in_tx<T, F>(
    store: &Store,
    keyed: Option<&Keyed>,
    status: StatusCode,
    effect: F,
) -> ApiResult<Response>
where
    T: Serialize,
    F: AsyncFnOnce(&mut Tx) -> ApiResult<T>,
{
    let first = async |tx: &mut Tx| Ok((effect(tx).await?, ()));
    let last = async |_: &mut Tx, ()| Ok(());
    idempotency::once(store, keyed, async || {
        in_tx_then(store, keyed, status, first, last).await
    })
    .await
}

/// An effect in two steps, its answer known after the first, made in one transaction
/// and committed with its answer, which a key stores between the steps — so the locks
/// `last` takes are held for its own statements and the commit only (an order's claim
/// of a listing many buyers claim). What `last` returns is dropped after the commit (a
/// turn the process keeps for it). Without the look for a stored answer: call it inside
/// [`idempotency::once`] (the orders route tries the placer first).
pub async fn in_tx_then<T, U, V, F, L>(
    store: &Store,
    keyed: Option<&Keyed>,
    status: StatusCode,
    first: F,
    last: L,
) -> ApiResult<Response>
where
    T: Serialize,
    F: AsyncFnOnce(&mut Tx) -> ApiResult<(T, U)>,
    L: AsyncFnOnce(&mut Tx, U) -> ApiResult<V>,
{
    let mut tx = store.begin().await?;
    let (body, rest) = first(&mut tx).await?;
    if let Some(keyed) = keyed {
        if !keyed.record(&mut tx, status, &body).await? {
            tx.rollback().await?;
            return Err(ApiError::KeyInUse);
        }
    }
    let held = last(&mut tx, rest).await?;
    tx.commit().await?;
    drop(held);
    Ok((status, Json(body)).into_response())
}
