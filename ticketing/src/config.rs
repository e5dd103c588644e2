//! Command line and environment: every flag is also an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "ticketing",
    version,
    about = "Ticketing: an event-driven ticket marketplace"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the system (the default).
    Serve,
    /// Compare what the services hold, through their databases (read-only), and report
    /// every divergence; exit code 1 when there is any.
    Audit(AuditArgs),
    /// Inspect and feed the event bus (JetStream with `--nats-url`, else `<data-dir>/bus.db`).
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
}

#[derive(Args, Debug, Clone)]
pub struct AuditArgs {
    /// On a running system, report a divergence only once it lasted this long (events
    /// in flight make the services disagree for a moment): the audit looks again every
    /// second until all agree or this time has passed.
    #[arg(long, env = "TICKETING_AUDIT_SETTLE_SECONDS", default_value_t = 0)]
    pub settle_seconds: u64,
    /// An open order this long past its `expiresAt` means its expiry was lost.
    #[arg(
        long,
        env = "TICKETING_AUDIT_EXPIRY_SLACK_SECONDS",
        default_value_t = 60
    )]
    pub expiry_slack_seconds: u64,
    /// Outbox rows older than this mean a relay is stuck.
    #[arg(long, env = "TICKETING_AUDIT_OUTBOX_AGE_SECONDS", default_value_t = 60)]
    pub outbox_age_seconds: u64,
}

#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// Follow events live, with their headers.
    Tail {
        /// Only this subject (e.g. `ticket:created`); repeatable. Default: all.
        #[arg(long)]
        subject: Vec<String>,
        /// Start from the oldest event kept instead of new events only.
        #[arg(long)]
        all: bool,
    },
    /// Publish one event (a fresh id, produced now).
    Publish {
        /// The subject, e.g. `ticket:created`.
        subject: String,
        /// The JSON payload.
        json: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Every service, the web pages and every background worker in one process.
    All,
    Auth,
    Tickets,
    Orders,
    Payments,
    Expiration,
    /// Outbound webhooks: sellers' endpoints and the delivery workers.
    Webhooks,
    /// QR passes and gates: passes, devices, redeems, the changes feed.
    Checkin,
    /// The web pages alone, against the API at `--api-url`.
    Web,
}

