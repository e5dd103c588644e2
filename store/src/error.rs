//! The store's one error type. Each driver's errors are mapped once, where the driver is
//! used (`sqlite/statement.rs`, `postgres.rs`), so a service matches on what happened
//! (a unique constraint refused the write, the store is closed) and never on a driver.

/// What went wrong with a statement or a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A unique (or primary key) constraint refused the write: the database decided a
    /// conflict. `constraint` is its name on PostgreSQL, its columns on SQLite.
    #[error("unique constraint violated: {constraint}")]
    Unique { constraint: String },
    /// A foreign key constraint refused the write.
    #[error("foreign key constraint violated: {constraint}")]
    ForeignKey { constraint: String },
    /// A column is missing or does not read as the type asked for: the query does not
    /// match its table.
    #[error("cannot read column {column}: {message}")]
    Decode { column: String, message: String },
    /// A query that must return a row returned none.
    #[error("the query returned no row")]
    NoRow,
    /// The store was closed (the process is stopping).
    #[error("the store is closed")]
    Closed,
    /// The database could take no more work just now: no pool connection came free in
    /// time, or the server refused a connection (its `max_connections` reached, starting
    /// up or shutting down). Retrying later may succeed; the request changed nothing.
    #[error("the database is busy: {0}")]
    Busy(String),
    /// Anything else (I/O, a lost connection, a syntax error): logged, never shown.
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, Error::Unique { .. })
    }

    pub fn other(err: impl std::fmt::Display) -> Error {
        Error::Other(err.to_string())
    }

    pub(crate) fn decode(column: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Decode {
            column: column.into(),
            message: message.into(),
        }
    }
}

/// A task the store ran a blocking step on died (panicked or was cancelled).
impl From<tokio::task::JoinError> for Error {
    fn from(err: tokio::task::JoinError) -> Error {
        Error::other(err)
    }
}
