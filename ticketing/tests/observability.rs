//! Observability of distributed mode, from outside: every service its own
//! `ticketing --target X` process on PostgreSQL, NATS JetStream and Redis, exporting
//! spans over OTLP/HTTP to a receiver in this test; then each process's `/metrics`.
//!
//! - one trace id runs from `POST /api/orders` (orders) through the listeners its event
//!   reaches in the tickets and expiration processes, and back to orders
//!   (`ticket:updated`), each span hanging from the one that caused it;
//! - after a purchase and an expiry, the event, outbox, lag, expiration and store series
//!   are on the processes' `/metrics`;
//! - a click in the web client is one trace: the page's server span, its API call's
//!   client span, the API's server span and the listeners the order's event reaches,
//!   whether the pages call the API in-process (`--target all`) or over HTTP
//!   (`--target web --api-url`); the page a form post redirects to links to the post's
//!   trace.
//!
//! Its own databases, NATS prefix and Redis prefix: runs beside the other tests.

mod process;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use process::Running;
use prost::Message;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use ticketing_kit::testing::{
    nats_url, payment, postgres_base_url, redis_url, unique_prefix, Api, Patience, User,
};

/// Spans exported within 100 ms instead of every 5 s.
const OTLP_ENV: [(&str, &str); 1] = [("OTEL_BSP_SCHEDULE_DELAY", "100")];

/// How long anything asynchronous may take on a loaded 2-core machine.
const PATIENCE: Patience = Patience {
    limit: Duration::from_secs(60),
    every: Duration::from_millis(200),
    retry_on: &[StatusCode::CONFLICT],
    through_errors: false,
};

/// One exported span, as the collector would see it.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    /// OTLP's SpanKind: 2 server, 3 client, 4 producer, 5 consumer.
    kind: i32,
    /// The (trace id, span id) of each link.
    links: Vec<(String, String)>,
    attributes: HashMap<String, String>,
}

type Received = Arc<Mutex<Vec<Span>>>;

/// An OTLP/HTTP (protobuf) trace receiver on a free port: `POST /v1/traces`.
async fn otlp_receiver() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

async fn receive(State(received): State<Received>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
    let mut spans = received.lock().unwrap();
    for resource in request.resource_spans {
        let resource_attributes = resource.resource.map(|r| r.attributes).unwrap_or_default();
        let service = attributes(&resource_attributes)
            .remove("service.name")
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                spans.push(Span {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    kind: span.kind,
                    links: span
                        .links
                        .iter()
                        .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                        .collect(),
                    attributes: attributes(&span.attributes),
                });
            }
        }
    }
    // An empty ExportTraceServiceResponse.
    Vec::new()
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                Some(AnyValue::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The services, one process each, on this test's databases, stream and Redis keys.
struct System {
    prefix: String,
    services: HashMap<&'static str, Running>,
}

const SERVICES: [&str; 5] = ["auth", "tickets", "orders", "payments", "expiration"];

impl System {
    async fn start(otlp: &str) -> System {
        let prefix = unique_prefix();
        let database = format!("{}/{prefix}", postgres_base_url());
        let jwt_key = format!("observability-test-key-{prefix}");
        let mut services = HashMap::new();
        for target in SERVICES {
            let running = Running::start(
                &[
                    "--target",
                    target,
                    "--database-url",
                    &database,
                    "--nats-url",
                    &nats_url(),
                    "--nats-prefix",
                    &prefix,
                    "--redis-url",
                    &redis_url(),
                    "--redis-prefix",
                    &prefix,
                    "--cookie-secure",
                    "false",
                    // Short enough to watch an unpaid order expire.
                    "--order-ttl-seconds",
                    "4",
                    "--payment-grace-ms",
                    "200",
                ],
                &[
                    ("JWT_KEY", jwt_key.as_str()),
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp),
                    OTLP_ENV[0],
                ],
            )
            .await;
            services.insert(target, running);
        }
        System { prefix, services }
    }

    fn url(&self, service: &str, path: &str) -> String {
        format!("{}{path}", self.services[service].base)
    }

    /// `service`'s API as `user`.
    fn api(&self, service: &str, user: &User) -> Api {
        Api::new(self.services[service].base.clone()).as_user(user)
    }

    /// Stop every process, then drop what the test made on the shared servers.
    async fn stop(mut self) {
        for (_, running) in self.services.drain() {
            running.stop();
        }
        let _ = std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
            .arg(
                SERVICES
                    .iter()
                    .map(|s| {
                        format!(
                            "DROP DATABASE IF EXISTS \"{}_{s}\" WITH (FORCE);",
                            self.prefix
                        )
                    })
                    .collect::<String>(),
            )
            .output();
        if let Ok(client) = async_nats::connect(nats_url()).await {
            let js = async_nats::jetstream::new(client);
            let _ = js.delete_stream(format!("{}-events", self.prefix)).await;
        }
    }
}