impl Target {
    pub fn includes(self, other: Target) -> bool {
        self == Target::All || self == other
    }
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// What this process runs.
    #[arg(
        long,
        env = "TICKETING_TARGET",
        value_enum,
        default_value = "all",
        global = true
    )]
    pub target: Target,

    /// Address to listen on.
    #[arg(
        long,
        env = "TICKETING_LISTEN",
        default_value = "127.0.0.1:3000",
        global = true
    )]
    pub listen: SocketAddr,

    /// Embedded mode: one SQLite file per service is kept here.
    #[arg(
        long,
        env = "TICKETING_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Embedded mode: when a commit is on disk. `normal`: it survives the process being
    /// killed, but a power cut or OS crash can roll back the last commits (an order
    /// answered 201). `full`: the log is synced at every (group) commit, so it survives
    /// those too. See docs/decisions/0016-group-commit-and-durability.md.
    #[arg(
        long,
        env = "TICKETING_SQLITE_SYNCHRONOUS",
        default_value_t = ticketing_store::Synchronous::Normal,
        global = true
    )]
    pub sqlite_synchronous: ticketing_store::Synchronous,

    /// Embedded mode: write a commit's log frames in one write (`on`, the default) or
    /// frame by frame on SQLite's own VFS (`off`), to rule the gathering out in an
    /// incident. See docs/decisions/0022-a-commit-in-one-write.md.
    #[arg(
        long,
        env = "TICKETING_SQLITE_GATHERED_LOG",
        default_value = "on",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::Set,
        global = true
    )]
    pub sqlite_gathered_log: bool,

    /// Distributed mode: connections each service's pool keeps at most in this process.
    /// A server's `max_connections` (100 by default) is shared by every process of every
    /// service: with many processes per server, give each fewer. A request that finds
    /// none free within 30 s, or a server refusing connections, is answered 503 with
    /// `Retry-After`.
    #[arg(
        long,
        env = "TICKETING_PG_MAX_CONNECTIONS",
        default_value_t = ticketing_store::DEFAULT_POSTGRES_MAX_CONNECTIONS,
        value_parser = clap::value_parser!(u32).range(1..=1000),
        global = true
    )]
    pub pg_max_connections: u32,

    /// Distributed mode: each service vacuums and analyzes its own tables (`on`, the
    /// default), checked every second with autovacuum's thresholds on smaller bases:
    /// queue-like tables (outboxes, the webhook queue) need it far sooner than
    /// autovacuum's minute. `off` where autovacuum is tuned for them. See
    /// docs/decisions/0034-table-upkeep.md.
    #[arg(
        long,
        env = "TICKETING_PG_UPKEEP",
        default_value = "on",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::Set,
        global = true
    )]
    pub pg_upkeep: bool,

    /// Distributed mode: a `postgres://` server URL. Each service uses its own database
    /// named `<db>_<service>` (`<db>` from the URL, default `ticketing`), created if missing.
    #[arg(long, env = "TICKETING_DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Full database URL of the auth service, replacing the derived one.
    #[arg(long, env = "TICKETING_AUTH_DATABASE_URL", global = true)]
    pub auth_database_url: Option<String>,

    /// Full database URL of the tickets service, replacing the derived one.
    #[arg(long, env = "TICKETING_TICKETS_DATABASE_URL", global = true)]
    pub tickets_database_url: Option<String>,

    /// Full database URL of the orders service, replacing the derived one.
    #[arg(long, env = "TICKETING_ORDERS_DATABASE_URL", global = true)]
    pub orders_database_url: Option<String>,

    /// Full database URL of the payments service, replacing the derived one.
    #[arg(long, env = "TICKETING_PAYMENTS_DATABASE_URL", global = true)]
    pub payments_database_url: Option<String>,

    /// Full database URL of the expiration service, replacing the derived one.
    #[arg(long, env = "TICKETING_EXPIRATION_DATABASE_URL", global = true)]
    pub expiration_database_url: Option<String>,

    /// Full database URL of the webhooks service, replacing the derived one.
    #[arg(long, env = "TICKETING_WEBHOOKS_DATABASE_URL", global = true)]
    pub webhooks_database_url: Option<String>,

    /// Full database URL of the check-in service, replacing the derived one.
    #[arg(long, env = "TICKETING_CHECKIN_DATABASE_URL", global = true)]
    pub checkin_database_url: Option<String>,

    /// HS256 key of session tokens. Required in distributed mode; in embedded mode one is
    /// generated on first start and kept in the data directory.
    #[arg(long, env = "JWT_KEY", hide_env_values = true, global = true)]
    pub jwt_key: Option<String>,

    /// Session lifetime.
    #[arg(
        long,
        env = "TICKETING_SESSION_TTL_SECONDS",
        default_value_t = 86_400,
        global = true
    )]
    pub session_ttl_seconds: u64,

    /// Mark the session cookie `Secure` (default: on, except in embedded mode).
    #[arg(long, env = "TICKETING_COOKIE_SECURE", global = true)]
    pub cookie_secure: Option<bool>,

    /// How long an order reserves its ticket.
    #[arg(
        long,
        env = "TICKETING_ORDER_TTL_SECONDS",
        default_value_t = 900,
        global = true
    )]
    pub order_ttl_seconds: u64,

    /// How long past `expiresAt` an unpaid order still holds its ticket, so that a
    /// payment accepted just before the deadline completes it.
    #[arg(
        long,
        env = "TICKETING_PAYMENT_GRACE_MS",
        default_value_t = 2_000,
        global = true
    )]
    pub payment_grace_ms: u64,

    /// How long the head of a waiting list has to pay the units offered to it before
    /// they go to the next in line.
    #[arg(
        long,
        env = "TICKETING_WAITLIST_OFFER_SECONDS",
        default_value_t = 600,
        global = true
    )]
    pub waitlist_offer_seconds: u64,

    /// Most admissions per second a listing's on-sale queue gives (never more unused
    /// ones than free units).
    #[arg(
        long,
        env = "TICKETING_QUEUE_ADMIT_PER_SECOND",
        default_value_t = 100,
        value_parser = clap::value_parser!(u32).range(1..),
        global = true
    )]
    pub queue_admit_per_second: u32,

    /// Distributed mode's event bus: a NATS server with JetStream. Without it, the
    /// in-process bus keeps its log at `<data-dir>/bus.db`.
    #[arg(long, env = "NATS_URL", global = true)]
    pub nats_url: Option<String>,

    /// Prefix of the JetStream stream (`<prefix>-events`) and subjects (`<prefix>.<subject>`).
    #[arg(
        long,
        env = "TICKETING_NATS_PREFIX",
        default_value = "ticketing",
        global = true
    )]
    pub nats_prefix: String,

    /// Stripe secret key (`sk_live_...` / `sk_test_...`). Without it payments go to the
    /// offline sandbox, where Stripe's test tokens decide the outcome.
    #[arg(long, env = "STRIPE_KEY", hide_env_values = true, global = true)]
    pub stripe_key: Option<String>,

    /// Base URL of the Stripe API (a test double, a proxy).
    #[arg(long, env = "STRIPE_BASE_URL", global = true)]
    pub stripe_base_url: Option<String>,

    /// Timeout of one request to Stripe (each charge gets up to 3 attempts).
    #[arg(
        long,
        env = "TICKETING_STRIPE_TIMEOUT_SECONDS",
        default_value_t = 20,
        global = true
    )]
    pub stripe_timeout_seconds: u64,

    /// Redis (distributed mode): the expiration queue, and the rate limits every process
    /// shares. Without it the queue lives in the expiration service's own database and
    /// each process counts its own limits.
    #[arg(long, env = "REDIS_URL", global = true)]
    pub redis_url: Option<String>,

    /// Prefix of the expiration queue's Redis keys.
    #[arg(
        long,
        env = "TICKETING_REDIS_PREFIX",
        default_value = "expiration",
        global = true
    )]
    pub redis_prefix: String,

    /// Prefix of the rate limits' Redis keys (`<prefix>:<limit>:<key>`). With
    /// `--redis-url` every limit counts in Redis, shared by all processes.
    #[arg(
        long,
        env = "TICKETING_RATE_LIMIT_PREFIX",
        default_value = "ratelimit",
        global = true
    )]
    pub rate_limit_prefix: String,

    /// Rate limits of sign-in and sign-up (`false` turns them all off, for benchmarks).
    #[arg(
        long,
        env = "TICKETING_AUTH_RATE_LIMITS",
        default_value_t = true,
        action = clap::ArgAction::Set,
        global = true
    )]
    pub auth_rate_limits: bool,

    /// Sign-in and sign-up attempts per minute from one client address (IPv6: one /64);
    /// the whole allowance may come at once. 0: unlimited.
    #[arg(
        long,
        env = "TICKETING_AUTH_RATE_PER_ADDRESS",
        default_value_t = ticketing_auth::DEFAULT_PER_ADDRESS_PER_MINUTE,
        global = true
    )]
    pub auth_rate_per_address: u32,

    /// Sign-in and sign-up attempts per minute on one account (the e-mail, compared
    /// case-insensitively). 0: unlimited.
    #[arg(
        long,
        env = "TICKETING_AUTH_RATE_PER_ACCOUNT",
        default_value_t = ticketing_auth::DEFAULT_PER_ACCOUNT_PER_MINUTE,
        global = true
    )]
    pub auth_rate_per_account: u32,

    /// Password hashes computed at once (default: twice the cores).
    #[arg(long, env = "TICKETING_AUTH_MAX_CONCURRENT_HASHES", global = true)]
    pub auth_max_concurrent_hashes: Option<usize>,

    /// How long a sign-in or sign-up waits for a hashing slot before it is refused with
    /// 503.
    #[arg(
        long,
        env = "TICKETING_AUTH_HASH_WAIT_MS",
        default_value_t = 2000,
        global = true
    )]
    pub auth_hash_wait_ms: u64,

    /// Proxies (addresses or CIDR networks, comma-separated) whose `X-Forwarded-For`
    /// names the client. Without any, the header is ignored.
    #[arg(
        long,
        env = "TICKETING_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = parse_network,
        global = true
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// On SIGTERM: how long requests in flight may take to finish, and then how long the
    /// relays and listeners may take to finish their current batch.
    #[arg(
        long,
        env = "TICKETING_SHUTDOWN_GRACE_SECONDS",
        default_value_t = 15,
        global = true
    )]
    pub shutdown_grace_seconds: u64,

    /// On SIGTERM, first: how long the process goes on serving while `/readyz` answers
    /// 503, so that load balancers take it out before it stops accepting connections
    /// (Kubernetes removes a terminating pod from the Service's endpoints while the
    /// ingress may route to it a moment longer; deploy/k8s sets 5). A second signal ends
    /// the wait.
    #[arg(
        long,
        env = "TICKETING_SHUTDOWN_DRAIN_SECONDS",
        default_value_t = 0,
        global = true
    )]
    pub shutdown_drain_seconds: u64,

    /// `--target web`: the gateway serving the public API (`/api/...`), e.g.
    /// `http://ingress`. The pages get all their data from it. With `--target all`
    /// the pages call this URL instead of the API in-process.
    #[arg(long, env = "TICKETING_API_URL", global = true)]
    pub api_url: Option<String>,

    /// Stripe publishable key (`pk_...`): the payment page collects the card with
    /// Stripe.js. Without it the page shows the sandbox's card form.
    #[arg(long, env = "STRIPE_PUBLISHABLE_KEY", global = true)]
    pub stripe_publishable_key: Option<String>,

    /// Webhook endpoints may be on loopback and private addresses (a local receiver,
    /// tests). Off: such URLs are refused with 400.
    #[arg(long, env = "TICKETING_WEBHOOKS_ALLOW_PRIVATE", global = true)]
    pub webhooks_allow_private: bool,

    /// Timeout of one webhook attempt (connection to answer).
    #[arg(
        long,
        env = "TICKETING_WEBHOOKS_TIMEOUT_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub webhooks_timeout_ms: u64,

    /// Pause before a failed webhook's first retry; doubled for each further one (with
    /// jitter) up to `--webhooks-backoff-max-ms`.
    #[arg(
        long,
        env = "TICKETING_WEBHOOKS_BACKOFF_MIN_MS",
        default_value_t = 1_000,
        global = true
    )]
    pub webhooks_backoff_min_ms: u64,

    /// Longest pause between two attempts of a webhook.
    #[arg(
        long,
        env = "TICKETING_WEBHOOKS_BACKOFF_MAX_MS",
        default_value_t = 600_000,
        global = true
    )]
    pub webhooks_backoff_max_ms: u64,

    /// How long a webhook delivery is retried before it is given up (dead).
    #[arg(
        long,
        env = "TICKETING_WEBHOOKS_GIVE_UP_SECONDS",
        default_value_t = 72 * 3600,
        global = true
    )]
    pub webhooks_give_up_seconds: u64,

    /// How long delivered (and dead) webhook deliveries are kept, listed and replayable.
    #[arg(
        long,
        env = "TICKETING_WEBHOOKS_RETENTION_SECONDS",
        default_value_t = 7 * 24 * 3600,
        global = true
    )]
    pub webhooks_retention_seconds: u64,

    /// Webhook keys (orders, listings) of one endpoint sent at once, at most.
    #[arg(
        long,
        env = "TICKETING_WEBHOOKS_PER_ENDPOINT",
        default_value_t = 8,
        value_parser = clap::value_parser!(u32).range(1..=64),
        global = true
    )]
    pub webhooks_per_endpoint: u32,

    /// The Ed25519 key pass codes are signed with: 32 bytes as 64 hex digits (or
    /// base64url). Every check-in process must have the same. Without it the service
    /// generates one and keeps it in its database.
    #[arg(
        long,
        env = "TICKETING_CHECKIN_SIGNING_KEY",
        hide_env_values = true,
        global = true
    )]
    pub checkin_signing_key: Option<String>,

    /// How long after a listing's event its gate records (scans, the changes feed) are
    /// kept; passes and check-ins stay. Listings without an event time keep them.
    #[arg(
        long,
        env = "TICKETING_CHECKIN_RETENTION_SECONDS",
        default_value_t = 30 * 24 * 3600,
        global = true
    )]
    pub checkin_retention_seconds: u64,

    /// Log as JSON lines instead of text.
    #[arg(long, env = "TICKETING_LOG_JSON", global = true)]
    pub log_json: bool,

    /// OpenTelemetry collector (OTLP over HTTP, e.g. `http://otel-collector:4318`):
    /// spans are exported to `<endpoint>/v1/traces` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
    /// Without it nothing is exported.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", global = true)]
    pub otlp_endpoint: Option<String>,

    /// `service.name` of the exported spans; default: the target (`orders`, `all`, …).
    #[arg(long, env = "OTEL_SERVICE_NAME", global = true)]
    pub otel_service_name: Option<String>,
}

impl ServeArgs {
    pub fn is_embedded(&self) -> bool {
        self.database_url.is_none()
    }
}

/// `10.0.0.0/8`, or a single address (`10.0.0.1`, `::1`).
fn parse_network(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{text}` is not an address or a CIDR network"))
}
