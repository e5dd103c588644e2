//! `loadgen`: weighted user journeys against a running Ticketing (any base URL), built on
//! goose. Each journey is a goose scenario; a response the contract allows (a lost race
//! for a ticket is `400 Ticket is already reserved`) counts as a success, anything else
//! as an error. `--max-errors N` turns the run into a gate: more errors (or any 5xx)
//! and the exit code is 2.

mod drop;
mod gate;
mod journeys;
mod report;
mod webhooks;

use std::process::ExitCode;

use clap::Parser;
use goose::prelude::*;
use journeys::setup;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "loadgen",
    about = "Weighted user journeys against a Ticketing base URL",
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    /// Another scenario than the weighted journeys.
    #[command(subcommand)]
    pub scenario: Option<Scenario>,
    /// Base URL of the system (the `all` target, or the gateway in front of the services).
    #[arg(long, env = "LOADGEN_HOST", default_value = "http://127.0.0.1:3000")]
    pub host: String,
    /// Concurrent users.
    #[arg(long, env = "LOADGEN_USERS", default_value_t = 24)]
    pub users: usize,
    /// Users started per second.
    #[arg(long, env = "LOADGEN_HATCH_RATE", default_value = "4")]
    pub hatch_rate: String,
    /// How long to run once every user started, in seconds.
    #[arg(long, env = "LOADGEN_RUN_TIME", default_value_t = 30)]
    pub run_time: usize,
    /// Fail (exit 2) when more requests than this failed; any 5xx fails too.
    #[arg(long, env = "LOADGEN_MAX_ERRORS")]
    pub max_errors: Option<usize>,
    /// Tickets every contention user races for.
    #[arg(long, env = "LOADGEN_HOT_TICKETS", default_value_t = 3)]
    pub hot_tickets: usize,
    /// Tickets listed before the users start, so the buyers find some at once.
    #[arg(long, env = "LOADGEN_SEED_TICKETS", default_value_t = 60)]
    pub seed_tickets: usize,
    /// Weights of the journeys, `name=weight,...` (a weight of 0 leaves one out).
    /// Journeys: browse, view, account, sell, buy, abandon, cancel, contention,
    /// revoke (weight 0 unless given: sign up, sign out, the old token refused ≤ 1 s), and
    /// refund (weight 0 unless given: buy, pay, cancel for a refund; the gate also
    /// fails when refunds ≠ cancellations).
    #[arg(long, env = "LOADGEN_WEIGHTS", value_delimiter = ',')]
    pub weights: Vec<String>,
    /// Also write goose's HTML report here.
    #[arg(long, env = "LOADGEN_REPORT")]
    pub report_file: Option<String>,
    /// Per-request timeout, in seconds.
    #[arg(long, env = "LOADGEN_TIMEOUT", default_value_t = 30)]
    pub timeout: usize,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum Scenario {
    /// Drop day: a crowd queues for one listing of many units that goes on sale during
    /// the run; reports latencies, units sold against listed, and the queue's fairness.
    Drop(drop::DropArgs),
    /// Webhooks under load: sellers' endpoints at a sink in this process, purchases for
    /// a while, then every delivery checked arrived, signed; reports the lag.
    Webhooks(webhooks::WebhookArgs),
    /// Gates under load: online redeems (10% duplicate scans) and offline batches of
    /// paid orders' passes; reports results and latency, fails on a broken guarantee.
    Gate(gate::GateArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = Args::parse();
    let result = match args.scenario.take() {
        Some(Scenario::Drop(drop)) => drop::run(drop).await,
        Some(Scenario::Webhooks(hooks)) => webhooks::run(hooks).await,
        Some(Scenario::Gate(gate)) => gate::run(gate).await,
        None => run(args).await,
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("loadgen: {err:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let weights = journeys::weights(&args.weights)?;
    journeys::configure(&args);
    let mut attack = GooseAttack::initialize_with_config(Default::default())?
        .set_default(GooseDefault::Host, args.host.as_str())?
        .set_default(GooseDefault::Users, args.users)?
        .set_default(GooseDefault::HatchRate, args.hatch_rate.as_str())?
        .set_default(GooseDefault::RunTime, args.run_time)?
        .set_default(GooseDefault::Timeout, args.timeout.to_string().as_str())?
        .set_default(GooseDefault::NoResetMetrics, true)?
        // The summary below replaces goose's tables (see report.rs).
        .set_default(GooseDefault::NoPrintMetrics, true)?
        .set_default(GooseDefault::NoTelnet, true)?
        .set_default(GooseDefault::NoWebSocket, true)?
        .set_default(GooseDefault::NoAutoStart, false)?
        .set_scheduler(GooseScheduler::RoundRobin)
        .test_start(transaction!(setup).set_name("setup"));
    if let Some(path) = &args.report_file {
        attack = *attack.set_default(GooseDefault::ReportFile, path.as_str())?;
    }
    for scenario in journeys::scenarios(&weights)? {
        attack = attack.register_scenario(scenario);
    }
    let metrics = attack.execute().await?;
    let summary = report::summarise(&metrics);
    print!("{}", summary.render());
    Ok(match args.max_errors {
        Some(max)
            if summary.errors > max || summary.server_errors > 0 || !summary.refunds_balance() =>
        {
            eprintln!(
                "loadgen: gate failed: {} errors (at most {max} allowed), {} 5xx, refunds {}",
                summary.errors,
                summary.server_errors,
                if summary.refunds_balance() {
                    "= cancellations"
                } else {
                    "≠ cancellations"
                }
            );
            ExitCode::from(2)
        }
        _ => ExitCode::SUCCESS,
    })
}
