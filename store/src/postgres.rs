//! The PostgreSQL wing: a pool per service database (created when missing), its
//! transactions, and sqlx's errors mapped to the store's.

use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyPoolOptions, AnyTransactionManager};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor, TransactionManager};

use crate::{Error, Migrations};

/// A pool connection idle this long is pinged before it is handed out (a server
/// restart, a proxy's idle cut); one used more recently is trusted.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Open (creating the database if missing) and migrate.
pub(crate) async fn open(url: &str, migrations: &Migrations) -> anyhow::Result<AnyPool> {
    sqlx::any::install_default_drivers();
    ensure_database(url).await?;
    let pool = AnyPoolOptions::new()
        .max_connections(crate::config::postgres_max_connections())
        .acquire_timeout(Duration::from_secs(30))
        // sqlx pings every connection it hands out: a round trip before each statement
        // outside a transaction and before each BEGIN (a queue poll's one read was two
        // round trips). A connection in steady use is known alive (its last statement
        // just came back); only one that sat idle is pinged before it is handed out.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect(url)
        .await
        .context("connecting to PostgreSQL")?;
    migrations
        .migrator(crate::Backend::Postgres)?
        .run(&pool)
        .await
        .context("running database migrations")?;
    Ok(pool)
}

/// An existing database, every session read-only (`ticketing audit`).
pub(crate) async fn open_read_only(url: &str) -> anyhow::Result<AnyPool> {
    sqlx::any::install_default_drivers();
    AnyPoolOptions::new()
        .max_connections(2)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                    .await
                    .map(|_| ())
            })
        })
        .connect(url)
        .await
        .context("connecting to PostgreSQL")
}

/// A transaction on a pool connection. Dropped unfinished (never committed or rolled
/// back, or a commit or rollback that failed or was cancelled, which leaves sqlx's count
/// of the transaction up), it queues the rollback before the connection's next use.
pub(crate) struct PgTx {
    conn: PoolConnection<Any>,
    open: bool,
}

/// Begin a transaction on a pool connection.
///
/// sqlx counts a PostgreSQL transaction only once BEGIN is answered: a begin dropped
/// while waiting leaves the server inside a transaction the connection does not know
/// about, and the pool hands it to the next caller, whose writes then never commit.
/// Beginning in a task of its own cannot be interrupted; if nobody waits for the
/// transaction any more, it is dropped there, and its drop rolls back.
pub(crate) async fn begin(pool: &AnyPool) -> Result<PgTx, Error> {
    let pool = pool.clone();
    tokio::spawn(async move {
        let waiting = std::time::Instant::now();
        let conn = pool.acquire().await;
        crate::metrics::writer_waited("postgres", waiting);
        let mut tx = PgTx {
            conn: conn.map_err(error)?,
            open: true,
        };
        AnyTransactionManager::begin(&mut tx.conn, None)
            .await
            .map_err(error)?;
        Ok(tx)
    })
    .await?
}

impl PgTx {
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }

    pub(crate) async fn commit(&mut self) -> Result<(), Error> {
        let answer = AnyTransactionManager::commit(&mut self.conn).await;
        self.ended(answer)
    }

    pub(crate) async fn rollback(&mut self) -> Result<(), Error> {
        let answer = AnyTransactionManager::rollback(&mut self.conn).await;
        self.ended(answer)
    }

    /// Finished only once the server answered: until then the drop rolls back.
    fn ended(&mut self, answer: Result<(), sqlx::Error>) -> Result<(), Error> {
        answer.map_err(error)?;
        self.open = false;
        Ok(())
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        if self.open {
            AnyTransactionManager::start_rollback(&mut self.conn);
        }
    }
}

/// sqlx's errors as the store's: the one mapping of the PostgreSQL driver.
pub(crate) fn error(err: sqlx::Error) -> Error {
    match err {
        sqlx::Error::Database(db) => {
            let constraint = db.constraint().unwrap_or_default().to_owned();
            if db.is_unique_violation() {
                Error::Unique { constraint }
            } else if db.is_foreign_key_violation() {
                Error::ForeignKey { constraint }
            } else {
                let code = db.code().unwrap_or_default().into_owned();
                let text = format!("{} (PostgreSQL code {code})", db.message());
                // Class 53 (insufficient resources: too many connections, out of
                // memory or disk) and 57P03 (the server is starting or stopping) refuse
                // a connection, not the statement: nothing was done, later may work.
                if code.starts_with("53") || code == "57P03" {
                    Error::Busy(text)
                } else {
                    Error::Other(text)
                }
            }
        }
        sqlx::Error::PoolTimedOut => Error::Busy("no pool connection came free in time".into()),
        sqlx::Error::PoolClosed => Error::Closed,
        sqlx::Error::RowNotFound => Error::NoRow,
        sqlx::Error::ColumnNotFound(column) => Error::decode(column, "no such column"),
        sqlx::Error::ColumnIndexOutOfBounds { index, len } => {
            Error::decode(index.to_string(), format!("the row has {len} columns"))
        }
        sqlx::Error::ColumnDecode { index, source } => Error::decode(index, source.to_string()),
        sqlx::Error::Decode(source) => Error::decode("?", source.to_string()),
        other => Error::other(other),
    }
}

/// Create the service's database on its server when it does not exist yet.
async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let mut parsed = url::Url::parse(url).context("invalid PostgreSQL URL")?;
    let name = parsed.path().trim_start_matches('/').to_owned();
    anyhow::ensure!(!name.is_empty(), "the PostgreSQL URL names no database");
    anyhow::ensure!(
        name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "database name {name:?} must be letters, digits and underscores"
    );
    parsed.set_path("/postgres");
    let admin = AnyPoolOptions::new()
        .max_connections(1)
        .connect(parsed.as_str())
        .await
        .context("connecting to PostgreSQL")?;
    let exists = sqlx::query("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&admin)
        .await?
        .is_some();
    if !exists {
        match sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&admin)
            .await
        {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // Another process created it between our check and our create.
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("42P04") || e.is_unique_violation() => {}
            Err(e) => return Err(e).context("creating database"),
        }
    }
    admin.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_connection_to_be_had_is_busy_not_a_failure() {
        assert!(matches!(error(sqlx::Error::PoolTimedOut), Error::Busy(_)));
        assert_eq!(error(sqlx::Error::PoolClosed), Error::Closed);
    }
}
