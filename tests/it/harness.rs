//! A real Courier server for one test: `courier::run` on `127.0.0.1:0` with its own temporary
//! database, real tonic clients over loopback, and small builders and assertions shared by
//! every module. The server is cancelled when the `TestServer` is dropped.

mod assertions;
mod requests;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use courier::RunOptions;
use courier::config::Config;
use courier::domain::Timestamp;
use courier::proto::admin_client::AdminClient;
use courier::proto::consumer_client::ConsumerClient;
use courier::proto::producer_client::ProducerClient;
use courier::proto::{
    AckRequest, AckStatus, CancelRequest, CheckStatusRequest, ConfirmRequest, Delivery,
    DeliveryStatus, ListDeliveriesRequest, ListSubscriptionsRequest, Message, MessageState,
    ReceiveRequest, RegisterCheckerRequest, Subscription,
};
use courier::scheduler::{PassReport, Scheduler};
use courier::store::testing::TestDatabase as PostgresDatabase;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

pub use assertions::*;
pub use requests::*;

pub type Producer = ProducerClient<Channel>;
pub type Consumer = ConsumerClient<Channel>;
pub type Admin = AdminClient<Channel>;

/// Names most tests use; every test has its own server and database, so they never collide.
pub const PRODUCER: &str = "shop";
pub const TOPIC: &str = "orders";
pub const SUB: &str = "billing";

/// How long a test waits for the server to come up before it gives up.
const STARTUP_DEADLINE: Duration = Duration::from_secs(20);

/// The database a test server runs on: SQLite in a temporary directory, or, with
/// `COURIER_TEST_BACKEND=postgres`, a fresh database per test on the PostgreSQL server named by
/// `COURIER_TEST_POSTGRES_URL` (its user must be allowed to create databases). The same tests
/// then run against the PostgreSQL backend.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Postgres { admin_url: String },
}

impl Backend {
    pub fn from_env() -> Self {
        match std::env::var("COURIER_TEST_BACKEND").as_deref() {
            Err(_) | Ok("") | Ok("sqlite") => Self::Sqlite,
            Ok("postgres") => Self::Postgres {
                admin_url: std::env::var("COURIER_TEST_POSTGRES_URL")
                    .expect("COURIER_TEST_BACKEND=postgres needs COURIER_TEST_POSTGRES_URL"),
            },
            Ok(other) => panic!("COURIER_TEST_BACKEND={other:?}: expected sqlite or postgres"),
        }
    }

    /// A database no other test uses; a PostgreSQL one is dropped with the returned guard.
    pub async fn fresh_database(&self, dir: &TempDir) -> TestDatabase {
        match self {
            Self::Sqlite => TestDatabase {
                url: format!("sqlite://{}/courier.db", dir.path().display()),
                _postgres: None,
            },
            Self::Postgres { admin_url } => {
                let database = PostgresDatabase::create_on(admin_url).await;
                TestDatabase {
                    url: database.url().to_owned(),
                    _postgres: Some(database),
                }
            }
        }
    }
}

/// A test's own database. Dropping it drops a PostgreSQL database (closing the connections a
/// cancelled server may still hold); a SQLite one goes with its temporary directory.
pub struct TestDatabase {
    pub url: String,
    _postgres: Option<PostgresDatabase>,
}

/// The configuration every test server starts from: the defaults, with subscription backoffs
/// short enough that redeliveries happen within a test.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.subscriptions.initial_backoff = Duration::from_millis(1);
    config.subscriptions.max_backoff = Duration::from_millis(10);
    config.shutdown_grace = Duration::from_secs(1);
    // Tests run in parallel: none takes the default metrics port (tests/it/metrics.rs picks one).
    config.metrics_listen = String::new();
    config
}

