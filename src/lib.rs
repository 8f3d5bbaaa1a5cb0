//! Courier: a reliable-message coordinator. Producers Prepare, then Confirm or Cancel; Courier
//! checks back on silent producers and delivers confirmed messages at least once to every
//! subscription.

pub mod api;
pub mod bench;
pub mod callbacks;
pub mod cli;
pub mod config;
pub mod domain;
pub mod metrics;
pub mod proto;
pub mod scheduler;
pub mod store;
pub mod telemetry;
pub mod wakeups;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic::transport::server::{Router, TcpIncoming};
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;
use tower_layer::{Identity, Stack};
use tracing::{info, warn};

use crate::api::{ApiContext, Services};
use crate::config::Config;
use crate::proto::admin_server::AdminServer;
use crate::proto::consumer_server::ConsumerServer;
use crate::proto::producer_server::ProducerServer;
use crate::store::{Store, StoreError};
use crate::wakeups::Wakeups;

pub use crate::config::LogFormat;
pub use crate::telemetry::init_tracing;

/// How often the health task pings the store, and how long one ping may take.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// The health service name for liveness probes: SERVING as long as the process answers at
/// all. Readiness ("" and the service names below) follows the database; a liveness probe on
/// it would restart every replica during a long database outage, which helps nothing.
pub const LIVENESS_SERVICE: &str = "courier.liveness";

/// Every service name whose health follows the database; "" is the server as a whole.
const HEALTH_SERVICES: [&str; 4] = [
    "",
    <ProducerServer<api::ProducerService> as NamedService>::NAME,
    <ConsumerServer<api::ConsumerService> as NamedService>::NAME,
    <AdminServer<api::AdminService> as NamedService>::NAME,
];

/// Services that reflection lists. The descriptor set also holds Checker and Receiver, which
/// users implement and Courier does not serve; their types stay resolvable for grpcurl.
const REFLECTED_SERVICES: [&str; 6] = [
    <ProducerServer<api::ProducerService> as NamedService>::NAME,
    <ConsumerServer<api::ConsumerService> as NamedService>::NAME,
    <AdminServer<api::AdminService> as NamedService>::NAME,
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot open the store")]
    Store(#[from] StoreError),
    #[error("cannot read the listener's address")]
    Listener(#[source] std::io::Error),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen for metrics on {addr} (metrics_listen; empty disables it)")]
    MetricsListen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the reflection service")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("the gRPC server failed")]
    Serve(#[from] tonic::transport::Error),
}

/// Runs Courier on `listener` until `shutdown` is cancelled: opens the store (running its
/// migrations), starts the scheduler, and serves Producer, Consumer, Admin, health and
/// reflection. On shutdown it stops accepting, lets in-flight calls finish within
/// `config.shutdown_grace` (long polls return at once), then stops the background tasks.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    run_with(config, listener, shutdown, RunOptions::default()).await
}

/// Variations of [`run`] for tests and tools.
pub struct RunOptions {
    /// Run the scheduler's loops in the background (the default). Tests that drive the
    /// scheduler themselves turn this off and take the [`scheduler::Scheduler`] instead.
    pub scheduler_loops: bool,
    /// Receives the scheduler over the server's store once the store is open.
    pub scheduler: Option<tokio::sync::oneshot::Sender<scheduler::Scheduler>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            scheduler_loops: true,
            scheduler: None,
        }
    }
}

