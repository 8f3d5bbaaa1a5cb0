//! A real Courier for one test, and the shortcuts most tests use; and the setting every
//! outbox test starts from ([`OutboxTest`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use courier::config::Config;
use courier_client::proto::admin_client::AdminClient;
use courier_client::proto::checker_client::CheckerClient;
use courier_client::proto::consumer_client::ConsumerClient;
use courier_client::proto::{
    self, CheckRequest, CreateSubscriptionRequest, Delivery, DeliveryState, Message, MessageState,
    ReceiveRequest, RetryPolicy, Subscription,
};
use courier_client::{
    Backend, CallbackAuth, Connection, Consumer, CourierChannel, Decision, Outbox, OutgoingMessage,
    Producer, SendError, Sent,
};
use sqlx::Pool;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::transport::server::Router;
use tonic::transport::{Channel, Endpoint, Server};

use crate::databases::{create_orders, insert_order};

pub const PRODUCER: &str = "shop";
pub const TOPIC: &str = "orders";
pub const SUB: &str = "billing";

/// How long a test waits for something Courier does by itself.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// Courier running on a thread of its own (its own runtime, as `courier serve` runs it) with
/// a SQLite database in a temporary directory; cancelled when dropped.
pub struct Courier {
    pub addr: SocketAddr,
    /// Where its HTTP listener serves the callback keys.
    pub jwks_url: String,
    shutdown: CancellationToken,
    _dir: TempDir,
}

impl Courier {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("an address");
        let http = free_port();
        let mut config = Config {
            listen: addr.to_string(),
            metrics_listen: http.to_string(),
            database_url: format!("sqlite://{}/courier.db", dir.path().display()),
            shutdown_grace: Duration::from_secs(1),
            ..Config::default()
        };
        config.checks.first_after = Duration::from_secs(1);
        config.checks.initial_backoff = Duration::from_millis(200);
        config.checks.max_backoff = Duration::from_millis(500);
        config.subscriptions.initial_backoff = Duration::from_millis(1);
        config.subscriptions.max_backoff = Duration::from_millis(10);
        let shutdown = CancellationToken::new();
        let server_shutdown = shutdown.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("the server's runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("a tokio listener");
                if let Err(error) = courier::run(config, listener, server_shutdown).await {
                    eprintln!("courier stopped: {error:?}");
                }
            });
        });
        let courier = Self {
            addr,
            jwks_url: format!("http://{http}/.well-known/jwks.json"),
            shutdown,
            _dir: dir,
        };
        courier.wait_until_serving().await;
        courier
    }

    async fn wait_until_serving(&self) {
        let started = Instant::now();
        loop {
            let answer = self.admin().get_stats(proto::GetStatsRequest {}).await;
            if answer.is_ok() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "courier did not start: {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn connection(&self) -> Connection {
        Connection::new(self.addr.to_string())
    }

    pub fn channel(&self) -> CourierChannel {
        self.connection().connect_lazy().expect("a channel")
    }

    pub fn producer(&self) -> Producer {
        Producer::new(self.channel(), PRODUCER)
    }

    pub fn consumer(&self, subscription: &str) -> Consumer {
        Consumer::new(self.channel(), subscription).poll_wait(Duration::from_millis(500))
    }

    pub fn admin(&self) -> AdminClient<CourierChannel> {
        AdminClient::new(self.channel())
    }

    /// A pull subscription of `TOPIC` with `ack_deadline` and `max_attempts`, retrying at
    /// once.
    pub async fn subscribe(&self, name: &str, ack_deadline: Duration, max_attempts: u32) {
        self.create_subscription(Subscription {
            name: name.into(),
            topic: TOPIC.into(),
            ack_deadline: Some(proto::duration(ack_deadline)),
            retry_policy: Some(RetryPolicy {
                max_attempts,
                initial_backoff: Some(proto::duration(Duration::from_millis(1))),
                max_backoff: Some(proto::duration(Duration::from_millis(10))),
                multiplier: 0.0,
            }),
            ..Subscription::default()
        })
        .await;
    }

    pub async fn create_subscription(&self, subscription: Subscription) {
        self.admin()
            .create_subscription(CreateSubscriptionRequest {
                subscription: Some(subscription),
            })
            .await
            .expect("CreateSubscription");
    }

    pub async fn status(&self, message_id: &str) -> Message {
        self.producer()
            .status(message_id)
            .await
            .expect("CheckStatus")
    }

    /// Waits until `done` holds for the message, and returns it.
    pub async fn wait_for(
        &self,
        message_id: &str,
        what: &str,
        done: impl Fn(&Message) -> bool,
    ) -> Message {
        let started = Instant::now();
        loop {
            let message = self.status(message_id).await;
            if done(&message) {
                return message;
            }
            assert!(started.elapsed() < PATIENCE, "{what}: still {message:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_for_state(&self, message_id: &str, state: MessageState) -> Message {
        self.wait_for(message_id, state.as_str_name(), |m| m.state() == state)
            .await
    }

    /// Waits until the message's one delivery is in `state`.
    pub async fn wait_for_delivery(&self, message_id: &str, state: DeliveryState) -> Message {
        self.wait_for(message_id, state.as_str_name(), |m| {
            m.deliveries.first().is_some_and(|d| d.state() == state)
        })
        .await
    }

    /// One Receive on `subscription`, waiting up to `wait`.
    pub async fn receive(&self, subscription: &str, wait: Duration) -> Vec<Delivery> {
        ConsumerClient::new(self.channel())
            .receive(ReceiveRequest {
                subscription: subscription.into(),
                max_messages: 10,
                wait: Some(proto::duration(wait)),
                max_bytes: 0,
            })
            .await
            .expect("Receive")
            .into_inner()
            .deliveries
    }
}

impl Drop for Courier {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn free_port() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    probe.local_addr().expect("an address")
}

/// A listener on 127.0.0.1:0 and its `http://` URL, for a service that must know its URL
/// before it serves (a Checker or Receiver checks tokens are for its own URL).
pub async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    (listener, url)
}

/// Serves `router` on `listener` until the returned guard is dropped.
pub fn serve_on(listener: TcpListener, router: Router) -> DropGuard {
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                stopped.cancelled_owned(),
            )
            .await
            .expect("the test's server runs");
    });
    stop.drop_guard()
}

