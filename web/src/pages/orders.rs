//! `/orders` (mine) and `/orders/{id}`: the countdown to the reservation's end, and the
//! payment form (the sandbox's card form, or Stripe's card field with a publishable key).

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::StatusCode;
use maud::{html, Markup};
use serde::Deserialize;
use time::OffsetDateTime;

use super::refund::RefundPanel;
use super::see_other;
use super::tickets::{render_show, Panel};
use crate::api::{ApiFailure, Id};
use crate::cards;
use crate::csrf::CsrfForm;
use crate::error::PageError;
use crate::format::{self, OrderState};
use crate::layout::{self, csrf_field, Chrome, FormErrors, Input};
use crate::session::Visitor;
use crate::{assets, Settings};
use ticketing_contracts::api::checkin::PassBody;
use ticketing_contracts::api::orders::OrderBody;
use ticketing_contracts::api::users::SessionUser;
use ticketing_contracts::{ErrorItem, OrderStatus};

const CARD_FIELDS: [&str; 4] = ["number", "expiry", "cvc", "token"];

/// How long a paid order's page waits for the order to show complete (the payment
/// event's trip to the orders service, normally milliseconds).
const COMPLETION_WAIT: Duration = Duration::from_secs(3);

#[derive(Deserialize)]
pub struct PurchaseForm {
    #[serde(default, rename = "ticketId")]
    ticket_id: String,
    /// How many units, on a listing of several (absent for a single ticket: the order
    /// is sent as the seed's, without `quantity`).
    #[serde(default)]
    quantity: Option<String>,
}

impl PurchaseForm {
    /// The `quantity` to send: a number as one, anything else as typed, for the orders
    /// service to refuse.
    fn quantity(&self) -> Option<serde_json::Value> {
        let text = self.quantity.as_deref()?.trim();
        Some(match text.parse::<i64>() {
            Ok(n) => n.into(),
            Err(_) => text.into(),
        })
    }
}

/// The Purchase button: create the order, then show it.
pub async fn create(
    State(settings): State<Settings>,
    visitor: Visitor,
    CsrfForm(form): CsrfForm<PurchaseForm>,
) -> Result<Response, PageError> {
    let ticket_id = Id::parse(&form.ticket_id).ok_or(PageError::NotFound)?;
    let back = format!("/tickets/{ticket_id}");
    let user = visitor.require_user(&settings.api, &back).await?;
    let refusal = match settings
        .api
        .create_order(visitor.session(), &ticket_id, form.quantity())
        .await
    {
        Ok(order) => return Ok(see_other(&format!("/orders/{}", order.id), Vec::new())),
        Err(failure) => match failure.status() {
            Some(StatusCode::BAD_REQUEST) => FormErrors::new(failure.into_bad_request()?),
            // The orders service learns of new tickets by event and waits a little for
            // a brand-new one; if it is still on its way, the answer is 409.
            Some(StatusCode::CONFLICT) => FormErrors::message(
                "This ticket cannot be ordered just yet. Please try again in a moment.",
            ),
            // An on-sale queue holds the listing and this account is not admitted yet
            // (the order joined it): the queue's page says where they stand.
            Some(StatusCode::TOO_MANY_REQUESTS) => {
                return Ok(see_other(&format!("{back}/queue"), Vec::new()))
            }
            _ => return Err(failure.into()),
        },
    };
    let ticket = settings.api.ticket(visitor.session(), &ticket_id).await?;
    Ok(render_show(
        &visitor,
        Some(&user),
        &ticket,
        Panel::PurchaseRefused(&refusal),
        None,
        StatusCode::CONFLICT,
    ))
}

pub async fn index(
    State(settings): State<Settings>,
    visitor: Visitor,
) -> Result<Response, PageError> {
    let user = visitor.require_user(&settings.api, "/orders").await?;
    let (orders, waitlists) = tokio::join!(
        settings.api.orders(visitor.session()),
        super::waitlist::section(&settings, &visitor)
    );
    let orders = orders?;
    let now = OffsetDateTime::now_utc();
    let chrome = Chrome {
        user: Some(&user),
        csrf: &visitor.csrf,
    };
    let body = html! {
        div.page-head { h1 { "My orders" } }
        @if orders.is_empty() {
            div.empty {
                p { "You have no orders yet." }
                p { a href="/" { "Browse the tickets for sale" } }
            }
        } @else {
            table.listing {
                thead { tr {
                    th scope="col" { "Ticket" }
                    th.num scope="col" { "Price" }
                    th scope="col" { "Status" }
                } }
                tbody {
                    // Newest first: the order just placed is the one wanted.
                    @for order in orders.iter().rev() {
                        @let state = OrderState::of(order, now);
                        tr {
                            td {
                                a href={ "/orders/" (order.id) } { (order.ticket.title) }
                                @if order.quantity > 1 { " × " (order.quantity) }
                            }
                            td.num { (format::price(format::total(order.ticket.price, order.quantity.max(1)))) }
                            td { span class=(state.class()) { (state.label()) } }
                        }
                    }
                }
            }
        }
        (waitlists)
    };
    Ok(layout::render(
        StatusCode::OK,
        layout::page("My orders", &chrome, body),
    ))
}