/// [`run`] with [`RunOptions`].
pub async fn run_with(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    options: RunOptions,
) -> Result<(), RunError> {
    let config = Arc::new(config);
    let listen = listener.local_addr().map_err(RunError::Listener)?;
    let metrics_listener = bind_metrics(&config).await?;
    let wakeups = Wakeups::default();
    let store = store::open(&config, wakeups.clone()).await?;

    // Background work outlives the drain of in-flight calls, so it has its own token; the
    // guard stops it too if this future is dropped or fails.
    let background = CancellationToken::new();
    let _stop_background = background.clone().drop_guard();
    let tracker = TaskTracker::new();
    let scheduler = scheduler::Scheduler::new(store.clone(), wakeups.clone(), &config);
    if let Some(sender) = options.scheduler {
        let _ = sender.send(scheduler.clone());
    }
    if options.scheduler_loops {
        scheduler.spawn(background.clone(), &tracker);
    }

    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, ServingStatus::Serving).await;
    health
        .set_service_status(LIVENESS_SERVICE, ServingStatus::Serving)
        .await;
    tracker.spawn(watch_store_health(
        store.clone(),
        health,
        shutdown.clone(),
        background.clone(),
    ));

    let services_store = store.clone();
    let services = Services::new(ApiContext {
        store,
        wakeups,
        config: config.clone(),
        shutdown: shutdown.clone(),
    });
    let router = router(services, health_service)?;

    if let Some(metrics_listener) = metrics_listener {
        let store = services_store.clone();
        tracker.spawn(metrics::serve(metrics_listener, store, background.clone()));
    }
    info!(%listen, backend = backend_kind(&config.database_url), "courier serving");
    // Same as TcpListenerStream, plus TCP_NODELAY: small unary calls must not wait on Nagle.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = router.serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
    let served = drain_within(server, &shutdown, config.shutdown_grace).await;

    background.cancel();
    tracker.close();
    tracker.wait().await;
    info!("courier stopped");
    served
}

/// Runs the server until it ends; once `shutdown` fires, gives it `grace` to drain.
async fn drain_within(
    server: impl Future<Output = Result<(), tonic::transport::Error>>,
    shutdown: &CancellationToken,
    grace: Duration,
) -> Result<(), RunError> {
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return Ok(result?),
        () = shutdown.cancelled() => {}
    }
    info!(grace = ?grace, "shutting down: no new connections, draining in-flight calls");
    match tokio::time::timeout(grace, server).await {
        Ok(result) => Ok(result?),
        Err(_) => {
            warn!(grace = ?grace, "in-flight calls outlived the shutdown grace; dropping them");
            Ok(())
        }
    }
}

/// Courier's services beside the standard health and reflection services.
fn router(
    services: Services,
    health: HealthServer<impl Health>,
) -> Result<Router<Stack<metrics::RpcMetricsLayer, Identity>>, RunError> {
    Ok(Server::builder()
        .layer(metrics::RpcMetricsLayer)
        .add_service(health)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(services.producer)
        .add_service(services.consumer)
        .add_service(services.admin))
}

fn reflection() -> tonic_reflection::server::Builder<'static> {
    REFLECTED_SERVICES.into_iter().fold(
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // google.rpc error details, so grpcurl can show field violations.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET),
        |builder, service| builder.with_service_name(service),
    )
}

/// Reports NOT_SERVING while the store does not answer, SERVING again once it does, and
/// NOT_SERVING from the start of a shutdown so load balancers move away while calls drain.
async fn watch_store_health(
    store: Arc<dyn Store>,
    health: HealthReporter,
    shutdown: CancellationToken,
    background: CancellationToken,
) {
    let mut serving = true;
    loop {
        tokio::select! {
            () = tokio::time::sleep(HEALTH_INTERVAL) => {}
            () = shutdown.cancelled() => {
                set_health(&health, ServingStatus::NotServing).await;
                return;
            }
            () = background.cancelled() => return,
        }
        let healthy = match tokio::time::timeout(PING_TIMEOUT, store.ping()).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                warn!(error = %api::status::ErrorChain(&error), "store ping failed");
                false
            }
            Err(_) => {
                warn!(timeout = ?PING_TIMEOUT, "store ping timed out");
                false
            }
        };
        if healthy != serving {
            serving = healthy;
            if healthy {
                info!("store reachable again: serving");
                set_health(&health, ServingStatus::Serving).await;
            } else {
                warn!("store unreachable: not serving");
                set_health(&health, ServingStatus::NotServing).await;
            }
        }
    }
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    for service in HEALTH_SERVICES {
        health.set_service_status(service, status).await;
    }
}

/// Binds the metrics listener unless `metrics_listen` is empty. Binding before the store opens
/// makes a taken port fail the start at once, naming the key.
async fn bind_metrics(config: &Config) -> Result<Option<TcpListener>, RunError> {
    let Some(addr) = config.metrics_addr()? else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::MetricsListen { addr, source })?;
    let bound = listener.local_addr().map_err(RunError::Listener)?;
    info!(metrics_listen = %bound, "metrics served at /metrics");
    Ok(Some(listener))
}

/// The backend's kind for the logs; the URL itself may carry a password.
fn backend_kind(database_url: &str) -> &'static str {
    store::Backend::of(database_url).map_or("unknown", store::Backend::name)
}
