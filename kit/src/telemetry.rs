//! Logs (`tracing`, text or JSON), traces (OpenTelemetry over OTLP/HTTP, when an endpoint
//! is configured), and Prometheus metrics served at `GET /metrics`.
//! Series and spans: README "Observability", docs/decisions/0015-observability.md.

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use ticketing_bus::SharedBus;
use ticketing_store::{query, Store};

/// Where spans go, if anywhere.
#[derive(Debug, Clone, Default)]
pub struct TraceExport {
    /// OTLP/HTTP base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`); `None`: nothing is exported.
    pub endpoint: Option<String>,
    /// The spans' `service.name`.
    pub service_name: String,
}

/// What [`init`] installed; [`Telemetry::shutdown`] flushes the spans not yet exported.
#[must_use = "shut it down at exit, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Export what is still queued (bounded by the exporter's timeout). Blocking: runs
    /// on a thread of its own.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(err)) = flushed {
            tracing::warn!(error = %err, "flushing the last spans failed");
        }
    }
}

/// Install the global log subscriber. `RUST_LOG` filters; `json` picks the format.
pub fn init_tracing(json: bool) {
    let _ = init(json, &TraceExport::default());
}

/// Logs as [`init_tracing`], plus span export when `export` has an endpoint: a batch
/// processor on a thread of its own, whose bounded queue drops spans rather than ever
/// making a request wait.
pub fn init(json: bool, export: &TraceExport) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,async_nats=warn"));
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_filter(filter).boxed()
    };
    let provider = match export.endpoint.as_deref().filter(|e| !e.trim().is_empty()) {
        Some(endpoint) => match tracer_provider(endpoint, &export.service_name) {
            Ok(provider) => Some(provider),
            Err(err) => {
                eprintln!("OpenTelemetry export disabled: {err:#}");
                None
            }
        },
        None => None,
    };
    // Our spans only, whatever RUST_LOG says about log lines: the HTTP server span, the
    // messaging spans, and the log events inside them (as span events).
    let spans = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("ticketing"))
            .with_tracked_inactivity(false)
            .with_threads(false)
            // A prefix: every crate of the workspace.
            .with_filter(Targets::new().with_target("ticketing", tracing::Level::INFO))
    });
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()
        .is_ok();
    if installed && provider.is_some() {
        ticketing_bus::trace::set_exporting();
    }
    prometheus();
    Telemetry {
        provider: provider.filter(|_| installed),
    }
}

fn tracer_provider(endpoint: &str, service_name: &str) -> anyhow::Result<SdkTracerProvider> {
    // The standard per-signal variable wins, as in every OpenTelemetry SDK.
    let traces = std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| format!("{}/v1/traces", endpoint.trim_end_matches('/')));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(traces)
        .build()?;
    let resource = Resource::builder()
        .with_service_name(service_name.to_owned())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.namespace",
            "ticketing",
        ))
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Install the process's metrics recorder (once; later calls do nothing). Series whose
/// handles are looked up once (the bus's, per subscription) need it first.
pub fn install_recorder() {
    prometheus();
}

fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ])
            .expect("static buckets")
            // Delays measured against deadlines and production times run to seconds.
            .set_buckets_for_metric(
                Matcher::Full("ticketing_expiration_lateness_seconds".into()),
                SLOW_BUCKETS,
            )
            .expect("static buckets")
            .set_buckets_for_metric(
                Matcher::Full("ticketing_event_age_seconds".into()),
                SLOW_BUCKETS,
            )
            .expect("static buckets")
            .build_recorder();
        let handle = recorder.handle();
        // A second process-wide recorder (tests spawning many apps) keeps the first.
        let _ = metrics::set_global_recorder(recorder);
        // The recorder keeps every histogram sample until it is folded into the buckets:
        // a render does that, but a process nobody scrapes would grow without bound
        // (tens of megabytes in a benchmark run). Fold them in every few seconds.
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                upkeep.run_upkeep();
            });
        handle
    })
}

const SLOW_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// `GET /metrics` in the Prometheus text format.
pub fn metrics_router() -> Router {
    let handle = prometheus();
    Router::new().route("/metrics", get(move || async move { handle.render() }))
}

/// Count and time every request by route template and status.
pub async fn track_http(req: Request, next: Next) -> impl IntoResponse {
    prometheus();
    let start = Instant::now();
    let method = req.method().to_string();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("path", path), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}

/// How often gauges that need a query (backlogs, lag, pending jobs) are sampled: off
/// the hot path, and often enough for a scrape every 15 s.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Run `sample` now and every [`SAMPLE_EVERY`] until `shutdown`.
pub fn spawn_sampler<F, Fut>(shutdown: CancellationToken, mut sample: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SAMPLE_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => sample().await,
            }
        }
    })
}

/// `ticketing_outbox_backlog{outbox}` (rows not yet published) and
/// `ticketing_outbox_oldest_age_seconds{outbox}` (0 when empty) of `service`'s outbox
/// (not `service`: the scraper labels every series with the process's service).
pub fn spawn_outbox_sampler(
    service: &str,
    store: &Store,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let (service, store) = (service.to_owned(), store.clone());
    spawn_sampler(shutdown, move || {
        let (service, store) = (service.clone(), store.clone());
        async move {
            let row = query("SELECT COUNT(*) AS backlog, MIN(produced_at) AS oldest FROM outbox")
                .fetch_one(store.reader())
                .await;
            let sampled = row.and_then(|row| {
                Ok((
                    row.get::<i64>("backlog")?,
                    row.get::<Option<i64>>("oldest")?,
                ))
            });
            match sampled {
                Ok((backlog, oldest)) => {
                    let age = oldest.map_or(0.0, |at| {
                        (ticketing_contracts::time::now_millis() - at).max(0) as f64 / 1000.0
                    });
                    metrics::gauge!("ticketing_outbox_backlog", "outbox" => service.clone())
                        .set(backlog as f64);
                    metrics::gauge!("ticketing_outbox_oldest_age_seconds", "outbox" => service)
                        .set(age);
                }
                Err(err) => tracing::debug!(error = %err, "sampling the outbox failed"),
            }
        }
    })
}

/// `ticketing_consumer_lag{group,subject}`: events not yet acknowledged by each consumer
/// group this process subscribes (for a replica, the versions it is behind); and
/// `ticketing_consumer_oldest_retry_seconds{group,subject}`: how long the oldest event
/// that failed in this process has waited for a redelivery to succeed.
pub fn spawn_lag_sampler(bus: &SharedBus, shutdown: CancellationToken) -> JoinHandle<()> {
    let bus = bus.clone();
    spawn_sampler(shutdown, move || {
        let bus = bus.clone();
        async move {
            match bus.consumer_lag().await {
                Ok(lags) => {
                    for lag in lags {
                        metrics::gauge!(
                            "ticketing_consumer_lag",
                            "group" => lag.group,
                            "subject" => lag.subject.as_str()
                        )
                        .set(lag.pending as f64);
                    }
                }
                Err(err) => tracing::debug!(error = %err, "sampling consumer lag failed"),
            }
            for (group, subject, seconds) in ticketing_bus::oldest_retries() {
                metrics::gauge!(
                    "ticketing_consumer_oldest_retry_seconds",
                    "group" => group,
                    "subject" => subject.as_str()
                )
                .set(seconds);
            }
        }
    })
}
