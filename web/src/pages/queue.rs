//! `/tickets/{id}/queue` (issue 30): a listing's on-sale queue. Joined from the ticket's
//! page from 30 minutes before the sale (or by a purchase the orders API answered with
//! 429); the page shows the place and the estimated wait, reloading itself, and once
//! admitted the order form with the time left to use the turn.

use axum::extract::{Path, State};
use axum::response::Response;
use http::StatusCode;
use maud::{html, Markup};
use time::OffsetDateTime;

use super::see_other;
use super::tickets::{render_show, Panel, Units};
use crate::api::Id;
use crate::csrf::CsrfForm;
use crate::error::PageError;
use crate::format;
use crate::layout::{self, csrf_field, Chrome, FormErrors};
use crate::session::Visitor;
use crate::Settings;
use ticketing_contracts::api::queue::{QueueBody, QueueStatus, OPENS_BEFORE_SECONDS};
use ticketing_contracts::api::tickets::TicketBody;

/// How often the page reloads while in line: more often close to the head.
fn refresh_seconds(queue: &QueueBody) -> Option<u32> {
    match (queue.status, queue.position) {
        (QueueStatus::Waiting, Some(n)) if n <= 10 => Some(2),
        (QueueStatus::Waiting, _) => Some(5),
        // Units may come back (an order expiring): the line may move again.
        (QueueStatus::SoldOut, _) => Some(10),
        _ => None,
    }
}

