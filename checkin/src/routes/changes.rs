use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::Json;
use ticketing_contracts::api::checkin::{ChangesBody, MAX_WAIT_SECONDS};
use ticketing_kit::error::ErrorBody;
use ticketing_kit::{ApiError, ApiResult};
use tokio::time::Instant;

use crate::devices::RequireDevice;
use crate::{changes, AppState};

/// What changed for the device's listings after `cursor` (revocations, check-ins),
/// oldest first. With `wait`, an answer with nothing new waits up to that many seconds
/// for a change (committed by any process: the table is looked at every 100 ms).
#[utoipa::path(get, path = "/api/checkin/changes", tag = "checkin", operation_id = "checkinChanges",
    security(("device" = [])),
    params(
        ("cursor" = Option<String>, Query, description = "The `cursor` of the previous answer (absent: from the start)"),
        ("wait" = Option<u64>, Query, maximum = 30, description = "Seconds to wait for a change when there is none"),
    ),
    responses(
        (status = 200, description = "Changes and the cursor to ask from next", body = ChangesBody),
        (status = 400, description = "A malformed `cursor` or `wait`", body = ErrorBody),
        (status = 401, description = "No device token, or a removed device's", body = ErrorBody),
    ))]
pub async fn changes(
    State(state): State<AppState>,
    RequireDevice(device): RequireDevice,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<ChangesBody>> {
    let number = |name: &str, max: i64| -> ApiResult<i64> {
        match query.get(name).map(|c| c.trim()) {
            None | Some("") => Ok(0),
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|c| (0..=max).contains(c))
                .ok_or_else(|| {
                    ApiError::field(
                        name,
                        format!("{name} must be a whole number from 0 to {max}"),
                    )
                }),
        }
    };
    let cursor = number("cursor", i64::MAX)?;
    let wait = Duration::from_secs(number("wait", MAX_WAIT_SECONDS as i64)? as u64);
    let until = Instant::now() + wait;
    loop {
        let (list, next) = changes::after(&state.store, &device.id, cursor).await?;
        if !list.is_empty() || Instant::now() + state.poll > until {
            return Ok(Json(ChangesBody {
                changes: list,
                cursor: next.to_string(),
            }));
        }
        tokio::time::sleep(state.poll).await;
    }
}
