//! The server under test: a child `courier bench-server` process (the default), `run_with` in
//! the bench's own process, or a server that is already running.
//!
//! The child speaks a line protocol on its stdin and stdout: it prints `listening <addr>` once
//! it serves, answers `commits` with `commits <n>` (or `commits none`), and shuts down
//! gracefully when its stdin closes. Its logs go to stderr.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::process;
use super::{BenchError, BenchOptions, Launch};
use crate::config::Config;
use crate::store::{Backend, Store};
use crate::{RunError, RunOptions};

/// How long a child may take to start serving, and to stop.
const START_DEADLINE: Duration = Duration::from_secs(60);
const STOP_DEADLINE: Duration = Duration::from_secs(30);
/// How often the RSS watcher samples the server.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(100);

// One value per run: the size of the child's variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Server {
    Child {
        child: Child,
        stdin: Option<ChildStdin>,
        stdout: Lines<BufReader<ChildStdout>>,
        addr: SocketAddr,
        tls: bool,
        pid: Option<u32>,
    },
    InProcess {
        addr: SocketAddr,
        tls: bool,
        database_url: String,
        shutdown: CancellationToken,
        served: JoinHandle<Result<(), RunError>>,
    },
    Running {
        addr: String,
        pid: Option<u32>,
    },
}

impl Server {
    pub async fn start(options: &BenchOptions, database_url: &str) -> Result<Self, BenchError> {
        if let Some(addr) = &options.addr {
            return Ok(Self::Running {
                addr: addr.clone(),
                pid: options.server_pid,
            });
        }
        match &options.launch {
            Launch::Child { exe } => start_child(exe, options, database_url).await,
            Launch::InProcess => {
                let config = super::server_config(options, database_url)?;
                start_in_process(config).await
            }
        }
    }

    /// Where clients connect: `http://host:port`, or `https://` when the server serves TLS.
    pub fn addr(&self) -> String {
        match self {
            Self::Child { addr, tls, .. } | Self::InProcess { addr, tls, .. } => {
                format!("{}://{addr}", if *tls { "https" } else { "http" })
            }
            Self::Running { addr, .. } => crate::client::endpoint_uri(addr),
        }
    }

    /// The process whose memory is the server's; `None` when unknown.
    fn pid(&self) -> Option<Option<u32>> {
        match self {
            Self::Child { pid, .. } => pid.map(Some),
            Self::InProcess { .. } => Some(process::SELF),
            Self::Running { pid, .. } => pid.map(Some),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Child { pid, .. } => format!(
                "child process `courier bench-server` (pid {}); RSS is its own",
                pid.map_or_else(|| "?".into(), |p| p.to_string())
            ),
            Self::InProcess { .. } => {
                "in the bench process (--in-process); RSS covers server and bench together".into()
            }
            Self::Running { addr, pid } => match pid {
                Some(pid) => format!("running at {addr} (pid {pid})"),
                None => format!("running at {addr}; RSS unknown without --server-pid"),
            },
        }
    }

    /// Write transactions the server's store committed so far, if it counts them.
    pub async fn commit_count(&mut self) -> Result<Option<u64>, BenchError> {
        match self {
            Self::Child {
                stdin: Some(stdin),
                stdout,
                ..
            } => {
                stdin.write_all(b"commits\n").await?;
                stdin.flush().await?;
                let line = stdout
                    .next_line()
                    .await?
                    .ok_or_else(|| BenchError::Server("exited while asked for commits".into()))?;
                let value = line
                    .strip_prefix("commits ")
                    .ok_or_else(|| BenchError::Server(format!("unexpected answer {line:?}")))?;
                Ok(value.parse().ok())
            }
            // Asked only of SQLite: PostgreSQL's commits come from pg_stat_database.
            Self::InProcess { database_url, .. } => {
                Ok(Some(crate::store::sqlite::commits_to(database_url)))
            }
            _ => Ok(None),
        }
    }

