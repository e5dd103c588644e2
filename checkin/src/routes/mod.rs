mod batch;
mod changes;
mod conflicts;
mod devices;
mod key;
mod passes;
mod redeem;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use ticketing_kit::validate::{as_str, bounded};
use ticketing_kit::ApiError;

use crate::code::{self, Payload, Refused};
use crate::gate::GateError;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(passes::list))
        .routes(routes!(passes::reissue))
        .routes(routes!(key::key))
        .routes(routes!(devices::list, devices::create))
        .routes(routes!(devices::delete))
        .routes(routes!(redeem::redeem))
        .routes(routes!(batch::batch))
        .routes(routes!(changes::changes))
        .routes(routes!(conflicts::conflicts))
}

/// A scanned code from a request body: 400 when it is not shaped like a code; one that
/// is, but is not ours, is kept as [`Refused::Forged`] (answered `invalid`).
fn parse_code<'a>(
    state: &AppState,
    name: &str,
    raw: &'a serde_json::Value,
) -> Result<(&'a str, Result<Payload, Refused>), String> {
    let text = as_str(name, raw)?;
    if code::shape(text).is_err() {
        return Err("Code is not a pass code".to_owned());
    }
    Ok((text, state.signer.verify(text)))
}

/// A scan's nonce: 1 to 64 characters.
fn parse_nonce(name: &str, raw: &serde_json::Value) -> Result<String, String> {
    let text = as_str(name, raw)?;
    Ok(bounded(
        name,
        text,
        "Nonce is required",
        ticketing_contracts::api::checkin::MAX_NONCE_CHARS,
    )?
    .to_owned())
}

impl From<GateError> for ApiError {
    fn from(err: GateError) -> ApiError {
        match err {
            GateError::InProgress => ApiError::KeyInUse,
            GateError::Db(err) => err.into(),
        }
    }
}
