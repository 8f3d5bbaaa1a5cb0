//! The scheduler: check-back through producers' Checkers, push delivery to Receivers, and
//! retention. Checkers and Receivers are real tonic servers inside the tests.
//!
//! Most tests run a [`Driven`] server: the real services on the real store, with the
//! scheduler's background loops left off, so the test runs one pass at a time
//! (`Scheduler::run_once`) at a `now` of its choosing and steps through backoffs and retention
//! without sleeping. A few run the whole server (`courier::run`) to show that the loops wake
//! and act by themselves.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use courier::RunOptions;
use courier::config::Config;
use courier::domain::Timestamp;
use courier::proto::checker_server::{Checker, CheckerServer};
use courier::proto::receiver_server::{Receiver, ReceiverServer};
use courier::proto::{
    CheckRequest, CheckResponse, Decision, DeliverResponse, Delivery, DeliveryState,
    MessageOutcome, MessageState, RedriveRequest, RegisterCheckerRequest, ResolveRequest,
    Subscription,
};
use courier::scheduler::{CheckCounts, PassReport, PushCounts, Scheduler};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Request, Response, Status};

use crate::harness::*;

const PUSH_SUB: &str = "webhook";

// --- a server whose scheduler the test drives ---

/// Courier's services on their own store, with a [`Scheduler`] over the same store whose loops
/// are not running: the test calls [`Driven::pass`].
struct Driven {
    scheduler: Scheduler,
    channel: Channel,
    shutdown: CancellationToken,
    _database: TestDatabase,
    _dir: TempDir,
}

impl Driven {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = test_config();
        let database = Backend::from_env().fresh_database(&dir).await;
        config.database_url = database.url.clone();
        // A message is due for its first check as soon as it is prepared, so the first pass can
        // run at the real `now`: a check's COMMIT dates the deliveries it creates, and a pull
        // consumer leases them in real time.
        config.checks.first_after = Duration::ZERO;
        tweak(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let shutdown = CancellationToken::new();
        let (scheduler_sender, scheduler) = tokio::sync::oneshot::channel();
        let options = RunOptions {
            scheduler_loops: false,
            scheduler: Some(scheduler_sender),
            ..RunOptions::default()
        };
        tokio::spawn(courier::run_with(
            config,
            listener,
            shutdown.clone(),
            options,
        ));
        let scheduler = scheduler.await.expect("the server opened its store");
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect_lazy();
        Self {
            scheduler,
            channel,
            shutdown,
            _database: database,
            _dir: dir,
        }
    }

