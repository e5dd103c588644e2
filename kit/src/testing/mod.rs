//! Test helpers: a runtime with its own fresh database per test, on either backend,
//! an app spawned on port 0, and one client of its HTTP API (`api.rs`).
//!
//! PostgreSQL tests use `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432`)
//! and a database prefix unique to the test, so tests run in parallel. A server that
//! cannot be reached fails the test: nothing is skipped.
//!
//! The event bus is the in-process one (its log in the test's temp dir) by default, or
//! JetStream (`TEST_NATS_URL`, default `nats://127.0.0.1:4222`) with the test's prefix as
//! stream and subject prefix.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::auth::JwtKeys;
use crate::runtime::{Mounted, Runtime};
use ticketing_bus::tables as event_tables;
use ticketing_bus::{InProcessBus, NatsBus, RetryPolicy, SharedBus};
use ticketing_store::{DatabaseConfig, Migrations, Store};

mod api;
pub mod sessions;
pub use api::{credentials, errors, id_of, payment, reply, Api, Patience, TestApp, User, PASSWORD};

pub const TEST_JWT_KEY: &[u8] = b"test-jwt-key";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    Sqlite,
    Postgres,
}

/// A unique name for this test's databases, streams and keys.
pub fn unique_prefix() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())[..17].to_owned()
}

pub fn postgres_base_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

pub fn nats_url() -> String {
    std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// No migrations: for test stores that only need the event tables.
pub static NO_MIGRATIONS: Migrations = Migrations::NONE;

/// Retries fast enough for tests: 5 attempts, 20 ms apart at first.
pub fn test_retry_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
    }
}

/// Everything a test needs to start services against fresh databases.
pub struct TestEnv {
    pub runtime: Runtime,
    pub prefix: String,
    pub dir: tempfile::TempDir,
    /// The JetStream stream to delete when the test ends.
    nats_stream: Option<String>,
}

impl TestEnv {
    /// Fresh databases on `backend` and an in-process bus in the temp dir.
    pub fn new(backend: TestBackend) -> TestEnv {
        let prefix = unique_prefix();
        let dir = tempfile::tempdir().expect("temp dir");
        let bus = InProcessBus::open_lazy(&dir.path().join("bus.db"), test_retry_policy())
            .expect("in-process bus");
        Self::build(backend, prefix, dir, Arc::new(bus))
    }

    /// Fresh databases on `backend` and JetStream with this test's own stream. Fails
    /// when NATS is unreachable.
    pub async fn with_nats(backend: TestBackend) -> TestEnv {
        let prefix = unique_prefix();
        let dir = tempfile::tempdir().expect("temp dir");
        let bus = NatsBus::connect_with(&nats_url(), &prefix, test_retry_policy())
            .await
            .expect("NATS with JetStream must be reachable (TEST_NATS_URL)");
        let stream = bus.stream_name().to_owned();
        let mut env = Self::build(backend, prefix, dir, Arc::new(bus));
        env.nats_stream = Some(stream);
        env
    }

    fn build(
        backend: TestBackend,
        prefix: String,
        dir: tempfile::TempDir,
        bus: SharedBus,
    ) -> TestEnv {
        let database = match backend {
            TestBackend::Sqlite => DatabaseConfig::Embedded {
                data_dir: dir.path().to_owned(),
            },
            TestBackend::Postgres => DatabaseConfig::Postgres {
                url: format!("{}/{prefix}", postgres_base_url()),
            },
        };
        TestEnv {
            runtime: Runtime {
                database,
                database_overrides: HashMap::new(),
                keys: JwtKeys::new(TEST_JWT_KEY, Duration::from_secs(3600)),
                bus,
                shutdown: CancellationToken::new(),
            },
            prefix,
            dir,
            nats_stream: None,
        }
    }
}

impl TestEnv {
    /// A fresh store for `service` with the outbox and inbox tables and no other schema.
    pub async fn event_store(&self, service: &str) -> Store {
        let location = self.runtime.location(service).expect("location");
        let store = Store::open(&location, &NO_MIGRATIONS)
            .await
            .expect("the test database must be reachable");
        event_tables::install(&store).await.expect("event tables");
        store
    }

