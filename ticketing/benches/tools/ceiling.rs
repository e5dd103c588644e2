//! `bench-ceiling`: the system benchmark's yardstick, not a service, so not in the
//! product's binary.
//!
//! It serves one page of tickets, read once from a JSON file, at `GET /api/tickets`,
//! serialising it with axum's `Json` on every request — no database, no bus, no
//! middleware. It is built as the services' binary is (the same tokio runtime, the same
//! allocator, jemalloc): what it reaches is as much as this machine can serve of that
//! page through this HTTP stack, and the system benchmark (`ticketing/benches/system.rs`)
//! reports every throughput as a ratio to it, so its figures can be compared across
//! machines (issue 15).
//!
//! ```text
//! cargo build --release -p ticketing --bin bench-ceiling
//! target/release/bench-ceiling --listen 127.0.0.1:3999 --page tickets.json
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use ticketing_contracts::api::tickets::TicketBody;

/// As in the services' binary (`src/main.rs`): the ratios compare like with like.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser, Debug)]
#[command(
    name = "bench-ceiling",
    about = "The system benchmark's yardstick: one page of tickets from memory"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3999")]
    listen: SocketAddr,
    /// The page to serve: a JSON list of tickets as `GET /api/tickets` returns them.
    #[arg(long)]
    page: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ticketing_kit::telemetry::init_tracing(false);
    run(args.listen, &args.page).await
}

/// Serve the page in `page` (a JSON array of tickets as the API shows them) on `listen`
/// until the process is stopped.
async fn run(listen: SocketAddr, page: &Path) -> anyhow::Result<()> {
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
