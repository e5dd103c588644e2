//! `/`: the tickets for sale, a page at a time.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;
use maud::html;
use serde::Deserialize;

use crate::api::ApiFailure;
use crate::error::PageError;
use crate::format;
use crate::layout::{self, Chrome};
use crate::session::Visitor;
use crate::Settings;

/// The API's default page: the listing the benchmark compares with `GET /api/tickets`.
const PAGE_SIZE: usize = 100;

#[derive(Deserialize)]
pub struct ListQuery {
    cursor: Option<String>,
}

pub async fn index(
    State(settings): State<Settings>,
    visitor: Visitor,
    Query(query): Query<ListQuery>,
) -> Result<Response, PageError> {
    let cursor = query.cursor.as_deref().filter(|c| !c.is_empty());
    let (user, page) = tokio::join!(
        settings.api.current_user(visitor.session()),
        settings.api.tickets(visitor.session(), cursor, PAGE_SIZE)
    );
    let page = match page {
        Ok(page) => page,
        // A stale or edited cursor: start over rather than fail.
        Err(ApiFailure::Refused { status, .. }) if status == StatusCode::BAD_REQUEST => {
            return Ok(Redirect::to("/").into_response())
        }
        Err(failure) => return Err(failure.into()),
    };
    let user = user?;
    let chrome = Chrome {
        user: user.as_ref(),
        csrf: &visitor.csrf,
    };
    let body = html! {
        div.page-head {
            h1 { "Tickets for sale" }
            @if user.is_some() {
                a.button href="/tickets/new" { "Sell a ticket" }
            }
        }
        @if page.tickets.is_empty() {
            div.empty {
                p { @if cursor.is_some() { "No more tickets." } @else { "No tickets for sale right now." } }
                @if user.is_some() {
                    p { a href="/tickets/new" { "Sell the first one" } }
                } @else {
                    p { a href="/auth/signup" { "Sign up" } " to sell a ticket." }
                }
            }
        } @else {
            table.listing {
                thead { tr { th scope="col" { "Title" } th.num scope="col" { "Price" } th scope="col" { span.visually-hidden { "Details" } } } }
                tbody {
                    @for ticket in &page.tickets {
                        tr {
                            td {
                                a href={ "/tickets/" (ticket.id) } { (ticket.title) }
                                // A listing of several: how many are left (the list
                                // shows only listings with some left).
                                @if let (Some(_), Some(left)) = (ticket.terms.quantity, ticket.available) {
                                    " " span.muted.units-left { "· " (left) " left" }
                                }
                            }
                            td.num { (format::price(ticket.price)) }
                            td.action { a.view href={ "/tickets/" (ticket.id) } aria-hidden="true" tabindex="-1" { "View" } }
                        }
                    }
                }
            }
        }
        @if cursor.is_some() || page.next_cursor.is_some() {
            nav.pager aria-label="Pages" {
                @if cursor.is_some() { a href="/" { "← First page" } }
                @if let Some(next) = &page.next_cursor {
                    a.next href={ "/?cursor=" (url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()) } { "Next page →" }
                }
            }
        }
    };
    Ok(layout::render(
        StatusCode::OK,
        layout::page("Tickets", &chrome, body),
    ))
}
