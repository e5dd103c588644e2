//! `/tickets/new` (sell) and `/tickets/{id}` (details; buy, or edit for the seller).

use axum::extract::{Path, State};
use axum::response::Response;
use http::StatusCode;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use super::see_other;
use crate::api::Id;
use crate::csrf::CsrfForm;
use crate::error::PageError;
use crate::format;
use crate::layout::{self, csrf_field, Chrome, FormErrors, Input};
use crate::session::Visitor;
use crate::Settings;
use ticketing_contracts::api::queue::OPENS_BEFORE_SECONDS;
use ticketing_contracts::api::tickets::{TicketBody, TicketInput};
use ticketing_contracts::api::users::SessionUser;
use ticketing_contracts::api::waitlist::WaitlistEntryBody;

/// The fields whose errors show beside them (named as the API names them).
const FIELDS: [&str; 10] = [
    "title",
    "price",
    "quantity",
    "maxPerOrder",
    "maxPerAccount",
    "onSaleAt",
    "eventAt",
    "refundPolicy",
    "cutoffHours",
    "feePercent",
];

#[derive(Deserialize, Default)]
pub struct TicketForm {
    #[serde(default)]
    title: String,
    #[serde(default)]
    price: String,
    /// The sale terms (the sell form only; all optional: empty is not sent).
    #[serde(default)]
    quantity: String,
    #[serde(default, rename = "maxPerOrder")]
    max_per_order: String,
    #[serde(default, rename = "maxPerAccount")]
    max_per_account: String,
    /// A `datetime-local` value, read as UTC.
    #[serde(default, rename = "onSaleAt")]
    on_sale_at: String,
    /// The event's time (a `datetime-local` value, read as UTC) and the refund policy
    /// (both optional; the policy needs the time).
    #[serde(default, rename = "eventAt")]
    event_at: String,
    #[serde(default, rename = "cutoffHours")]
    cutoff_hours: String,
    #[serde(default, rename = "feePercent")]
    fee_percent: String,
}

impl TicketForm {
    fn input(&self) -> TicketInput {
        // A pasted "$25" is still a price.
        let mut input = TicketInput::new(
            self.title.clone(),
            self.price.trim().trim_start_matches('$'),
        );
        input.quantity = whole_number(&self.quantity);
        input.max_per_order = whole_number(&self.max_per_order);
        input.max_per_account = whole_number(&self.max_per_account);
        let on_sale_at = self.on_sale_at.trim();
        input.on_sale_at = (!on_sale_at.is_empty())
            .then(|| Value::String(format::utc_from_datetime_local(on_sale_at)));
        self.refund_input(&mut input);
        input
    }

    /// The event time and refund policy, when given: a policy with a field left empty
    /// goes as it is, for the API to refuse beside the policy's fields.
    fn refund_input(&self, input: &mut TicketInput) {
        let event_at = self.event_at.trim();
        input.event_at = (!event_at.is_empty())
            .then(|| Value::String(format::utc_from_datetime_local(event_at)));
        if !(self.cutoff_hours.trim().is_empty() && self.fee_percent.trim().is_empty()) {
            input.refund_policy = Some(serde_json::json!({
                "cutoffHours": whole_number(&self.cutoff_hours),
                "feePercent": whole_number(&self.fee_percent),
            }));
        }
    }

    /// The edit form of `ticket`: title and price, its event time and policy (the API
    /// keeps the terms, which the form does not send).
    fn editing(ticket: &TicketBody) -> TicketForm {
        let policy = ticket.refund.refund_policy;
        TicketForm {
            title: ticket.title.clone(),
            price: ticket.price.to_string(),
            // `2026-12-24T18:00:00.000Z` as a `datetime-local` value: to the minute.
            event_at: ticket
                .refund
                .event_at
                .as_deref()
                .map(|at| at.chars().take(16).collect())
                .unwrap_or_default(),
            cutoff_hours: policy
                .map(|p| p.cutoff_hours.to_string())
                .unwrap_or_default(),
            fee_percent: policy
                .map(|p| p.fee_percent.to_string())
                .unwrap_or_default(),
            ..TicketForm::default()
        }
    }
}