    /// One pass of every loop as of `now`.
    async fn pass(&self, now: Timestamp) -> PassReport {
        self.scheduler.run_once(now).await.expect("run_once")
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// `seconds` from now: a `now` for [`Driven::pass`].
fn after(seconds: u64) -> Timestamp {
    Timestamp::now().plus(Duration::from_secs(seconds))
}

/// When a message prepared on a [`Driven`] server is due for its first check: at once.
fn first_check() -> Timestamp {
    Timestamp::now()
}

// --- calls on either kind of server ---

async fn register_checker(channel: &Channel, endpoint: &str, timeout: Option<Duration>) {
    courier::proto::producer_client::ProducerClient::new(channel.clone())
        .register_checker(RegisterCheckerRequest {
            producer: PRODUCER.into(),
            endpoint: endpoint.into(),
            timeout: timeout.map(duration),
        })
        .await
        .expect("RegisterChecker");
}

async fn create(channel: &Channel, subscription: Subscription) {
    courier::proto::admin_client::AdminClient::new(channel.clone())
        .create_subscription(courier::proto::CreateSubscriptionRequest {
            subscription: Some(subscription),
        })
        .await
        .expect("CreateSubscription");
}

async fn prepare(channel: &Channel, key: &str) -> String {
    courier::proto::producer_client::ProducerClient::new(channel.clone())
        .prepare(prepare_request(PRODUCER, TOPIC, key))
        .await
        .expect("Prepare")
        .into_inner()
        .message_id
}

async fn publish(channel: &Channel, key: &str) -> String {
    courier::proto::producer_client::ProducerClient::new(channel.clone())
        .publish(publish_request(PRODUCER, TOPIC, key))
        .await
        .expect("Publish")
        .into_inner()
        .message_id
}

async fn confirm(channel: &Channel, message_id: &str) -> Result<MessageState, Status> {
    courier::proto::producer_client::ProducerClient::new(channel.clone())
        .confirm(courier::proto::ConfirmRequest {
            message: by_id(message_id),
        })
        .await
        .map(|r| r.into_inner().state())
}

async fn cancel(channel: &Channel, message_id: &str) -> MessageState {
    courier::proto::producer_client::ProducerClient::new(channel.clone())
        .cancel(courier::proto::CancelRequest {
            message: by_id(message_id),
        })
        .await
        .expect("Cancel")
        .into_inner()
        .state()
}

/// CheckStatus by id; NOT_FOUND is `None`.
async fn find(channel: &Channel, message_id: &str) -> Option<courier::proto::Message> {
    let answer = courier::proto::producer_client::ProducerClient::new(channel.clone())
        .check_status(courier::proto::CheckStatusRequest {
            message: by_id(message_id),
        })
        .await;
    match answer {
        Ok(response) => Some(response.into_inner().message.expect("a message")),
        Err(status) if status.code() == Code::NotFound => None,
        Err(status) => panic!("CheckStatus: {status:?}"),
    }
}

async fn status(channel: &Channel, message_id: &str) -> courier::proto::Message {
    find(channel, message_id)
        .await
        .unwrap_or_else(|| panic!("message {message_id} exists"))
}

async fn receive(channel: &Channel, subscription: &str, wait: Duration) -> Vec<Delivery> {
    courier::proto::consumer_client::ConsumerClient::new(channel.clone())
        .receive(courier::proto::ReceiveRequest {
            max_bytes: 0,
            subscription: subscription.into(),
            max_messages: 10,
            wait: Some(duration(wait)),
        })
        .await
        .expect("Receive")
        .into_inner()
        .deliveries
}

async fn ack(channel: &Channel, subscription: &str, receipt: &str) {
    let results = courier::proto::consumer_client::ConsumerClient::new(channel.clone())
        .ack(courier::proto::AckRequest {
            subscription: subscription.into(),
            receipts: vec![receipt.into()],
        })
        .await
        .expect("Ack")
        .into_inner()
        .results;
    assert_eq!(results[0].status(), courier::proto::AckStatus::Ok);
}

/// A push subscription of `TOPIC` to `endpoint` with the fast retries of `fast_subscription`.
fn push_subscription(name: &str, endpoint: &str, max_attempts: u32) -> Subscription {
    Subscription {
        push_endpoint: endpoint.into(),
        ..fast_subscription(name, TOPIC, max_attempts)
    }
}

// --- fake Checkers and Receivers ---

type Answer<T> = Pin<Box<dyn Future<Output = Result<T, Status>> + Send>>;

/// Answers every check with `decision` at once.
fn always(decision: Decision) -> impl Fn(CheckRequest) -> Answer<Decision> + Send + Sync {
    move |_| Box::pin(async move { Ok(decision) })
}

/// A producer's Checker that answers with a script and records every request.
#[derive(Clone)]
struct FakeChecker {
    script: Arc<dyn Fn(CheckRequest) -> Answer<Decision> + Send + Sync>,
    calls: Arc<Mutex<Vec<CheckRequest>>>,
}

#[tonic::async_trait]
impl Checker for FakeChecker {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let request = request.into_inner();
        self.calls.lock().unwrap().push(request.clone());
        let decision = (self.script)(request).await?;
        Ok(Response::new(CheckResponse {
            decision: decision as i32,
        }))
    }
}

impl FakeChecker {
    /// Serves on 127.0.0.1:0 and returns the checker with its URL.
    async fn start(
        script: impl Fn(CheckRequest) -> Answer<Decision> + Send + Sync + 'static,
    ) -> (Self, String) {
        let checker = Self {
            script: Arc::new(script),
            calls: Arc::default(),
        };
        let url = serve(Server::builder().add_service(CheckerServer::new(checker.clone()))).await;
        (checker, url)
    }

    fn calls(&self) -> Vec<CheckRequest> {
        self.calls.lock().unwrap().clone()
    }
}

/// A push subscription's Receiver that answers with a script and records every delivery and
/// how many calls it held at once.
#[derive(Clone)]
struct FakeReceiver {
    script: Arc<dyn Fn(Delivery) -> Answer<()> + Send + Sync>,
    seen: Arc<Mutex<Vec<Delivery>>>,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl Receiver for FakeReceiver {
    async fn deliver(
        &self,
        request: Request<Delivery>,
    ) -> Result<Response<DeliverResponse>, Status> {
        let delivery = request.into_inner();
        self.seen.lock().unwrap().push(delivery.clone());
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        let answer = (self.script)(delivery).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.answered.fetch_add(1, Ordering::SeqCst);
        answer.map(|()| Response::new(DeliverResponse {}))
    }
}

impl FakeReceiver {
    async fn start(
        script: impl Fn(Delivery) -> Answer<()> + Send + Sync + 'static,
    ) -> (Self, String) {
        let receiver = Self {
            script: Arc::new(script),
            seen: Arc::default(),
            in_flight: Arc::default(),
            most_in_flight: Arc::default(),
            answered: Arc::default(),
        };
        let url = serve(Server::builder().add_service(ReceiverServer::new(receiver.clone()))).await;
        (receiver, url)
    }