/// "Join the queue": join, then the queue's page.
pub async fn join(
    State(settings): State<Settings>,
    visitor: Visitor,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, PageError> {
    let id = Id::parse(&id).ok_or(PageError::NotFound)?;
    let page = format!("/tickets/{id}/queue");
    let user = visitor.require_user(&settings.api, &page).await?;
    let refusal = match settings.api.join_queue(visitor.session(), &id).await {
        Ok(_) => return Ok(see_other(&page, Vec::new())),
        Err(failure) => FormErrors::new(failure.into_bad_request()?),
    };
    let ticket = settings.api.ticket(visitor.session(), &id).await?;
    Ok(render_show(
        &visitor,
        Some(&user),
        &ticket,
        Panel::PurchaseRefused(&refusal),
        None,
        StatusCode::CONFLICT,
    ))
}

pub async fn show(
    State(settings): State<Settings>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = Id::parse(&id).ok_or(PageError::NotFound)?;
    let user = visitor
        .require_user(&settings.api, &format!("/tickets/{id}/queue"))
        .await?;
    let (ticket, queue) = tokio::join!(
        settings.api.ticket(visitor.session(), &id),
        settings.api.queue(visitor.session(), &id)
    );
    let ticket = ticket?;
    let queue = match queue {
        Ok(queue) => Some(queue),
        Err(failure) if failure.status() == Some(StatusCode::NOT_FOUND) => None,
        Err(failure) => return Err(failure.into()),
    };
    let chrome = Chrome {
        user: Some(&user),
        csrf: &visitor.csrf,
    };
    let body = html! {
        article.card.queue {
            p.eyebrow { "Queue" }
            h1 { (ticket.title) }
            p.price { (format::price(ticket.price)) }
            @match &queue {
                Some(queue) => (place(&visitor, &ticket, queue)),
                None => (not_in_line(&visitor, &ticket)),
            }
        }
        p { a href={ "/tickets/" (ticket.id) } { "← The ticket" } }
    };
    let markup = match queue.as_ref().and_then(refresh_seconds) {
        Some(seconds) => layout::page_refreshing("Queue", &chrome, body, seconds),
        None => layout::page("Queue", &chrome, body),
    };
    Ok(layout::render(StatusCode::OK, markup))
}

/// Where the visitor stands, and what they can do.
fn place(visitor: &Visitor, ticket: &TicketBody, queue: &QueueBody) -> Markup {
    let now = OffsetDateTime::now_utc();
    let opens = format::when(&queue.opens_at).unwrap_or_else(|| queue.opens_at.clone());
    let before_sale = format::seconds_until(&queue.opens_at, now).is_some_and(|s| s > 0);
    html! {
        @match queue.status {
            QueueStatus::Waiting => {
                div.place #queue-place role="status" {
                    @match queue.position {
                        Some(1) => p.place-big { "You are next in the queue" }
                        Some(n) => p.place-big { "You are number " strong { (n) } " in the queue" }
                        None => p.place-big { "You're in the queue." }
                    }
                    @if queue.position.is_none() && before_sale {
                        p { "The order of everyone who joined before the sale is drawn at random when it opens." }
                        p.muted #queue-opens { "The sale opens " (opens) "." }
                    }
                    @if let Some(eta) = queue.eta_seconds {
                        p #queue-eta { "Estimated wait: " strong { (format::eta(eta)) } "." }
                    }
                    p.muted { "Keep this page open: it updates by itself, and shows the order form when it is your turn." }
                }
            }
            QueueStatus::Admitted => {
                @let until = queue.admitted_until.as_deref().and_then(format::when).unwrap_or_default();
                @let left = queue.admitted_until.as_deref().and_then(|at| format::seconds_until(at, now)).unwrap_or(0);
                div.alert.alert-success #queue-admitted role="status" {
                    p { strong { "It's your turn." } " You can place one order until " (until) "." }
                }
                div.countdown data-countdown data-seconds-left=(left) {
                    p {
                        span.countdown-label { "Time left to order: " }
                        strong.countdown-time { (format::countdown(left)) }
                    }
                    p.countdown-expired role="status" hidden { strong { "Your turn has ended." } " " a href={ "/tickets/" (ticket.id) "/queue" } { "Reload" } " to see where you stand." }
                    noscript { p.muted { "Your turn ends " (format::countdown(left)) " after this page loaded." } }
                }
                div data-pay-form { (order_form(visitor, ticket)) }
            }
            QueueStatus::Used => {
                p.alert.alert-success role="status" { strong { "Order placed." } " Your turn in the queue was used to place an order. " a href="/orders" { "See your orders" } }
            }
            QueueStatus::Expired => {
                p.alert.alert-muted role="status" { strong { "Your turn ran out." } " No order was placed in time." }
                (join_form(visitor, ticket, "Join the queue again"))
            }
            QueueStatus::SoldOut => {
                p.alert.alert-muted #queue-sold-out role="status" { strong { "Sold out." } " Everything is reserved or sold. Tickets may come back if orders expire: you keep your place, and this page updates by itself." }
            }
        }
    }
}

/// The admitted visitor's order form, as the ticket's page has it.
fn order_form(visitor: &Visitor, ticket: &TicketBody) -> Markup {
    html! {
        form.stack.purchase method="post" action="/orders" data-once {
            (csrf_field(&visitor.csrf))
            input type="hidden" name="ticketId" value=(ticket.id);
            @if let Some(units) = Units::of(ticket) {
                (units.quantity_select(units.per_order.min(units.available)))
            }
            button.button.button-large type="submit" { "Purchase" }
        }
        p.muted { "Purchasing reserves the tickets for you while you pay." }
    }
}

fn join_form(visitor: &Visitor, ticket: &TicketBody, label: &str) -> Markup {
    html! {
        form method="post" action={ "/tickets/" (ticket.id) "/queue" } data-once {
            (csrf_field(&visitor.csrf))
            button.button.button-large type="submit" { (label) }
        }
    }
}

