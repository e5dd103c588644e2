//! "Cancel and refund" on `/orders/{id}` (issue 32): a paid order of a listing with a
//! refund policy can be cancelled for the total less the policy's fee until the cutoff;
//! then the cancellation's status shows until the refund went through.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::Response;
use maud::{html, Markup};

use super::see_other;
use crate::api::{ApiFailure, Id};
use crate::csrf::CsrfForm;
use crate::error::PageError;
use crate::format;
use crate::layout::csrf_field;
use crate::session::Visitor;
use crate::Settings;
use ticketing_contracts::api::orders::{CancellationBody, CancellationStatus, OrderBody};
use ticketing_contracts::api::tickets::TicketBody;
use ticketing_contracts::{Cents, OrderStatus, Timestamp};

/// How long the cancel button's answer waits for the refund (normally milliseconds),
/// so that the page the buyer lands on says it went through.
const REFUND_WAIT: Duration = Duration::from_secs(3);

/// What the order's page says of cancelling it for a refund.
pub enum RefundPanel {
    /// Nothing to say: not paid, or its listing has no policy (and no cancellation).
    None,
    /// Paid, the policy open until `closes`: the form, with what goes back.
    Offer {
        refund: Cents,
        fee: Cents,
        fee_percent: String,
        closes: String,
    },
    /// Past the policy's cutoff.
    Closed { cutoff_hours: i64 },
    /// Cancelled for a refund (or asked to be).
    Made(CancellationBody),
}

impl RefundPanel {
    /// The panel of `order`: its cancellation, or what its listing's policy offers.
    /// Best effort: an API that does not answer leaves the panel out, not the page.
    pub async fn of(settings: &Settings, visitor: &Visitor, order: &OrderBody) -> RefundPanel {
        let Some(id) = Id::parse(&order.id) else {
            return RefundPanel::None;
        };
        if let Ok(Some(made)) = settings.api.cancellation(visitor.session(), &id).await {
            return RefundPanel::Made(made);
        }
        if order.status != OrderStatus::Complete {
            return RefundPanel::None;
        }
        let Some(ticket) = Id::parse(&order.ticket.id) else {
            return RefundPanel::None;
        };
        match settings.api.ticket(visitor.session(), &ticket).await {
            Ok(ticket) => Self::offer(order, &ticket, Timestamp::now()),
            Err(_) => RefundPanel::None,
        }
    }

    /// The offer of `ticket`'s policy for `order` at `now` (the orders service decides;
    /// this is what it will say).
    fn offer(order: &OrderBody, ticket: &TicketBody, now: Timestamp) -> RefundPanel {
        let (Some(policy), Some(event_at)) = (
            ticket.refund.refund_policy,
            ticket
                .refund
                .event_at
                .as_deref()
                .and_then(Timestamp::parse_rfc3339),
        ) else {
            return RefundPanel::None;
        };
        let closes = Timestamp::from_millis(event_at.as_millis() - policy.cutoff_hours * 3_600_000);
        if now >= closes {
            return RefundPanel::Closed {
                cutoff_hours: policy.cutoff_hours,
            };
        }
        // The total at the order's price (the listing's may have changed since).
        let total = format::total(order.ticket.price, order.quantity.max(1)).get();
        let fee = policy.fee_percent.of(total);
        RefundPanel::Offer {
            refund: Cents::new(total - fee),
            fee: Cents::new(fee),
            fee_percent: policy.fee_percent.to_string(),
            closes: format::when(&closes.to_rfc3339()).unwrap_or_default(),
        }
    }

    /// Is a refund on its way (the page may reload itself until it lands)?
    pub fn pending(&self) -> bool {
        matches!(self, RefundPanel::Made(c) if c.status == CancellationStatus::Requested)
    }