#[derive(Deserialize)]
pub struct ShowQuery {
    #[serde(default)]
    paid: Option<String>,
}

pub async fn show(
    State(settings): State<Settings>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Query<ShowQuery>,
) -> Result<Response, PageError> {
    let page = OrderPage::open(&settings, &visitor, &id).await?;
    let view = OrderView {
        just_paid: query.paid.is_some(),
        ..OrderView::default()
    };
    page.render(view, StatusCode::OK).await
}

/// `/orders/{id}` for its signed-in owner (else off to sign in, then back).
struct OrderPage<'a> {
    settings: &'a Settings,
    visitor: &'a Visitor,
    user: SessionUser,
    id: Id,
}

impl<'a> OrderPage<'a> {
    async fn open(
        settings: &'a Settings,
        visitor: &'a Visitor,
        id: &str,
    ) -> Result<Self, PageError> {
        let id = Id::parse(id).ok_or(PageError::NotFound)?;
        let user = visitor
            .require_user(&settings.api, &format!("/orders/{id}"))
            .await?;
        Ok(OrderPage {
            settings,
            visitor,
            user,
            id,
        })
    }

    fn url(&self) -> String {
        format!("/orders/{}", self.id)
    }

    /// The page with the order as it is now.
    async fn render(&self, view: OrderView<'_>, status: StatusCode) -> Result<Response, PageError> {
        let order = self
            .settings
            .api
            .order(self.visitor.session(), &self.id)
            .await?;
        let passes = passes_of(self.settings, self.visitor, &order).await;
        let view = OrderView {
            passes: passes.as_deref(),
            ..view
        };
        let refund = RefundPanel::of(self.settings, self.visitor, &order).await;
        Ok(render_order(
            self.settings,
            self.visitor,
            &self.user,
            &order,
            view,
            &refund,
            status,
        ))
    }
}

#[derive(Deserialize, Default)]
pub struct PayForm {
    #[serde(default)]
    number: String,
    #[serde(default)]
    expiry: String,
    #[serde(default)]
    cvc: String,
    /// Stripe.js's token, when a publishable key is configured.
    #[serde(default)]
    token: String,
}

pub async fn pay(
    State(settings): State<Settings>,
    visitor: Visitor,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<PayForm>,
) -> Result<Response, PageError> {
    let page = OrderPage::open(&settings, &visitor, &id).await?;
    let token = match &settings.stripe_key {
        Some(_) if form.token.starts_with("tok_") => Ok(form.token.as_str()),
        Some(_) => Err(FormErrors::new(vec![ErrorItem {
            message: "The card could not be read. Check the card details and try again.".into(),
            field: Some("token".into()),
        }])),
        None => cards::sandbox_token(
            &form.number,
            &form.expiry,
            &form.cvc,
            OffsetDateTime::now_utc(),
        )
        .map_err(FormErrors::new),
    };
    let errors = match token {
        Ok(token) => match settings.api.pay(visitor.session(), &page.id, token).await {
            Ok(_) => {
                wait_for_completion(&settings, &visitor, &page.id).await;
                return Ok(see_other(&format!("{}?paid=1", page.url()), Vec::new()));
            }
            // The payments service learns of new orders by event and waits a little for
            // a brand-new one; if it is still on its way, the answer is 409.
            Err(failure) if failure.status() == Some(StatusCode::CONFLICT) => FormErrors::message(
                "This order cannot be paid just yet. Please try again in a moment.",
            ),
            Err(failure) => FormErrors::new(failure.into_bad_request()?),
        },
        Err(errors) => errors,
    };
    // Card numbers are not sent back; the expiry (not secret) is kept.
    let kept = PayForm {
        expiry: form.expiry,
        ..PayForm::default()
    };
    let view = OrderView {
        form: &kept,
        errors: &errors,
        ..OrderView::default()
    };
    page.render(view, StatusCode::UNPROCESSABLE_ENTITY).await
}