    /// Wait (up to 20 s) until `service` (whose schema is `migrations`) has handled `n`
    /// events: its inbox marks.
    pub async fn wait_handled(&self, service: &str, migrations: &Migrations, n: i64) {
        let location = self.runtime.location(service).expect("location");
        let store = Store::open(&location, migrations)
            .await
            .expect("the test database must be reachable");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let handled: i64 = ticketing_store::query("SELECT COUNT(*) FROM inbox")
                .scalar(store.reader())
                .await
                .expect("count the inbox");
            if handled >= n {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{service}: only {handled} of {n} events handled"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.runtime.shutdown.cancel();
        if let Some(stream) = self.nats_stream.take() {
            // Drop cannot await: delete the test's stream on a connection of its own, so
            // the shared server does not fill up.
            block_on_own_thread(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    let client = async_nats::connect(nats_url()).await?;
                    async_nats::jetstream::new(client)
                        .delete_stream(&stream)
                        .await?;
                    anyhow::Ok(())
                })
                .await;
            });
        }
    }
}

/// Run `work` to its end on a thread and runtime of its own: for a `Drop` that has to
/// await (it cannot itself, and may run inside a runtime).
pub fn block_on_own_thread(work: impl std::future::Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(work);
    })
    .join();
}

/// A running app and a cookie-keeping client for it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
}

impl TestServer {
    pub async fn spawn(mut services: Vec<Mounted>) -> TestServer {
        let app = crate::app::compose(&mut services, Router::new(), vec![]);
        Self::spawn_router(app).await
    }

    pub async fn spawn_router(app: Router) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .expect("serve");
        });
        TestServer {
            addr,
            client: Self::new_client(),
        }
    }

    /// A fresh client with its own cookie jar (another browser).
    pub fn new_client() -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .expect("client")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A client of this server, with the server's cookie jar.
    pub fn api(&self) -> Api {
        Api::with_http(self.client.clone(), self.url(""))
    }
}

/// Run each named `async fn(TestBackend)` once per storage backend.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::testing::TestBackend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::testing::TestBackend::Postgres).await
                }
            )*
        }
    };
}

/// A storage backend and an event bus to run a test on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flavor {
    pub backend: TestBackend,
    pub nats: bool,
}

impl TestEnv {
    pub async fn with_flavor(flavor: Flavor) -> TestEnv {
        if flavor.nats {
            Self::with_nats(flavor.backend).await
        } else {
            Self::new(flavor.backend)
        }
    }
}

/// Run each named `async fn(Flavor)` on SQLite and PostgreSQL, each with the in-process
/// bus and with NATS JetStream.
#[macro_export]
macro_rules! flavor_tests {
    ($($name:ident),* $(,)?) => {
        $crate::flavor_tests!(@module sqlite_inprocess, Sqlite, false; $($name),*);
        $crate::flavor_tests!(@module postgres_inprocess, Postgres, false; $($name),*);
        $crate::flavor_tests!(@module sqlite_nats, Sqlite, true; $($name),*);
        $crate::flavor_tests!(@module postgres_nats, Postgres, true; $($name),*);
    };
    (@module $module:ident, $backend:ident, $nats:expr; $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::testing::Flavor {
                        backend: $crate::testing::TestBackend::$backend,
                        nats: $nats,
                    })
                    .await
                }
            )*
        }
    };
}

/// Records the events of one subject as an observer group of its own.
pub struct EventRecorder {
    rx: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<ticketing_bus::Envelope>>,
}

struct RecordingHandler(tokio::sync::mpsc::UnboundedSender<ticketing_bus::Envelope>);

#[async_trait::async_trait]
impl ticketing_bus::Handler for RecordingHandler {
    async fn handle(
        &self,
        event: &ticketing_bus::Envelope,
    ) -> Result<(), ticketing_bus::HandlerError> {
        let _ = self.0.send(event.clone());
        Ok(())
    }
}

impl EventRecorder {
    pub async fn start(
        runtime: &Runtime,
        subject: ticketing_contracts::events::Subject,
    ) -> EventRecorder {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let group = format!("test-recorder-{}", uuid::Uuid::new_v4().simple());
        runtime
            .bus
            .subscribe(
                &group,
                subject,
                Arc::new(RecordingHandler(tx)),
                runtime.shutdown.clone(),
            )
            .await
            .expect("subscribe recorder");
        EventRecorder {
            rx: tokio::sync::Mutex::new(rx),
        }
    }

    /// The next event; fails the test after 10 s.
    pub async fn next(&self) -> ticketing_bus::Envelope {
        tokio::time::timeout(Duration::from_secs(10), self.rx.lock().await.recv())
            .await
            .expect("an event within 10 s")
            .expect("recorder open")
    }

    /// Fails the test if an event arrives within `wait`.
    pub async fn assert_quiet(&self, wait: Duration) {
        if let Ok(Some(event)) = tokio::time::timeout(wait, self.rx.lock().await.recv()).await {
            panic!("unexpected event {event:?}");
        }
    }
}
