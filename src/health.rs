//! Readiness that follows the store: NOT_SERVING as soon as a call finds the store away,
//! SERVING again as soon as it answers, and NOT_SERVING from the start of a shutdown so load
//! balancers move away while calls drain.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::{info, warn};

use crate::api;
use crate::proto::admin_server::AdminServer;
use crate::proto::consumer_server::ConsumerServer;
use crate::proto::producer_server::ProducerServer;
use crate::store::Store;
use crate::telemetry::ErrorChain;

/// How often the store is pinged while it answers and no call reports it away.
const HEALTHY_INTERVAL: Duration = Duration::from_secs(5);
/// How often it is probed while it does not answer, so SERVING returns quickly.
const OUTAGE_INTERVAL: Duration = Duration::from_millis(250);
/// How long one ping may take while the store answers, and while it does not. A report of a
/// failing call is checked with the short one: a dead network path must not take seconds.
const HEALTHY_PING_TIMEOUT: Duration = Duration::from_secs(3);
const REPORTED_PING_TIMEOUT: Duration = Duration::from_millis(500);

/// The health service name for liveness probes: SERVING as long as the process answers at
/// all. Readiness ("" and the service names below) follows the database; a liveness probe on
/// it would restart every replica during a long database outage, which helps nothing.
pub const LIVENESS_SERVICE: &str = "courier.liveness";

/// Every service name whose health follows the database; "" is the server as a whole.
const READINESS_SERVICES: [&str; 4] = [
    "",
    <ProducerServer<api::ProducerService> as NamedService>::NAME,
    <ConsumerServer<api::ConsumerService> as NamedService>::NAME,
    <AdminServer<api::AdminService> as NamedService>::NAME,
];

/// How calls tell the health task that the store did not answer them, so it checks at once
/// instead of at its next ping.
#[derive(Debug, Clone, Default)]
pub struct StoreOutages(Arc<Notify>);

impl StoreOutages {
    pub fn report(&self) {
        self.0.notify_one();
    }
}

/// Sets every readiness service and liveness to SERVING.
pub async fn start_serving(health: &HealthReporter) {
    set_readiness(health, ServingStatus::Serving).await;
    health
        .set_service_status(LIVENESS_SERVICE, ServingStatus::Serving)
        .await;
}

/// Keeps readiness in step with the store until `background` is cancelled. While the store
/// answers, it is pinged every few seconds, or at once when a call reports it away (a single
/// failed call, such as a lock timeout, is confirmed by a ping before the replica is pulled
/// out). While it does not answer, it is probed every [`OUTAGE_INTERVAL`].
pub async fn watch_store(
    store: Arc<dyn Store>,
    health: HealthReporter,
    outages: StoreOutages,
    shutdown: CancellationToken,
    background: CancellationToken,
) {
    let mut serving = true;
    loop {
        let ping_timeout = tokio::select! {
            () = tokio::time::sleep(HEALTHY_INTERVAL), if serving => HEALTHY_PING_TIMEOUT,
            () = outages.0.notified(), if serving => REPORTED_PING_TIMEOUT,
            () = tokio::time::sleep(OUTAGE_INTERVAL), if !serving => REPORTED_PING_TIMEOUT,
            () = shutdown.cancelled() => {
                set_readiness(&health, ServingStatus::NotServing).await;
                return;
            }
            () = background.cancelled() => return,
        };
        let answers = answers(store.as_ref(), ping_timeout, serving).await;
        if answers != serving {
            serving = answers;
            if answers {
                info!("store reachable again: serving");
                set_readiness(&health, ServingStatus::Serving).await;
            } else {
                warn!("store unreachable: not serving");
                set_readiness(&health, ServingStatus::NotServing).await;
            }
        }
    }
}

/// Whether the store answers a ping within `timeout`. Failures are logged only on the way into
/// an outage, not on every probe during one.
async fn answers(store: &dyn Store, timeout: Duration, serving: bool) -> bool {
    match tokio::time::timeout(timeout, store.ping()).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            if serving {
                warn!(error = %ErrorChain(&error), "store ping failed");
            }
            false
        }
        Err(_) => {
            if serving {
                warn!(timeout = ?timeout, "store ping timed out");
            }
            false
        }
    }
}

async fn set_readiness(health: &HealthReporter, status: ServingStatus) {
    for service in READINESS_SERVICES {
        health.set_service_status(service, status).await;
    }
}
