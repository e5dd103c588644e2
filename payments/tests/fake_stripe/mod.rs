//! A fake Stripe on 127.0.0.1:0 that answers as Stripe does (charges and refunds), shared
//! by the provider tests and the payments service tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json, Router};
use serde_json::json;

pub const SECRET: &str = "sk_test_4eC39HqLyjWDarjtT1zdp7dc";

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub authorization: Option<String>,
    pub idempotency_key: Option<String>,
    pub content_type: Option<String>,
    pub form: HashMap<String, String>,
}

#[derive(Default)]
pub struct Fake {
    pub seen: Mutex<Vec<Seen>>,
    /// Idempotency key → the saved answer, as Stripe keeps it.
    pub saved: Mutex<HashMap<String, (StatusCode, serde_json::Value)>>,
    /// Charges actually made.
    pub charges: Mutex<u32>,
    /// Requests answered 500 per key (for `tok_flaky`).
    pub failures: Mutex<HashMap<String, u32>>,
    /// Refunds made: charge ids, once per idempotency key.
    pub refunds: Mutex<Vec<String>>,
    /// Refunds made, once per idempotency key: charge id and cents (`None`: in full).
    pub refunds_made: Mutex<Vec<(String, Option<i64>)>>,
    refund_keys: Mutex<HashMap<String, String>>,
    /// The idempotency key of every refund request, in arrival order.
    pub refund_requests: Mutex<Vec<String>>,
    /// Refund requests still to answer 503 (Stripe down for a while).
    pub refunds_unavailable: Mutex<u32>,
    /// Answer every new refund with a permanent refusal.
    pub refuse_refunds: std::sync::atomic::AtomicBool,
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn stripe_error(status: StatusCode, error: serde_json::Value) -> (StatusCode, serde_json::Value) {
    (status, json!({ "error": error }))
}

async fn charges(
    State(fake): State<Arc<Fake>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let seen = Seen {
        method,
        path: uri.path().to_owned(),
        authorization: header(&headers, "authorization"),
        idempotency_key: header(&headers, "idempotency-key"),
        content_type: header(&headers, "content-type"),
        form: form.clone(),
    };
    fake.seen.lock().unwrap().push(seen.clone());

    if seen.authorization.as_deref() != Some(format!("Bearer {SECRET}").as_str()) {
        let (s, b) = stripe_error(
            StatusCode::UNAUTHORIZED,
            json!({"type": "invalid_request_error", "message": "Invalid API Key provided: sk_***"}),
        );
        return (s, Json(b)).into_response();
    }
    let key = seen.idempotency_key.clone().unwrap_or_default();
    if let Some((status, body)) = fake.saved.lock().unwrap().get(&key).cloned() {
        let mut response = (status, Json(body)).into_response();
        response
            .headers_mut()
            .insert("idempotent-replayed", "true".parse().unwrap());
        return response;
    }
    let token = form.get("source").cloned().unwrap_or_default();
    // Stripe's own trouble: nothing is saved for the key, the client may retry.
    if token == "tok_always500" {
        let (s, b) = stripe_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"type": "api_error", "message": "An unknown error occurred"}),
        );
        return (s, Json(b)).into_response();
    }
    if token == "tok_flaky" {
        let mut failures = fake.failures.lock().unwrap();
        let n = failures.entry(key.clone()).or_default();
        if *n < 2 {
            *n += 1;
            return (StatusCode::SERVICE_UNAVAILABLE, "upstream unavailable").into_response();
        }
    }
    let answer = match token.as_str() {
        "tok_visa" | "tok_flaky" | "tok_slow" => {
            let mut charges = fake.charges.lock().unwrap();
            *charges += 1;
            (
                StatusCode::OK,
                json!({
                    "id": format!("ch_3Fake{:019}", *charges),
                    "object": "charge",
                    "amount": form.get("amount").and_then(|a| a.parse::<i64>().ok()),
                    "currency": form.get("currency"),
                    "paid": true,
                    "status": "succeeded",
                }),
            )
        }
        "tok_chargeDeclinedInsufficientFunds" => stripe_error(
            StatusCode::PAYMENT_REQUIRED,
            json!({
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "insufficient_funds",
                "message": "Your card has insufficient funds.",
                "charge": "ch_3FakeDeclined",
                "doc_url": "https://stripe.com/docs/error-codes/card-declined",
            }),
        ),
        "tok_chargeDeclinedExpiredCard" => stripe_error(
            StatusCode::PAYMENT_REQUIRED,
            json!({
                "type": "card_error",
                "code": "expired_card",
                "message": "Your card has expired.",
                "param": "exp_month",
            }),
        ),
        other => stripe_error(
            StatusCode::BAD_REQUEST,
            json!({
                "type": "invalid_request_error",
                "code": "resource_missing",
                "message": format!("No such token: '{other}'"),
                "param": "source",
            }),
        ),
    };
    fake.saved.lock().unwrap().insert(key, answer.clone());
    if token == "tok_slow" {
        // The charge is made and saved, but the answer comes too late for the client.
        let delay = if fake.seen.lock().unwrap().len() == 1 {
            Duration::from_secs(3)
        } else {
            Duration::ZERO
        };
        tokio::time::sleep(delay).await;
    }
    (answer.0, Json(answer.1)).into_response()
}

