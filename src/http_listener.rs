//! The HTTP listener (`metrics_listen`): a small HTTP/1.1 server answering `GET /metrics` with
//! the OpenMetrics text exposition, `GET /.well-known/jwks.json` with the public keys that
//! verify the JWT on every callback, and every other path with the console (`crate::console`). It sits beside the gRPC server in the wiring, as it reads
//! the store, the metrics and the callbacks' keyring. The backlog gauges are read from the store on each scrape (one scrape at
//! a time; scrapes that arrive meanwhile share its result), so they are never staler than the
//! scrape interval and cost nothing between scrapes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::callbacks::Keyring;
use crate::console::Console;
use crate::domain::Timestamp;
use crate::metrics;
use crate::store::{Stats, StatsScope, Store};
use crate::telemetry::ErrorChain;

/// Longest a scrape waits for the store's stats; past it the scrape answers without gauges.
const STATS_TIMEOUT: Duration = Duration::from_secs(5);
/// A scrape that waited on another one's stats reads reuses them when they are this fresh.
const STATS_SHARE: Duration = Duration::from_secs(1);
/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const JWKS_PATH: &str = "/.well-known/jwks.json";

/// What the HTTP listener serves.
pub struct Served {
    /// The gauges of a scrape.
    pub store: Arc<dyn Store>,
    /// The callback keys.
    pub keyring: Arc<Keyring>,
    /// Every other path.
    pub console: Arc<Console>,
}

struct Scrapes {
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    console: Arc<Console>,
    /// The last stats read and when; held across the read so scrapes never pile up on the store.
    last: Mutex<Option<(Instant, Stats)>>,
}

impl Scrapes {
    async fn exposition(&self) -> String {
        let mut last = self.last.lock().await;
        if let Some((read_at, stats)) = last.as_ref()
            && read_at.elapsed() < STATS_SHARE
        {
            return metrics::encode(Some(stats));
        }
        match tokio::time::timeout(
            STATS_TIMEOUT,
            self.store.stats(Timestamp::now(), StatsScope::Live),
        )
        .await
        {
            Ok(Ok(stats)) => {
                let text = metrics::encode(Some(&stats));
                *last = Some((Instant::now(), stats));
                text
            }
            Ok(Err(error)) => {
                metrics::stats_failed();
                warn!(error = %ErrorChain(&error), "metrics: cannot read stats from the store");
                metrics::encode(None)
            }
            Err(_) => {
                metrics::stats_failed();
                warn!(timeout = ?STATS_TIMEOUT, "metrics: reading stats from the store timed out");
                metrics::encode(None)
            }
        }
    }

    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let reply = |status: StatusCode, content_type: &'static str, body: String| {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                content_type.parse().expect("a valid header"),
            );
            response
        };
        match (request.method(), request.uri().path()) {
            (&Method::GET | &Method::HEAD, "/metrics") => {
                reply(StatusCode::OK, OPENMETRICS, self.exposition().await)
            }
            (&Method::GET | &Method::HEAD, JWKS_PATH) => reply(
                StatusCode::OK,
                "application/json",
                self.keyring.jwks(Timestamp::now()),
            ),
            (_, "/metrics" | JWKS_PATH) => reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                "use GET\n".into(),
            ),
            _ => self.console.answer(request).await,
        }
    }
}

/// Serves `/metrics`, the JWKS and the console on `listener` until `shutdown` is cancelled;
/// open connections are closed then too.
pub async fn serve(listener: TcpListener, served: Served, shutdown: CancellationToken) {
    let scrapes = Arc::new(Scrapes {
        store: served.store,
        keyring: served.keyring,
        console: served.console,
        last: Mutex::new(None),
    });
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    warn!(%error, "metrics: accepting a connection failed");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        () = shutdown.cancelled() => break,
                    }
                }
            },
            () = shutdown.cancelled() => break,
        };
        let scrapes = scrapes.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let scrapes = scrapes.clone();
                async move { Ok::<_, Infallible>(scrapes.answer(request).await) }
            });
            let connection = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                result = connection => {
                    if let Err(error) = result {
                        debug!(%peer, %error, "metrics: connection ended with an error");
                    }
                }
                () = shutdown.cancelled() => {}
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}
