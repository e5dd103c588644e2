use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_TYPE, LINK};
use axum::http::HeaderName;
use axum::response::IntoResponse;
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
    let key = (cursor.map(str::to_owned), limit);
    let page = state
        .list_cache
        .page(&state.store, key, || async {
            let rows = tickets::list_available(&state.store, cursor, limit).await?;
            let next = (rows.len() as i64 == limit)
                .then(|| rows.last().map(|last| last.id.to_string()))
                .flatten();
            let body: Vec<TicketBody> = rows.into_iter().map(TicketBody::from).collect();
            let json = serde_json::to_vec(&body).map_err(anyhow::Error::from)?;
            Ok::<_, ApiError>((Bytes::from(json), next))
        })
        .await?;
    let mut response = ([(CONTENT_TYPE, "application/json")], page.body).into_response();
    if let Some(next) = page.next {
        let link = format!("</api/tickets?limit={limit}&cursor={next}>; rel=\"next\"");
        for (name, value) in [(NEXT_CURSOR, next), (LINK, link)] {
            if let Ok(value) = value.parse() {
                response.headers_mut().insert(name, value);
            }
        }
    }
    Ok(response)
}