    fn seen(&self) -> Vec<Delivery> {
        self.seen.lock().unwrap().clone()
    }

    fn attempts(&self) -> Vec<u32> {
        self.seen().iter().map(|d| d.attempt).collect()
    }
}

/// Serves `router` on 127.0.0.1:0 for the rest of the test; returns its URL.
async fn serve(router: tonic::transport::server::Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener)));
    url
}

/// A URL on which nothing listens.
async fn closed_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    drop(listener);
    url
}

fn checks(counts: CheckCounts) -> PassReport {
    PassReport {
        checks: counts,
        ..PassReport::default()
    }
}

fn pushes(counts: PushCounts) -> PassReport {
    PassReport {
        pushes: counts,
        ..PassReport::default()
    }
}

// --- check-back ---

#[tokio::test]
async fn a_check_answered_commit_confirms_and_delivers() {
    let server = Driven::start().await;
    let ch = &server.channel;
    create(ch, subscription(SUB, TOPIC)).await;
    let (checker, url) = FakeChecker::start(always(Decision::Commit)).await;
    register_checker(ch, &url, None).await;
    let id = prepare(ch, "order-1").await;
    // A message that asks for its first check later is not due yet.
    let mut later = prepare_request(PRODUCER, TOPIC, "order-2");
    later.check_after = secs(60);
    courier::proto::producer_client::ProducerClient::new(ch.clone())
        .prepare(later)
        .await
        .expect("Prepare");

    let report = server.pass(first_check()).await;
    assert_eq!(
        report,
        checks(CheckCounts {
            confirmed: 1,
            ..Default::default()
        })
    );
    let calls = checker.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.message_id, id);
    assert_eq!(
        (
            call.producer.as_str(),
            call.topic.as_str(),
            call.key.as_str()
        ),
        (PRODUCER, TOPIC, "order-1")
    );
    assert_eq!(call.headers, headers_of("order-1"));
    assert_eq!(call.check_attempt, 1);
    assert!(call.prepared_at.is_some());

    let message = status(ch, &id).await;
    assert_eq!(message.state(), MessageState::Confirmed);
    assert_eq!(message.check_attempts, 1);
    let deliveries = receive(ch, SUB, Duration::from_secs(2)).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].message_id, id);
    assert_eq!(deliveries[0].payload, payload_of("order-1"));
}

#[tokio::test]
async fn a_check_answered_rollback_cancels() {
    let server = Driven::start().await;
    let ch = &server.channel;
    create(ch, subscription(SUB, TOPIC)).await;
    let (checker, url) = FakeChecker::start(always(Decision::Rollback)).await;
    register_checker(ch, &url, None).await;
    let id = prepare(ch, "order-1").await;

    let report = server.pass(first_check()).await;
    assert_eq!(
        report,
        checks(CheckCounts {
            cancelled: 1,
            ..Default::default()
        })
    );
    assert_eq!(checker.calls().len(), 1);
    let message = status(ch, &id).await;
    assert_eq!(message.state(), MessageState::Cancelled);
    assert!(message.deliveries.is_empty());
    assert!(receive(ch, SUB, Duration::ZERO).await.is_empty());
    // Final: a later Confirm contradicts it.
    assert_precondition_names(confirm(ch, &id).await, "CANCELLED");
}