/// Clients of one running server, and shortcuts for the calls most tests make. Both a
/// `TestServer` and the binary started by the durability test dereference to one.
#[derive(Clone)]
pub struct Api {
    channel: Channel,
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
    _database: TestDatabase,
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
        Self::launch(tweak, endpoint, RunOptions::default()).await.0
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
        let (server, runtime) = Self::launch(tweak, plain_endpoint, options).await;
        let scheduler = DrivenScheduler {
            scheduler: scheduler.await.expect("the server opened its store"),
            runtime,
        };
        (server, scheduler)
    }

    /// Starts `courier::run_with(options)` on a thread of its own; returns the server and a
    /// handle on its runtime.
    async fn launch(
        tweak: impl FnOnce(&mut Config),
        endpoint: impl FnOnce(SocketAddr) -> Endpoint,
        options: RunOptions,
    ) -> (Self, Handle) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let mut config = test_config();
        config.listen = addr.to_string();
        let database = Backend::from_env().fresh_database(&dir).await;
        config.database_url = database.url.clone();
        tweak(&mut config);

        let reload = options.reload.clone();
        let (shutdown, mut exit, runtime) = spawn_server(config.clone(), listener, options);

        let api = Api {
            channel: endpoint(addr).connect_lazy(),
        };
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
            _database: database,
            _dir: dir,
        };
        (server, runtime)
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

