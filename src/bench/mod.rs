//! `courier bench`: how fast Courier moves durable messages.
//!
//! Producers Prepare then Confirm (or Publish) N messages; consumers Receive them in batches and
//! Ack them in batches. The workload runs over real gRPC on loopback against a server the bench
//! starts itself (a child `courier` process on a fresh temporary database, by default), or a
//! running one (`--addr`), or straight through the [`Store`](crate::store::Store) with no gRPC
//! (`--store-only`). A backlog run (`--backlog N`) first loads N pending messages, then measures
//! Receive and Ack while consuming them.
//!
//! The report gives throughput from the first Prepare to the last Ack, latency percentiles,
//! write transactions committed per message (group commit at work) and the server's peak RSS;
//! its last line is one JSON object.
//!
//! `--peer amqp://…` then runs the same workload against RabbitMQ and prints both side by side
//! ([`peer`]; the AMQP client is in the `rabbitmq` feature).

#[cfg(feature = "rabbitmq")]
mod amqp;
mod database;
mod overload;
mod peer;
mod process;
mod report;
mod server;
mod stats;
mod target;
mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use overload::{Offer, OverloadReport};
pub use peer::{Peer, PeerQueue, Rounds, SideBySide, run_rounds, run_side_by_side};
pub use report::Report;
pub use server::serve_child;

use crate::config::{Config, FlagOverrides};
use crate::store::StoreError;
use database::BenchDatabase;
use server::Server;
use target::{GrpcTarget, StoreTarget};

/// The most subscriptions a fan-out run (`--subscriptions`) takes.
const MAX_SUBSCRIPTIONS: usize = 64;

/// What the producers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Prepare, then Confirm: the two-phase flow.
    PrepareConfirm,
    /// Publish: Prepare and Confirm in one call.
    Publish,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PrepareConfirm => "prepare-confirm",
            Self::Publish => "publish",
        }
    }
}

/// How the bench runs the server it starts.
#[derive(Debug, Clone)]
pub enum Launch {
    /// The real binary as a child process (`<exe> bench-server`), so its peak RSS is its own
    /// (VmHWM from `/proc/<pid>/status`) and it competes with the bench for the CPU like a
    /// separate server would.
    Child { exe: PathBuf },
    /// `run_with` inside the bench's own process: RSS figures are then the whole process's.
    InProcess,
}