#[tokio::test]
async fn unknown_answers_make_the_message_unresolved_after_exactly_max_attempts() {
    let server = Driven::start_with(|config| config.checks.max_attempts = 3).await;
    let ch = &server.channel;
    create(ch, subscription(SUB, TOPIC)).await;
    let (checker, url) = FakeChecker::start(always(Decision::Unknown)).await;
    register_checker(ch, &url, None).await;
    let id = prepare(ch, "order-1").await;

    // Each pass an hour apart is past any backoff (at most checks.max_backoff, 10 min).
    let rescheduled = checks(CheckCounts {
        rescheduled: 1,
        ..Default::default()
    });
    assert_eq!(server.pass(first_check()).await, rescheduled);
    let message = status(ch, &id).await;
    assert_eq!(message.state(), MessageState::Prepared);
    assert_eq!(message.check_attempts, 1);
    assert!(
        message.last_check_error.contains("UNKNOWN"),
        "{}",
        message.last_check_error
    );
    // The next check waits for the backoff: 10 s ± 20 % after this one.
    let next = to_system_time(&message.next_check_at);
    let wait = next
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(
        wait > Duration::from_secs(5) && wait < Duration::from_secs(30),
        "{wait:?}"
    );

    assert_eq!(server.pass(after(3600)).await, rescheduled);
    assert_eq!(
        server.pass(after(7200)).await,
        checks(CheckCounts {
            unresolved: 1,
            ..Default::default()
        })
    );
    let message = status(ch, &id).await;
    assert_eq!(message.state(), MessageState::Unresolved);
    assert_eq!(message.outcome(), MessageOutcome::Unresolved);
    assert_eq!(message.check_attempts, 3);
    assert!(message.last_check_error.contains("UNKNOWN"));

    // Held: never checked again, never cancelled by itself.
    assert_eq!(server.pass(after(86_400)).await, PassReport::default());
    let attempts: Vec<u32> = checker.calls().iter().map(|c| c.check_attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert_eq!(status(ch, &id).await.state(), MessageState::Unresolved);
}

#[tokio::test]
async fn a_producer_confirm_wins_over_a_slow_check_answering_rollback() {
    let server = Driven::start().await;
    let ch = &server.channel;
    create(ch, subscription(SUB, TOPIC)).await;
    let release = Arc::new(tokio::sync::Notify::new());
    let (checker, url) = FakeChecker::start({
        let release = release.clone();
        move |_| {
            let release = release.clone();
            Box::pin(async move {
                release.notified().await;
                Ok(Decision::Rollback)
            })
        }
    })
    .await;
    register_checker(ch, &url, Some(Duration::from_secs(30))).await;
    let id = prepare(ch, "order-1").await;

    let pass = tokio::spawn({
        let scheduler = server.scheduler.clone();
        async move { scheduler.run_once(first_check()).await.expect("run_once") }
    });
    eventually(Duration::from_secs(5), "the check is in flight", || async {
        (!checker.calls().is_empty()).then_some(())
    })
    .await;
    // The producer's own decision lands while the checker is still thinking.
    assert_eq!(
        confirm(ch, &id).await.expect("Confirm"),
        MessageState::Confirmed
    );
    release.notify_waiters();

    let report = pass.await.expect("the pass does not panic");
    assert_eq!(
        report,
        checks(CheckCounts {
            stale: 1,
            ..Default::default()
        })
    );
    let message = status(ch, &id).await;
    assert_eq!(message.state(), MessageState::Confirmed);
    let deliveries = receive(ch, SUB, Duration::from_secs(2)).await;
    assert_eq!(deliveries.len(), 1, "the confirmed message is delivered");
    ack(ch, SUB, &deliveries[0].receipt).await;
    assert_eq!(status(ch, &id).await.outcome(), MessageOutcome::Delivered);
}

#[tokio::test]
async fn an_unreachable_checker_is_asked_again_later() {
    let server = Driven::start().await;
    let ch = &server.channel;
    create(ch, subscription(SUB, TOPIC)).await;
    register_checker(ch, &closed_endpoint().await, None).await;
    let id = prepare(ch, "order-1").await;

    let report = server.pass(first_check()).await;
    assert_eq!(
        report,
        checks(CheckCounts {
            rescheduled: 1,
            ..Default::default()
        })
    );
    let message = status(ch, &id).await;
    assert_eq!(message.state(), MessageState::Prepared);
    assert_eq!(message.check_attempts, 1);
    assert!(
        message.last_check_error.contains("UNAVAILABLE"),
        "the error says the checker could not be reached: {}",
        message.last_check_error
    );
    assert!(message.next_check_at.is_some());
}

#[tokio::test]
async fn a_checker_that_does_not_answer_in_time_counts_as_no_answer() {
    let server = Driven::start().await;
    let ch = &server.channel;
    create(ch, subscription(SUB, TOPIC)).await;
    let (checker, url) = FakeChecker::start(|_| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(Decision::Commit)
        })
    })
    .await;
    register_checker(ch, &url, Some(Duration::from_millis(200))).await;
    let id = prepare(ch, "order-1").await;

    let started = Instant::now();
    let report = server.pass(first_check()).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the check gave up at its timeout"
    );
    assert_eq!(
        report,
        checks(CheckCounts {
            rescheduled: 1,
            ..Default::default()
        })
    );
    assert_eq!(checker.calls().len(), 1);
    let message = status(ch, &id).await;
    assert_eq!(
        message.state(),
        MessageState::Prepared,
        "the late COMMIT is not applied"
    );
    assert!(
        message.last_check_error.contains("no answer within 200ms"),
        "{}",
        message.last_check_error
    );
}