/// A number field as typed: empty is not sent, a number goes as one, and anything else
/// as the text, for the API to refuse beside its field.
fn whole_number(text: &str) -> Option<Value> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(match serde_json::from_str::<serde_json::Number>(text) {
        Ok(n) => Value::Number(n),
        Err(_) => Value::String(text.to_owned()),
    })
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
                (terms_fields(form, errors))
                (refund_fields(form, errors))
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

/// The event's time and the refund policy, all optional: left empty, paid orders
/// cannot be cancelled.
fn refund_fields(form: &TicketForm, errors: &FormErrors) -> Markup {
    let policy_error = errors.field("refundPolicy");
    html! {
        fieldset.stack.terms #refund-policy {
            legend { "Event and refunds (optional)" }
            (Input::new("Event time (UTC)", "eventAt", "datetime-local", &form.event_at).hint("When the event takes place; needed for a refund policy.").optional().render(errors))
            @if let Some(error) = policy_error {
                p.field-error #f-refundPolicy-error role="alert" { (error) }
            }
            div.field-row {
                (Input::new("Cancel until (hours before)", "cutoffHours", "number", &form.cutoff_hours).inputmode("numeric").hint("0 to 8,760.").optional().render(errors))
                (Input::new("Fee (%)", "feePercent", "text", &form.fee_percent).inputmode("decimal").hint("Kept from each refund, 0 to 100.").optional().render(errors))
            }
            p.field-hint { "With both, buyers can cancel a paid order until then and get the price back less the fee." }
        }
    }
}

/// The sale terms, all optional: left empty, the ticket is one, on sale now.
fn terms_fields(form: &TicketForm, errors: &FormErrors) -> Markup {
    html! {
        fieldset.stack.terms {
            legend { "Several tickets? (optional)" }
            p.field-hint { "Leave these empty to sell a single ticket, on sale now." }
            (Input::new("Quantity", "quantity", "number", &form.quantity).inputmode("numeric").hint("How many tickets, 1 to 100,000.").optional().render(errors))
            div.field-row {
                (Input::new("Max per order", "maxPerOrder", "number", &form.max_per_order).inputmode("numeric").hint("Default: the quantity, at most 10.").optional().render(errors))
                (Input::new("Max per account", "maxPerAccount", "number", &form.max_per_account).inputmode("numeric").hint("Default: the max per order.").optional().render(errors))
            }
            (Input::new("On sale at (UTC)", "onSaleAt", "datetime-local", &form.on_sale_at).hint("A date and time in UTC; empty: on sale now.").optional().render(errors))
        }
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
    // The edit form sends title, price and the refund policy: the API keeps the terms.
    let edit = TicketForm::editing(&ticket);
    let waitlisted = live_entry(&settings, &visitor, user.as_ref(), &ticket).await;
    Ok(render_show(
        &visitor,
        user.as_ref(),
        &ticket,
        Panel::Normal(&edit, &FormErrors::default()),
        waitlisted.as_ref(),
        StatusCode::OK,
    ))
}

/// The visitor's place on a sold-out listing's waiting list, if they are in it (a buyer
/// coming back sees it instead of the form to join). Best effort: without it the form
/// shows, and joining again leads to the same entry.
pub async fn live_entry(
    settings: &Settings,
    visitor: &Visitor,
    user: Option<&SessionUser>,
    ticket: &TicketBody,
) -> Option<WaitlistEntryBody> {
    let sold_out = Units::of(ticket).is_some_and(|u| u.available == 0);
    let buyer = user.is_some_and(|u| u.id != ticket.user_id);
    if !(sold_out && buyer) {
        return None;
    }
    let entries = settings.api.waitlist(visitor.session()).await.ok()?;
    entries
        .into_iter()
        .rev()
        .find(|e| e.ticket_id == ticket.id && e.status.is_live())
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
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            ))
        }
    }
}

