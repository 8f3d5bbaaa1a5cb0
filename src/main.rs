//! The `courier` command: parses the command line, loads the configuration and calls the
//! library. Everything else lives in `courier::run`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use courier::config::{Config, FlagOverrides};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Exit code for an invalid configuration (a usage error).
const EXIT_CONFIG: u8 = 2;
/// Exit code when a second signal cuts the graceful shutdown short (128 + SIGINT).
const EXIT_INTERRUPTED: i32 = 130;

#[derive(Parser)]
#[command(
    name = "courier",
    version,
    about = "Reliable-message coordinator over gRPC"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC service until Ctrl-C or SIGTERM.
    Serve(ConfigArgs),
    /// Create or upgrade the database schema, then exit.
    Migrate(ConfigArgs),
}

#[derive(Args)]
struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen address, e.g. 0.0.0.0:50051 (overrides `listen`).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// `sqlite://courier.db` or `postgres://…` (overrides `database_url`).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

impl ConfigArgs {
    fn load(self) -> Result<Config, courier::config::ConfigError> {
        let flags = FlagOverrides {
            listen: self.listen,
            database_url: self.database_url,
        };
        Config::load(self.config.as_deref(), flags)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (args, serve) = match cli.command {
        Command::Serve(args) => (args, true),
        Command::Migrate(args) => (args, false),
    };
    let config = match args.load() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("courier: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    courier::init_tracing(config.log_format);

    let result = tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")
        .and_then(|runtime| {
            runtime.block_on(async {
                if serve {
                    serve_until_signalled(config).await
                } else {
                    migrate(config).await
                }
            })
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error!(error = format!("{error:#}"), "courier failed");
            eprintln!("courier: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve_until_signalled(config: Config) -> anyhow::Result<()> {
    let addr = config.listen_addr()?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signals(shutdown.clone()));
    courier::run(config, listener, shutdown).await?;
    Ok(())
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    courier::store::migrate(&config).await?;
    info!("migrations applied");
    Ok(())
}

/// The first Ctrl-C or SIGTERM starts a graceful shutdown; a second one exits at once.
async fn cancel_on_signals(shutdown: CancellationToken) {
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(error) => {
            // Without SIGTERM handling Ctrl-C still works; the default action stays for TERM.
            warn!(%error, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
            let _ = tokio::signal::ctrl_c().await;
            std::process::exit(EXIT_INTERRUPTED);
        }
    };
    let first = wait_for_signal(&mut terminate).await;
    info!(
        signal = first,
        "shutting down; send the signal again to exit at once"
    );
    shutdown.cancel();
    let second = wait_for_signal(&mut terminate).await;
    warn!(
        signal = second,
        "second signal: exiting without finishing in-flight calls"
    );
    std::process::exit(EXIT_INTERRUPTED);
}

async fn wait_for_signal(terminate: &mut tokio::signal::unix::Signal) -> &'static str {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}
