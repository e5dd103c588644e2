use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::header::LINK;
use axum::http::HeaderName;
use axum::response::IntoResponse;
use axum::Json;
use ticketing_kit::error::ErrorBody;
use ticketing_kit::validate::is_valid_id;
use ticketing_kit::{ApiError, ApiResult};

use ticketing_contracts::api::tickets::{DEFAULT_LIMIT, MAX_LIMIT, NEXT_CURSOR_HEADER};

use super::TicketBody;
use crate::{tickets, AppState};

const NEXT_CURSOR: HeaderName = HeaderName::from_static(NEXT_CURSOR_HEADER);

/// Tickets not reserved, oldest first, a page at a time.
///
/// The body stays the seed's plain array; when more may follow, the `X-Next-Cursor`
/// header (and a `Link: rel="next"`) give the `cursor` of the next page.
#[utoipa::path(get, path = "/api/tickets", tag = "tickets", operation_id = "listTickets",
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Page size, 1–1000 (default 100)"),
        ("cursor" = Option<String>, Query, pattern = "^([A-Za-z0-9_-]{1,64})?$", description = "`X-Next-Cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "Available tickets, oldest first", body = [TicketBody],
            headers(
                ("X-Next-Cursor" = String, description = "The `cursor` of the next page, when more may follow"),
                ("Link" = String, description = "`</api/tickets?limit=..&cursor=..>; rel=\"next\"`, when more may follow"),
            )),
        (status = 400, description = "Invalid limit or cursor (`field` names it)", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<impl IntoResponse> {
    let limit = match query.get("limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::field("limit", format!("Limit must be between 1 and {MAX_LIMIT}"))
            })?,
    };
    let cursor = match query.get("cursor").map(String::as_str) {
        None | Some("") => None,
        Some(c) if is_valid_id(c) => Some(c),
        Some(_) => return Err(ApiError::field("cursor", "Cursor is invalid")),
    };
    let page = tickets::list_available(&state.store, cursor, limit).await?;
    let mut headers = Vec::new();
    if page.len() as i64 == limit {
        if let Some(last) = page.last() {
            headers.push((NEXT_CURSOR, last.id.to_string()));
            headers.push((
                LINK,
                format!(
                    "</api/tickets?limit={limit}&cursor={}>; rel=\"next\"",
                    last.id
                ),
            ));
        }
    }
    let mut response =
        Json(page.into_iter().map(TicketBody::from).collect::<Vec<_>>()).into_response();
    for (name, value) in headers {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}