/// What the lower half of a ticket's page shows besides the defaults.
pub enum Panel<'a> {
    /// The edit form's values and errors (used when the visitor is the seller).
    Normal(&'a TicketForm, &'a FormErrors),
    /// Why a purchase (or joining the on-sale queue) was refused.
    PurchaseRefused(&'a FormErrors),
    /// Why joining the waiting list was refused (`quantity` beside its field).
    WaitlistRefused(&'a FormErrors),
}

impl Panel<'_> {
    /// A refusal to show above the buyer's form.
    fn refusal(&self) -> Option<&FormErrors> {
        match self {
            Panel::Normal(..) => None,
            Panel::PurchaseRefused(errors) | Panel::WaitlistRefused(errors) => Some(errors),
        }
    }
}

/// A ticket's page; `waitlisted`: the visitor's live entry on its waiting list.
pub fn render_show(
    visitor: &Visitor,
    user: Option<&SessionUser>,
    ticket: &TicketBody,
    panel: Panel,
    waitlisted: Option<&WaitlistEntryBody>,
    status: StatusCode,
) -> Response {
    let chrome = Chrome {
        user,
        csrf: &visitor.csrf,
    };
    let reserved = ticket.order_id.is_some();
    let is_seller = user.is_some_and(|u| u.id == ticket.user_id);
    let units = Units::of(ticket);
    let body = html! {
        article.card.ticket {
            p.eyebrow { "Ticket" }
            h1 { (ticket.title) }
            p.price { (format::price(ticket.price)) }
            @if reserved {
                p { span.badge.badge-pending { "Reserved" } }
            }
            @if let Some(units) = &units {
                (units.status())
            }
            (refund_facts(ticket))
            @if is_seller {
                p.muted { "You are selling this ticket." }
                (seller_panel(visitor, ticket, &panel, reserved))
            } @else if user.is_some() {
                @if let Panel::WaitlistRefused(errors) = &panel {
                    (errors.summary(&["quantity"]))
                } @else if let Some(errors) = panel.refusal() {
                    (errors.summary(&[]))
                }
                @if let Some(units) = &units {
                    @let waitlist_errors = match &panel {
                        Panel::WaitlistRefused(errors) => *errors,
                        _ => &NO_ERRORS,
                    };
                    (units.purchase(visitor, ticket, waitlisted, waitlist_errors))
                } @else if reserved && matches!(panel, Panel::PurchaseRefused(_)) {
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

/// The event's time and what a buyer may cancel, when the listing says.
fn refund_facts(ticket: &TicketBody) -> Markup {
    let event_at = ticket.refund.event_at.as_deref();
    html! {
        @if let Some(at) = event_at {
            p #event-at { "Event: " (format::when(at).unwrap_or_else(|| at.to_owned())) }
        }
        @if let Some(policy) = ticket.refund.refund_policy {
            p.muted #refund-policy-facts {
                "Refundable: cancel up to " (policy.cutoff_hours) " hours before the event, less a "
                (policy.fee_percent) "% fee."
            }
        }
    }
}

fn seller_panel(visitor: &Visitor, ticket: &TicketBody, panel: &Panel, reserved: bool) -> Markup {
    let (form, errors) = match panel {
        Panel::Normal(form, errors) => (*form, *errors),
        Panel::PurchaseRefused(errors) | Panel::WaitlistRefused(errors) => {
            (&TicketForm::default(), *errors)
        }
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
                    (refund_fields(form, errors))
                    button.button type="submit" { "Save changes" }
                }
            }
        }
    }
}

/// A listing of several units (one with `quantity`): what is left, and how many one
/// order may take.
pub(super) struct Units {
    quantity: i64,
    pub available: i64,
    pub per_order: i64,
    /// When the sale opens, while that is still ahead.
    opens: Option<String>,
    /// Seconds until the sale opens, while that is still ahead.
    opens_in: Option<i64>,
}

static NO_ERRORS: FormErrors = FormErrors::none();

impl Units {
    pub fn of(ticket: &TicketBody) -> Option<Units> {
        let quantity = ticket.terms.quantity?;
        let opens_in = ticket
            .terms
            .on_sale_at
            .as_deref()
            .and_then(|at| format::seconds_until(at, time::OffsetDateTime::now_utc()))
            .filter(|s| *s > 0);
        let opens = ticket
            .terms
            .on_sale_at
            .as_deref()
            .filter(|_| opens_in.is_some());
        Some(Units {
            quantity,
            available: ticket.available.unwrap_or(quantity).clamp(0, quantity),
            per_order: ticket.terms.per_order(),
            opens: opens.map(|at| format::when(at).unwrap_or_else(|| at.to_owned())),
            opens_in,
        })
    }

    /// The on-sale queue takes joins from 30 minutes before the sale.
    fn queue_open(&self) -> bool {
        self.opens_in.is_some_and(|s| s <= OPENS_BEFORE_SECONDS)
    }

    /// The quantity choice of an order, `most` at most.
    pub fn quantity_select(&self, most: i64) -> Markup {
        html! {
            div.field {
                label for="f-quantity" { "How many" }
                select #f-quantity name="quantity" {
                    @for n in 1..=most.max(1) {
                        option value=(n) selected[n == 1] { (n) }
                    }
                }
                p.field-hint { "At most " (self.per_order) " per order." }
            }
        }
    }

    fn status(&self) -> Markup {
        html! {
            @if self.available == 0 {
                p.units { span.badge.badge-muted #units-left { "Sold out" } }
            } @else {
                p.units #units-left { strong { (self.available) } " of " (self.quantity) " left" }
            }
            @if let Some(opens) = &self.opens {
                p.notice #on-sale-at { "On sale from " (opens) "." }
            }
        }
    }

    /// The buyer's form: how many (1 to the order's cap, at most what is left); sold
    /// out, the waiting list; before the sale, the on-sale queue.
    fn purchase(
        &self,
        visitor: &Visitor,
        ticket: &TicketBody,
        waitlisted: Option<&WaitlistEntryBody>,
        errors: &FormErrors,
    ) -> Markup {
        let most = self.per_order.min(self.available);
        html! {
            @if self.opens.is_some() && self.queue_open() {
                section.queue-join aria-labelledby="queue-title" {
                    h2 #queue-title { "The queue is open" }
                    p { "Join the queue now. When the sale opens, everyone who joined before it is put in a random order, and each in turn gets a few minutes to order." }
                    form method="post" action={ "/tickets/" (ticket.id) "/queue" } data-once {
                        (csrf_field(&visitor.csrf))
                        button.button.button-large type="submit" { "Join the queue" }
                    }
                }
            } @else if self.opens.is_some() {
                p.muted { "A queue opens 30 minutes before the sale: come back then to join it." }
            } @else if let Some(entry) = waitlisted {
                p.notice #waitlisted {
                    @if let Some(position) = entry.position {
                        "You are on the waiting list: number " (position) " in line. "
                    } @else {
                        "Tickets are held for you from the waiting list. "
                    }
                    a href={ "/waitlist/" (entry.id) } { "See your place" }
                }
            } @else if self.available == 0 {
                section.waitlist-join aria-labelledby="waitlist-title" {
                    h2 #waitlist-title { "Join the waiting list" }
                    p.muted { "All of these tickets are reserved or sold. If some come back, they are offered to the waiting list in turn: you get an order to pay, held for you for a while." }
                    form.stack method="post" action="/waitlist" novalidate data-once {
                        (csrf_field(&visitor.csrf))
                        input type="hidden" name="ticketId" value=(ticket.id);
                        @let error = errors.field("quantity");
                        div.field.has-error[error.is_some()] {
                            label for="f-quantity" { "How many" }
                            select #f-quantity name="quantity" aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| "f-quantity-error")] {
                                @for n in 1..=self.per_order.max(1) {
                                    option value=(n) selected[n == 1] { (n) }
                                }
                            }
                            @if let Some(error) = error {
                                p.field-error #f-quantity-error { (error) }
                            }
                            p.field-hint { "At most " (self.per_order) " per order." }
                        }
                        button.button.button-large type="submit" { "Join the waiting list" }
                    }
                }
            } @else {
                form.stack.purchase method="post" action="/orders" {
                    (csrf_field(&visitor.csrf))
                    input type="hidden" name="ticketId" value=(ticket.id);
                    (self.quantity_select(most))
                    button.button.button-large type="submit" { "Purchase" }
                }
                p.muted { "Purchasing reserves the tickets for you while you pay." }
            }
        }
    }
}
