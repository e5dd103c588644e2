//! `/tickets/new` (sell) and `/tickets/{id}` (details; buy, or edit for the seller).

use axum::extract::{Path, State};
use axum::response::Response;
use http::StatusCode;
use maud::{html, Markup};
use serde::Deserialize;

use super::see_other;
use crate::api::Id;
use crate::csrf::CsrfForm;
use crate::error::PageError;
use crate::format;
use crate::layout::{self, csrf_field, Chrome, FormErrors, Input};
use crate::session::Visitor;
use crate::Settings;
use ticketing_contracts::api::tickets::{TicketBody, TicketInput};
use ticketing_contracts::api::users::SessionUser;

const FIELDS: [&str; 2] = ["title", "price"];

#[derive(Deserialize, Default)]
pub struct TicketForm {
    #[serde(default)]
    title: String,
    #[serde(default)]
    price: String,
}

impl TicketForm {
    fn input(&self) -> TicketInput {
        // A pasted "$25" is still a price.
        TicketInput::new(
            self.title.clone(),
            self.price.trim().trim_start_matches('$'),
        )
    }
}

pub async fn new_form(
    State(settings): State<Settings>,
    visitor: Visitor,
) -> Result<Response, PageError> {
    let user = visitor.require_user(&settings.api, "/tickets/new").await?;
    Ok(render_new(
        &visitor,
        &user,
        &TicketForm::default(),
        &FormErrors::default(),
        StatusCode::OK,
    ))
}

pub async fn create(
    State(settings): State<Settings>,
    visitor: Visitor,
    CsrfForm(form): CsrfForm<TicketForm>,
) -> Result<Response, PageError> {
    let user = visitor.require_user(&settings.api, "/tickets/new").await?;
    match settings
        .api
        .create_ticket(visitor.session(), &form.input())
        .await
    {
        Ok(ticket) => Ok(see_other(&format!("/tickets/{}", ticket.id), Vec::new())),
        Err(failure) => {
            let errors = FormErrors::new(failure.into_bad_request()?);
            Ok(render_new(
                &visitor,
                &user,
                &form,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            ))
        }
    }
}

fn render_new(
    visitor: &Visitor,
    user: &SessionUser,
    form: &TicketForm,
    errors: &FormErrors,
    status: StatusCode,
) -> Response {
    let chrome = Chrome {
        user: Some(user),
        csrf: &visitor.csrf,
    };
    let body = html! {
        section.card.narrow {
            h1 { "Sell a ticket" }
            form.stack method="post" action="/tickets/new" novalidate {
                (csrf_field(&visitor.csrf))
                (errors.summary(&FIELDS))
                (ticket_fields(form, errors))
                button.button.button-block type="submit" { "Sell ticket" }
            }
        }
    };
    layout::render(status, layout::page("Sell a ticket", &chrome, body))
}

fn ticket_fields(form: &TicketForm, errors: &FormErrors) -> Markup {
    html! {
        (Input::new("Title", "title", "text", &form.title).hint("What the ticket is for, e.g. the event and the date.").render(errors))
        (Input::new("Price (USD)", "price", "text", &form.price).inputmode("decimal").hint("For example 25 or 19.99.").render(errors))
    }
}

pub async fn show(
    State(settings): State<Settings>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = Id::parse(&id).ok_or(PageError::NotFound)?;
    let (user, ticket) = tokio::join!(
        settings.api.current_user(visitor.session()),
        settings.api.ticket(visitor.session(), &id)
    );
    let (user, ticket) = (user?, ticket?);
    let edit = TicketForm {
        title: ticket.title.clone(),
        price: ticket.price.to_string(),
    };
    Ok(render_show(
        &visitor,
        user.as_ref(),
        &ticket,
        Panel::Normal(&edit, &FormErrors::default()),
        StatusCode::OK,
    ))
}

