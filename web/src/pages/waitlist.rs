//! Waiting lists (issue 30): `POST /waitlist` (join from a sold-out listing's page),
//! `/waitlist/{id}` (your place in line, or the offer to pay) and `/waitlist/{id}/leave`.
//! The offer is an order placed for the waiter: it is paid on its order's page.

use axum::extract::{Path, State};
use axum::response::Response;
use http::StatusCode;
use maud::{html, Markup};
use serde::Deserialize;
use time::OffsetDateTime;

use super::see_other;
use super::tickets::{render_show, Panel};
use crate::api::{ApiFailure, Id};
use crate::csrf::CsrfForm;
use crate::error::PageError;
use crate::format;
use crate::layout::{self, csrf_field, Chrome, FormErrors};
use crate::session::Visitor;
use crate::Settings;
use ticketing_contracts::api::waitlist::{WaitlistEntryBody, WaitlistStatus};

/// While waiting, the page reloads this often to show the line moving.
const REFRESH_SECONDS: u32 = 5;

#[derive(Deserialize)]
pub struct JoinForm {
    #[serde(default, rename = "ticketId")]
    ticket_id: String,
    #[serde(default)]
    quantity: Option<String>,
}

impl JoinForm {
    /// A number as one, anything else as typed, for the API to refuse beside its field.
    fn quantity(&self) -> Option<serde_json::Value> {
        let text = self.quantity.as_deref()?.trim();
        Some(match text.parse::<i64>() {
            Ok(n) => n.into(),
            Err(_) => text.into(),
        })
    }
}

/// "Join the waiting list" on a sold-out listing's page.
pub async fn join(
    State(settings): State<Settings>,
    visitor: Visitor,
    CsrfForm(form): CsrfForm<JoinForm>,
) -> Result<Response, PageError> {
    let ticket_id = Id::parse(&form.ticket_id).ok_or(PageError::NotFound)?;
    let back = format!("/tickets/{ticket_id}");
    let user = visitor.require_user(&settings.api, &back).await?;
    let refusal = match settings
        .api
        .join_waitlist(visitor.session(), &ticket_id, form.quantity())
        .await
    {
        Ok(entry) => return Ok(see_other(&format!("/waitlist/{}", entry.id), Vec::new())),
        Err(failure) => match failure.status() {
            Some(StatusCode::BAD_REQUEST) => FormErrors::new(failure.into_bad_request()?),
            // The orders service learns of new listings by event.
            Some(StatusCode::NOT_FOUND) => FormErrors::message(
                "This waiting list cannot be joined just yet. Please try again in a moment.",
            ),
            _ => return Err(failure.into()),
        },
    };
    let (ticket, entries) = tokio::join!(
        settings.api.ticket(visitor.session(), &ticket_id),
        settings.api.waitlist(visitor.session())
    );
    let ticket = ticket?;
    // Already in line (a second tab, the back button): their place is the answer.
    let live = entries
        .unwrap_or_default()
        .into_iter()
        .rev()
        .find(|e| e.ticket_id == ticket.id && e.status.is_live());
    if let Some(entry) = &live {
        return Ok(see_other(&format!("/waitlist/{}", entry.id), Vec::new()));
    }
    Ok(render_show(
        &visitor,
        Some(&user),
        &ticket,
        Panel::WaitlistRefused(&refusal),
        None,
        StatusCode::CONFLICT,
    ))
}

