//! A server for one test: `courier::run` on a thread and runtime of its own, started plain,
//! with TLS clients, or with its scheduler driven by the test; stopped, restarted, cancelled on
//! drop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use courier::RunOptions;
use courier::config::Config;
use courier::domain::Timestamp;
use courier::scheduler::{PassReport, Scheduler};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

use super::{Api, Backend, TestDatabase, plain_endpoint, wait_until_serving};

/// How long a test waits for the server to come up before it gives up.
const STARTUP_DEADLINE: Duration = Duration::from_secs(20);

/// The configuration every test server starts from: the defaults, with subscription backoffs
/// short enough that redeliveries happen within a test.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.subscriptions.initial_backoff = Duration::from_millis(1);
    config.subscriptions.max_backoff = Duration::from_millis(10);
    config.shutdown_grace = Duration::from_secs(1);
    // Tests run in parallel: none takes the default metrics port (tests/it/metrics.rs picks one).
    config.metrics_listen = String::new();
    // Tests that count states right after a Receive would see the batches a full Receive leases
    // ahead; the lease-ahead tests (consumer/receive.rs) turn it on.
    config.limits.lease_ahead_batches = 0;
    config
}

/// A server running `courier::run` on a thread of its own with its own multi-threaded
/// runtime, as `courier serve` runs it: the test's runtime (often single-threaded) never
/// starves it, and `run`'s future need not be `Send`.
pub struct TestServer {
    pub config: Config,
    pub addr: SocketAddr,
    api: Api,
    shutdown: CancellationToken,
    /// Notified: the server re-reads its TLS and credential files, as on SIGHUP.
    pub reload: Arc<Notify>,
    exit: Option<oneshot::Receiver<Result<(), String>>>,
    // Dropped after the server is cancelled, and before the directory it may live in.
    database: TestDatabase,
    _dir: TempDir,
}