#[tokio::test]
async fn a_producer_without_a_checker_is_retried_then_unresolved() {
    let server = Driven::start_with(|config| config.checks.max_attempts = 2).await;
    let ch = &server.channel;
    create(ch, subscription(SUB, TOPIC)).await;
    let id = prepare(ch, "order-1").await;

    let report = server.pass(first_check()).await;
    assert_eq!(
        report,
        checks(CheckCounts {
            rescheduled: 1,
            ..Default::default()
        })
    );
    let message = status(ch, &id).await;
    assert!(
        message
            .last_check_error
            .contains("no checker registered for producer shop"),
        "{}",
        message.last_check_error
    );
    let report = server.pass(after(3600)).await;
    assert_eq!(
        report,
        checks(CheckCounts {
            unresolved: 1,
            ..Default::default()
        })
    );
    assert_eq!(status(ch, &id).await.state(), MessageState::Unresolved);
}

#[tokio::test]
async fn unresolved_messages_take_a_resolve_or_the_producers_late_decision() {
    let server = Driven::start_with(|config| config.checks.max_attempts = 1).await;
    let ch = &server.channel;
    create(ch, subscription(SUB, TOPIC)).await;
    let (checker, url) = FakeChecker::start(always(Decision::Unknown)).await;
    register_checker(ch, &url, None).await;
    let resolved = prepare(ch, "order-1").await;
    let confirmed = prepare(ch, "order-2").await;
    let cancelled = prepare(ch, "order-3").await;

    let report = server.pass(first_check()).await;
    assert_eq!(
        report,
        checks(CheckCounts {
            unresolved: 3,
            ..Default::default()
        })
    );

    let mut admin = courier::proto::admin_client::AdminClient::new(ch.clone());
    let state = admin
        .resolve(ResolveRequest {
            message: by_id(&resolved),
            decision: Decision::Commit as i32,
        })
        .await
        .expect("Resolve")
        .into_inner()
        .state();
    assert_eq!(state, MessageState::Confirmed);
    assert_eq!(
        confirm(ch, &confirmed).await.expect("a late Confirm"),
        MessageState::Confirmed
    );
    assert_eq!(cancel(ch, &cancelled).await, MessageState::Cancelled);

    assert_eq!(receive(ch, SUB, Duration::from_secs(2)).await.len(), 2);
    assert_eq!(
        server.pass(after(86_400)).await.checks,
        CheckCounts::default()
    );
    assert_eq!(
        checker.calls().len(),
        3,
        "one check each, none after the decisions"
    );
}

#[tokio::test]
async fn schedulers_sharing_a_store_ask_about_each_message_once() {
    let server = Driven::start().await;
    let ch = &server.channel;
    create(ch, subscription(SUB, TOPIC)).await;
    let (checker, url) = FakeChecker::start(|_| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(Decision::Commit)
        })
    })
    .await;
    register_checker(ch, &url, None).await;
    for key in ["a", "b", "c", "d", "e"] {
        prepare(ch, key).await;
    }
    // A second scheduler over the same store, like a second replica.
    let other = server.scheduler.clone();
    let now = first_check();
    let (one, two) = tokio::join!(server.scheduler.run_once(now), other.run_once(now));
    let confirmed =
        one.expect("run_once").checks.confirmed + two.expect("run_once").checks.confirmed;
    assert_eq!(confirmed, 5);
    let mut asked: Vec<String> = checker.calls().into_iter().map(|c| c.key).collect();
    asked.sort();
    assert_eq!(
        asked,
        ["a", "b", "c", "d", "e"],
        "each message is claimed by one scheduler"
    );
}

// --- push delivery ---

#[tokio::test]
async fn a_push_answered_ok_acknowledges_the_delivery() {
    let server = Driven::start().await;
    let ch = &server.channel;
    let (receiver, url) = FakeReceiver::start(|_| Box::pin(async { Ok(()) })).await;
    create(ch, push_subscription(PUSH_SUB, &url, 5)).await;
    let id = publish(ch, "order-1").await;

    let report = server.pass(Timestamp::now()).await;
    assert_eq!(
        report,
        pushes(PushCounts {
            acked: 1,
            ..Default::default()
        })
    );
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1);
    let delivery = &seen[0];
    assert_eq!(delivery.message_id, id);
    assert_eq!(delivery.subscription, PUSH_SUB);
    assert_eq!(
        (delivery.topic.as_str(), delivery.key.as_str()),
        (TOPIC, "order-1")
    );
    assert_eq!(delivery.payload, payload_of("order-1"));
    assert_eq!(delivery.headers, headers_of("order-1"));
    assert_eq!(delivery.attempt, 1);
    assert!(!delivery.receipt.is_empty());
    let message = status(ch, &id).await;
    assert_eq!(message.outcome(), MessageOutcome::Delivered);
    assert_eq!(message.deliveries[0].state(), DeliveryState::Acked);
    // Pull consumers are turned away from a push subscription.
    let refused = courier::proto::consumer_client::ConsumerClient::new(ch.clone())
        .receive(courier::proto::ReceiveRequest {
            max_bytes: 0,
            subscription: PUSH_SUB.into(),
            max_messages: 1,
            wait: None,
        })
        .await;
    assert_code(refused, Code::FailedPrecondition);
}

