//! The envelope an event travels in: payload plus the headers every message carries
//! (event id, W3C trace context, production time).

use bytes::Bytes;

use crate::trace::TraceContext;
use ticketing_contracts::events::{Event, Subject};
use ticketing_contracts::time::now_millis;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Unique per event and stable across retries (JetStream `Nats-Msg-Id`).
    pub id: String,
    pub subject: Subject,
    /// The JSON payload.
    pub payload: Bytes,
    /// W3C `traceparent` of the operation that caused the event.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    /// When the event was produced, milliseconds since the epoch.
    pub produced_at: i64,
}

impl Envelope {
    /// A new event with a fresh id, stamped now.
    /// It carries the trace context of the operation in progress (a child span of it).
    pub fn new<E: Event>(event: &E) -> Envelope {
        let trace = TraceContext::current().map(|current| {
            if !crate::trace::exporting() {
                return current.child();
            }
            // The messaging "create" span: what the event's consumers hang from.
            let span = tracing::info_span!(
                "create",
                otel.name = format!("create {}", E::SUBJECT),
                otel.kind = "producer",
                messaging.system = "ticketing",
                messaging.operation.type = "create",
                messaging.destination.name = E::SUBJECT.as_str(),
                trace_id = tracing::field::Empty,
            );
            TraceContext::start(&span, Some(current))
        });
        Envelope {
            id: uuid::Uuid::now_v7().to_string(),
            subject: E::SUBJECT,
            payload: Bytes::from(serde_json::to_vec(event).expect("event payloads serialize")),
            traceparent: trace.as_ref().map(TraceContext::traceparent),
            tracestate: trace.and_then(|c| c.tracestate),
            produced_at: now_millis(),
        }
    }

    /// A new event from an already encoded payload (tools, tests), fresh id, stamped now.
    pub fn raw(subject: Subject, payload: impl Into<Bytes>) -> Envelope {
        Envelope {
            id: uuid::Uuid::now_v7().to_string(),
            subject,
            payload: payload.into(),
            traceparent: None,
            tracestate: None,
            produced_at: now_millis(),
        }
    }

    /// The typed payload; an error when the subject or the JSON does not match.
    pub fn decode<E: Event>(&self) -> anyhow::Result<E> {
        anyhow::ensure!(
            self.subject == E::SUBJECT,
            "expected {} but got {}",
            E::SUBJECT,
            self.subject
        );
        Ok(serde_json::from_slice(&self.payload)?)
    }
}
