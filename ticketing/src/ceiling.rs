//! `ticketing ceiling` (hidden): the benchmark's yardstick, not a service.
//!
//! It serves one page of tickets, read once from a JSON file, at `GET /api/tickets`,
//! serialising it with axum's `Json` on every request — no database, no bus, no
//! middleware. It is the same binary as the services, so it runs on the same tokio
//! runtime with the same allocator (jemalloc): what it reaches is as much as this
//! machine can serve of that page through this HTTP stack, and the system benchmark
//! (`ticketing/benches/system.rs`) reports every throughput as a ratio to it, so its
//! figures can be compared across machines (issue 15).
//!
//! ```text
//! ticketing ceiling --listen 127.0.0.1:3999 --page tickets.json
//! ```

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use axum::routing::get;
use axum::{Json, Router};
use ticketing_contracts::api::tickets::TicketBody;

/// Serve the page in `page` (a JSON array of tickets as the API shows them) on `listen`
/// until the process is stopped.
pub async fn run(listen: SocketAddr, page: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read(page).with_context(|| format!("reading the page {}", page.display()))?;
    let tickets: Vec<TicketBody> = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a JSON list of tickets", page.display()))?;
    // Kept for the life of the process: every request serialises the same memory.
    let tickets: &'static [TicketBody] = Vec::leak(tickets);
    let app = Router::new().route("/api/tickets", get(move || async move { Json(tickets) }));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!(
        tickets = tickets.len(),
        "ceiling: serving the page at http://{}/api/tickets",
        listener.local_addr()?
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
