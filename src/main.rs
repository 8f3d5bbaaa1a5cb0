//! The `courier` command: parses the command line, loads the configuration and calls the
//! library. Everything else lives in `courier::run`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use courier::config::{Config, FlagOverrides, TelemetryConfig};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

// glibc's malloc was a tenth of the server's CPU under load (its free lists, consolidated
// across the worker threads); mimalloc's per-thread pages cost a fraction of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Print the JWKS that verifies the JWT on Courier's calls to checkers and receivers.
    Keys(ConfigArgs),
    /// Operator commands against a running server (--addr).
    #[command(flatten)]
    Operator(courier::cli::Command),
    /// Measure throughput and latency: producers Prepare+Confirm, consumers Receive+Ack.
    Bench(BenchArgs),
    /// The server `courier bench` starts as a child process (internal).
    #[command(hide = true)]
    BenchServer(BenchServerArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// Messages to send and consume.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Producer tasks (each Prepare then Confirm, one message at a time).
    #[arg(long, default_value_t = 64)]
    producers: usize,
    /// Consumer tasks per subscription (each Receive a batch, then Ack it in one call).
    #[arg(long, default_value_t = 4)]
    consumers: usize,
    /// Fan-out: this many subscriptions on the bench's topic, each delivered every message
    /// (--consumers consumers each). With --peer, RabbitMQ binds as many queues to a fanout
    /// exchange.
    #[arg(long, value_name = "N", default_value_t = 1, conflicts_with_all = ["overload", "overload_rate"])]
    subscriptions: usize,
    #[arg(long, default_value_t = 1024)]
    payload_bytes: usize,
    /// Receive's max_messages (1..1000).
    #[arg(long, default_value_t = 256)]
    batch: u32,
    /// Milliseconds each consumer spends on a Receive's batch before its Ack (a sleep), as a
    /// consumer doing real work would; 0: it acks at once.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    consumer_work_ms: u64,
    #[arg(long, value_enum, default_value_t = BenchMode::PrepareConfirm)]
    mode: BenchMode,
    /// Pace the producers at this many messages per second in total.
    #[arg(long, value_name = "MSGS_PER_SEC")]
    rate: Option<f64>,
    /// HTTP/2 connections the clients share.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// `sqlite://…` or `postgres://…` (a fresh database is created on that server and dropped
    /// after); default: a fresh SQLite file in a temporary directory.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Use the --database-url database itself rather than a fresh one.
    #[arg(long)]
    reuse_database: bool,
    /// Bench a running server at this address instead of starting one.
    #[arg(long, value_name = "HOST:PORT")]
    addr: Option<String>,
    /// With --addr: the server's process id, to read its peak RSS.
    #[arg(long, value_name = "PID", requires = "addr")]
    server_pid: Option<u32>,
    /// Run the same writes straight through the store, without gRPC.
    #[arg(long, conflicts_with_all = ["addr", "backlog"])]
    store_only: bool,
    /// Load this many pending messages first, then measure consuming them.
    #[arg(long, value_name = "N")]
    backlog: Option<u64>,
    /// Run the server inside the bench process instead of as a child process.
    #[arg(long)]
    in_process: bool,
    /// Configuration file for the server the bench starts (COURIER_* variables apply too).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Then run the same workload against RabbitMQ at this URL (e.g.
    /// amqp://guest:guest@127.0.0.1:5672/%2f) and print both side by side. Needs a courier
    /// built with `--features rabbitmq`.
    #[arg(long, value_name = "AMQP_URL", conflicts_with = "store_only")]
    peer: Option<String>,
    /// An ordered subscription, with the messages spread over N ordering keys (lanes).
    #[arg(long, value_name = "N", conflicts_with = "peer", value_parser = clap::value_parser!(u32).range(1..))]
    ordered_keys: Option<u32>,
    /// Overload: measure the carried load (closed-loop Publish), then offer FACTOR times it
    /// open-loop and report accepted and refused calls, RSS, and whether anything was lost.
    #[arg(long, value_name = "FACTOR", conflicts_with_all = ["peer", "store_only", "backlog", "rate"])]
    overload: Option<f64>,
    /// Overload at a fixed rate: offer N Publish calls a second after the calibration,
    /// whatever it measured (runs whose calibrations differ stay comparable).
    #[arg(long, value_name = "N", conflicts_with_all = ["overload", "peer", "store_only", "backlog", "rate"])]
    overload_rate: Option<f64>,
    /// How long --overload or --overload-rate offers its load.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    overload_seconds: f64,
    /// With --peer: run the comparison N times in turn (Courier, RabbitMQ, Courier, …) and
    /// print every round's table and the medians (each ratio taken within its round).
    #[arg(long, value_name = "N", requires = "peer", value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: Option<u32>,
    /// The durable queue --peer declares (fresh per run, deleted after).
    #[arg(long, value_enum, default_value_t = courier::bench::PeerQueue::Quorum)]
    peer_queue: courier::bench::PeerQueue,
    /// Bearer token the clients send (needs admin, or produce:bench, consume:bench-* and admin
    /// to create the subscription).
    #[arg(
        long,
        env = "COURIER_CLI_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
    /// CA certificate (PEM) to trust for a server serving TLS, instead of the system's roots.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchMode {
    PrepareConfirm,
    Publish,
}