    /// The server's peak resident set size so far (VmHWM).
    pub fn peak_rss(&self) -> Option<u64> {
        self.pid().and_then(process::peak_rss)
    }

    /// Samples the server's RSS and CPU time until [`Watch::stop`].
    pub fn watch(&self) -> Watch {
        Watch::start(self.pid())
    }

    /// Shuts the server down (a running server is left alone).
    pub async fn stop(self) -> Result<(), BenchError> {
        match self {
            Self::Child {
                mut child, stdin, ..
            } => {
                drop(stdin); // EOF: the child shuts down gracefully
                match tokio::time::timeout(STOP_DEADLINE, child.wait()).await {
                    Ok(status) => {
                        let status = status?;
                        if !status.success() {
                            return Err(BenchError::Server(format!("exited with {status}")));
                        }
                    }
                    Err(_) => {
                        let _ = child.kill().await;
                        return Err(BenchError::Server("did not stop in time; killed".into()));
                    }
                }
                Ok(())
            }
            Self::InProcess {
                shutdown, served, ..
            } => {
                shutdown.cancel();
                match served.await {
                    Ok(result) => Ok(result?),
                    Err(error) => Err(BenchError::Server(format!("server task: {error}"))),
                }
            }
            Self::Running { .. } => Ok(()),
        }
    }
}

async fn start_child(
    exe: &PathBuf,
    options: &BenchOptions,
    database_url: &str,
) -> Result<Server, BenchError> {
    // The child reads the same configuration layers; this side only needs to know the scheme.
    let tls = super::server_config(options, database_url)?.tls.enabled();
    let mut command = Command::new(exe);
    command
        .arg("bench-server")
        .arg("--database-url")
        .arg(database_url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(file) = &options.config_file {
        command.arg("--config").arg(file);
    }
    let mut child = command.spawn()?;
    let pid = child.id();
    let stdin = child.stdin.take();
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| BenchError::Server("no stdout".into()))?;
    let mut stdout = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(START_DEADLINE, stdout.next_line())
        .await
        .map_err(|_| BenchError::Server("did not start in time".into()))??
        .ok_or_else(|| BenchError::Server("exited before serving (see its log above)".into()))?;
    let addr = first
        .strip_prefix("listening ")
        .and_then(|addr| addr.parse().ok())
        .ok_or_else(|| BenchError::Server(format!("unexpected first line {first:?}")))?;
    Ok(Server::Child {
        child,
        stdin,
        stdout,
        addr,
        tls,
        pid,
    })
}

async fn start_in_process(config: Config) -> Result<Server, BenchError> {
    let tls = config.tls.enabled();
    let database_url = config.database_url.clone();
    let (addr, _store, shutdown, served) = spawn_server(config).await?;
    Ok(Server::InProcess {
        addr,
        tls,
        database_url,
        shutdown,
        served,
    })
}

type Spawned = (
    SocketAddr,
    Arc<dyn Store>,
    CancellationToken,
    JoinHandle<Result<(), RunError>>,
);

/// Starts `run_with` on 127.0.0.1 and returns once the store is open.
async fn spawn_server(config: Config) -> Result<Spawned, BenchError> {
    let listener = TcpListener::bind(config.listen_addr()?).await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let (scheduler_sender, scheduler) = tokio::sync::oneshot::channel();
    let options = RunOptions {
        scheduler: Some(scheduler_sender),
        ..RunOptions::default()
    };
    let served = tokio::spawn(crate::run_with(config, listener, shutdown.clone(), options));
    match scheduler.await {
        Ok(scheduler) => Ok((addr, scheduler.store().clone(), shutdown, served)),
        // The sender was dropped: the server stopped before its store opened.
        Err(_) => match served.await {
            Ok(Err(error)) => Err(error.into()),
            _ => Err(BenchError::Server("stopped before its store opened".into())),
        },
    }
}