/// Not in this listing's queue: join it if it is open.
fn not_in_line(visitor: &Visitor, ticket: &TicketBody) -> Markup {
    let opens_in = ticket
        .terms
        .on_sale_at
        .as_deref()
        .and_then(|at| format::seconds_until(at, OffsetDateTime::now_utc()));
    html! {
        p #queue-none { "You are not in the queue for this sale." }
        @match opens_in {
            Some(s) if s > OPENS_BEFORE_SECONDS => {
                p.muted { "The queue opens 30 minutes before the sale, which starts "
                    (ticket.terms.on_sale_at.as_deref().and_then(format::when).unwrap_or_default()) "." }
            }
            _ => (join_form(visitor, ticket, "Join the queue")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ticketing_contracts::time::{format_millis, now_millis};

    fn ticket(on_sale_at: i64) -> TicketBody {
        serde_json::from_value(serde_json::json!({
            "id": "t1", "title": "Drop", "price": 20, "userId": "seller", "version": 0,
            "quantity": 50, "maxPerOrder": 4, "onSaleAt": format_millis(on_sale_at),
            "available": 50,
        }))
        .unwrap()
    }

    fn queue(status: QueueStatus, position: Option<i64>, eta: Option<i64>) -> QueueBody {
        QueueBody {
            status,
            position,
            eta_seconds: eta,
            opens_at: format_millis(now_millis() + 60_000),
            admitted_until: (status == QueueStatus::Admitted)
                .then(|| format_millis(now_millis() + 120_000)),
        }
    }

    fn render(queue: &QueueBody) -> String {
        let visitor = Visitor::for_test("token");
        place(&visitor, &ticket(now_millis() + 60_000), queue).into_string()
    }

    #[test]
    fn before_the_sale_the_draw_is_announced() {
        let waiting = queue(QueueStatus::Waiting, None, None);
        let page = render(&waiting);
        assert!(page.contains("You're in the queue."), "{page}");
        assert!(page.contains("drawn at random when it opens"), "{page}");
        assert!(page.contains("The sale opens "), "{page}");
        assert!(!page.contains("<form"), "{page}");
        assert_eq!(refresh_seconds(&waiting), Some(5));
    }

    #[test]
    fn in_line_the_place_and_wait_show_and_refresh_faster_near_the_head() {
        let far = queue(QueueStatus::Waiting, Some(1234), Some(95));
        let page = render(&far);
        assert!(
            page.contains("You are number <strong>1234</strong> in the queue"),
            "{page}"
        );
        assert!(page.contains("Estimated wait: <strong>about 2 minutes</strong>"));
        assert_eq!(refresh_seconds(&far), Some(5));
        let near = queue(QueueStatus::Waiting, Some(1), Some(3));
        assert!(render(&near).contains("You are next in the queue"));
        assert_eq!(refresh_seconds(&near), Some(2));
    }

    #[test]
    fn admitted_the_order_form_and_the_time_left_show() {
        let admitted = queue(QueueStatus::Admitted, None, None);
        let page = render(&admitted);
        assert!(page.contains("It's your turn."), "{page}");
        assert!(page.contains("You can place one order until "), "{page}");
        assert!(page.contains("data-seconds-left=\"1"), "{page}");
        assert!(page.contains("Time left to order"), "{page}");
        assert!(page.contains(r#"action="/orders""#), "{page}");
        assert!(page.contains(r#"<option value="4">4</option>"#), "{page}");
        assert!(!page.contains(r#"<option value="5">"#), "{page}");
        assert!(page.contains(r#"name="csrf" value="token""#), "{page}");
        assert_eq!(refresh_seconds(&admitted), None);
    }

    #[test]
    fn used_expired_and_sold_out_say_so() {
        let used = render(&queue(QueueStatus::Used, None, None));
        assert!(used.contains("Order placed."), "{used}");
        let expired = render(&queue(QueueStatus::Expired, None, None));
        assert!(expired.contains("Your turn ran out."), "{expired}");
        assert!(expired.contains("Join the queue again"), "{expired}");
        let sold_out = queue(QueueStatus::SoldOut, Some(7), None);
        assert!(render(&sold_out).contains("Sold out."));
        assert_eq!(refresh_seconds(&sold_out), Some(10));
    }
}