impl Api {
    /// Clients for a server at `addr`; they connect on the first call.
    pub fn connect_lazy(addr: SocketAddr) -> Self {
        Self {
            channel: plain_endpoint(addr).connect_lazy(),
        }
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub fn producer(&self) -> Producer {
        ProducerClient::new(self.channel())
    }

    pub fn consumer(&self) -> Consumer {
        ConsumerClient::new(self.channel())
    }

    pub fn admin(&self) -> Admin {
        AdminClient::new(self.channel())
    }

    // --- shortcuts for the happy path; each unwraps, so a failure names the call ---

    pub async fn create_subscription(&self, subscription: Subscription) -> Subscription {
        self.admin()
            .create_subscription(courier::proto::CreateSubscriptionRequest {
                subscription: Some(subscription),
            })
            .await
            .expect("CreateSubscription")
            .into_inner()
    }

    /// Registers `endpoint` as the Checker of `PRODUCER`, with `timeout` or the default.
    pub async fn register_checker(&self, endpoint: &str, timeout: Option<Duration>) {
        self.producer()
            .register_checker(RegisterCheckerRequest {
                producer: PRODUCER.into(),
                endpoint: endpoint.into(),
                timeout: timeout.map(duration),
            })
            .await
            .expect("RegisterChecker");
    }

    /// Prepares a message built by `prepare_request` and returns its id.
    pub async fn prepare(&self, topic: &str, key: &str) -> String {
        let response = self
            .producer()
            .prepare(prepare_request(PRODUCER, topic, key))
            .await
            .expect("Prepare")
            .into_inner();
        assert!(response.created, "Prepare of a new key creates a message");
        assert_eq!(response.state(), MessageState::Prepared);
        response.message_id
    }

    /// Publishes a message built by `publish_request` and returns its id.
    pub async fn publish(&self, topic: &str, key: &str) -> String {
        let response = self
            .producer()
            .publish(publish_request(PRODUCER, topic, key))
            .await
            .expect("Publish")
            .into_inner();
        assert!(response.created, "Publish of a new key creates a message");
        assert_eq!(response.state(), MessageState::Confirmed);
        response.message_id
    }

    pub async fn confirm(&self, message_id: &str) -> Result<MessageState, Status> {
        self.producer()
            .confirm(ConfirmRequest {
                message: by_id(message_id),
            })
            .await
            .map(|r| r.into_inner().state())
    }

    pub async fn cancel(&self, message_id: &str) -> Result<MessageState, Status> {
        self.producer()
            .cancel(CancelRequest {
                message: by_id(message_id),
            })
            .await
            .map(|r| r.into_inner().state())
    }

    /// CheckStatus by id.
    pub async fn status(&self, message_id: &str) -> Message {
        self.producer()
            .check_status(CheckStatusRequest {
                message: by_id(message_id),
            })
            .await
            .expect("CheckStatus")
            .into_inner()
            .message
            .expect("CheckStatus returns the message")
    }

    /// CheckStatus by id; NOT_FOUND (a message deleted, say) is `None`.
    pub async fn find(&self, message_id: &str) -> Option<Message> {
        let answer = self
            .producer()
            .check_status(CheckStatusRequest {
                message: by_id(message_id),
            })
            .await;
        match answer {
            Ok(response) => Some(response.into_inner().message.expect("a message")),
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => panic!("CheckStatus: {status:?}"),
        }
    }

    pub async fn receive(
        &self,
        subscription: &str,
        max_messages: u32,
        wait: Duration,
    ) -> Vec<Delivery> {
        self.consumer()
            .receive(ReceiveRequest {
                subscription: subscription.into(),
                max_messages,
                wait: Some(duration(wait)),
                max_bytes: 0,
            })
            .await
            .expect("Receive")
            .into_inner()
            .deliveries
    }

    /// Receives and expects exactly one delivery within `wait`.
    pub async fn receive_one(&self, subscription: &str, wait: Duration) -> Delivery {
        let mut deliveries = self.receive(subscription, 1, wait).await;
        assert_eq!(
            deliveries.len(),
            1,
            "expected one delivery on {subscription} within {wait:?}"
        );
        deliveries.remove(0)
    }

    /// Acks the receipts and returns one status per receipt.
    pub async fn ack(&self, subscription: &str, receipts: &[&str]) -> Vec<AckStatus> {
        let results = self
            .consumer()
            .ack(AckRequest {
                subscription: subscription.into(),
                receipts: receipts.iter().map(|r| r.to_string()).collect(),
            })
            .await
            .expect("Ack")
            .into_inner()
            .results;
        assert_eq!(results.len(), receipts.len(), "one ack result per receipt");
        for (result, receipt) in results.iter().zip(receipts) {
            assert_eq!(
                result.receipt, *receipt,
                "ack results come in request order"
            );
        }
        results.iter().map(|r| r.status()).collect()
    }

    /// Every delivery of a subscription, over all pages.
    pub async fn deliveries(&self, subscription: &str) -> Vec<DeliveryStatus> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .admin()
                .list_deliveries(ListDeliveriesRequest {
                    subscription: subscription.into(),
                    page_token,
                    ..Default::default()
                })
                .await
                .expect("ListDeliveries")
                .into_inner();
            all.extend(page.deliveries);
            if page.next_page_token.is_empty() {
                return all;
            }
            page_token = page.next_page_token;
        }
    }

    /// The one delivery of `message_id` to `subscription`, from CheckStatus.
    pub async fn delivery_status(&self, message_id: &str, subscription: &str) -> DeliveryStatus {
        self.status(message_id)
            .await
            .deliveries
            .into_iter()
            .find(|d| d.subscription == subscription)
            .unwrap_or_else(|| panic!("message {message_id} has a delivery to {subscription}"))
    }

    /// Proves the server still answers after an error: a plain read succeeds.
    pub async fn assert_still_serving(&self) {
        self.admin()
            .list_subscriptions(ListSubscriptionsRequest::default())
            .await
            .expect("the server keeps serving");
    }
}

/// `http://addr`.
pub fn plain_endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint::from_shared(format!("http://{addr}")).expect("endpoint")
}

/// One readiness probe: Ok when grpc.health.v1 answers SERVING (or is not offered at all: then
/// the server is up, and the standard-services tests report the missing health service).
pub async fn probe_serving(channel: Channel) -> Result<(), String> {
    let mut health = HealthClient::new(channel);
    let check = health.check(HealthCheckRequest {
        service: String::new(),
    });
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(response)) if response.get_ref().status() == ServingStatus::Serving => Ok(()),
        Ok(Err(status)) if status.code() == Code::Unimplemented => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// Probes until the server is serving; panics after `deadline`.
pub async fn wait_until_serving(channel: Channel, deadline: Duration) {
    let started = Instant::now();
    while let Err(last) = probe_serving(channel.clone()).await {
        assert!(
            started.elapsed() < deadline,
            "the server is not serving after {deadline:?}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it returns `Some`, for at most `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