/// The child's side (`courier bench-server`): serves on a free loopback port with the usual
/// configuration layers, and speaks the line protocol described above.
pub async fn serve_child(
    config_file: Option<PathBuf>,
    database_url: String,
) -> Result<(), BenchError> {
    super::init_tracing();
    let config = super::bench_config(config_file.as_deref(), &database_url)?;
    let (addr, store, shutdown, served) = spawn_server(config).await?;
    let mut stdout = tokio::io::stdout();
    stdout
        .write_all(format!("listening {addr}\n").as_bytes())
        .await?;
    stdout.flush().await?;
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    while let Some(command) = commands.next_line().await? {
        match command.trim() {
            "commits" => {
                let count = match Backend::of(&database_url) {
                    Some(Backend::Sqlite) => {
                        crate::store::sqlite::commits_to(&database_url).to_string()
                    }
                    _ => "none".to_owned(),
                };
                stdout
                    .write_all(format!("commits {count}\n").as_bytes())
                    .await?;
                stdout.flush().await?;
            }
            "stop" => break,
            other => tracing::warn!(command = other, "unknown bench-server command"),
        }
    }
    drop(store);
    shutdown.cancel();
    match served.await {
        Ok(result) => Ok(result?),
        Err(error) => Err(BenchError::Server(format!("server task: {error}"))),
    }
}

/// What [`Server::watch`] saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sampled {
    /// Highest RSS sampled while watching.
    pub max_rss: Option<u64>,
    /// CPU seconds the server used while watching (`None` when unknown, or in-process).
    pub server_cpu: Option<f64>,
    /// CPU seconds the bench process used while watching.
    pub bench_cpu: Option<f64>,
    pub seconds: f64,
}

pub struct Watch {
    pid: Option<Option<u32>>,
    started: Instant,
    server_cpu: Option<f64>,
    bench_cpu: Option<f64>,
    max_rss: Arc<AtomicU64>,
    stop: CancellationToken,
    sampler: Option<JoinHandle<()>>,
}

impl Watch {
    /// Samples `pid`'s RSS and CPU time (`None`: an unknown process; `Some(SELF)`: this one)
    /// until [`Watch::stop`].
    pub fn start(pid: Option<Option<u32>>) -> Self {
        let max_rss = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let sampler = pid.map(|pid| {
            let (max_rss, stop) = (max_rss.clone(), stop.clone());
            tokio::spawn(async move {
                loop {
                    if let Some(rss) = process::rss(pid) {
                        max_rss.fetch_max(rss, Ordering::Relaxed);
                    }
                    tokio::select! {
                        () = tokio::time::sleep(RSS_SAMPLE_EVERY) => {}
                        () = stop.cancelled() => return,
                    }
                }
            })
        });
        Watch {
            pid,
            started: Instant::now(),
            server_cpu: pid.and_then(process::cpu_seconds),
            bench_cpu: process::cpu_seconds(process::SELF),
            max_rss,
            stop,
            sampler,
        }
    }

    pub async fn stop(self) -> Sampled {
        self.stop.cancel();
        if let Some(sampler) = self.sampler {
            let _ = sampler.await;
        }
        let since = |before: Option<f64>, after: Option<f64>| {
            before.zip(after).map(|(before, after)| after - before)
        };
        let in_process = self.pid == Some(process::SELF);
        let server_cpu = match self.pid {
            Some(pid) if !in_process => since(self.server_cpu, process::cpu_seconds(pid)),
            _ => None,
        };
        let max_rss = self.max_rss.load(Ordering::Relaxed);
        Sampled {
            max_rss: (self.pid.is_some() && max_rss > 0).then_some(max_rss),
            server_cpu,
            bench_cpu: since(self.bench_cpu, process::cpu_seconds(process::SELF)),
            seconds: self.started.elapsed().as_secs_f64(),
        }
    }
}
