mod config;
mod events;
mod serve;

use clap::Parser;

use crate::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    ticketing_shared::telemetry::init_tracing(cli.serve.log_json);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve::run(cli.serve).await,
        Command::Events { command } => events::run(&cli.serve, command).await,
    }
}