pub async fn spawn_fake() -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let app = Router::new()
        .route("/v1/charges", axum::routing::post(charges))
        .route("/v1/refunds", axum::routing::post(refunds))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/"), fake)
}

async fn refunds(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if header(&headers, "authorization").as_deref() != Some(format!("Bearer {SECRET}").as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"type": "invalid_request_error"}})),
        )
            .into_response();
    }
    fake.refund_requests
        .lock()
        .unwrap()
        .push(header(&headers, "idempotency-key").unwrap_or_default());
    {
        let mut down = fake.refunds_unavailable.lock().unwrap();
        if *down > 0 {
            *down -= 1;
            return (StatusCode::SERVICE_UNAVAILABLE, "upstream unavailable").into_response();
        }
    }
    let key = header(&headers, "idempotency-key").unwrap_or_default();
    let charge = form.get("charge").cloned().unwrap_or_default();
    let amount = form.get("amount").and_then(|a| a.parse::<i64>().ok());
    let mut keys = fake.refund_keys.lock().unwrap();
    // A key seen before: the first answer again (Stripe replays it), nothing refunded.
    if let std::collections::hash_map::Entry::Vacant(entry) = keys.entry(key) {
        if fake
            .refuse_refunds
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                json!({"type": "invalid_request_error", "code": "charge_disputed",
                       "message": format!("Charge {charge} has been charged back; cannot issue a refund.")}),
            )
            .into_response_json();
        }
        let mut refunds = fake.refunds.lock().unwrap();
        // A charge refunded in full takes no further refund.
        let whole = fake
            .refunds_made
            .lock()
            .unwrap()
            .iter()
            .any(|(c, a)| *c == charge && a.is_none());
        if whole || (amount.is_none() && refunds.contains(&charge)) {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                json!({"type": "invalid_request_error", "code": "charge_already_refunded",
                       "message": format!("Charge {charge} has already been refunded.")}),
            )
            .into_response_json();
        }
        if amount.is_some_and(|a| a <= 0) {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                json!({"type": "invalid_request_error", "code": "parameter_invalid_integer",
                       "message": "Invalid positive integer", "param": "amount"}),
            )
            .into_response_json();
        }
        refunds.push(charge.clone());
        fake.refunds_made
            .lock()
            .unwrap()
            .push((charge.clone(), amount));
        entry.insert(charge.clone());
    }
    (
        StatusCode::OK,
        Json(json!({"id": "re_fake", "object": "refund", "charge": charge, "amount": amount, "status": "succeeded"})),
    )
        .into_response()
}

trait IntoResponseJson {
    fn into_response_json(self) -> Response;
}

impl IntoResponseJson for (StatusCode, serde_json::Value) {
    fn into_response_json(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}