    pub fn render(&self, visitor: &Visitor, order: &OrderBody) -> Markup {
        html! {
            @match self {
                RefundPanel::None => {}
                RefundPanel::Offer { refund, fee, fee_percent, closes } => {
                    section.refund #refund aria-labelledby="refund-title" {
                        h2 #refund-title { "Cancel and refund" }
                        dl.facts {
                            div { dt { "You get back" } dd #refund-amount { (format::price(*refund)) } }
                            div { dt { "Fee (" (fee_percent) "%)" } dd #refund-fee { (format::price(*fee)) } }
                            div { dt { "Until" } dd #refund-deadline { (closes) } }
                        }
                        form method="post" action={ "/orders/" (order.id) "/refund" } data-once {
                            (csrf_field(&visitor.csrf))
                            button.button type="submit" { "Cancel and refund " (format::price(*refund)) }
                        }
                        p.muted { "The ticket goes back on sale; the refund goes to the card you paid with." }
                    }
                }
                RefundPanel::Closed { cutoff_hours } => {
                    p.muted #refund-closed { "Cancellations closed " (cutoff_hours) " hours before the event." }
                }
                RefundPanel::Made(c) => {
                    section.refund #refund aria-labelledby="refund-title" {
                        h2 #refund-title { "Cancellation" }
                        @match c.status {
                            CancellationStatus::Requested => p.alert.alert-muted #refund-status role="status" data-status="requested" {
                                strong { "Refund on its way." } " " (format::price(c.refund)) " (fee " (format::price(c.fee)) ") goes back to your card. "
                                a href={ "/orders/" (order.id) } { "Refresh" }
                            },
                            CancellationStatus::Refunded => p.alert.alert-success #refund-status role="status" data-status="refunded" {
                                strong { "Refunded." } " " (format::price(c.refund)) " went back to your card (fee " (format::price(c.fee)) ")"
                                @if let Some(at) = c.refunded_at.as_deref().and_then(format::when) { " on " (at) }
                                "."
                            },
                            CancellationStatus::Failed => p.alert.alert-error #refund-status role="status" data-status="failed" {
                                strong { "The refund failed." } " The payment provider refused it; the order stays paid and the ticket yours. Please contact us."
                            },
                        }
                    }
                }
            }
        }
    }
}

/// The "Cancel and refund" button: ask for the cancellation, wait a moment for the
/// refund, then show the order.
pub async fn request(
    State(settings): State<Settings>,
    visitor: Visitor,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, PageError> {
    let id = Id::parse(&id).ok_or(PageError::NotFound)?;
    let back = format!("/orders/{id}");
    visitor.require_user(&settings.api, &back).await?;
    match settings.api.cancel_for_refund(visitor.session(), &id).await {
        Ok(_) => wait_for_refund(&settings, &visitor, &id).await,
        // Refused (closed meanwhile, not paid): the page says why from the policy.
        Err(ApiFailure::Refused { .. }) => {}
        Err(failure) => return Err(failure.into()),
    }
    Ok(see_other(&back, Vec::new()))
}

async fn wait_for_refund(settings: &Settings, visitor: &Visitor, id: &Id) {
    let _ = tokio::time::timeout(REFUND_WAIT, async {
        loop {
            match settings.api.cancellation(visitor.session(), id).await {
                Ok(Some(c)) if c.status == CancellationStatus::Requested => {
                    tokio::time::sleep(Duration::from_millis(25)).await
                }
                _ => return,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_the_total_less_the_fee_until_the_cutoff() {
        let order: OrderBody = serde_json::from_value(serde_json::json!({
            "id": "o", "userId": "u", "status": "complete", "expiresAt": "2026-01-01T00:00:00.000Z",
            "version": 1, "quantity": 2,
            "ticket": {"id": "t", "title": "T", "price": 20, "version": 0},
        }))
        .unwrap();
        let ticket: TicketBody = serde_json::from_value(serde_json::json!({
            "id": "t", "title": "T", "price": 20, "userId": "s", "version": 0,
            "eventAt": "2026-12-24T18:00:00.000Z",
            "refundPolicy": {"cutoffHours": 48, "feePercent": 12.5},
        }))
        .unwrap();
        let early = Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").unwrap();
        match RefundPanel::offer(&order, &ticket, early) {
            RefundPanel::Offer {
                refund,
                fee,
                fee_percent,
                closes,
            } => {
                assert_eq!((refund.get(), fee.get()), (3500, 500));
                assert_eq!(fee_percent, "12.5");
                assert_eq!(closes, "22 Dec 2026, 18:00 UTC");
            }
            _ => panic!("no offer"),
        }
        let late = Timestamp::parse_rfc3339("2026-12-23T00:00:00Z").unwrap();
        assert!(matches!(
            RefundPanel::offer(&order, &ticket, late),
            RefundPanel::Closed { cutoff_hours: 48 }
        ));
    }
}
