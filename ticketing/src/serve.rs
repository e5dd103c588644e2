//! `ticketing serve`: start the services of the chosen target on one listener.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use ticketing_bus::{InProcessBus, NatsBus, SharedBus};
use ticketing_kit::auth::JwtKeys;
use ticketing_kit::client::TrustedProxies;
use ticketing_kit::health::ReadyCheck;
use ticketing_kit::runtime::{Mounted, Runtime};
use ticketing_store::DatabaseConfig;
use tokio_util::sync::CancellationToken;

use crate::config::{ServeArgs, Target};

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    if args.target == Target::Web {
        return run_web(args).await;
    }
    let runtime = runtime(&args).await?;
    let mut services = start(args.target, &args, &runtime).await?;
    ticketing_kit::telemetry::spawn_lag_sampler(&runtime.bus, runtime.shutdown.clone());
    // Cancelled at SIGTERM, before anything stops: `/readyz` answers 503 from then on.
    let stopping = CancellationToken::new();
    let ready = vec![
        ReadyCheck::serving(&stopping),
        ReadyCheck::bus("bus", &runtime.bus),
    ];
    // `all` serves the pages beside the API; they call it in-process unless given an
    // `--api-url` (docs/decisions/0013).
    let (pages, api_slot) = if args.target == Target::All {
        let cookie_secure = args.cookie_secure.unwrap_or(!args.is_embedded());
        match args.api_url.as_deref().filter(|u| !u.trim().is_empty()) {
            Some(url) => {
                let api = ticketing_web::ApiClient::http(url)?;
                (web_router(&args, api, cookie_secure), None)
            }
            None => {
                let (api, slot) = ticketing_web::ApiClient::in_process();
                (web_router(&args, api, cookie_secure), Some(slot))
            }
        }
    } else {
        (Router::new(), None)
    };
    let app = ticketing_kit::app::compose(&mut services, pages, ready);
    if let Some(slot) = api_slot {
        slot.set(app.clone());
    }

    // Listen only now that every store is open and migrated, the bus connected and the
    // listeners subscribed: until here a connection is refused, so a gateway tries the
    // next replica (even for a POST: nothing was sent), and no request waits on a
    // process that is not ready.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(
        target_services = ?args.target,
        mode = if args.is_embedded() { "embedded" } else { "distributed" },
        "listening on http://{}",
        listener.local_addr()?
    );
    serve_until_signal(listener, app, &stopping, shutdown_times(&args)).await?;

    // No request is running any more: stop the workers. Each finishes what it holds (a
    // relay its batch, then one last flush; a listener its event) and returns.
    runtime.shutdown.cancel();
    let tasks: Vec<_> = services
        .iter_mut()
        .flat_map(|s| s.tasks.drain(..))
        .collect();
    let workers = futures::future::join_all(tasks);
    if tokio::time::timeout(Duration::from_secs(args.shutdown_grace_seconds), workers)
        .await
        .is_err()
    {
        tracing::warn!(
            "background workers did not stop in time; their work resumes at the next start"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// Where this process's spans go: the OTLP endpoint, under the target's name unless
/// `OTEL_SERVICE_NAME` names the service.
pub fn trace_export(args: &ServeArgs) -> ticketing_kit::telemetry::TraceExport {
    use clap::ValueEnum;
    let target = args
        .target
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_else(|| "ticketing".to_owned());
    ticketing_kit::telemetry::TraceExport {
        endpoint: args.otlp_endpoint.clone(),
        service_name: args
            .otel_service_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or(target),
    }
}

/// What SIGTERM gives a process: the drain (still serving, `/readyz` 503), then the
/// grace for requests in flight.
#[derive(Clone, Copy)]
struct ShutdownTimes {
    drain: Duration,
    grace: Duration,
}

fn shutdown_times(args: &ServeArgs) -> ShutdownTimes {
    ShutdownTimes {
        drain: Duration::from_secs(args.shutdown_drain_seconds),
        grace: Duration::from_secs(args.shutdown_grace_seconds),
    }
}

/// Serve until SIGTERM or Ctrl-C. Then `stopping` is cancelled (`/readyz` answers 503)
/// and the process goes on serving for the drain period (a second signal cuts it short),
/// so load balancers take it out first; then it stops accepting connections and lets
/// the requests in flight finish, for at most the grace period; requests still running
/// then are dropped.
async fn serve_until_signal(
    listener: tokio::net::TcpListener,
    app: Router,
    stopping: &CancellationToken,
    times: ShutdownTimes,
) -> anyhow::Result<()> {
    let ShutdownTimes { drain, grace } = times;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stopped.await;
    })
    .into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return Ok(result?),
        _ = wait_for_signal() => {}
    }
    stopping.cancel();
    if !drain.is_zero() {
        tracing::info!(drain = ?drain, "shutting down: /readyz answers 503, still serving while load balancers take this process out");
        tokio::select! {
            result = &mut server => return Ok(result?),
            _ = tokio::time::sleep(drain) => {}
            _ = wait_for_signal() => {}
        }
    }
    tracing::info!(grace = ?grace, "shutting down: no new connections, finishing requests in flight");
    let _ = stop.send(());
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result?,
        Err(_) => tracing::warn!("requests still in flight after the grace period were dropped"),
    }
    Ok(())
}

