//! What an operator chooses: where the services keep their data, and how SQLite files
//! are opened (the binary's `--database-url`, `--data-dir`, `--sqlite-*` settings).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};

use anyhow::Context;

/// When a SQLite commit is on disk (`PRAGMA synchronous`), for every file the process
/// opens from then on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Synchronous {
    /// The log is synced at checkpoints, not at commits: a commit survives the process
    /// being killed, but a power cut or an OS crash can roll back the last ones.
    #[default]
    Normal = 0,
    /// The log is synced at every (group) commit: a commit survives a power cut too.
    Full = 1,
}

impl std::str::FromStr for Synchronous {
    type Err = String;

    fn from_str(s: &str) -> Result<Synchronous, String> {
        match s.to_ascii_lowercase().as_str() {
            "normal" => Ok(Synchronous::Normal),
            "full" => Ok(Synchronous::Full),
            other => Err(format!("{other:?} is neither `normal` nor `full`")),
        }
    }
}

impl std::fmt::Display for Synchronous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Synchronous::Normal => "normal",
            Synchronous::Full => "full",
        })
    }
}

/// The process's choice of [`Synchronous`], read by the SQLite wing whenever it opens a
/// file (a process-wide setting, like SQLite's allocator).
static SYNCHRONOUS: AtomicU8 = AtomicU8::new(Synchronous::Normal as u8);

/// Choose [`Synchronous`] for the SQLite files this process opens after the call (the
/// `--sqlite-synchronous` setting of the binary).
pub fn set_sqlite_synchronous(mode: Synchronous) {
    SYNCHRONOUS.store(mode as u8, Ordering::Relaxed);
}

pub(crate) fn sqlite_synchronous() -> Synchronous {
    if SYNCHRONOUS.load(Ordering::Relaxed) == Synchronous::Full as u8 {
        Synchronous::Full
    } else {
        Synchronous::Normal
    }
}

/// Connections each PostgreSQL store of this process keeps at most.
static POSTGRES_MAX_CONNECTIONS: AtomicU32 = AtomicU32::new(DEFAULT_POSTGRES_MAX_CONNECTIONS);

/// [`set_postgres_max_connections`] when not called.
pub const DEFAULT_POSTGRES_MAX_CONNECTIONS: u32 = 16;

/// Size the pools of the PostgreSQL stores this process opens after the call (the
/// `--pg-max-connections` setting of the binary): a server's `max_connections` is
/// shared by every process of every service, so a deployment of many processes gives
/// each fewer.
pub fn set_postgres_max_connections(max: u32) {
    POSTGRES_MAX_CONNECTIONS.store(max.max(1), Ordering::Relaxed);
}

pub(crate) fn postgres_max_connections() -> u32 {
    POSTGRES_MAX_CONNECTIONS.load(Ordering::Relaxed)
}

/// Whether SQLite connections open on the gathered-log VFS (`--sqlite-gathered-log`).
static GATHERED_LOG: AtomicBool = AtomicBool::new(true);

/// Whether the SQLite files this process opens after the call gather a commit's log
/// frames into one write (the `--sqlite-gathered-log` setting of the binary, on by
/// default; off opens them on SQLite's default VFS, to rule it out in an incident). See
/// docs/decisions/0022-a-commit-in-one-write.md.
pub fn set_sqlite_gathered_log(on: bool) {
    GATHERED_LOG.store(on, Ordering::Relaxed);
}

pub(crate) fn sqlite_gathered_log() -> bool {
    GATHERED_LOG.load(Ordering::Relaxed)
}

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the services keep their data.
#[derive(Debug, Clone)]
pub enum DatabaseConfig {
    /// One SQLite file per service under this directory.
    Embedded { data_dir: PathBuf },
    /// One PostgreSQL database per service on this server; the URL's database name
    /// (default `ticketing`) is the prefix: `ticketing_auth`, `ticketing_orders`, …
    Postgres { url: String },
}

impl DatabaseConfig {
    pub fn is_embedded(&self) -> bool {
        matches!(self, DatabaseConfig::Embedded { .. })
    }

    /// The database of one service.
    pub fn location(&self, service: &str) -> anyhow::Result<DbLocation> {
        match self {
            DatabaseConfig::Embedded { data_dir } => Ok(DbLocation::Sqlite {
                path: data_dir.join(format!("{service}.db")),
            }),
            DatabaseConfig::Postgres { url } => {
                let mut parsed = url::Url::parse(url).context("invalid PostgreSQL URL")?;
                let prefix = parsed.path().trim_start_matches('/').to_owned();
                let prefix = if prefix.is_empty() {
                    "ticketing".to_owned()
                } else {
                    prefix
                };
                parsed.set_path(&format!("/{prefix}_{service}"));
                Ok(DbLocation::Postgres {
                    url: parsed.to_string(),
                })
            }
        }
    }
}

/// The database of one service.
#[derive(Debug, Clone)]
pub enum DbLocation {
    Sqlite { path: PathBuf },
    Postgres { url: String },
}

impl DbLocation {
    pub fn from_url(url: &str) -> DbLocation {
        match url.strip_prefix("sqlite://") {
            Some(path) => DbLocation::Sqlite { path: path.into() },
            None => DbLocation::Postgres {
                url: url.to_owned(),
            },
        }
    }
}
