//! The delivery engine the backends share: run a subscription's handler on what the
//! bus received, one event or a backlog, counted and traced, a panic turned into an
//! ordinary failure. What it answers, the backend acknowledges or redelivers.

use futures::FutureExt;

use crate::bus::{Handler, HandlerError, Together};
use crate::envelope::Envelope;
use crate::telemetry;
use crate::trace::TraceContext;

/// Run `group`'s handler of an event, turning a panic into an ordinary failure so one
/// bad event cannot kill a subscription; counted, in a span continuing the event's trace.
pub(crate) async fn run_handler(
    group: &str,
    handler: &dyn Handler,
    event: &Envelope,
) -> Result<(), HandlerError> {
    let received_at = ticketing_contracts::time::now_millis();
    // The handler continues the trace of the operation that published the event.
    let span = telemetry::process_span(group, event);
    let trace = TraceContext::start(&span, telemetry::parent_of(event));
    let handled = std::panic::AssertUnwindSafe(handler.handle(event)).catch_unwind();
    let outcome = match trace.scope_in(span.clone(), handled).await {
        Ok(outcome) => outcome,
        Err(_) => Err(HandlerError::Other(anyhow::anyhow!("handler panicked"))),
    };
    telemetry::handled(group, event, received_at, &span, &outcome);
    outcome
}

/// Run `group`'s handler of several events, oldest first: together when the handler
/// can ([`Handler::handle_together`]), else one at a time. One outcome per event, in
/// order.
pub(crate) async fn run_handlers(
    group: &str,
    handler: &dyn Handler,
    events: &[&Envelope],
) -> Vec<Result<(), HandlerError>> {
    if events.len() > 1 {
        let together = std::panic::AssertUnwindSafe(handler.handle_together(group, events))
            .catch_unwind()
            .await
            .unwrap_or(Together::Failed);
        match together {
            Together::Committed => {
                telemetry::handled_together(group, events);
                return events.iter().map(|_| Ok(())).collect();
            }
            // Undone: handled again one at a time below, each with its own outcome.
            Together::Alone | Together::Failed => {}
            Together::Broken(err) => {
                return events
                    .iter()
                    .map(|_| Err(HandlerError::Other(anyhow::anyhow!("batch failed: {err}"))))
                    .collect()
            }
        }
    }
    let mut outcomes = Vec::with_capacity(events.len());
    for event in events {
        outcomes.push(run_handler(group, handler, event).await);
    }
    outcomes
}
