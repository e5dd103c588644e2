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
    /// Inspect and feed the event bus (JetStream with `--nats-url`, else `<data-dir>/bus.db`).
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
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

    /// The expiration queue on Redis (distributed mode). Without it the queue lives in
    /// the expiration service's own database.
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

    /// `--target web`: the gateway serving the public API (`/api/...`), e.g.
    /// `http://ingress`. The pages get all their data from it. With `--target all`
    /// the pages call this URL instead of the API in-process.
    #[arg(long, env = "TICKETING_API_URL", global = true)]
    pub api_url: Option<String>,

    /// Stripe publishable key (`pk_...`): the payment page collects the card with
    /// Stripe.js. Without it the page shows the sandbox's card form.
    #[arg(long, env = "STRIPE_PUBLISHABLE_KEY", global = true)]
    pub stripe_publishable_key: Option<String>,

    /// Log as JSON lines instead of text.
    #[arg(long, env = "TICKETING_LOG_JSON", global = true)]
    pub log_json: bool,
}

impl ServeArgs {
    pub fn is_embedded(&self) -> bool {
        self.database_url.is_none()
    }
}