/// Everything `courier bench` can be told.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Messages to send (ignored by a backlog run, which consumes the backlog).
    pub messages: u64,
    pub producers: usize,
    /// Consumers per subscription.
    pub consumers: usize,
    /// Subscriptions on the bench's topic: every message is delivered to each (fan-out).
    pub subscriptions: usize,
    pub payload_bytes: usize,
    /// Receive's `max_messages`; each Receive's deliveries are acked in one Ack.
    pub batch: u32,
    /// What each consumer spends on a batch before acking it (a sleep).
    pub consumer_work: std::time::Duration,
    pub mode: Mode,
    /// Messages per second over all producers; unpaced when `None`.
    pub rate: Option<f64>,
    /// gRPC connections (HTTP/2) the clients share, round robin.
    pub connections: usize,
    /// `sqlite://…` or `postgres://…`; a PostgreSQL URL names the server on which a fresh
    /// database is created (and dropped after), unless `reuse_database`.
    pub database_url: Option<String>,
    /// Use `database_url`'s database as it is instead of a fresh one.
    pub reuse_database: bool,
    /// A running server: nothing is started.
    pub addr: Option<String>,
    /// With `addr`, the server's process id, to read its peak RSS.
    pub server_pid: Option<u32>,
    /// Straight through the store, without gRPC.
    pub store_only: bool,
    /// Load this many pending messages first, then measure consuming them.
    pub backlog: Option<u64>,
    /// Configuration file for the server the bench starts (and the store in store-only runs);
    /// `COURIER_*` variables apply too.
    pub config_file: Option<PathBuf>,
    /// Token, CA and client certificate the bench's clients connect with.
    pub client: crate::client::ClientOptions,
    /// An ordered subscription, and messages spread over this many ordering keys (lanes);
    /// `None`: an unordered subscription and no keys.
    pub ordered_keys: Option<u32>,
    pub launch: Launch,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            messages: 100_000,
            producers: 64,
            consumers: 4,
            subscriptions: 1,
            payload_bytes: 1024,
            batch: 256,
            consumer_work: std::time::Duration::ZERO,
            mode: Mode::PrepareConfirm,
            rate: None,
            connections: 4,
            database_url: None,
            reuse_database: false,
            addr: None,
            server_pid: None,
            store_only: false,
            backlog: None,
            config_file: None,
            client: crate::client::ClientOptions::default(),
            ordered_keys: None,
            launch: Launch::InProcess,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid bench options: {0}")]
    Options(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("the store failed")]
    Store(#[from] StoreError),
    #[error("database administration failed")]
    Database(#[from] sqlx::Error),
    #[error("cannot connect to the server")]
    Connect(#[from] tonic::transport::Error),
    /// The server's address did not answer (its text names the address).
    #[error("{0}")]
    Unreachable(String),
    #[error("{call} failed: {status}")]
    Rpc {
        call: &'static str,
        status: Box<tonic::Status>,
    },
    #[error("the bench server: {0}")]
    Server(String),
    #[error("i/o")]
    Io(#[from] std::io::Error),
    #[error("the server failed")]
    Run(#[from] crate::RunError),
    #[cfg(feature = "rabbitmq")]
    #[error("RabbitMQ")]
    Amqp(#[source] Box<lapin::Error>),
}

/// Boxed: lapin's error is larger than the rest, and every bench result would carry its size.
#[cfg(feature = "rabbitmq")]
impl From<lapin::Error> for BenchError {
    fn from(error: lapin::Error) -> Self {
        Self::Amqp(Box::new(error))
    }
}

impl BenchError {
    fn rpc(call: &'static str) -> impl FnOnce(tonic::Status) -> Self {
        move |status| Self::Rpc {
            call,
            status: Box::new(status),
        }
    }
}

/// Logs to stderr (stdout carries the report, and the child server's protocol) as the server
/// does, warnings and errors only unless `RUST_LOG` says otherwise.
pub fn init_tracing() {
    crate::telemetry::init_quiet_tracing();
}

/// `courier bench --overload FACTOR` (or `--overload-rate N`): calibrate, then offer FACTOR
/// times the carried load (or N calls a second) open-loop for `seconds`, then drain and check
/// that every accepted message was delivered and no refused one was ([`overload`]).
pub async fn run_overload(
    options: BenchOptions,
    offer: Offer,
    seconds: f64,
) -> Result<OverloadReport, BenchError> {
    validate(&options)?;
    let offer_ok = match offer {
        Offer::Factor(factor) => factor >= 1.0 && factor.is_finite(),
        Offer::PerSecond(rate) => rate >= 1.0 && rate.is_finite(),
    };
    if !(offer_ok && seconds > 0.0 && seconds.is_finite()) {
        return Err(BenchError::Options(
            "--overload takes a factor of at least 1, --overload-rate a rate of at least 1 call \
             a second, and --overload-seconds a positive number"
                .into(),
        ));
    }
    if options.store_only
        || options.backlog.is_some()
        || options.rate.is_some()
        || options.subscriptions != 1
    {
        return Err(BenchError::Options(
            "--overload offers Publish calls over gRPC itself to one subscription; it does not \
             take --store-only, --backlog, --rate or --subscriptions"
                .into(),
        ));
    }
    let database = BenchDatabase::prepare(&options).await?;
    let result = overload::run(&options, &database, offer, seconds).await;
    database.cleanup().await;
    result
}

/// Runs the benchmark `options` describe and returns its report. Progress goes to stderr.
pub async fn run(options: BenchOptions) -> Result<Report, BenchError> {
    validate(&options)?;
    let database = BenchDatabase::prepare(&options).await?;
    let result = run_on(&options, &database).await;
    database.cleanup().await;
    result
}

fn validate(options: &BenchOptions) -> Result<(), BenchError> {
    let fail = |problem: &str| Err(BenchError::Options(problem.to_owned()));
    if options.producers == 0 || options.consumers == 0 || options.connections == 0 {
        return fail("--producers, --consumers and --connections must be at least 1");
    }
    if !(1..=MAX_SUBSCRIPTIONS).contains(&options.subscriptions) {
        return Err(BenchError::Options(format!(
            "--subscriptions must be between 1 and {MAX_SUBSCRIPTIONS}"
        )));
    }
    if !(1..=1000).contains(&options.batch) {
        return fail("--batch must be between 1 and 1000 (Receive's max_messages)");
    }
    if options.backlog.is_none() && options.messages == 0 {
        return fail("--messages must be at least 1");
    }
    if options.backlog == Some(0) {
        return fail("--backlog must be at least 1");
    }
    if options
        .rate
        .is_some_and(|rate| !(rate > 0.0 && rate.is_finite()))
    {
        return fail("--rate must be a positive number of messages per second");
    }
    if options.addr.is_some() && options.store_only {
        return fail("--store-only opens the store itself; it does not take --addr");
    }
    if options.store_only && options.backlog.is_some() {
        return fail("--backlog measures Receive over gRPC; it does not take --store-only");
    }
    if options.server_pid.is_some() && options.addr.is_none() {
        return fail("--server-pid names the process of the server at --addr");
    }
    Ok(())
}

/// The server's configuration: the usual layers, on the bench's database and a free port.
fn server_config(options: &BenchOptions, database_url: &str) -> Result<Config, BenchError> {
    bench_config(options.config_file.as_deref(), database_url)
}

/// The usual configuration layers, then the bench's own: its database, and free loopback ports
/// for gRPC and (unless disabled) metrics, so a bench never collides with a running server.
pub(crate) fn bench_config(
    config_file: Option<&std::path::Path>,
    database_url: &str,
) -> Result<Config, BenchError> {
    let flags = FlagOverrides {
        listen: Some("127.0.0.1:0".into()),
        database_url: Some(database_url.to_owned()),
    };
    let mut config = Config::load(config_file, flags)?;
    if !config.metrics_listen.trim().is_empty() {
        config.metrics_listen = "127.0.0.1:0".into();
    }
    Ok(config)
}

async fn run_on(options: &BenchOptions, database: &BenchDatabase) -> Result<Report, BenchError> {
    if options.store_only {
        return run_store_only(options, database).await;
    }
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let topic = format!("bench-{}", &run_id[run_id.len() - 12..]);
    let mut report = Report::new(options, database.backend());

    if let Some(backlog) = options.backlog {
        // Loading goes through the store in the bench's own process, before the server starts,
        // so the server's RSS covers consuming only. (A running server is loaded over gRPC.)
        let loaded_in_store = options.addr.is_none();
        if loaded_in_store {
            let config = server_config(options, database.url())?;
            let wakeups = crate::wakeups::Wakeups::default();
            let store = crate::store::open(&config, wakeups.clone()).await?;
            let target = StoreTarget::new(store, wakeups, &config, &topic, options).await?;
            let seconds = workload::load_backlog(&target, options, backlog, &run_id).await?;
            report.note(format!(
                "backlog: {backlog} messages loaded through the store in {seconds:.1} s"
            ));
        }
        let mut server = Server::start(options, database.url()).await?;
        let target = GrpcTarget::connect(&server.addr(), options, &topic).await?;
        if !loaded_in_store {
            target.create_subscriptions().await?;
            let seconds = workload::load_backlog(&target, options, backlog, &run_id).await?;
            report.note(format!(
                "backlog: {backlog} messages loaded over gRPC Publish in {seconds:.1} s"
            ));
        }
        let commits_before = commits(&mut server, database).await?;
        let watch = server.watch();
        let outcome = workload::consume_backlog(&target, options, backlog).await?;
        report.set_outcome(outcome);
        report.set_sampled(watch.stop().await);
        finish(&mut report, server, database, commits_before, backlog).await?;
        return Ok(report);
    }

    let mut server = Server::start(options, database.url()).await?;
    let target = GrpcTarget::connect(&server.addr(), options, &topic).await?;
    target.create_subscriptions().await?;
    let commits_before = commits(&mut server, database).await?;
    let watch = server.watch();
    let outcome = workload::flow(&target, options, &run_id).await?;
    report.set_outcome(outcome);
    report.set_sampled(watch.stop().await);
    finish(
        &mut report,
        server,
        database,
        commits_before,
        options.messages,
    )
    .await?;
    Ok(report)
}

/// The write-transaction counter: the SQLite writer's own, or PostgreSQL's statistics.
async fn commits(server: &mut Server, database: &BenchDatabase) -> Result<Option<u64>, BenchError> {
    if let Some(count) = database.xact_commit().await? {
        return Ok(Some(count));
    }
    server.commit_count().await
}

/// Reads the counters and the peak RSS, then stops the server.
async fn finish(
    report: &mut Report,
    mut server: Server,
    database: &BenchDatabase,
    commits_before: Option<u64>,
    messages: u64,
) -> Result<(), BenchError> {
    report.set_server(server.describe(), server.peak_rss());
    let after = if database.is_postgres() {
        // PostgreSQL publishes a backend's counters when it goes idle (at most once a second)
        // and when it exits: stop the server and wait for its connections to end.
        server.stop().await?;
        database.settle_stats().await?;
        database.xact_commit().await?
    } else {
        let after = server.commit_count().await?;
        server.stop().await?;
        after
    };
    if let (Some(before), Some(after)) = (commits_before, after) {
        report.set_commits(
            after.saturating_sub(before),
            messages,
            database.commit_source(),
        );
    }
    Ok(())
}

async fn run_store_only(
    options: &BenchOptions,
    database: &BenchDatabase,
) -> Result<Report, BenchError> {
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let topic = format!("bench-{}", &run_id[run_id.len() - 12..]);
    let mut report = Report::new(options, database.backend());
    let config = server_config(options, database.url())?;
    let wakeups = crate::wakeups::Wakeups::default();
    let store = crate::store::open(&config, wakeups.clone()).await?;
    let target = StoreTarget::new(store.clone(), wakeups, &config, &topic, options).await?;
    let before = match database.xact_commit().await? {
        Some(count) => Some(count),
        None => Some(crate::store::sqlite::commits_to(database.url())),
    };
    let started = Instant::now();
    let cpu_before = process::cpu_seconds(process::SELF);
    let outcome = workload::flow(&target, options, &run_id).await?;
    report.set_outcome(outcome);
    report.set_sampled(server::Sampled {
        max_rss: None,
        server_cpu: None,
        bench_cpu: process::cpu_seconds(process::SELF)
            .zip(cpu_before)
            .map(|(after, before)| after - before),
        seconds: started.elapsed().as_secs_f64(),
    });
    report.set_server(
        "none: the store runs in the bench process (no gRPC, no scheduler loops)".into(),
        process::peak_rss(process::SELF),
    );
    drop(target);
    let after = if database.is_postgres() {
        drop(store);
        // Give the pool a moment to close its connections so their counters are published.
        tokio::time::sleep(Duration::from_millis(200)).await;
        database.settle_stats().await?;
        database.xact_commit().await?
    } else {
        Some(crate::store::sqlite::commits_to(database.url()))
    };
    if let (Some(before), Some(after)) = (before, after) {
        report.set_commits(
            after.saturating_sub(before),
            options.messages,
            database.commit_source(),
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `options` at a size that runs in a moment, with the server in this process.
    pub(super) fn tiny(options: BenchOptions) -> BenchOptions {
        BenchOptions {
            messages: 60,
            producers: 4,
            consumers: 2,
            payload_bytes: 64,
            batch: 16,
            connections: 2,
            launch: Launch::InProcess,
            ..options
        }
    }

    /// What a user reads off the last line: every message delivered once, group commit counted.
    fn assert_complete(report: &Report, messages: u64) {
        let json = report.json();
        assert_eq!(json["messages"], messages, "{json}");
        assert_eq!(json["backend"], "sqlite");
        assert_eq!(json["duplicates"], 0);
        assert_eq!(json["ack_failures"], 0);
        let commits = json["commits"]
            .as_u64()
            .unwrap_or_else(|| panic!("the writer counts commits: {json}"));
        // At worst each message commits alone four times: Prepare, Confirm, its lease and its
        // Ack (a tiny run rarely has company to share a commit with); plus the setup's.
        assert!(commits >= 1 && commits <= 4 * messages + 10, "{json}");
        assert!(report.render().ends_with(&format!("{json}\n")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tiny_run_delivers_every_message_over_grpc() {
        let report = run(tiny(BenchOptions::default()))
            .await
            .expect("bench runs");
        assert_complete(&report, 60);
        assert!(report.json()["latency_ms"]["confirm_to_delivery"]["count"] == 60);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publish_store_only_and_backlog_runs_complete() {
        let publish = tiny(BenchOptions {
            mode: Mode::Publish,
            ..BenchOptions::default()
        });
        assert_complete(&run(publish).await.expect("publish"), 60);
        let store_only = tiny(BenchOptions {
            store_only: true,
            ..BenchOptions::default()
        });
        assert_complete(&run(store_only).await.expect("store only"), 60);
        let backlog = tiny(BenchOptions {
            backlog: Some(100),
            ..BenchOptions::default()
        });
        let report = run(backlog).await.expect("backlog");
        assert_complete(&report, 100);
        assert_eq!(report.json()["mode"], "backlog");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fan_out_delivers_every_message_to_every_subscription() {
        // A subscription that got nothing would leave its consumers waiting: bound the wait.
        let deadline = Duration::from_secs(60);
        let flow = tiny(BenchOptions {
            subscriptions: 3,
            ..BenchOptions::default()
        });
        let report = tokio::time::timeout(deadline, run(flow))
            .await
            .expect("every subscription gets every message")
            .expect("fan-out runs");
        assert_complete(&report, 60);
        let json = report.json();
        assert_eq!(json["subscriptions"], 3, "{json}");
        assert_eq!(json["deliveries"], 180, "{json}");
        assert_eq!(json["latency_ms"]["confirm_to_delivery"]["count"], 180);
        assert!(report.render().contains("180 deliveries"));

        let backlog = tiny(BenchOptions {
            subscriptions: 2,
            backlog: Some(100),
            ..BenchOptions::default()
        });
        let report = tokio::time::timeout(deadline, run(backlog))
            .await
            .expect("every subscription drains the backlog")
            .expect("fan-out backlog runs");
        assert_complete(&report, 100);
        assert_eq!(report.json()["deliveries"], 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_overload_run_accounts_for_every_call() {
        let report = run_overload(tiny(BenchOptions::default()), Offer::Factor(3.0), 0.5)
            .await
            .expect("overload runs");
        let json = report.json();
        assert!(report.kept_its_promises(), "{json}");
        let answered: u64 = json["answers"]
            .as_object()
            .expect("answers by code")
            .values()
            .map(|count| count.as_u64().expect("a count"))
            .sum();
        let offered = json["offered"].as_u64().expect("offered");
        let shed = json["shed_by_bench"].as_u64().expect("shed");
        assert_eq!(
            answered + shed,
            offered,
            "every offered call is accounted for: {json}"
        );
        assert!(json["answers"]["OK"].as_u64() > Some(0), "{json}");
        assert!(report.render().ends_with(&format!("{json}\n")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_overload_at_a_fixed_rate_offers_that_rate_whatever_the_calibration() {
        let report = run_overload(tiny(BenchOptions::default()), Offer::PerSecond(200.0), 0.5)
            .await
            .expect("overload runs");
        let json = report.json();
        assert!(report.kept_its_promises(), "{json}");
        assert_eq!(json["offered"], 100, "{json}");
        assert_eq!(json["offered_per_sec"], 200.0, "{json}");
        let sent = json["sent_per_sec"].as_f64().expect("sent rate");
        assert!(sent > 0.0 && sent <= 250.0, "{json}");
        assert!(json["start_lag_ms"]["p99_ms"].as_f64().is_some(), "{json}");
        let refused = run_overload(tiny(BenchOptions::default()), Offer::PerSecond(0.0), 0.5).await;
        assert!(
            matches!(refused, Err(BenchError::Options(_))),
            "a rate of zero is refused"
        );
        let fan_out = BenchOptions {
            subscriptions: 2,
            ..BenchOptions::default()
        };
        let refused = run_overload(tiny(fan_out), Offer::PerSecond(200.0), 0.5).await;
        assert!(
            matches!(refused, Err(BenchError::Options(_))),
            "an overload runs on one subscription"
        );
    }

    #[test]
    fn contradictory_options_are_refused() {
        let store_only_with_addr = BenchOptions {
            store_only: true,
            addr: Some("127.0.0.1:1".into()),
            ..BenchOptions::default()
        };
        assert!(matches!(
            validate(&store_only_with_addr),
            Err(BenchError::Options(_))
        ));
        let no_rate = BenchOptions {
            rate: Some(0.0),
            ..BenchOptions::default()
        };
        assert!(matches!(validate(&no_rate), Err(BenchError::Options(_))));
        for subscriptions in [0, MAX_SUBSCRIPTIONS + 1] {
            let options = BenchOptions {
                subscriptions,
                ..BenchOptions::default()
            };
            assert!(matches!(validate(&options), Err(BenchError::Options(_))));
        }
    }
}
