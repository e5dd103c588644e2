//! Statements on a SQLite connection, run on the calling thread, and SQLite's errors
//! mapped to the store's.

use std::sync::Arc;

use rusqlite::{ffi, Connection};

use crate::{Error, Value};

/// A statement and its arguments, as a `Query` hands them over.
#[derive(Clone, Copy)]
pub(crate) struct Statement<'a> {
    pub sql: &'a str,
    pub args: &'a [Value],
    /// Keep the prepared statement in the connection's cache.
    pub persistent: bool,
}

/// Run fixed statements (transaction control: `BEGIN`, `SAVEPOINT`, `COMMIT`, …),
/// separated by `;`, each from the connection's statement cache: parsed afresh on every
/// transaction they were a few percent of the CPU under load.
pub(crate) fn run_batch(conn: &mut Connection, sql: &str) -> Result<(), Error> {
    for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let mut statement = conn.prepare_cached(statement).map_err(error)?;
        let mut rows = statement.raw_query();
        while rows.next().map_err(error)?.is_some() {}
    }
    Ok(())
}

/// Run a statement to its end; the rows it changed (0 for one that changes none:
/// `changes()` alone would still count the connection's previous statement).
pub(crate) fn execute(conn: &mut Connection, query: Statement<'_>) -> Result<u64, Error> {
    let before = conn.total_changes();
    with_statement(conn, query, |stmt| {
        let mut rows = stmt.raw_query();
        while rows.next()?.is_some() {}
        Ok(())
    })?;
    Ok(conn.total_changes() - before)
}

/// Up to `limit` rows of a statement.
pub(crate) fn fetch(
    conn: &mut Connection,
    query: Statement<'_>,
    limit: usize,
) -> Result<Vec<LiteRow>, Error> {
    with_statement(conn, query, |stmt| {
        let columns: Arc<[String]> = stmt.column_names().iter().map(|c| c.to_string()).collect();
        let width = columns.len();
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(row) = rows.next()? else { break };
            let values = (0..width)
                .map(|i| row.get::<_, rusqlite::types::Value>(i))
                .collect::<Result<Vec<_>, _>>()?;
            out.push(LiteRow {
                columns: columns.clone(),
                values,
            });
        }
        Ok(out)
    })
}

fn with_statement<T>(
    conn: &Connection,
    query: Statement<'_>,
    f: impl FnOnce(&mut rusqlite::Statement<'_>) -> rusqlite::Result<T>,
) -> Result<T, Error> {
    let run = |stmt: &mut rusqlite::Statement<'_>| -> rusqlite::Result<T> {
        let args = query.args;
        // `$n` is a named parameter to SQLite, numbered in order of first appearance:
        // read each one's name rather than look names up (a scan per lookup, quadratic
        // in a multi-row insert).
        for index in 1..=stmt.parameter_count() {
            let name = stmt.parameter_name(index).unwrap_or("?");
            let arg = name
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| args.get(n.checked_sub(1)?))
                .ok_or_else(|| rusqlite::Error::InvalidParameterName(name.to_owned()))?;
            match arg {
                Value::Int(v) => stmt.raw_bind_parameter(index, v)?,
                Value::Text(v) => stmt.raw_bind_parameter(index, v)?,
                Value::Blob(v) => stmt.raw_bind_parameter(index, v)?,
            }
        }
        f(stmt)
    };
    if query.persistent {
        let mut stmt = conn.prepare_cached(query.sql).map_err(error)?;
        run(&mut stmt).map_err(error)
    } else {
        run(&mut conn.prepare(query.sql).map_err(error)?).map_err(error)
    }
}

/// A row read from SQLite.
pub(crate) struct LiteRow {
    columns: Arc<[String]>,
    values: Vec<rusqlite::types::Value>,
}

impl LiteRow {
    pub(crate) fn value(&self, column: &str) -> Result<&rusqlite::types::Value, Error> {
        let index = self
            .columns
            .iter()
            .position(|c| c == column)
            .ok_or_else(|| Error::decode(column, "no such column"))?;
        Ok(&self.values[index])
    }

    pub(crate) fn value_at(&self, index: usize) -> Result<&rusqlite::types::Value, Error> {
        self.values.get(index).ok_or_else(|| {
            Error::decode(
                index.to_string(),
                format!("the row has {} columns", self.values.len()),
            )
        })
    }
}

/// SQLite's errors as the store's: the one mapping of the SQLite driver (constraint
/// violations keep their kind: the services map them to 4xx).
pub(crate) fn error(err: rusqlite::Error) -> Error {
    match err {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let message = message.unwrap_or_else(|| failure.to_string());
            // "UNIQUE constraint failed: tickets.order_id": the columns name it.
            let constraint = || {
                message
                    .split_once(": ")
                    .map_or(message.as_str(), |(_, columns)| columns)
                    .to_owned()
            };
            match failure.extended_code {
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                    Error::Unique {
                        constraint: constraint(),
                    }
                }
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY => Error::ForeignKey {
                    constraint: constraint(),
                },
                code => Error::Other(format!("{message} (SQLite code {code})")),
            }
        }
        other => Error::other(other),
    }
}
