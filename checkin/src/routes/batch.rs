use axum::extract::State;
use axum::Json;
use ticketing_contracts::api::checkin::{Batch, BatchBody, MAX_BATCH};
use ticketing_contracts::time::Timestamp;
use ticketing_kit::error::{ErrorBody, ErrorItem};
use ticketing_kit::json::ApiJson;
use ticketing_kit::validate::as_str;
use ticketing_kit::{ApiError, ApiResult};

use crate::code::{Payload, Refused};
use crate::devices::RequireDevice;
use crate::gate::{self, Scan};
use crate::AppState;

/// One scan of the batch, read.
struct Read {
    payload: Result<Payload, Refused>,
    nonce: String,
    scanned_at: i64,
}

/// Scans a gate made while offline. A pass's check-in is its earliest scan (ties: the
/// device's id, then the nonce), whatever order the batches arrive in; every other scan
/// of it is answered `already-checked-in` with the `conflict` it lost to.
#[utoipa::path(post, path = "/api/checkin/batch", tag = "checkin", operation_id = "uploadScans",
    request_body = Batch, security(("device" = [])),
    responses(
        (status = 200, description = "One result per scan, in the order sent", body = BatchBody),
        (status = 400, description = "Not 1 to 1,000 scans, or a scan with a bad `code`, `nonce` or `scannedAt` (the field names its index)", body = ErrorBody),
        (status = 401, description = "No device token, or a removed device's", body = ErrorBody),
    ))]
pub async fn batch(
    State(state): State<AppState>,
    RequireDevice(device): RequireDevice,
    ApiJson(body): ApiJson<Batch>,
) -> ApiResult<Json<BatchBody>> {
    let scans = body
        .scans
        .as_ref()
        .and_then(|s| s.as_array())
        .filter(|s| (1..=MAX_BATCH).contains(&s.len()))
        .ok_or_else(|| {
            ApiError::field(
                "scans",
                format!("Scans must be a list of 1 to {MAX_BATCH} scans"),
            )
        })?;
    let mut errors = Vec::new();
    let mut read = Vec::with_capacity(scans.len());
    for (i, scan) in scans.iter().enumerate() {
        let field = |name: &str| format!("scans[{i}].{name}");
        let get = |name: &str| scan.get(name).filter(|v| !v.is_null());
        let mut fail = |name: &str, message: String| {
            errors.push(ErrorItem {
                message,
                field: Some(field(name)),
            })
        };
        let code = match get("code") {
            None => Err("Code is required".to_owned()),
            Some(v) => super::parse_code(&state, "code", v).map(|(_, p)| p),
        };
        let nonce = match get("nonce") {
            None => Err("Nonce is required".to_owned()),
            Some(v) => super::parse_nonce("nonce", v),
        };
        let scanned_at = match get("scannedAt") {
            None => Err("ScannedAt is required".to_owned()),
            Some(v) => as_str("scannedAt", v).and_then(|t| {
                Timestamp::parse_rfc3339(t)
                    .map(Timestamp::as_millis)
                    .ok_or_else(|| "ScannedAt must be an ISO-8601 time".to_owned())
            }),
        };
        match (code, nonce, scanned_at) {
            (Ok(payload), Ok(nonce), Ok(scanned_at)) => read.push(Read {
                payload,
                nonce,
                scanned_at,
            }),
            (code, nonce, scanned_at) => {
                if let Err(m) = code {
                    fail("code", m);
                }
                if let Err(m) = nonce {
                    fail("nonce", m);
                }
                if let Err(m) = scanned_at {
                    fail("scannedAt", m);
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let answers = gate::batch(
        &state.store,
        &device,
        read.iter()
            .map(|r| Scan {
                payload: r.payload.clone(),
                nonce: &r.nonce,
                scanned_at: r.scanned_at,
            })
            .collect(),
    )
    .await?;
    Ok(Json(BatchBody {
        results: answers
            .into_iter()
            .zip(read)
            .map(|(answer, r)| answer.batch_result(r.nonce))
            .collect(),
    }))
}