#[tokio::test]
async fn a_push_failing_twice_is_retried_until_it_succeeds() {
    let server = Driven::start().await;
    let ch = &server.channel;
    let (receiver, url) = FakeReceiver::start(|delivery| {
        Box::pin(async move {
            if delivery.attempt <= 2 {
                Err(Status::unavailable("warming up"))
            } else {
                Ok(())
            }
        })
    })
    .await;
    create(ch, push_subscription(PUSH_SUB, &url, 5)).await;
    let id = publish(ch, "order-1").await;

    let retried = pushes(PushCounts {
        retried: 1,
        ..Default::default()
    });
    assert_eq!(server.pass(Timestamp::now()).await, retried);
    let delivery = status(ch, &id).await.deliveries.remove(0);
    assert_eq!(delivery.state(), DeliveryState::Pending);
    assert_eq!(delivery.attempts, 1);
    assert!(
        delivery.last_error.contains("UNAVAILABLE: warming up"),
        "{}",
        delivery.last_error
    );

    assert_eq!(server.pass(after(60)).await, retried);
    assert_eq!(
        server.pass(after(120)).await,
        pushes(PushCounts {
            acked: 1,
            ..Default::default()
        })
    );
    assert_eq!(receiver.attempts(), [1, 2, 3]);
    let delivery = status(ch, &id).await.deliveries.remove(0);
    assert_eq!(delivery.state(), DeliveryState::Acked);
    assert_eq!(delivery.attempts, 3);
}

#[tokio::test]
async fn a_push_that_never_succeeds_is_dead_until_redriven() {
    let server = Driven::start().await;
    let ch = &server.channel;
    let healthy = Arc::new(AtomicBool::new(false));
    let (receiver, url) = FakeReceiver::start({
        let healthy = healthy.clone();
        move |_| {
            let healthy = healthy.load(Ordering::SeqCst);
            Box::pin(async move {
                if healthy {
                    Ok(())
                } else {
                    Err(Status::internal("database is down"))
                }
            })
        }
    })
    .await;
    create(ch, push_subscription(PUSH_SUB, &url, 2)).await;
    let id = publish(ch, "order-1").await;

    server.pass(Timestamp::now()).await;
    let report = server.pass(after(60)).await;
    assert_eq!(
        report,
        pushes(PushCounts {
            dead: 1,
            ..Default::default()
        })
    );
    let message = status(ch, &id).await;
    assert_eq!(message.outcome(), MessageOutcome::DeadLettered);
    let delivery = &message.deliveries[0];
    assert_eq!(delivery.state(), DeliveryState::Dead);
    assert_eq!(delivery.attempts, 2);
    assert!(
        delivery.last_error.contains("database is down"),
        "{}",
        delivery.last_error
    );
    // Dead letters are parked: no more pushes.
    assert_eq!(server.pass(after(3600)).await, PassReport::default());
    assert_eq!(receiver.attempts(), [1, 2]);

    healthy.store(true, Ordering::SeqCst);
    let redriven = courier::proto::admin_client::AdminClient::new(ch.clone())
        .redrive(RedriveRequest {
            subscription: PUSH_SUB.into(),
            message_ids: Vec::new(),
        })
        .await
        .expect("Redrive")
        .into_inner()
        .redriven;
    assert_eq!(redriven, 1);
    let report = server.pass(after(3600)).await;
    assert_eq!(
        report,
        pushes(PushCounts {
            acked: 1,
            ..Default::default()
        })
    );
    assert_eq!(
        receiver.attempts(),
        [1, 2, 1],
        "attempts start again after a redrive"
    );
    assert_eq!(status(ch, &id).await.outcome(), MessageOutcome::Delivered);
}