/// The payment is recorded; the order turns complete when the orders service hears of
/// it. Waiting briefly here lets the page the user lands on say so.
async fn wait_for_completion(settings: &Settings, visitor: &Visitor, id: &Id) {
    let _ = tokio::time::timeout(COMPLETION_WAIT, async {
        loop {
            match settings.api.order(visitor.session(), id).await {
                Ok(order) if order.status != OrderStatus::Complete => {
                    tokio::time::sleep(Duration::from_millis(25)).await
                }
                _ => return,
            }
        }
    })
    .await;
}

pub async fn cancel(
    State(settings): State<Settings>,
    visitor: Visitor,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, PageError> {
    let page = OrderPage::open(&settings, &visitor, &id).await?;
    match settings.api.cancel_order(visitor.session(), &page.id).await {
        Ok(()) => Ok(see_other(&page.url(), Vec::new())),
        Err(
            failure @ ApiFailure::Refused {
                status: StatusCode::BAD_REQUEST,
                ..
            },
        ) => {
            let errors = FormErrors::new(failure.into_bad_request()?);
            let view = OrderView {
                errors: &errors,
                ..OrderView::default()
            };
            page.render(view, StatusCode::CONFLICT).await
        }
        Err(failure) => Err(failure.into()),
    }
}

struct OrderView<'a> {
    just_paid: bool,
    form: &'a PayForm,
    errors: &'a FormErrors,
    /// A paid order's passes (`None`: not paid, or not reachable just now).
    passes: Option<&'a [PassBody]>,
}

static NO_PAY_FORM: PayForm = PayForm {
    number: String::new(),
    expiry: String::new(),
    cvc: String::new(),
    token: String::new(),
};
static NO_ERRORS: FormErrors = FormErrors::none();

impl Default for OrderView<'_> {
    fn default() -> Self {
        OrderView {
            just_paid: false,
            form: &NO_PAY_FORM,
            errors: &NO_ERRORS,
            passes: None,
        }
    }
}