/// Place an order for `ticket` (its `traceparent` answer too), once the orders service
/// has the ticket's replica.
async fn place_order(sys: &System, buyer: &User, ticket: &str) -> (Value, String) {
    let orders = sys.api("orders", buyer);
    PATIENCE
        .eventually("the order to be placed", || async {
            let res = orders
                .post_json("/api/orders", json!({"ticketId": ticket}))
                .await;
            if res.status() != StatusCode::CREATED {
                return None;
            }
            let traceparent = res.headers()["traceparent"].to_str().unwrap().to_owned();
            Some((res.json::<Value>().await.unwrap(), traceparent))
        })
        .await
}

async fn sell(sys: &System, seller: &User, title: &str) -> String {
    sys.api("tickets", seller).sell(title, json!("20.50")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_follows_an_order_across_processes_and_metrics_show_the_journey() {
    let (otlp, received) = otlp_receiver().await;
    let sys = System::start(&otlp).await;
    let auth = Api::new(sys.url("auth", ""));
    let seller = auth.sign_up("seller@test.com").await;
    let buyer = auth.sign_up("buyer@test.com").await;

    // A purchase: the traced request.
    let ticket = sell(&sys, &seller, "Traced").await;
    let (order, traceparent) = place_order(&sys, &buyer, &ticket).await;
    let order_id = order["id"].as_str().unwrap().to_owned();
    let mut parts = traceparent.split('-').skip(1);
    let (trace_id, server_span_id) = (parts.next().unwrap(), parts.next().unwrap());

    let spans = |service: &'static str, name: &'static str| {
        let received = received.clone();
        let trace_id = trace_id.to_owned();
        move || {
            let found: Vec<Span> = received
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.trace_id == trace_id && s.service == service && s.name == name)
                .cloned()
                .collect();
            async move { (!found.is_empty()).then_some(found) }
        }
    };
    let server = PATIENCE
        .eventually(
            "the orders server span",
            spans("orders", "POST /api/orders"),
        )
        .await;
    assert_eq!(
        server[0].span_id, server_span_id,
        "traceparent names the exported span"
    );
    assert_eq!(server[0].attributes["http.route"], "/api/orders");
    assert_eq!(server[0].attributes["http.response.status_code"], "201");

    let create = PATIENCE
        .eventually("the create span", spans("orders", "create order:created"))
        .await;
    assert_eq!(create[0].parent_span_id, server_span_id);
    let publish = PATIENCE
        .eventually("the publish span", spans("orders", "publish order:created"))
        .await;
    assert_eq!(publish[0].parent_span_id, create[0].span_id);

    // In two other processes, the listeners of order:created hang from its create span.
    for service in ["tickets", "expiration", "payments"] {
        let process = PATIENCE
            .eventually(
                &format!("{service}'s process span"),
                spans(service, "process order:created"),
            )
            .await;
        assert_eq!(process[0].parent_span_id, create[0].span_id, "{service}");
        assert_eq!(
            process[0].attributes["messaging.destination.name"],
            "order:created"
        );
        assert!(process[0]
            .attributes
            .contains_key("messaging.consumer.group.name"));
    }
    // And the event tickets published in turn comes back to orders in the same trace.
    let reserved = PATIENCE
        .eventually(
            "tickets' create span",
            spans("tickets", "create ticket:updated"),
        )
        .await;
    let back = PATIENCE
        .eventually(
            "orders' process span of ticket:updated",
            spans("orders", "process ticket:updated"),
        )
        .await;
    assert_eq!(back[0].parent_span_id, reserved[0].span_id);

    // The trace as a collector shows it (`-- --nocapture`).
    for span in received
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.trace_id == trace_id)
    {
        eprintln!(
            "{} {:<11} {:<32} parent {}",
            span.span_id, span.service, span.name, span.parent_span_id
        );
    }

    // Probes (the readiness polls above) make no spans.
    assert!(!received
        .lock()
        .unwrap()
        .iter()
        .any(|s| s.name == "op" || s.attributes.get("url.path").is_some_and(|p| p == "/readyz")));

    // Pay it (once payments has the order's replica).
    let payments = sys.api("payments", &buyer);
    PATIENCE
        .eventually("the payment", || async {
            let res = payments
                .post_json("/api/payments", payment(&order_id))
                .await;
            (res.status() == StatusCode::CREATED).then_some(())
        })
        .await;
    // And leave one unpaid: it expires.
    let unpaid_ticket = sell(&sys, &seller, "Left").await;
    let (unpaid, _) = place_order(&sys, &buyer, &unpaid_ticket).await;
    let unpaid_id = unpaid["id"].as_str().unwrap().to_owned();
    let orders = sys.api("orders", &buyer);
    PATIENCE
        .eventually("the unpaid order to be cancelled", || async {
            let order = orders.get_json(&format!("/api/orders/{unpaid_id}")).await;
            (order["status"] == "cancelled").then_some(())
        })
        .await;

    // Every named series, with the journey in it.
    let expected: &[(&str, &str, &[&str])] = &[
        (
            "orders",
            "ticketing_events_published_total",
            &["subject=\"order:created\""],
        ),
        (
            "orders",
            "ticketing_events_handled_total",
            &["subject=\"ticket:updated\"", "group=\"orders-service\""],
        ),
        (
            "orders",
            "ticketing_events_failed_total",
            &["subject=\"ticket:updated\""],
        ),
        (
            "orders",
            "ticketing_events_dead_lettered_total",
            &["subject=\"ticket:updated\""],
        ),
        (
            "orders",
            "ticketing_event_age_seconds_count",
            &["subject=\"ticket:updated\""],
        ),
        ("orders", "ticketing_outbox_backlog", &["outbox=\"orders\""]),
        (
            "orders",
            "ticketing_outbox_oldest_age_seconds",
            &["outbox=\"orders\""],
        ),
        (
            "orders",
            "ticketing_consumer_lag",
            &["subject=\"ticket:updated\""],
        ),
        (
            "orders",
            "ticketing_store_writer_wait_seconds_count",
            &["backend=\"postgres\""],
        ),
        (
            "tickets",
            "ticketing_events_handled_total",
            &["subject=\"order:created\""],
        ),
        ("expiration", "ticketing_expirations_pending", &[]),
        (
            "expiration",
            "ticketing_expiration_lateness_seconds_count",
            &[],
        ),
        (
            "expiration",
            "ticketing_events_published_total",
            &["subject=\"expiration:complete\""],
        ),
        ("orders", "http_requests_total", &["path=\"/api/orders\""]),
    ];
    let http = Client::new();
    for (service, name, labels) in expected {
        let line = PATIENCE
            .eventually(&format!("{name} on {service}"), || async {
                let text = http
                    .get(sys.url(service, "/metrics"))
                    .send()
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                text.lines()
                    .find(|line| {
                        let series = line.split(' ').next().unwrap_or_default();
                        (series == *name || series.starts_with(&format!("{name}{{")))
                            && labels.iter().all(|l| series.contains(l))
                    })
                    .map(str::to_owned)
            })
            .await;
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        if name.ends_with("_total") && !name.contains("failed") && !name.contains("dead") {
            assert!(value > 0.0, "{line}");
        }
    }
    sys.stop().await;
}

