use axum::extract::State;
use axum::Json;
use ticketing_contracts::api::checkin::{Redeem, RedeemBody};
use ticketing_contracts::time::now_millis;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::json::ApiJson;
use ticketing_kit::validate::Fields;
use ticketing_kit::ApiResult;

use crate::devices::RequireDevice;
use crate::gate::{self, Scan};
use crate::AppState;

/// A scan at a gate that is online: the pass is checked in now, or not, and why. The
/// same nonce again gets the same answer.
#[utoipa::path(post, path = "/api/checkin/redeem", tag = "checkin", operation_id = "redeemPass",
    request_body = Redeem, security(("device" = [])),
    responses(
        (status = 200, description = "What the scan came to (`result`)", body = RedeemBody),
        (status = 400, description = "A `code` that is no pass code, or a bad `nonce`", body = ErrorBody),
        (status = 401, description = "No device token, or a removed device's", body = ErrorBody),
        (status = 409, description = "The same nonce is being answered; try again", body = ErrorBody),
    ))]
pub async fn redeem(
    State(state): State<AppState>,
    RequireDevice(device): RequireDevice,
    ApiJson(body): ApiJson<Redeem>,
) -> ApiResult<Json<RedeemBody>> {
    let mut fields = Fields::new();
    let code = fields.parse("code", body.code.as_ref(), |v| {
        super::parse_code(&state, "code", v).map(|(_, payload)| payload)
    });
    let nonce = fields.parse("nonce", body.nonce.as_ref(), |v| {
        super::parse_nonce("nonce", v)
    });
    let (payload, nonce) = fields.finish((code, nonce))?;
    let scan = Scan {
        payload,
        nonce: &nonce,
        scanned_at: now_millis(),
    };
    let answer = gate::redeem(&state.store, &device, scan).await?;
    Ok(Json(answer.redeem_body()))
}