#[derive(Args)]
struct BenchServerArgs {
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[arg(long, value_name = "URL")]
    database_url: String,
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

/// The commands that run on the server's configuration.
enum Task {
    Serve,
    Migrate,
    Keys,
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
    let (args, task) = match cli.command {
        Command::Serve(args) => (args, Task::Serve),
        Command::Migrate(args) => (args, Task::Migrate),
        Command::Keys(args) => (args, Task::Keys),
        Command::Operator(command) => return courier::cli::run(command),
        Command::Bench(args) => return bench(args),
        Command::BenchServer(args) => {
            return block_on(courier::bench::serve_child(args.config, args.database_url));
        }
    };
    let config = match args.load() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("courier: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("courier: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Only the server exports spans. The exporter's connection lives in the runtime, so it is
    // set up inside it and flushed (below) while the runtime still runs.
    let export = match task {
        Task::Serve => config.telemetry.clone(),
        Task::Migrate | Task::Keys => TelemetryConfig::default(),
    };
    let telemetry = {
        let _in_runtime = runtime.enter();
        match courier::init_tracing(config.log_format, &export) {
            Ok(telemetry) => telemetry,
            Err(error) => {
                eprintln!("courier: {:#}", anyhow::Error::from(error));
                return ExitCode::FAILURE;
            }
        }
    };
    if telemetry.exporting() {
        info!(otlp_endpoint = %export.otlp_endpoint, "exporting spans over OTLP");
    }
    let service_links = courier::config::env::service_links_in_env();
    if !service_links.is_empty() {
        warn!(
            variables = service_links.join(" "),
            "ignoring Kubernetes service-link variables (set enableServiceLinks: false on the pod)"
        );
    }

    let result = runtime.block_on(async {
        match task {
            Task::Serve => serve_until_signalled(config).await,
            Task::Migrate => migrate(config).await,
            Task::Keys => print_keys(config).await,
        }
    });
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error!(error = format!("{error:#}"), "courier failed");
            eprintln!("courier: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: BenchArgs) -> ExitCode {
    courier::bench::init_tracing();
    let launch = if args.in_process {
        courier::bench::Launch::InProcess
    } else {
        match std::env::current_exe() {
            Ok(exe) => courier::bench::Launch::Child { exe },
            Err(error) => {
                eprintln!("courier: cannot find the courier binary to start the server: {error}");
                return ExitCode::FAILURE;
            }
        }
    };
    let peer = args.peer.map(|url| courier::bench::Peer {
        url,
        queue: args.peer_queue,
    });
    let options = courier::bench::BenchOptions {
        messages: args.messages,
        producers: args.producers,
        consumers: args.consumers,
        subscriptions: args.subscriptions,
        payload_bytes: args.payload_bytes,
        batch: args.batch,
        consumer_work: std::time::Duration::from_millis(args.consumer_work_ms),
        mode: match args.mode {
            BenchMode::PrepareConfirm => courier::bench::Mode::PrepareConfirm,
            BenchMode::Publish => courier::bench::Mode::Publish,
        },
        rate: args.rate,
        connections: args.connections,
        database_url: args.database_url,
        reuse_database: args.reuse_database,
        addr: args.addr,
        server_pid: args.server_pid,
        store_only: args.store_only,
        backlog: args.backlog,
        config_file: args.config,
        ordered_keys: args.ordered_keys,
        client: courier::client::ClientOptions {
            token: args.token,
            ca_file: args.ca_file,
            ..Default::default()
        },
        launch,
    };
    let mut rendered = None;
    let mut promises_kept = true;
    let code = block_on(async {
        let overload = match (args.overload, args.overload_rate) {
            (Some(factor), _) => Some(courier::bench::Offer::Factor(factor)),
            (None, Some(rate)) => Some(courier::bench::Offer::PerSecond(rate)),
            (None, None) => None,
        };
        rendered = Some(match (peer, overload) {
            (_, Some(offer)) => {
                let report =
                    courier::bench::run_overload(options, offer, args.overload_seconds).await?;
                promises_kept = report.kept_its_promises();
                report.render()
            }
            (Some(peer), None) => {
                let rounds = args.rounds.unwrap_or(1);
                courier::bench::run_rounds(options, peer, rounds)
                    .await?
                    .render()
            }
            (None, None) => courier::bench::run(options).await?.render(),
        });
        Ok::<(), courier::bench::BenchError>(())
    });
    if let Some(rendered) = rendered {
        print!("{rendered}");
    }
    if !promises_kept {
        eprintln!(
            "courier: under overload an accepted message was lost or a refused one delivered"
        );
        return ExitCode::FAILURE;
    }
    code
}

/// Runs `work` on a new runtime; an error is printed with its causes.
fn block_on<E>(work: impl Future<Output = Result<(), E>>) -> ExitCode
where
    E: std::error::Error + Send + Sync + 'static,
{
    let result = tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(work).map_err(anyhow::Error::from));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
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

async fn print_keys(config: Config) -> anyhow::Result<()> {
    let jwks = courier::callbacks::signer::current_jwks(&config).await?;
    println!("{jwks}");
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
