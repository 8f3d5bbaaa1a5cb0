//! Waiting: readiness probes for a starting server, and polling for what a server does by
//! itself.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

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
