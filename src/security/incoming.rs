//! The TLS accept loop: each new connection is handshaken with the rustls configuration that
//! is current when it arrives, so a reload (SIGHUP) applies to new connections while open ones
//! keep theirs. Handshakes run concurrently, each with a deadline, so one slow client cannot
//! hold up the others; finished connections go to tonic as its incoming stream. Without TLS,
//! tonic's own accept loop, with the same pause after a failed accept. Either way a connection
//! reaches tonic [`Coalesced`], so the answers of calls finishing together share a write.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tracing::{debug, warn};

use super::Swappable;
use courier_coalesce::Coalesced;

/// Longest a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors, …) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Handshaken connections waiting for tonic to take them.
const QUEUE: usize = 64;

pub type TlsConnection = Coalesced<TlsStream<TcpStream>>;

/// Plain TCP connections from `listener`, with TCP_NODELAY (small unary calls must not wait on
/// Nagle). tonic retries a failed accept at once; out of file descriptors that would spin a
/// core until one frees, so each failure pauses the loop first.
pub fn plain_incoming(
    listener: TcpListener,
) -> impl Stream<Item = io::Result<Coalesced<TcpStream>>> {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .then(|accepted| async move {
            if let Err(error) = &accepted {
                warn!(%error, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
            accepted.map(Coalesced::new)
        })
}

/// Accepts on `listener` until `stop` is cancelled; yields handshaken connections.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<Swappable<ServerConfig>>,
    stop: CancellationToken,
) -> ReceiverStream<Result<TlsConnection, io::Error>> {
    let (sender, receiver) = mpsc::channel(QUEUE);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = stop.cancelled() => return,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            // Small unary calls must not wait on Nagle.
            if let Err(error) = stream.set_nodelay(true) {
                debug!(%peer, %error, "cannot set TCP_NODELAY");
            }
            let acceptor = TlsAcceptor::from(config.current());
            let sender = sender.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(connection)) => {
                        let _ = sender.send(Ok(Coalesced::new(connection))).await;
                    }
                    Ok(Err(error)) => debug!(%peer, %error, "tls handshake failed"),
                    Err(_) => debug!(%peer, "tls handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(receiver)
}