/// A browser on the web pages: cookies kept, redirects seen.
struct Visitor {
    http: Client,
    site: String,
}

impl Visitor {
    fn new(site: &str) -> Visitor {
        Visitor {
            http: Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            site: site.to_owned(),
        }
    }

    async fn page(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.site))
            .send()
            .await
            .unwrap()
    }

    /// Post a form of the page at `form_page` to `path`, with that page's CSRF token.
    async fn submit(
        &self,
        form_page: &str,
        path: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let page = self.page(form_page).await.text().await.unwrap();
        let marker = "name=\"csrf\" value=\"";
        let start = page.find(marker).expect("a form") + marker.len();
        let csrf = &page[start..start + page[start..].find('"').unwrap()];
        let mut form = vec![("csrf", csrf)];
        form.extend_from_slice(fields);
        self.http
            .post(format!("{}{path}", self.site))
            .form(&form)
            .send()
            .await
            .unwrap()
    }
}

fn trace_and_span(traceparent: &str) -> (String, String) {
    let mut parts = traceparent.split('-').skip(1);
    (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
    )
}

/// Buy through the pages at `site` (the API at `api`), and follow the trace of the
/// click that placed the order.
async fn a_page_action_is_one_trace(site: &str, api: &str, received: &Received) {
    let visitor = Visitor::new(site);
    let signed_up = visitor
        .submit(
            "/auth/signup",
            "/auth/signup",
            &[("email", "clicker@test.com"), ("password", "password123")],
        )
        .await;
    assert_eq!(signed_up.status(), StatusCode::SEE_OTHER);
    // The seller lists through the API (the session cookie is the visitor's: cookies
    // are kept per host, whatever the port).
    let listed: Value = visitor
        .http
        .post(format!("{api}/api/tickets"))
        .json(&json!({"title": "Traced click", "price": "12.00"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ticket = listed["id"].as_str().expect("a listed ticket").to_owned();

    // The click: the order form posts, and the page redirects to the order.
    let ticket_page = format!("/tickets/{ticket}");
    let placed = PATIENCE
        .eventually("the order placed from the page", || async {
            let res = visitor
                .submit(&ticket_page, "/orders", &[("ticketId", &ticket)])
                .await;
            (res.status() == StatusCode::SEE_OTHER).then_some(res)
        })
        .await;
    let (trace_id, page_span) = trace_and_span(placed.headers()["traceparent"].to_str().unwrap());
    let order_page = placed.headers()["location"].to_str().unwrap().to_owned();
    let shown = visitor.page(&order_page).await;
    assert_eq!(shown.status(), StatusCode::OK);
    let (shown_trace, _) = trace_and_span(shown.headers()["traceparent"].to_str().unwrap());
    assert_ne!(shown_trace, trace_id, "a page load is a trace of its own");

    let in_trace = |name: &'static str| {
        let received = received.clone();
        let trace_id = trace_id.clone();
        move || {
            let found = received
                .lock()
                .unwrap()
                .iter()
                .find(|s| s.trace_id == trace_id && s.name == name)
                .cloned();
            async move { found }
        }
    };
    let page = PATIENCE
        .eventually("the page's server span", in_trace("POST /orders"))
        .await;
    assert_eq!(page.span_id, page_span);
    assert_eq!(page.kind, 2);
    // The page's call of the API: a client span of the page, the API's server span
    // under it — the same trace, in-process or over HTTP.
    let calls: Vec<Span> = PATIENCE
        .eventually("the page's API calls", || async {
            let spans: Vec<Span> = received
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.trace_id == trace_id && s.name == "POST /api/orders")
                .cloned()
                .collect();
            (spans.len() >= 2).then_some(spans)
        })
        .await;
    let client = calls.iter().find(|s| s.kind == 3).expect("a client span");
    assert_eq!(client.parent_span_id, page.span_id);
    let server = calls.iter().find(|s| s.kind == 2).expect("the API's span");
    assert_eq!(server.parent_span_id, client.span_id);
    assert_eq!(server.attributes["http.response.status_code"], "201");
    // And on through the event to the tickets service's listener.
    let create = PATIENCE
        .eventually("the create span", in_trace("create order:created"))
        .await;
    assert_eq!(create.parent_span_id, server.span_id);
    let processed = PATIENCE
        .eventually(
            "a listener of order:created",
            in_trace("process order:created"),
        )
        .await;
    assert_eq!(processed.parent_span_id, create.span_id);

    // The page the post redirected to links back to the click.
    let order_id = order_page.rsplit('/').next().unwrap().to_owned();
    let linked = PATIENCE
        .eventually("the redirected page's span", || async {
            received
                .lock()
                .unwrap()
                .iter()
                .find(|s| s.trace_id == shown_trace && s.name == "GET /orders/{id}")
                .cloned()
        })
        .await;
    assert_eq!(
        linked.links,
        vec![(trace_id.clone(), page_span.clone())],
        "order {order_id}"
    );
    for span in received
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.trace_id == trace_id)
    {
        eprintln!(
            "{} {:<8} kind {} {:<28} parent {}",
            span.span_id, span.service, span.kind, span.name, span.parent_span_id
        );
    }
}

/// `ticketing` on a fresh data directory (`--target all`), exporting to `otlp`, and
/// the directory (removed when dropped).
async fn exporting_system(otlp: &str) -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let all = Running::start(
        &[
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--cookie-secure",
            "false",
        ],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", otlp), OTLP_ENV[0]],
    )
    .await;
    (all, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_action_is_one_trace_in_one_process() {
    let (otlp, received) = otlp_receiver().await;
    let (all, _dir) = exporting_system(&otlp).await;
    a_page_action_is_one_trace(&all.base, &all.base, &received).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_action_is_one_trace_from_the_web_process() {
    let (otlp, received) = otlp_receiver().await;
    let (api, _dir) = exporting_system(&otlp).await;
    let web = Running::start(
        &[
            "--target",
            "web",
            "--api-url",
            &api.base,
            "--cookie-secure",
            "false",
        ],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()), OTLP_ENV[0]],
    )
    .await;
    a_page_action_is_one_trace(&web.base, &api.base, &received).await;
}