/// Serves `router` on 127.0.0.1:0 until the returned guard is dropped; answers its URL.
pub async fn serve(router: Router) -> (String, DropGuard) {
    let (listener, url) = bind().await;
    (url, serve_on(listener, router))
}

/// What an outbox test starts from: Courier with the subscription `SUB`, the business table
/// and the outbox installed on the test's database, and the outbox's own Checker (no token
/// checks) served until this is dropped.
pub struct OutboxTest<DB: Backend> {
    pub courier: Courier,
    pub outbox: Outbox<DB>,
    pub pool: Pool<DB>,
    checker: CheckerClient<Channel>,
    _checker_server: DropGuard,
}

/// What `send_in_transaction` answers in these tests.
pub type SendResult<T> = Result<Sent<T>, SendError<sqlx::Error>>;

impl<DB: Backend> OutboxTest<DB> {
    pub async fn start(pool: Pool<DB>) -> Self {
        let courier = Courier::start().await;
        courier.subscribe(SUB, Duration::from_secs(30), 5).await;
        create_orders(&pool).await;
        let outbox = Outbox::new(pool.clone());
        outbox.install().await.expect("the outbox installs");
        outbox
            .install()
            .await
            .expect("installing again is harmless");
        let checker = outbox.checker(CallbackAuth::accept_any()).into_server();
        let (url, guard) = serve(Server::builder().add_service(checker)).await;
        let channel = Endpoint::from_shared(url).expect("a URL").connect_lazy();
        Self {
            courier,
            outbox,
            pool,
            checker: CheckerClient::new(channel),
            _checker_server: guard,
        }
    }

    /// The outbox Checker's answer about `message_id`, asked as Courier asks.
    pub async fn check(&self, message_id: &str) -> Decision {
        ask(self.checker.clone(), message_id).await
    }

    /// Sends `key` through the outbox in the background: the local transaction inserts the
    /// order, then stays open until [`HeldSend::finish`] and ends with `ending` (`Ok`
    /// commits).
    pub async fn send_held_open(&self, key: &str, ending: Result<(), sqlx::Error>) -> HeldSend {
        let (in_transaction, inside) = oneshot::channel();
        let (release, released) = oneshot::channel::<()>();
        let send = tokio::spawn({
            let outbox = self.outbox.clone();
            let producer = self.courier.producer();
            let key = key.to_owned();
            async move {
                outbox
                    .send_in_transaction(
                        &producer,
                        OutgoingMessage::new(TOPIC, &key),
                        async move |connection, message_id| {
                            insert_order::<DB>(connection, &key, message_id).await?;
                            in_transaction.send(message_id.to_owned()).unwrap();
                            released.await.unwrap();
                            ending
                        },
                    )
                    .await
            }
        });
        HeldSend {
            message_id: inside.await.expect("the local transaction started"),
            release,
            send,
        }
    }

    /// Asks the Checker about `message_id` in the background; asserts it is still waiting
    /// 300 ms later, as it must while the message's local transaction is open.
    pub async fn check_waiting(&self, message_id: &str) -> JoinHandle<Decision> {
        let asked = tokio::spawn({
            let checker = self.checker.clone();
            let message_id = message_id.to_owned();
            async move { ask(checker, &message_id).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !asked.is_finished(),
            "the check waits for the open transaction"
        );
        asked
    }
}

async fn ask(mut checker: CheckerClient<Channel>, message_id: &str) -> Decision {
    checker
        .check(CheckRequest {
            message_id: message_id.into(),
            producer: PRODUCER.into(),
            ..CheckRequest::default()
        })
        .await
        .expect("Check")
        .into_inner()
        .decision()
}

/// A send whose local transaction is open: its message id, and how to let it end.
pub struct HeldSend {
    pub message_id: String,
    release: oneshot::Sender<()>,
    send: JoinHandle<SendResult<()>>,
}

impl HeldSend {
    /// Lets the local transaction end; answers what the send answered.
    pub async fn finish(self) -> SendResult<()> {
        self.release.send(()).expect("the send is waiting");
        self.send.await.expect("the send does not panic")
    }
}
