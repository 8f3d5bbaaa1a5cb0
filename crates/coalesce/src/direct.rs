//! A client's calls straight onto its HTTP/2 connection.
//!
//! tonic's `Channel` queues every call for a task of its own (tower's `Buffer`), which hands
//! the call to hyper's connection and its answer back: two more task wake-ups per call, and
//! on a machine whose cores are busy each waits its turn. [`DirectChannel`] gives the call to
//! hyper's connection from the caller's own task. It connects on its first call, through
//! [`Coalesced`] (requests made together leave in one write), and again on the first call
//! after the connection closed, so a restarted server is reached as through tonic's `Channel`.
//! Plain TCP only: [`ClientChannel`] keeps tonic's `Channel` for TLS.

use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::body::Body;

use crate::Coalesced;

type BoxError = Box<dyn Error + Send + Sync>;
type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

/// One plain-TCP HTTP/2 connection to `authority`, shared by its clones, that every call
/// goes onto from its own task.
#[derive(Clone)]
pub struct DirectChannel {
    shared: Arc<Shared>,
}

struct Shared {
    authority: Authority,
    /// The open connection's handle, if any; a call that finds none (or a closed one) opens
    /// the next.
    current: Mutex<Option<SendRequest<Body>>>,
    /// Held while connecting, so calls that find no connection together open one.
    connecting: tokio::sync::Mutex<()>,
}

impl DirectChannel {
    /// A channel to the `http://` address `uri` that connects on its first call.
    pub fn lazy(uri: &Uri) -> Result<Self, BoxError> {
        if uri.scheme() != Some(&Scheme::HTTP) {
            return Err(format!("{uri} is not an http:// address").into());
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("{uri} names no host"))?;
        Ok(Self {
            shared: Arc::new(Shared {
                authority,
                current: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// A channel to the `http://` address `uri`, connected now.
    pub async fn connect(uri: &Uri) -> Result<Self, BoxError> {
        let channel = Self::lazy(uri)?;
        channel.sender().await?;
        Ok(channel)
    }

    /// The open connection's handle, opening a connection when there is none.
    async fn sender(&self) -> Result<SendRequest<Body>, BoxError> {
        if let Some(open) = self.open() {
            return Ok(open);
        }
        let _connecting = self.shared.connecting.lock().await;
        if let Some(open) = self.open() {
            return Ok(open);
        }
        let opened = self.handshake().await.map_err(tonic::ConnectError)?;
        *self.current() = Some(opened.clone());
        Ok(opened)
    }

    fn open(&self) -> Option<SendRequest<Body>> {
        self.current()
            .as_ref()
            .filter(|sender| !sender.is_closed())
            .cloned()
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Option<SendRequest<Body>>> {
        // A clone or a store cannot leave the handle half-written.
        self.shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn handshake(&self) -> Result<SendRequest<Body>, BoxError> {
        let authority = &self.shared.authority;
        let host = authority.host().trim_matches(['[', ']']);
        let stream = tokio::net::TcpStream::connect((host, authority.port_u16().unwrap_or(80)))
            .await
            .map_err(|error| format!("cannot connect to {authority}: {error}"))?;
        // Small unary calls must not wait on Nagle.
        stream.set_nodelay(true)?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(Coalesced::new(stream)))
            .await?;
        // Drives the connection until it closes; its calls then fail and the next call
        // connects again.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

impl std::fmt::Debug for DirectChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectChannel")
            .field("authority", &self.shared.authority)
            .finish_non_exhaustive()
    }
}

impl tower_service::Service<Request<Body>> for DirectChannel {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    /// Always ready: a call waits for its connection (and for a free stream) in its future.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> ResponseFuture {
        let channel = self.clone();
        Box::pin(async move {
            // Generated clients send the path alone; HTTP/2 wants the scheme and authority.
            let mut uri = std::mem::take(request.uri_mut()).into_parts();
            uri.scheme = Some(Scheme::HTTP);
            uri.authority = Some(channel.shared.authority.clone());
            *request.uri_mut() = Uri::from_parts(uri)?;
            let mut sender = channel.sender().await?;
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            Ok(response.map(Body::new))
        })
    }
}

/// How a Courier client reaches the server: straight onto the connection over plain TCP
/// ([`DirectChannel`]), tonic's `Channel` over TLS.
#[derive(Clone, Debug)]
pub enum ClientChannel {
    Plain(DirectChannel),
    Tls(tonic::transport::Channel),
}

impl tower_service::Service<Request<Body>> for ClientChannel {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Self::Plain(channel) => channel.poll_ready(cx),
            Self::Tls(channel) => channel.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, request: Request<Body>) -> ResponseFuture {
        match self {
            Self::Plain(channel) => channel.call(request),
            Self::Tls(channel) => {
                let answer = channel.call(request);
                Box::pin(async move { answer.await.map_err(Into::into) })
            }
        }
    }
}