/// The entry's page for its signed-in owner.
pub async fn show(
    State(settings): State<Settings>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = Id::parse(&id).ok_or(PageError::NotFound)?;
    let user = visitor
        .require_user(&settings.api, &format!("/waitlist/{id}"))
        .await?;
    let entry = settings.api.waitlist_entry(visitor.session(), &id).await?;
    let title = ticket_title(&settings, &visitor, &entry.ticket_id).await;
    let chrome = Chrome {
        user: Some(&user),
        csrf: &visitor.csrf,
    };
    let body = html! {
        article.card.waitlist {
            p.eyebrow { "Waiting list" }
            h1 { (title) }
            dl.facts {
                div { dt { "Tickets wanted" } dd #waitlist-quantity { (entry.quantity) } }
                div { dt { "Status" } dd { span #waitlist-status class=(badge_class(entry.status)) { (label(&entry)) } } }
                div { dt { "Joined" } dd { (format::when(&entry.joined_at).unwrap_or_default()) } }
            }
            (state(&visitor, &entry))
        }
        p {
            a href={ "/tickets/" (entry.ticket_id) } { "← The ticket" }
            " · "
            a href="/orders" { "My orders" }
        }
    };
    let markup = if entry.status == WaitlistStatus::Waiting {
        layout::page_refreshing("Waiting list", &chrome, body, REFRESH_SECONDS)
    } else {
        layout::page("Waiting list", &chrome, body)
    };
    Ok(layout::render(StatusCode::OK, markup))
}

/// What the entry means for its owner, and what they can do.
fn state(visitor: &Visitor, entry: &WaitlistEntryBody) -> Markup {
    let now = OffsetDateTime::now_utc();
    html! {
        @match entry.status {
            WaitlistStatus::Waiting => {
                div.place #waitlist-place role="status" {
                    @match entry.position {
                        Some(1) => p.place-big { "You are next in line" }
                        Some(n) => p.place-big { "You are number " strong { (n) } " in line" }
                        None => p.place-big { "You are in line" }
                    }
                    p.muted { "If tickets come back, the first in line is offered them: an order is placed for you, held while you pay. This page updates by itself." }
                }
                (leave_form(visitor, entry, "Leave the waiting list"))
            }
            WaitlistStatus::Offered => {
                @let until = entry.offer_expires_at.as_deref().and_then(format::when).unwrap_or_else(|| "the offer ends".to_owned());
                @let left = entry.offer_expires_at.as_deref().and_then(|at| format::seconds_until(at, now)).unwrap_or(0);
                div.alert.alert-success #waitlist-offer role="status" {
                    p { strong { "Tickets are held for you until " (until) "." } " Pay for them before then, or they go to the next in line." }
                }
                @if let Some(order) = &entry.order_id {
                    div.countdown data-countdown data-seconds-left=(left) {
                        p {
                            span.countdown-label { "Time left to pay: " }
                            strong.countdown-time { (format::countdown(left)) }
                        }
                        p.countdown-expired role="status" hidden { strong { "The offer has ended." } " The tickets went to the next in line." }
                    }
                    p data-pay-form { a.button.button-large #waitlist-pay href={ "/orders/" (order) } { "Pay for your tickets" } }
                }
                (leave_form(visitor, entry, "Decline the offer"))
            }
            WaitlistStatus::Purchased => {
                p.alert.alert-success role="status" {
                    strong { "Purchased." } " You bought the tickets offered to you. "
                    @if let Some(order) = &entry.order_id {
                        a href={ "/orders/" (order) } { "See the order" }
                    }
                }
            }
            WaitlistStatus::Lapsed => {
                p.alert.alert-muted role="status" { strong { "The offer ran out." } " The tickets were held for you but not paid in time, so they went to the next in line." }
            }
            WaitlistStatus::Left => {
                p.alert.alert-muted role="status" { "You left this waiting list." }
            }
        }
    }
}

fn leave_form(visitor: &Visitor, entry: &WaitlistEntryBody, label: &str) -> Markup {
    html! {
        form.cancel method="post" action={ "/waitlist/" (entry.id) "/leave" } data-once {
            (csrf_field(&visitor.csrf))
            button.link-button type="submit" { (label) }
        }
    }
}

/// Leave the line, or decline an offer (the API cancels its order).
pub async fn leave(
    State(settings): State<Settings>,
    visitor: Visitor,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, PageError> {
    let id = Id::parse(&id).ok_or(PageError::NotFound)?;
    let back = format!("/waitlist/{id}");
    visitor.require_user(&settings.api, &back).await?;
    match settings.api.leave_waitlist(visitor.session(), &id).await {
        // Already settled (paid, lapsed): the page says how it ended.
        Ok(())
        | Err(ApiFailure::Refused {
            status: StatusCode::BAD_REQUEST,
            ..
        }) => Ok(see_other(&back, Vec::new())),
        Err(failure) => Err(failure.into()),
    }
}

/// The listing's title for a page about it (a plain label if it cannot be read).
async fn ticket_title(settings: &Settings, visitor: &Visitor, ticket: &str) -> String {
    match Id::parse(ticket) {
        Some(id) => settings
            .api
            .ticket(visitor.session(), &id)
            .await
            .map(|t| t.title)
            .unwrap_or_else(|_| "Ticket".to_owned()),
        None => "Ticket".to_owned(),
    }
}

/// The entry's status, as the orders page and the entry's page show it.
pub fn label(entry: &WaitlistEntryBody) -> String {
    match (entry.status, entry.position) {
        (WaitlistStatus::Waiting, Some(n)) => format!("Waiting: number {n}"),
        (WaitlistStatus::Waiting, None) => "Waiting".to_owned(),
        (WaitlistStatus::Offered, _) => "Offered: pay now".to_owned(),
        (WaitlistStatus::Purchased, _) => "Purchased".to_owned(),
        (WaitlistStatus::Lapsed, _) => "Offer lapsed".to_owned(),
        (WaitlistStatus::Left, _) => "Left".to_owned(),
    }
}

pub fn badge_class(status: WaitlistStatus) -> &'static str {
    match status {
        WaitlistStatus::Waiting | WaitlistStatus::Offered => "badge badge-pending",
        WaitlistStatus::Purchased => "badge badge-success",
        WaitlistStatus::Lapsed | WaitlistStatus::Left => "badge badge-muted",
    }
}

/// "Waiting lists" on `/orders`: the visitor's entries, newest first, with titles.
pub async fn section(settings: &Settings, visitor: &Visitor) -> Markup {
    let Ok(entries) = settings.api.waitlist(visitor.session()).await else {
        return html! {};
    };
    if entries.is_empty() {
        return html! {};
    }
    let mut titles: Vec<(String, String)> = Vec::new();
    for entry in &entries {
        if !titles.iter().any(|(id, _)| *id == entry.ticket_id) {
            let title = ticket_title(settings, visitor, &entry.ticket_id).await;
            titles.push((entry.ticket_id.clone(), title));
        }
    }
    let title_of = |id: &str| {
        titles
            .iter()
            .find(|(t, _)| t == id)
            .map(|(_, title)| title.as_str())
            .unwrap_or("Ticket")
    };
    html! {
        section.waitlists aria-labelledby="waitlists-title" {
            h2 #waitlists-title { "Waiting lists" }
            table.listing {
                thead { tr {
                    th scope="col" { "Ticket" }
                    th.num scope="col" { "Wanted" }
                    th scope="col" { "Status" }
                } }
                tbody {
                    @for entry in entries.iter().rev() {
                        tr {
                            td { a href={ "/waitlist/" (entry.id) } { (title_of(&entry.ticket_id)) } }
                            td.num { (entry.quantity) }
                            td { span class=(badge_class(entry.status)) { (label(entry)) } }
                        }
                    }
                }
            }
        }
    }
}