#[tokio::test]
async fn a_push_without_an_answer_within_the_ack_deadline_is_retried() {
    let server = Driven::start().await;
    let ch = &server.channel;
    let (receiver, url) = FakeReceiver::start(|delivery| {
        Box::pin(async move {
            if delivery.attempt == 1 {
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            Ok(())
        })
    })
    .await;
    create(ch, push_subscription(PUSH_SUB, &url, 5)).await; // ack deadline 1 s
    let id = publish(ch, "order-1").await;

    let started = Instant::now();
    let report = server.pass(Timestamp::now()).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the push gave up at the ack deadline"
    );
    assert_eq!(
        report,
        pushes(PushCounts {
            retried: 1,
            ..Default::default()
        })
    );
    let delivery = status(ch, &id).await.deliveries.remove(0);
    assert!(
        delivery.last_error.contains("no answer within 1s"),
        "{}",
        delivery.last_error
    );
    let report = server.pass(after(60)).await;
    assert_eq!(
        report,
        pushes(PushCounts {
            acked: 1,
            ..Default::default()
        })
    );
    assert_eq!(receiver.attempts(), [1, 2]);
}

#[tokio::test]
async fn an_unreachable_receiver_counts_failed_attempts() {
    let server = Driven::start().await;
    let ch = &server.channel;
    create(ch, push_subscription(PUSH_SUB, &closed_endpoint().await, 5)).await;
    let id = publish(ch, "order-1").await;

    let report = server.pass(Timestamp::now()).await;
    assert_eq!(
        report,
        pushes(PushCounts {
            retried: 1,
            ..Default::default()
        })
    );
    let delivery = status(ch, &id).await.deliveries.remove(0);
    assert_eq!(delivery.state(), DeliveryState::Pending);
    assert!(
        delivery.last_error.contains("UNAVAILABLE"),
        "{}",
        delivery.last_error
    );
}

// --- retention ---

#[tokio::test]
async fn retention_deletes_final_messages_and_frees_their_keys() {
    let server = Driven::start_with(|config| {
        config.retention.final_messages = Duration::from_secs(3600);
    })
    .await;
    let ch = &server.channel;
    create(ch, subscription(SUB, TOPIC)).await;
    create(ch, fast_subscription("parked", "parking", 1)).await;

    let delivered = publish(ch, "delivered").await;
    let deliveries = receive(ch, SUB, Duration::from_secs(1)).await;
    ack(ch, SUB, &deliveries[0].receipt).await;
    let cancelled = prepare(ch, "cancelled").await;
    cancel(ch, &cancelled).await;
    let prepared = prepare(ch, "prepared").await;
    let delivering = publish(ch, "delivering").await;
    // A message with a dead letter stays until an operator acts.
    let dead = courier::proto::producer_client::ProducerClient::new(ch.clone())
        .publish(publish_request(PRODUCER, "parking", "dead"))
        .await
        .expect("Publish")
        .into_inner()
        .message_id;
    let parked = receive(ch, "parked", Duration::from_secs(1)).await;
    courier::proto::consumer_client::ConsumerClient::new(ch.clone())
        .reject(courier::proto::RejectRequest {
            subscription: "parked".into(),
            receipt: parked[0].receipt.clone(),
            reason: "poison".into(),
        })
        .await
        .expect("Reject");

    // Within the retention period nothing goes.
    assert_eq!(server.pass(after(1800)).await.messages_deleted, 0);
    assert!(find(ch, &delivered).await.is_some());

    let report = server.pass(after(3700)).await;
    assert_eq!(report.messages_deleted, 2);
    assert!(
        find(ch, &delivered).await.is_none(),
        "delivered and past retention"
    );
    assert!(
        find(ch, &cancelled).await.is_none(),
        "cancelled and past retention"
    );
    assert!(
        find(ch, &prepared).await.is_some(),
        "PREPARED is never final"
    );
    assert!(
        find(ch, &delivering).await.is_some(),
        "an unacked delivery keeps its message"
    );
    assert!(
        find(ch, &dead).await.is_some(),
        "a dead letter keeps its message"
    );

    // The keys are free: the same producer key takes other content now.
    for key in ["delivered", "cancelled"] {
        let mut request = publish_request(PRODUCER, TOPIC, key);
        request.payload = b"a new message".to_vec();
        let response = courier::proto::producer_client::ProducerClient::new(ch.clone())
            .publish(request)
            .await
            .expect("Publish with a freed key")
            .into_inner();
        assert!(response.created);
    }
}

// --- the background loops of a whole server ---

