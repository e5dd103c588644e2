//! A webhook receiver for tests: an HTTP server on 127.0.0.1 that records every delivery
//! (headers and body) and answers with a status the test sets, after a delay it sets.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use ticketing_contracts::webhook;

#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: i64,
    pub signature: String,
    pub raw: Bytes,
    pub body: Value,
}

impl Received {
    pub fn verifies(&self, secret: &str) -> bool {
        webhook::verify(secret, &self.id, self.timestamp, &self.raw, &self.signature)
    }

    pub fn subject(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }

    /// The key its deliveries are ordered by: the order, else the listing.
    pub fn key(&self) -> String {
        let data = &self.body["data"];
        let subject = self.subject();
        let order = match subject {
            "order:created" | "order:cancelled" => data["id"].as_str(),
            "ticket:created" => None,
            _ => data["orderId"].as_str(),
        };
        order
            .or_else(|| data["id"].as_str())
            .unwrap_or_default()
            .to_owned()
    }
}

#[derive(Default)]
struct Inner {
    received: Mutex<Vec<Received>>,
    status: AtomicU16,
    delay_ms: AtomicU64,
}

#[derive(Clone)]
pub struct Receiver {
    pub port: u16,
    inner: Arc<Inner>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Self::start_on(0).await
    }

    /// Listening on `port` (0: any) of 127.0.0.1, answering 204.
    pub async fn start_on(port: u16) -> Receiver {
        let inner = Arc::new(Inner::default());
        inner.status.store(204, Ordering::SeqCst);
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the receiver");
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            port,
            inner,
            task: Arc::new(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn answer(&self, status: u16) {
        self.inner.status.store(status, Ordering::SeqCst);
    }

    pub fn delay(&self, delay: Duration) {
        self.inner
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Every delivery so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.inner.received.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.inner.received.lock().unwrap().clear();
    }

    /// The distinct event ids received.
    pub fn distinct(&self) -> usize {
        let received = self.received();
        let mut ids: Vec<&str> = received.iter().map(|r| r.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }

    /// Per key, the event ids in the order they first arrived.
    pub fn by_key(&self) -> HashMap<String, Vec<String>> {
        let mut seen = std::collections::HashSet::new();
        let mut keys: HashMap<String, Vec<String>> = HashMap::new();
        for r in self.received() {
            if seen.insert(r.id.clone()) {
                keys.entry(r.key()).or_default().push(r.id.clone());
            }
        }
        keys
    }

    /// Wait until `n` distinct events arrived, at most `limit`.
    pub async fn wait_for(&self, n: usize, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let got = self.distinct();
            if got >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{got} of {n} events arrived within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(State(inner): State<Arc<Inner>>, headers: HeaderMap, raw: Bytes) -> StatusCode {
    let delay = inner.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let received = Received {
        id: header(webhook::ID_HEADER),
        timestamp: header(webhook::TIMESTAMP_HEADER).parse().unwrap_or(0),
        signature: header(webhook::SIGNATURE_HEADER),
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
        raw,
    };
    let status = inner.status.load(Ordering::SeqCst);
    if (200..300).contains(&status) {
        inner.received.lock().unwrap().push(received);
    }
    StatusCode::from_u16(status).unwrap_or(StatusCode::NO_CONTENT)
}
