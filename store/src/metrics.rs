//! The store's metrics, recorded by both engines' wings.

use std::time::Instant;

/// `ticketing_store_writer_wait_seconds{backend}`: how long a write waited for SQLite's
/// single writer, or a transaction for a PostgreSQL pool connection.
pub(crate) fn writer_waited(backend: &'static str, since: Instant) {
    metrics::histogram!("ticketing_store_writer_wait_seconds", "backend" => backend)
        .record(since.elapsed().as_secs_f64());
}