#[tokio::test]
async fn the_running_server_checks_back_by_itself() {
    let server = TestServer::start_with(|config| {
        config.checks.first_after = Duration::from_millis(100);
        config.checks.initial_backoff = Duration::from_millis(20);
        config.checks.max_backoff = Duration::from_millis(40);
        config.checks.max_attempts = 3;
    })
    .await;
    let ch = &server.channel();
    create(ch, subscription(SUB, TOPIC)).await;
    let (_, commit_url) = FakeChecker::start(always(Decision::Commit)).await;
    register_checker(ch, &commit_url, None).await;
    // The check loop plans to look again in a minute (at most its idle ceiling, 30 s) ...
    let mut later = prepare_request(PRODUCER, TOPIC, "later");
    later.check_after = secs(60);
    server.producer().prepare(later).await.expect("Prepare");
    // ... and a Prepare whose check is due sooner wakes it.
    let id = prepare(ch, "order-1").await;
    let delivery = server.receive_one(SUB, Duration::from_secs(5)).await;
    assert_eq!(delivery.message_id, id);
    assert_eq!(server.status(&id).await.state(), MessageState::Confirmed);

    let (unknown, unknown_url) = FakeChecker::start(always(Decision::Unknown)).await;
    register_checker(ch, &unknown_url, None).await;
    let id = prepare(ch, "order-2").await;
    eventually(
        Duration::from_secs(5),
        "the message is unresolved",
        || async { (server.status(&id).await.state() == MessageState::Unresolved).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        unknown.calls().len(),
        3,
        "exactly checks.max_attempts checks"
    );
}

#[tokio::test]
async fn the_running_server_pushes_by_itself() {
    let server = TestServer::start().await;
    let ch = &server.channel();
    let (receiver, url) = FakeReceiver::start(|delivery| {
        Box::pin(async move {
            if delivery.attempt < 3 {
                Err(Status::unavailable("not yet"))
            } else {
                Ok(())
            }
        })
    })
    .await;
    create(ch, push_subscription(PUSH_SUB, &url, 5)).await;
    let id = publish(ch, "order-1").await;
    eventually(
        Duration::from_secs(5),
        "the push is acknowledged",
        || async {
            (server.status(&id).await.outcome() == MessageOutcome::Delivered).then_some(())
        },
    )
    .await;
    assert_eq!(receiver.attempts(), [1, 2, 3]);
}

#[tokio::test]
async fn a_slow_receiver_does_not_delay_another_subscription() {
    let server = TestServer::start_with(|config| config.push.per_subscription = 2).await;
    let ch = &server.channel();
    let (slow, slow_url) = FakeReceiver::start(|_| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(4)).await;
            Ok(())
        })
    })
    .await;
    let (fast, fast_url) = FakeReceiver::start(|_| Box::pin(async { Ok(()) })).await;
    create(
        ch,
        Subscription {
            ack_deadline: secs(30),
            ..push_subscription("slow", &slow_url, 5)
        },
    )
    .await;
    create(ch, push_subscription("fast", &fast_url, 5)).await;

    let mut ids = Vec::new();
    for key in ["a", "b", "c", "d", "e"] {
        ids.push(publish(ch, key).await);
    }
    eventually(
        Duration::from_secs(3),
        "the fast subscription has every delivery",
        || async {
            let acked = server
                .deliveries("fast")
                .await
                .iter()
                .filter(|d| d.state() == DeliveryState::Acked)
                .count();
            (acked == ids.len()).then_some(())
        },
    )
    .await;
    assert_eq!(fast.seen().len(), ids.len());
    eventually(
        Duration::from_secs(1),
        "the slow receiver holds two calls",
        || async { (slow.in_flight.load(Ordering::SeqCst) == 2).then_some(()) },
    )
    .await;
    assert_eq!(
        slow.answered.load(Ordering::SeqCst),
        0,
        "the slow receiver is still busy"
    );
    assert_eq!(
        slow.seen().len(),
        2,
        "push.per_subscription bounds the calls in flight to one subscription"
    );
    assert_eq!(slow.most_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_running_server_deletes_final_messages_after_retention() {
    let server = TestServer::start_with(|config| {
        config.retention.final_messages = Duration::from_millis(300);
    })
    .await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let delivered = server.publish(TOPIC, "delivered").await;
    let delivery = server.receive_one(SUB, Duration::from_secs(1)).await;
    server.ack(SUB, &[delivery.receipt.as_str()]).await;
    let cancelled = server.prepare(TOPIC, "cancelled").await;
    server.cancel(&cancelled).await.expect("Cancel");
    let ch = &server.channel();
    for id in [&delivered, &cancelled] {
        eventually(
            Duration::from_secs(3),
            "the final message is deleted",
            || async { find(ch, id).await.is_none().then_some(()) },
        )
        .await;
    }
    let mut request = publish_request(PRODUCER, TOPIC, "delivered");
    request.payload = b"other content".to_vec();
    let response = server
        .producer()
        .publish(request)
        .await
        .expect("Publish")
        .into_inner();
    assert!(response.created, "the producer key was freed");
}
