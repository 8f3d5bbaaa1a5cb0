//! The `courier` binary as a child process, for the integration tests (`tests/it`) and the
//! fault tests (`tests/faults`), which both include this file with
//! `#[path = "../support/process.rs"] mod process;` beside their `harness`.
//!
//! `courier_command` is the binary without the test's own `COURIER_*` variables; `Courier` is
//! `courier serve` configured through `COURIER_*` variables, optionally under a shell's
//! `ulimit`, killed with SIGKILL and started again on the same address and database.

use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{Api, probe_serving};

/// How a server is started; kept so the same server can be started again after a kill.
#[derive(Debug, Clone)]
pub struct Launch {
    pub name: String,
    pub addr: SocketAddr,
    pub database_url: String,
    /// More `COURIER_*` settings.
    pub env: Vec<(String, String)>,
    /// `ulimit` arguments for the shell that execs the server, e.g. `-n 128`.
    pub ulimit: Option<String>,
    /// Where the server's output goes, one file per server, appended across restarts.
    pub log: PathBuf,
}

impl Launch {
    /// A server named `name` on a free loopback port, logging into `dir`.
    pub fn new(name: &str, database_url: &str, dir: &Path) -> Self {
        Self {
            name: name.to_owned(),
            addr: free_port(),
            database_url: database_url.to_owned(),
            env: Vec::new(),
            ulimit: None,
            log: dir.join(format!("{name}.log")),
        }
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A running `courier serve`; killed (SIGKILL) when dropped.
pub struct Courier {
    pub launch: Launch,
    child: Child,
    api: Api,
}

impl std::ops::Deref for Courier {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Courier {
    /// Starts the server and waits until it answers its health check.
    pub async fn start(launch: &Launch) -> Self {
        let mut server = Self::spawn(launch);
        server.wait_until_ready(Duration::from_secs(30)).await;
        server
    }

    /// Starts the server without waiting for it.
    pub fn spawn(launch: &Launch) -> Self {
        let mut command = match &launch.ulimit {
            None => courier_command(),
            Some(limit) => {
                // The limit applies to the shell, which then becomes the server.
                let mut shell = without_courier_variables(Command::new("sh"));
                shell
                    .arg("-c")
                    .arg(format!("ulimit {limit} && exec \"$0\" \"$@\""))
                    .arg(BINARY);
                shell
            }
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.log)
            .expect("the server's log file");
        let child = command
            .arg("serve")
            .env("COURIER_LISTEN", launch.addr.to_string())
            .env("COURIER_DATABASE_URL", &launch.database_url)
            // Several servers run at once: none takes the default metrics port.
            .env("COURIER_METRICS_LISTEN", "")
            .envs(launch.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a second handle on the log"))
            .stderr(log)
            .spawn()
            .expect("start the courier binary");
        Self {
            launch: launch.clone(),
            child,
            api: Api::connect_lazy(launch.addr),
        }
    }

    async fn wait_until_ready(&mut self, deadline: Duration) {
        let started = Instant::now();
        loop {
            if let Some(exit) = self.exited() {
                panic!(
                    "{} exited with {exit} while starting; its log:\n{}",
                    self.launch.name,
                    self.log_tail()
                );
            }
            if probe_serving(self.api.channel()).await.is_ok() {
                return;
            }
            assert!(
                started.elapsed() < deadline,
                "{} not ready after {deadline:?}; its log:\n{}",
                self.launch.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How the process ended, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("the server's status")
    }

    /// Panics with the log if the server is no longer running.
    #[track_caller]
    pub fn assert_running(&mut self) {
        if let Some(exit) = self.exited() {
            panic!(
                "{} died ({exit}); its log:\n{}",
                self.launch.name,
                self.log_tail()
            );
        }
    }

    /// CPU time the server has used so far (user and system), from `/proc`.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("the server's /proc stat");
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat[stat.rfind(')').expect("a stat line") + 2..]
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // Linux reports CPU time in clock ticks of 1/100 s (USER_HZ).
        Duration::from_millis(ticks * 10)
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.launch.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGKILL: no shutdown code runs. Returns what is needed to start it again.
    pub fn kill(mut self) -> Launch {
        self.child.kill().expect("SIGKILL courier");
        self.child.wait().expect("reap courier");
        self.launch.clone()
    }
}

impl Drop for Courier {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `courier` binary Cargo built for these tests.
const BINARY: &str = env!("CARGO_BIN_EXE_courier");

/// `courier` with none of the test's own `COURIER_*` variables.
pub fn courier_command() -> Command {
    without_courier_variables(Command::new(BINARY))
}

/// The binary reads every `COURIER_*` variable as configuration and refuses unknown keys, so
/// the test's own settings (`COURIER_TEST_*`) must not reach it.
fn without_courier_variables(mut command: Command) -> Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("COURIER_") {
            command.env_remove(name);
        }
    }
    command
}

/// A loopback address no one listens on, for a server the test starts later.
pub fn free_port() -> SocketAddr {
    loopback_listener().local_addr().expect("local address")
}

/// A listener on a loopback port below Linux's ephemeral range (32768–60999). A port the
/// kernel hands out for `bind(0)` can go, once released, to another test's listener or
/// outgoing connection before this test binds it again (a restart, a server started later);
/// ports here are only ever bound on purpose, and each is handed out once per test process
/// (the start depends on the process id, so test binaries run side by side start apart).
pub fn loopback_listener() -> TcpListener {
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919) % COUNT;
    for _ in 0..COUNT {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % COUNT;
        let port = u16::try_from(FIRST + offset).expect("a port number");
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return listener;
        }
    }
    panic!(
        "no free loopback port between {FIRST} and {}",
        FIRST + COUNT
    )
}