/// The seller's edit form, posted to the ticket's own address.
pub async fn update(
    State(settings): State<Settings>,
    visitor: Visitor,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<TicketForm>,
) -> Result<Response, PageError> {
    let id = Id::parse(&id).ok_or(PageError::NotFound)?;
    let back = format!("/tickets/{id}");
    let user = visitor.require_user(&settings.api, &back).await?;
    match settings
        .api
        .update_ticket(visitor.session(), &id, &form.input())
        .await
    {
        Ok(_) => Ok(see_other(&back, Vec::new())),
        Err(failure) => {
            let errors = FormErrors::new(failure.into_bad_request()?);
            let ticket = settings.api.ticket(visitor.session(), &id).await?;
            Ok(render_show(
                &visitor,
                Some(&user),
                &ticket,
                Panel::Normal(&form, &errors),
                StatusCode::UNPROCESSABLE_ENTITY,
            ))
        }
    }
}

/// What the lower half of a ticket's page shows besides the defaults.
pub enum Panel<'a> {
    /// The edit form's values and errors (used when the visitor is the seller).
    Normal(&'a TicketForm, &'a FormErrors),
    /// Why a purchase was refused.
    PurchaseRefused(&'a FormErrors),
}

pub fn render_show(
    visitor: &Visitor,
    user: Option<&SessionUser>,
    ticket: &TicketBody,
    panel: Panel,
    status: StatusCode,
) -> Response {
    let chrome = Chrome {
        user,
        csrf: &visitor.csrf,
    };
    let reserved = ticket.order_id.is_some();
    let is_seller = user.is_some_and(|u| u.id == ticket.user_id);
    let body = html! {
        article.card.ticket {
            p.eyebrow { "Ticket" }
            h1 { (ticket.title) }
            p.price { (format::price(ticket.price)) }
            @if reserved {
                p { span.badge.badge-pending { "Reserved" } }
            }
            @if is_seller {
                p.muted { "You are selling this ticket." }
                (seller_panel(visitor, ticket, &panel, reserved))
            } @else if user.is_some() {
                @if let Panel::PurchaseRefused(errors) = &panel {
                    (errors.summary(&[]))
                }
                @if reserved && matches!(panel, Panel::PurchaseRefused(_)) {
                    p.muted { "Another buyer reserved it first. It goes back on sale if their order expires." }
                } @else if reserved {
                    p.notice { "Someone has reserved this ticket and is paying for it. It goes back on sale if their order expires." }
                } @else {
                    form method="post" action="/orders" {
                        (csrf_field(&visitor.csrf))
                        input type="hidden" name="ticketId" value=(ticket.id);
                        button.button.button-large type="submit" { "Purchase" }
                    }
                    p.muted { "Purchasing reserves the ticket for you while you pay." }
                }
            } @else {
                p { a.button.button-large href={ "/auth/signin?next=%2Ftickets%2F" (ticket.id) } { "Sign in to purchase" } }
            }
        }
        p { a href="/" { "← All tickets" } }
    };
    layout::render(status, layout::page(&ticket.title, &chrome, body))
}

fn seller_panel(visitor: &Visitor, ticket: &TicketBody, panel: &Panel, reserved: bool) -> Markup {
    let (form, errors) = match panel {
        Panel::Normal(form, errors) => (*form, *errors),
        Panel::PurchaseRefused(errors) => (&TicketForm::default(), *errors),
    };
    html! {
        section.edit aria-labelledby="edit-title" {
            h2 #edit-title { "Edit your ticket" }
            @if reserved {
                (errors.summary(&FIELDS))
                p.notice { "A buyer has reserved this ticket, so it cannot be edited while their order is open." }
            } @else {
                form.stack method="post" action={ "/tickets/" (ticket.id) } novalidate {
                    (csrf_field(&visitor.csrf))
                    (errors.summary(&FIELDS))
                    (ticket_fields(form, errors))
                    button.button type="submit" { "Save changes" }
                }
            }
        }
    }
}
