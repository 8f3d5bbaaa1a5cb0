//! Producers' Checkers and subscriptions' Receivers for the scheduler to call: real tonic
//! servers on 127.0.0.1:0 that answer with a script and record what they were sent; and the
//! driven servers most scheduler tests start with one of them: [`CheckBack`] for check-back,
//! [`pushing_to`] for push.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use courier::proto::checker_server::{Checker, CheckerServer};
use courier::proto::receiver_server::{Receiver, ReceiverServer};
use courier::proto::{CheckRequest, CheckResponse, Decision, DeliverResponse, Delivery};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::{Router, TcpIncoming};
use tonic::{Request, Response, Status};

use super::{Driven, PUSH_SUB, push_subscription};
use crate::harness::{SUB, TOPIC, subscription};

pub type Answer<T> = Pin<Box<dyn Future<Output = Result<T, Status>> + Send>>;

/// Answers every check with `decision` at once.
pub fn always(decision: Decision) -> impl Fn(CheckRequest) -> Answer<Decision> + Send + Sync {
    move |_| Box::pin(async move { Ok(decision) })
}

/// A producer's Checker that answers with a script and records every request.
#[derive(Clone)]
pub struct FakeChecker {
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
    pub async fn start(
        script: impl Fn(CheckRequest) -> Answer<Decision> + Send + Sync + 'static,
    ) -> (Self, String) {
        let checker = Self {
            script: Arc::new(script),
            calls: Arc::default(),
        };
        let url = serve(Server::builder().add_service(CheckerServer::new(checker.clone()))).await;
        (checker, url)
    }

    pub fn calls(&self) -> Vec<CheckRequest> {
        self.calls.lock().unwrap().clone()
    }
}

/// A push subscription's Receiver that answers with a script and records every delivery and
/// how many calls it held at once.
#[derive(Clone)]
pub struct FakeReceiver {
    script: Arc<dyn Fn(Delivery) -> Answer<()> + Send + Sync>,
    seen: Arc<Mutex<Vec<Delivery>>>,
    pub in_flight: Arc<AtomicUsize>,
    pub most_in_flight: Arc<AtomicUsize>,
    pub answered: Arc<AtomicUsize>,
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
    pub async fn start(
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

    pub fn seen(&self) -> Vec<Delivery> {
        self.seen.lock().unwrap().clone()
    }

    pub fn attempts(&self) -> Vec<u32> {
        self.seen().iter().map(|d| d.attempt).collect()
    }
}

/// A driven server set up for check-back: a pull subscription `SUB` of `TOPIC`, and for
/// `PRODUCER` a fake Checker, another endpoint, or no Checker at all. Options first, then one
/// of the three starts: `CheckBack::default().max_attempts(3).checker(script)`.
#[derive(Default)]
pub struct CheckBack {
    max_attempts: Option<u32>,
    timeout: Option<Duration>,
}

impl CheckBack {
    /// The server's `checks.max_attempts` (the default otherwise).
    pub fn max_attempts(self, max_attempts: u32) -> Self {
        Self {
            max_attempts: Some(max_attempts),
            ..self
        }
    }

    /// The timeout the Checker is registered with (the default otherwise).
    pub fn timeout(self, timeout: Duration) -> Self {
        Self {
            timeout: Some(timeout),
            ..self
        }
    }

    /// Starts the server with a fake Checker answering with `script`.
    pub async fn checker(
        self,
        script: impl Fn(CheckRequest) -> Answer<Decision> + Send + Sync + 'static,
    ) -> (Driven, FakeChecker) {
        let (checker, url) = FakeChecker::start(script).await;
        (self.endpoint(&url).await, checker)
    }

    /// Starts the server with `endpoint` registered as the Checker.
    pub async fn endpoint(self, endpoint: &str) -> Driven {
        let timeout = self.timeout;
        let server = self.without_checker().await;
        server.register_checker(endpoint, timeout).await;
        server
    }

    /// Starts the server with no Checker registered.
    pub async fn without_checker(self) -> Driven {
        let server = Driven::start_with(|config| {
            if let Some(max_attempts) = self.max_attempts {
                config.checks.max_attempts = max_attempts;
            }
        })
        .await;
        server.create_subscription(subscription(SUB, TOPIC)).await;
        server
    }
}

/// A driven server whose push subscription `PUSH_SUB` (of `TOPIC`, fast retries,
/// `max_attempts` attempts) delivers to a fake Receiver answering with `script`.
pub async fn pushing_to(
    max_attempts: u32,
    script: impl Fn(Delivery) -> Answer<()> + Send + Sync + 'static,
) -> (Driven, FakeReceiver) {
    let server = Driven::start().await;
    let (receiver, url) = FakeReceiver::start(script).await;
    server
        .create_subscription(push_subscription(PUSH_SUB, &url, max_attempts))
        .await;
    (server, receiver)
}

/// Serves `router` on 127.0.0.1:0 for the rest of the test; returns its URL.
async fn serve(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener)));
    url
}

/// A URL on which nothing listens.
pub async fn closed_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    drop(listener);
    url
}
