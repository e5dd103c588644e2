mod audit;
mod config;
mod events;
mod page_tracing;
mod serve;

use clap::Parser;

use crate::config::{Cli, Command};

/// glibc's allocator took a quarter of the CPU serving ticket listings (many small
/// strings per row and per JSON field, freed on other threads, its arena locks
/// contended); see docs/decisions/0010-allocator.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    // Spans are exported by the services only (not the tools), and flushed once they
    // stopped.
    let export = match command {
        Command::Serve => serve::trace_export(&cli.serve),
        _ => Default::default(),
    };
    let telemetry = ticketing_kit::telemetry::init(cli.serve.log_json, &export);
    ticketing_store::set_sqlite_synchronous(cli.serve.sqlite_synchronous);
    ticketing_store::set_sqlite_gathered_log(cli.serve.sqlite_gathered_log);
    ticketing_store::set_postgres_max_connections(cli.serve.pg_max_connections);
    ticketing_store::upkeep::set_postgres_upkeep(cli.serve.pg_upkeep);
    let outcome = match command {
        Command::Serve => serve::run(cli.serve).await,
        Command::Events { command } => events::run(&cli.serve, command).await,
        Command::Audit(args) => {
            if audit::run(&cli.serve, &args).await? > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
    };
    telemetry.shutdown().await;
    outcome
}
