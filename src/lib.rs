//! Courier: a reliable-message coordinator. Producers Prepare, then Confirm or Cancel; Courier
//! checks back on silent producers and delivers confirmed messages at least once to every
//! subscription.

pub mod api;
pub mod bench;
pub mod callbacks;
pub mod cli;
pub mod client;
pub mod config;
pub mod console;
pub mod convert;
pub mod domain;
pub mod health;
pub mod http_listener;
pub mod lease_ahead;
pub mod long_poll;
pub mod metrics;
pub mod proto;
pub mod scheduler;
pub mod security;
pub mod store;
pub mod telemetry;
pub mod wakeups;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic::transport::server::Router;
use tonic_health::pb::health_server::{Health, HealthServer};
use tower_layer::{Identity, Stack};
use tracing::{info, warn};

use crate::api::admission::AdmissionLayer;
use crate::api::auth::AuthLayer;
use crate::api::trace::RpcTraceLayer;
use crate::api::{ApiContext, Services};
use crate::config::{Config, Limits};
use crate::health::StoreOutages;
use crate::proto::admin_server::AdminServer;
use crate::proto::consumer_server::ConsumerServer;
use crate::proto::producer_server::ProducerServer;
use crate::security::Security;
use crate::store::StoreError;
use crate::wakeups::Wakeups;

pub use crate::config::LogFormat;
pub use crate::health::LIVENESS_SERVICE;
pub use crate::telemetry::{Telemetry, init_tracing};

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
    #[error(transparent)]
    Security(#[from] crate::security::SecurityError),
    #[error("cannot set up callbacks")]
    Callbacks(#[from] callbacks::SetupError),
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
    /// Re-reads the TLS and credential files when notified, as SIGHUP does.
    pub reload: Arc<Notify>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            scheduler_loops: true,
            scheduler: None,
            reload: Arc::new(Notify::new()),
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
    config.auth.check_exposure(listen)?;
    let security = Arc::new(Security::load(&config)?);
    let metrics_listener = bind_metrics(&config).await?;
    let wakeups = Wakeups::default();
    let store = store::open(&config, wakeups.clone()).await?;

    // Background work outlives the drain of in-flight calls, so it has its own token; the
    // guard stops it too if this future is dropped or fails.
    let background = CancellationToken::new();
    let _stop_background = background.clone().drop_guard();
    let tracker = TaskTracker::new();
    let keyring =
        Arc::new(callbacks::signer::load_keyring(&config.callbacks, store.as_ref()).await?);
    if let Some(path) = &config.callbacks.signing_key_file {
        tracker.spawn(callbacks::signer::reload_on_hangup(
            keyring.clone(),
            path.clone(),
            background.clone(),
        ));
    }
    let callbacks = Arc::new(callbacks::Callbacks::new(
        &config.callbacks,
        keyring.clone(),
    )?);
    let scheduler = scheduler::Scheduler::new(store.clone(), wakeups.clone(), &config, callbacks);
    if let Some(sender) = options.scheduler {
        let _ = sender.send(scheduler.clone());
    }
    if options.scheduler_loops {
        scheduler.spawn(background.clone(), &tracker);
    }
    if security.reloadable() {
        tracker.spawn(security::reload_on_signal(
            security.clone(),
            options.reload,
            background.clone(),
        ));
    }

    let (health, health_service) = tonic_health::server::health_reporter();
    health::start_serving(&health).await;
    let outages = StoreOutages::default();
    tracker.spawn(health::watch_store(
        store.clone(),
        health,
        outages.clone(),
        shutdown.clone(),
        background.clone(),
    ));

    let services_store = store.clone();
    let lease_ahead = lease_ahead::LeaseAhead::new(
        store.clone(),
        wakeups.clone(),
        (tracker.clone(), shutdown.clone()),
        config.limits.lease_ahead_batches,
    );
    let services = Services::new(ApiContext {
        store,
        wakeups,
        lease_ahead,
        config: config.clone(),
        shutdown: shutdown.clone(),
        outages,
    });
    let router = router(
        services,
        health_service,
        AuthLayer::new(security.auth.clone()),
        &config.limits,
    )?;

    if let Some(metrics_listener) = metrics_listener {
        let loopback = metrics_listener
            .local_addr()
            .is_ok_and(|addr| addr.ip().is_loopback());
        let console = console::Console::new(
            services_store.clone(),
            config.clone(),
            security.auth.clone(),
            loopback,
            &keyring,
        );
        tracker.spawn(http_listener::serve(
            metrics_listener,
            http_listener::Served {
                store: services_store.clone(),
                keyring,
                console: Arc::new(console),
            },
            background.clone(),
        ));
    }
    log_exposure(&config, &security, listen);
    let stop_accepting = shutdown.clone().cancelled_owned();
    let server: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> =
        match &security.tls {
            None => Box::pin(router.serve_with_incoming_shutdown(
                security::incoming::plain_incoming(listener),
                stop_accepting,
            )),
            Some(tls) => Box::pin(router.serve_with_incoming_shutdown(
                security::incoming::tls_incoming(listener, tls.clone(), shutdown.clone()),
                stop_accepting,
            )),
        };
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

/// Says how the port is protected; an open port reachable from other machines gets a loud
/// warning.
fn log_exposure(config: &Config, security: &Security, listen: std::net::SocketAddr) {
    let backend = backend_kind(&config.database_url);
    let tls = security.tls.is_some();
    let mutual_tls = config.tls.client_ca_file.is_some();
    let authentication = security.auth.required();
    info!(%listen, backend, tls, mutual_tls, authentication, "courier serving");
    if !authentication && !listen.ip().is_loopback() {
        warn!(
            %listen,
            "AUTHENTICATION IS OFF on a non-loopback address (auth.allow_unauthenticated = true): \
             anyone who reaches this port can publish, consume, redrive and resolve anything"
        );
    }
}

/// Courier's services beside the standard health and reflection services. Calls get their
/// span (outermost, joined to the caller's trace), are counted (so refusals count too),
/// authenticated, then admitted within their kind's bound.
type Layers = Stack<
    AdmissionLayer,
    Stack<AuthLayer, Stack<metrics::RpcMetricsLayer, Stack<RpcTraceLayer, Identity>>>,
>;

fn router(
    services: Services,
    health: HealthServer<impl Health>,
    auth: AuthLayer,
    limits: &Limits,
) -> Result<Router<Layers>, RunError> {
    Ok(Server::builder()
        .max_concurrent_streams(limits.max_streams_per_connection)
        .layer(RpcTraceLayer)
        .layer(metrics::RpcMetricsLayer)
        .layer(auth)
        .layer(AdmissionLayer::new(&limits.in_flight))
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
    info!(metrics_listen = %bound, "console at /, metrics at /metrics, callback keys at /.well-known/jwks.json");
    Ok(Some(listener))
}

/// The backend's kind for the logs; the URL itself may carry a password.
fn backend_kind(database_url: &str) -> &'static str {
    store::Backend::of(database_url).map_or("unknown", store::Backend::name)
}
