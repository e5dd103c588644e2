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
use crate::ApiResult;

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
/// that same transaction ([`Keyed::commit`]); a repeat gets the stored answer
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
    idempotency::once(store, keyed, async || {
        let mut tx = store.begin().await?;
        let body = effect(&mut tx).await?;
        match keyed {
            Some(keyed) => keyed.commit(tx, status, body).await,
            None => {
                tx.commit().await?;
                Ok((status, Json(body)).into_response())
            }
        }
    })
    .await
}
