//! Command line: `serve` (default), `check`, `test DIR`; tracing init, signals, exit codes.
//!
//! Exit status: 0 after a clean shutdown, 1 when start-up or the service fails, 2 when the
//! configuration is invalid (every problem is printed as `file: field: problem`).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use prism_broker::config::{self, BrokerConfig, LogFormat};
use prism_broker::service::ServiceError;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info};

/// mimalloc: the broker allocates and frees a JSON tree per routed message and per REST
/// publish; glibc malloc/free were ~17% of the router's CPU in a profile. Built with
/// `no_thp` (Cargo.toml): by default mimalloc asks for transparent huge pages, and the kernel
/// then backs its arena with 2 MiB pages, 16 MiB resident at idle for 3 MiB in use (peaks
/// of 47–50 MiB in the publish bench instead of 27–28, at the same CPU per request).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "prism-broker",
    version,
    about = "MarketPrism message broker service"
)]
struct Cli {
    /// Path of the broker config file.
    #[arg(long, global = true, default_value = config::DEFAULT_PATH)]
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
    /// Watch a route of a running service at work: what it receives, publishes,
    /// dead-letters, drops or emits from state (GET /api/v1/routes/ROUTE/tap).
    Tap {
        route: String,
        /// Events a second at most (what the rate leaves out is counted as skipped).
        #[arg(long, default_value_t = prism_broker::api::tap::DEFAULT_LIMIT)]
        limit: u32,
        /// How long to watch.
        #[arg(long, default_value_t = prism_broker::api::tap::DEFAULT_SECONDS)]
        seconds: u64,
        /// The service's API; default: service.host and service.port of the config.
        #[arg(long)]
        url: Option<String>,
        /// The API token (default: service.api_token of the config, or PRISM_API_TOKEN).
        #[arg(long, env = "PRISM_API_TOKEN")]
        token: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&cli.config),
        Command::Check => {
            quiet_on_closed_pipe();
            prism_broker::rules::cli::check(&cli.config)
        }
        Command::Test { dir } => {
            quiet_on_closed_pipe();
            prism_broker::rules::cli::test(&dir, &cli.config)
        }
        Command::Tap {
            route,
            limit,
            seconds,
            url,
            token,
        } => {
            quiet_on_closed_pipe();
            tap(&cli.config, &route, limit, seconds, url, token)
        }
    }
}

/// `prism-broker tap ROUTE`: prints the route's tap until it ends.
fn tap(
    config_path: &std::path::Path,
    route: &str,
    limit: u32,
    seconds: u64,
    url: Option<String>,
    token: Option<String>,
) -> ExitCode {
    let config = if config_path.exists() {
        match config::load(config_path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    } else {
        config::BrokerConfig::default()
    };
    let base =
        url.unwrap_or_else(|| format!("http://{}:{}", config.service.host, config.service.port));
    let token = token.or_else(|| config.service.api_token.clone());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("prism-broker tap: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(prism_broker::api::tap::print_tap(
        &base,
        route,
        limit,
        seconds,
        token.as_deref(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prism-broker tap: {e}");
            ExitCode::from(1)
        }
    }
}

/// The report commands end quietly when their reader goes away (`check | head -1`), as
/// command-line tools do, instead of panicking in `println!`. Not for `serve`: a client that
/// closes its connection must give a write error there, not end the process.
fn quiet_on_closed_pipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: restores the default disposition before any thread or handler exists.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

fn serve(config_path: &std::path::Path) -> ExitCode {
    let config = match config::load(config_path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("prism-broker: invalid configuration, not starting");
            return ExitCode::from(2);
        }
    };
    init_tracing(&config);
    let listener = match TcpListener::bind((config.service.host.as_str(), config.service.port)) {
        Ok(listener) => listener,
        Err(e) => {
            error!(host = %config.service.host, port = config.service.port, error = %e, "cannot bind the http api");
            eprintln!(
                "prism-broker: cannot bind the http api on {}:{} (service.port): {e}",
                config.service.host, config.service.port
            );
            return ExitCode::from(1);
        }
    };
    let system = actix_rt::System::new();
    let result = system.block_on(run(config, listener));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<ServiceError>() {
            Some(ServiceError::Routes(problems)) => {
                for problem in problems {
                    eprintln!("{problem}");
                }
                eprintln!("prism-broker: invalid route rules, not starting");
                ExitCode::from(2)
            }
            _ => {
                error!(error = %e, "service failed");
                eprintln!("prism-broker: {e}");
                ExitCode::from(1)
            }
        },
    }
}

async fn run(config: BrokerConfig, listener: TcpListener) -> anyhow::Result<()> {
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let shutdown = async move {
        loop {
            tokio::select! {
                _ = sigterm.recv() => { info!(signal = "SIGTERM", "stop requested"); break; }
                _ = sigint.recv() => { info!(signal = "SIGINT", "stop requested"); break; }
                // Handled by the service (route reload); caught here too so that a SIGHUP
                // during start-up cannot end the process.
                _ = sighup.recv() => {}
            }
        }
    };
    prism_broker::service::run(config, listener, shutdown).await?;
    Ok(())
}

fn init_tracing(config: &BrokerConfig) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.service.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: a log file or journal gets plain `key=value` fields.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match config.service.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