fn render_order(
    settings: &Settings,
    visitor: &Visitor,
    user: &SessionUser,
    order: &OrderBody,
    view: OrderView,
    refund: &RefundPanel,
    status: StatusCode,
) -> Response {
    let chrome = Chrome {
        user: Some(user),
        csrf: &visitor.csrf,
    };
    let state = OrderState::of(order, OffsetDateTime::now_utc());
    let payable = matches!(state, OrderState::AwaitingPayment(_)) && !view.just_paid;
    let body = html! {
        article.card.order {
            p.eyebrow { "Order" }
            h1 { (order.ticket.title) }
            dl.facts {
                @if order.quantity > 1 {
                    div { dt { "Price each" } dd { (format::price(order.ticket.price)) } }
                    div { dt { "Quantity" } dd #order-quantity { (order.quantity) } }
                    div { dt { "Total" } dd #order-total { (format::price(format::total(order.ticket.price, order.quantity))) } }
                } @else {
                    div { dt { "Price" } dd { (format::price(order.ticket.price)) } }
                }
                div { dt { "Status" } dd { span #order-status class=(state.class()) { (state.label()) } } }
                div { dt { "Order number" } dd.mono { (order.id) } }
            }
            @match state {
                OrderState::AwaitingPayment(seconds) if view.just_paid => {
                    p.alert.alert-success role="status" { "Payment received. The order shows complete in a moment — " a href={ "/orders/" (order.id) } { "refresh" } "." }
                    (countdown(seconds))
                }
                OrderState::AwaitingPayment(seconds) => (countdown(seconds)),
                OrderState::Expired => p.alert.alert-muted #order-expired role="status" { strong { "Order expired." } " The reservation has ended and the ticket is back on sale. " a href="/" { "Browse tickets" } },
                OrderState::Cancelled => p.alert.alert-muted role="status" { "This order was cancelled." },
                OrderState::Refunded => p.alert.alert-muted #order-refunded role="status" { "This order was cancelled and refunded. The ticket is back on sale." },
                OrderState::Complete => p.alert.alert-success role="status" { strong { "Paid." } " The ticket is yours." },
            }
            @if matches!(state, OrderState::Complete) {
                (super::checkin::passes_section(visitor, &order.id, view.passes))
            }
            @if payable {
                (payment_form(settings, visitor, order, view.form, view.errors))
            } @else {
                (view.errors.summary(&[]))
            }
            (refund.render(visitor, order))
        }
        p { a href="/orders" { "← My orders" } }
    };
    let markup = if payable && settings.stripe_key.is_some() {
        let card_js = assets::stripe_card_js_url();
        layout::page_with_scripts(
            "Order",
            &chrome,
            body,
            &["https://js.stripe.com/v3/", &card_js],
        )
    } else if refund.pending() {
        // Without JavaScript too, the refund's status shows until it lands.
        layout::page_refreshing("Order", &chrome, body, 2)
    } else {
        layout::page("Order", &chrome, body)
    };
    layout::render(status, markup)
}

/// A paid order's passes; `None` for an unpaid order, or when the check-in service does
/// not answer (the page still shows the order).
async fn passes_of(
    settings: &Settings,
    visitor: &Visitor,
    order: &OrderBody,
) -> Option<Vec<PassBody>> {
    if order.status != OrderStatus::Complete {
        return None;
    }
    let id = Id::parse(&order.id)?;
    match settings.api.passes(visitor.session(), &id).await {
        Ok(passes) => Some(passes),
        Err(failure) => {
            tracing::warn!(order = %order.id, error = ?failure, "passes not shown");
            None
        }
    }
}

/// Rendered by the server, so a page without JavaScript shows the time left at load;
/// the script counts it down from the server's figure (never the browser's clock) and
/// says "Order expired" at zero.
fn countdown(seconds: i64) -> Markup {
    html! {
        div.countdown data-countdown data-seconds-left=(seconds) {
            p {
                span.countdown-label { "Time left to pay: " }
                strong.countdown-time { (format::countdown(seconds)) }
            }
            p.countdown-expired role="status" hidden { strong { "Order expired." } " The reservation has ended. " a href="/" { "Browse tickets" } }
            noscript { p.muted { "The reservation ends " (format::countdown(seconds)) " after this page loaded; reload to see the time left." } }
        }
    }
}

fn payment_form(
    settings: &Settings,
    visitor: &Visitor,
    order: &OrderBody,
    form: &PayForm,
    errors: &FormErrors,
) -> Markup {
    // What the payment is for: every unit of the order.
    let amount = format::total(order.ticket.price, order.quantity.max(1));
    html! {
        section.pay data-pay-form aria-labelledby="pay-title" {
            h2 #pay-title { "Pay " (format::price(amount)) }
            @match &settings.stripe_key {
                Some(key) => {
                    form.stack #stripe-form method="post" action={ "/orders/" (order.id) "/pay" } data-stripe-key=(key) {
                        (csrf_field(&visitor.csrf))
                        (errors.summary(&[]))
                        input type="hidden" name="token" value="";
                        div.field {
                            label for="card-element" { "Card" }
                            div #card-element .stripe-card {}
                            p.field-error #card-errors role="alert" {}
                        }
                        noscript { p.alert.alert-error { "Paying by card needs JavaScript: Stripe collects the card details." } }
                        button.button.button-block type="submit" { "Pay " (format::price(amount)) }
                    }
                }
                None => {
                    form.stack method="post" action={ "/orders/" (order.id) "/pay" } novalidate data-once {
                        (csrf_field(&visitor.csrf))
                        (errors.summary(&CARD_FIELDS[..3]))
                        (Input::new("Card number", "number", "text", &form.number).autocomplete("cc-number").inputmode("numeric").render(errors))
                        div.field-row {
                            (Input::new("Expiry (MM/YY)", "expiry", "text", &form.expiry).autocomplete("cc-exp").inputmode("numeric").render(errors))
                            (Input::new("Security code", "cvc", "text", &form.cvc).autocomplete("cc-csc").inputmode("numeric").render(errors))
                        }
                        button.button.button-block type="submit" { "Pay " (format::price(amount)) }
                        div.sandbox-note {
                            p { strong { "Sandbox mode" } " — no real card is charged. Use " code { (cards::SUCCESS_CARD) } " to pay, or " code { (cards::DECLINED_CARD) } " to see a decline; any future expiry and any 3 digits." }
                        }
                    }
                }
            }
            form.cancel method="post" action={ "/orders/" (order.id) "/cancel" } {
                (csrf_field(&visitor.csrf))
                button.link-button type="submit" { "Cancel this order" }
            }
        }
    }
}
