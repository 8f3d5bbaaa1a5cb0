//! Producers' Checkers and subscriptions' Receivers for the scheduler to call: real tonic
//! servers on 127.0.0.1:0 that answer with a script and record what they were sent.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use courier::proto::checker_server::{Checker, CheckerServer};
use courier::proto::receiver_server::{Receiver, ReceiverServer};
use courier::proto::{CheckRequest, CheckResponse, Decision, DeliverResponse, Delivery};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::{Router, TcpIncoming};
use tonic::{Request, Response, Status};

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
