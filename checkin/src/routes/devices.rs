use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;
use ticketing_contracts::api::checkin::{
    CreateDevice, DeviceBody, MAX_DEVICE_NAME_CHARS, MAX_DEVICE_TICKETS,
};
use ticketing_contracts::TicketId;
use ticketing_kit::auth::RequireUser;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::json::ApiJson;
use ticketing_kit::validate::{as_str, bounded, is_valid_id, Fields};
use ticketing_kit::{ApiError, ApiResult};

use crate::{devices, listings, AppState};

fn parse_tickets(raw: &Value) -> Result<Vec<TicketId>, String> {
    let items = raw
        .as_array()
        .ok_or_else(|| "TicketIds must be a list of ticket ids".to_owned())?;
    if items.is_empty() || items.len() > MAX_DEVICE_TICKETS {
        return Err(format!(
            "TicketIds must name 1 to {MAX_DEVICE_TICKETS} listings"
        ));
    }
    let mut out: Vec<TicketId> = Vec::with_capacity(items.len());
    for item in items {
        let id = item
            .as_str()
            .filter(|id| is_valid_id(id))
            .ok_or_else(|| "TicketIds must be a list of ticket ids".to_owned())?;
        if !out.iter().any(|t| t == id) {
            out.push(TicketId::from(id));
        }
    }
    Ok(out)
}

/// Register a gate device for listings of the caller's. The answer shows its token
/// (sent as `Authorization: Device <token>`), once.
#[utoipa::path(post, path = "/api/checkin/devices", tag = "checkin", operation_id = "createDevice",
    request_body = CreateDevice, security(("session" = []), ("bearer" = [])),
    responses(
        (status = 201, description = "Registered; `token` is shown this once", body = DeviceBody),
        (status = 400, description = "A bad `name` or `ticketIds`", body = ErrorBody),
        (status = 401, description = "Not signed in, or a listing that is not the caller's", body = ErrorBody),
        (status = 409, description = "A listing created moments ago is not known here yet; try again", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    ApiJson(body): ApiJson<CreateDevice>,
) -> ApiResult<(StatusCode, Json<DeviceBody>)> {
    let mut fields = Fields::new();
    let name = fields.parse("name", body.name.as_ref(), |v| {
        let text = as_str("name", v)?.trim();
        Ok(bounded("name", text, "Name is required", MAX_DEVICE_NAME_CHARS)?.to_owned())
    });
    let tickets = fields.parse("ticketIds", body.ticket_ids.as_ref(), parse_tickets);
    let (name, tickets) = fields.finish((name, tickets))?;
    for ticket in &tickets {
        if !listings::exists(state.store.reader(), ticket).await? {
            // Listed moments ago: its event may still be on its way (decision 0029).
            let exists = || listings::exists(state.store.reader(), ticket);
            (state.arriving)
                .wait_known(ticket.as_str(), "Ticket", exists)
                .await
                .map_err(|err| match err {
                    ApiError::NotFound => ApiError::NotAuthorized,
                    other => other,
                })?;
        }
    }
    let owners = listings::owners(state.store.reader(), &tickets).await?;
    if owners.len() != tickets.len() || owners.iter().any(|(_, owner)| owner != &user.id) {
        return Err(ApiError::NotAuthorized);
    }
    let device = devices::create(&state.store, &user.id, name, tickets).await?;
    Ok((StatusCode::CREATED, Json(device)))
}

/// The caller's gate devices, oldest first (without their tokens).
#[utoipa::path(get, path = "/api/checkin/devices", tag = "checkin", operation_id = "listDevices",
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The caller's devices", body = [DeviceBody]),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
) -> ApiResult<Json<Vec<DeviceBody>>> {
    Ok(Json(devices::list(&state.store, &user.id).await?))
}

/// Remove a device: its token is refused from then on, by every process.
#[utoipa::path(delete, path = "/api/checkin/devices/{id}", tag = "checkin", operation_id = "deleteDevice",
    security(("session" = []), ("bearer" = [])),
    params(("id" = String, Path, description = "Device id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "Unknown, malformed, or another seller's", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    RequireUser(user): RequireUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if !is_valid_id(&id) || !devices::delete(&state.store, &user.id, &id).await? {
        return Err(ApiError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT)
}
