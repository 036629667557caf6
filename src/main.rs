//! Command line: `serve` (default), `check`, `test DIR`; tracing init; exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "prism-broker",
    version,
    about = "MarketPrism message broker service"
)]
struct Cli {
    /// Path of the broker config file.
    #[arg(long, global = true, default_value = "config/broker.yaml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Lint config, routes and transforms; exit 1 with `file:line: problem` lines.
    Check,
    /// Run route test cases (`*.test.yaml`) from DIR; no NATS needed.
    Test { dir: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => ExitCode::SUCCESS,
        Command::Check => prism_broker::routing::cli::check(&cli.config),
        Command::Test { dir } => prism_broker::routing::cli::test(&dir, &cli.config),
    }
}