impl std::ops::Deref for TestServer {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server with `test_config()` changed by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_connecting(tweak, plain_endpoint).await
    }

    /// Starts a server whose clients (the shortcuts, and the readiness probe) connect through
    /// the endpoint `endpoint` makes for the server's address: for TLS.
    pub async fn start_connecting(
        tweak: impl FnOnce(&mut Config),
        endpoint: impl FnOnce(SocketAddr) -> Endpoint,
    ) -> Self {
        Self::launch(None, tweak, endpoint, RunOptions::default())
            .await
            .0
    }

    /// Starts a server on `database_url`, a database the test keeps itself (replicas share
    /// one), with `test_config()` changed by `tweak`.
    pub async fn start_on(database_url: &str, tweak: impl FnOnce(&mut Config)) -> Self {
        let options = RunOptions::default();
        Self::launch(Some(database_url), tweak, plain_endpoint, options)
            .await
            .0
    }

    /// Starts a server whose scheduler loops are off, and hands over its scheduler: the test
    /// runs one pass at a time, at a `now` of its choosing, with [`DrivenScheduler::pass`].
    pub async fn start_driven(tweak: impl FnOnce(&mut Config)) -> (Self, DrivenScheduler) {
        let (scheduler_sender, scheduler) = oneshot::channel();
        let options = RunOptions {
            scheduler_loops: false,
            scheduler: Some(scheduler_sender),
            ..RunOptions::default()
        };
        let (server, runtime) = Self::launch(None, tweak, plain_endpoint, options).await;
        let scheduler = DrivenScheduler {
            scheduler: scheduler.await.expect("the server opened its store"),
            runtime,
        };
        (server, scheduler)
    }

    /// Starts `courier::run_with(options)` on a thread of its own, on the shared database
    /// given or on a fresh one of its own; returns the server and a handle on its runtime.
    async fn launch(
        shared_database: Option<&str>,
        tweak: impl FnOnce(&mut Config),
        endpoint: impl FnOnce(SocketAddr) -> Endpoint,
        options: RunOptions,
    ) -> (Self, Handle) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let listener = crate::process::loopback_listener();
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let mut config = test_config();
        config.listen = addr.to_string();
        let database = match shared_database {
            Some(url) => TestDatabase::shared(url),
            None => Backend::from_env().fresh_database(&dir).await,
        };
        config.database_url = database.url.clone();
        tweak(&mut config);

        let reload = options.reload.clone();
        let (shutdown, mut exit, runtime) = spawn_server(config.clone(), listener, options);

        let api = Api::new(endpoint(addr).connect_lazy());
        tokio::select! {
            result = &mut exit => panic!("the server stopped while starting: {result:?}"),
            () = wait_until_serving(api.channel(), STARTUP_DEADLINE) => {}
        }
        let runtime = runtime.await.expect("the server's runtime is built");
        let server = Self {
            config,
            addr,
            api,
            shutdown,
            reload,
            exit: Some(exit),
            database,
            _dir: dir,
        };
        (server, runtime)
    }

    /// The server's database, for what no RPC shows.
    pub fn database(&self) -> &TestDatabase {
        &self.database
    }

    /// Cancels the server and returns what `run` returned.
    pub async fn stop(mut self) -> Result<(), String> {
        self.stop_running().await
    }

    async fn stop_running(&mut self) -> Result<(), String> {
        self.shutdown.cancel();
        let exit = self.exit.take().expect("the server's exit");
        tokio::time::timeout(Duration::from_secs(10), exit)
            .await
            .expect("the server stops within 10 s of cancellation")
            .expect("the server thread does not panic")
    }

    /// Stops the server gracefully and starts it again on the same database and address;
    /// clients reconnect on their own. (A plain server: no driven scheduler.)
    pub async fn restart(&mut self) {
        self.stop_running().await.expect("a clean stop");
        let listener = std::net::TcpListener::bind(self.addr).expect("bind the same address");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let options = RunOptions {
            reload: self.reload.clone(),
            ..RunOptions::default()
        };
        let (shutdown, mut exit, _runtime) = spawn_server(self.config.clone(), listener, options);
        self.shutdown = shutdown;
        tokio::select! {
            result = &mut exit => panic!("the server stopped while restarting: {result:?}"),
            () = wait_until_serving(self.api.channel(), STARTUP_DEADLINE) => {}
        }
        self.exit = Some(exit);
    }
}

/// Runs `courier::run_with` on a thread of its own with its own runtime; returns its shutdown
/// token, what `run` returns, and a handle on the runtime.
fn spawn_server(
    config: Config,
    listener: std::net::TcpListener,
    options: RunOptions,
) -> (
    CancellationToken,
    oneshot::Receiver<Result<(), String>>,
    oneshot::Receiver<Handle>,
) {
    let addr = config.listen.clone();
    let shutdown = CancellationToken::new();
    let (exit_sender, exit) = oneshot::channel();
    let (runtime_sender, runtime) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("courier-{addr}"))
        .spawn({
            let shutdown = shutdown.clone();
            move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("the server's runtime");
                let _ = runtime_sender.send(runtime.handle().clone());
                let result = runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("a tokio listener");
                    courier::run_with(config, listener, shutdown, options).await
                });
                let _ = exit_sender.send(result.map_err(|e| format!("{e:?}")));
            }
        })
        .expect("the server's thread");
    (shutdown, exit, runtime)
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The scheduler of a server started by [`TestServer::start_driven`]. Clones share it, as
/// replicas share a store.
#[derive(Clone)]
pub struct DrivenScheduler {
    scheduler: Scheduler,
    /// The server's runtime: a pass runs there, beside the store's connections, as the loops
    /// would, and not on the test's (often single-threaded) runtime.
    runtime: Handle,
}

impl DrivenScheduler {
    /// One pass of every loop as of `now`.
    pub async fn pass(&self, now: Timestamp) -> PassReport {
        let scheduler = self.scheduler.clone();
        self.runtime
            .spawn(async move { scheduler.run_once(now).await })
            .await
            .expect("the pass does not panic")
            .expect("run_once")
    }
}