/// `--target web`: the pages alone, against the gateway at `--api-url`; no database,
/// no bus. Ready while the API answers.
async fn run_web(args: ServeArgs) -> anyhow::Result<()> {
    let url = args
        .api_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .context("--target web needs --api-url (TICKETING_API_URL), the gateway serving /api")?;
    let api = ticketing_web::ApiClient::http(url)?;
    let ready = {
        let api = api.clone();
        ReadyCheck::new("api", move || {
            let api = api.clone();
            async move { api.ping().await.map_err(anyhow::Error::from) }
        })
    };
    let cookie_secure = args.cookie_secure.unwrap_or(true);
    let stopping = CancellationToken::new();
    let app = ticketing_kit::app::compose(
        &mut [],
        web_router(&args, api, cookie_secure),
        vec![ReadyCheck::serving(&stopping), ready],
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(
        api = url,
        "web pages listening on http://{}",
        listener.local_addr()?
    );
    serve_until_signal(listener, app, &stopping, shutdown_times(&args)).await
}

fn web_router(args: &ServeArgs, api: ticketing_web::ApiClient, cookie_secure: bool) -> Router {
    ticketing_web::router(ticketing_web::WebConfig {
        api,
        cookie_secure,
        stripe_publishable_key: args.stripe_publishable_key.clone(),
        tracing: Some(std::sync::Arc::new(crate::page_tracing::Platform)),
    })
}

/// Start every service the target includes.
pub async fn start(
    target: Target,
    args: &ServeArgs,
    runtime: &Runtime,
) -> anyhow::Result<Vec<Mounted>> {
    let mut services = Vec::new();
    if target.includes(Target::Auth) {
        let mut hashing = ticketing_auth::HashSettings {
            max_wait: Duration::from_millis(args.auth_hash_wait_ms),
            ..Default::default()
        };
        if let Some(n) = args.auth_max_concurrent_hashes {
            hashing.max_concurrent = n;
        }
        let settings = ticketing_auth::Settings {
            cookie_secure: args.cookie_secure.unwrap_or(!args.is_embedded()),
            limits: ticketing_auth::LimitSettings {
                enabled: args.auth_rate_limits,
                per_address_per_minute: args.auth_rate_per_address,
                per_account_per_minute: args.auth_rate_per_account,
                trusted_proxies: TrustedProxies::new(args.trusted_proxies.clone()),
                shared: redis_url(args).map(|redis_url| ticketing_auth::SharedSettings {
                    redis_url,
                    prefix: args.rate_limit_prefix.clone(),
                }),
            },
            hashing,
        };
        services.push(ticketing_auth::mount(runtime, &settings).await?);
    }
    if target.includes(Target::Tickets) {
        services.push(ticketing_tickets::mount(runtime).await?);
    }
    if target.includes(Target::Orders) {
        let settings = ticketing_orders::Settings {
            order_ttl: Duration::from_secs(args.order_ttl_seconds),
            payment_grace: Duration::from_millis(args.payment_grace_ms),
            waitlist_offer: Duration::from_secs(args.waitlist_offer_seconds),
            queue_admit_per_second: args.queue_admit_per_second,
        };
        services.push(ticketing_orders::mount(runtime, &settings).await?);
    }
    if target.includes(Target::Payments) {
        let provider = ticketing_payments::provider::from_config(
            args.stripe_key.as_deref(),
            args.stripe_base_url.as_deref(),
            Duration::from_secs(args.stripe_timeout_seconds.max(1)),
        )?;
        services.push(ticketing_payments::mount(runtime, provider).await?);
    }
    if target.includes(Target::Expiration) {
        let settings = ticketing_expiration::Settings {
            redis_url: redis_url(args),
            redis_prefix: args.redis_prefix.clone(),
            ..Default::default()
        };
        services.push(ticketing_expiration::mount(runtime, &settings).await?);
    }
    if target.includes(Target::Webhooks) {
        services.push(ticketing_webhooks::mount(runtime, &webhook_settings(args)).await?);
    }
    if target.includes(Target::Checkin) {
        services.push(ticketing_checkin::mount(runtime, &checkin_settings(args)?).await?);
    }
    Ok(services)
}

pub fn checkin_settings(args: &ServeArgs) -> anyhow::Result<ticketing_checkin::Settings> {
    let signing_key = match args.checkin_signing_key.as_deref().map(str::trim) {
        None | Some("") => {
            if !args.is_embedded() {
                tracing::warn!(
                    "no --checkin-signing-key: pass codes are signed with the key kept in the \
                     check-in database"
                );
            }
            None
        }
        Some(text) => Some(
            ticketing_checkin::code::Signer::parse_seed(text)
                .context("--checkin-signing-key (TICKETING_CHECKIN_SIGNING_KEY)")?,
        ),
    };
    Ok(ticketing_checkin::Settings {
        signing_key,
        retention: Duration::from_secs(args.checkin_retention_seconds),
    })
}

/// `--redis-url`, unless empty.
fn redis_url(args: &ServeArgs) -> Option<String> {
    args.redis_url.clone().filter(|u| !u.trim().is_empty())
}

pub fn webhook_settings(args: &ServeArgs) -> ticketing_webhooks::Settings {
    ticketing_webhooks::Settings {
        allow_private: args.webhooks_allow_private,
        timeout: Duration::from_millis(args.webhooks_timeout_ms.max(1)),
        backoff_min: Duration::from_millis(args.webhooks_backoff_min_ms),
        backoff_max: Duration::from_millis(
            args.webhooks_backoff_max_ms
                .max(args.webhooks_backoff_min_ms),
        ),
        give_up_after: Duration::from_secs(args.webhooks_give_up_seconds),
        retention: Duration::from_secs(args.webhooks_retention_seconds),
        per_endpoint: args.webhooks_per_endpoint as usize,
        ..Default::default()
    }
}

/// The event bus: JetStream when a NATS URL is given, else the in-process bus with its
/// log at `<data-dir>/bus.db`.
pub async fn bus(args: &ServeArgs) -> anyhow::Result<SharedBus> {
    Ok(match &args.nats_url {
        Some(url) => Arc::new(NatsBus::connect(url, &args.nats_prefix).await?),
        None => Arc::new(InProcessBus::open(&args.data_dir.join("bus.db")).await?),
    })
}

/// Where each service's database is: the mode's default, and the per-service URLs that
/// replace it.
pub fn databases(args: &ServeArgs) -> anyhow::Result<(DatabaseConfig, HashMap<String, String>)> {
    let database = match &args.database_url {
        Some(url) => {
            anyhow::ensure!(
                url.starts_with("postgres://") || url.starts_with("postgresql://"),
                "--database-url must be a postgres:// URL"
            );
            DatabaseConfig::Postgres { url: url.clone() }
        }
        None => DatabaseConfig::Embedded {
            data_dir: args.data_dir.clone(),
        },
    };
    let mut database_overrides = HashMap::new();
    for (service, url) in [
        ("auth", &args.auth_database_url),
        ("tickets", &args.tickets_database_url),
        ("orders", &args.orders_database_url),
        ("payments", &args.payments_database_url),
        ("expiration", &args.expiration_database_url),
        ("webhooks", &args.webhooks_database_url),
        ("checkin", &args.checkin_database_url),
    ] {
        if let Some(url) = url {
            database_overrides.insert(service.to_owned(), url.clone());
        }
    }
    Ok((database, database_overrides))
}

async fn runtime(args: &ServeArgs) -> anyhow::Result<Runtime> {
    let (database, database_overrides) = databases(args)?;
    let key = match &args.jwt_key {
        Some(key) if !key.is_empty() => key.clone().into_bytes(),
        _ if args.is_embedded() => embedded_jwt_key(&args.data_dir)?,
        _ => anyhow::bail!("JWT_KEY must be set in distributed mode"),
    };
    Ok(Runtime {
        database,
        database_overrides,
        keys: JwtKeys::new(&key, Duration::from_secs(args.session_ttl_seconds)),
        bus: bus(args).await?,
        shutdown: CancellationToken::new(),
    })
}

/// The embedded mode's signing key: generated once, kept so sessions survive restarts.
fn embedded_jwt_key(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join("jwt.key");
    if let Ok(key) = std::fs::read_to_string(&path) {
        let key = key.trim();
        if !key.is_empty() {
            return Ok(key.as_bytes().to_vec());
        }
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let key = hex::encode(rand::random::<[u8; 32]>());
    write_private(&path, &key).with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated a JWT key for embedded mode");
    Ok(key.into_bytes())
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
