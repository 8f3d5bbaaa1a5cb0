//! A client's calls straight onto its HTTP/2 connection.
//!
//! tonic's `Channel` hands every call to a task of its own (tower's `Buffer`), which hands it
//! to hyper's connection task, which starts one more task per call to wait for the answer and
//! pass it back: three hand-offs between tasks per call, and on a machine whose cores are busy
//! each waits its turn. [`DirectChannel`] speaks HTTP/2 itself (the `h2` crate, which hyper
//! and tonic build on) from the caller's own task: the call opens its stream and queues its
//! request there, and the connection's one task writes it, reads the answer and wakes the
//! caller. It connects on its first call, through [`Coalesced`] (requests made together leave
//! in one write), and again on the first call after the connection closed, so a restarted
//! server is reached as through tonic's `Channel`. Plain TCP only: [`ClientChannel`] keeps
//! tonic's `Channel` for TLS.

use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use h2::client::{self, SendRequest};
use h2::{Reason, RecvStream, SendStream};
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use http_body::{Body as _, Frame};
use tonic::body::Body;
use tonic::{Code, Status};

use crate::Coalesced;

type BoxError = Box<dyn Error + Send + Sync>;
type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

/// HTTP/2 settings as hyper's client (under tonic's `Channel`) has them.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
const MAX_FRAME: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 1024 * 1024;
const MAX_HEADER_LIST: u32 = 16 * 1024;

/// One plain-TCP HTTP/2 connection to `authority`, shared by its clones, that every call
/// goes onto from its own task.
#[derive(Clone)]
pub struct DirectChannel {
    shared: Arc<Shared>,
}

struct Shared {
    authority: Authority,
    /// The open connection, if any; a call that finds none (or a closed one) opens the next.
    current: Mutex<Option<Connection>>,
    /// Held while connecting, so calls that find no connection together open one.
    connecting: tokio::sync::Mutex<()>,
}

/// An open connection: the handle calls open their streams with, and whether the task that
/// drives the connection has ended.
#[derive(Clone)]
struct Connection {
    streams: SendRequest<Bytes>,
    ended: Arc<AtomicBool>,
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
        channel.streams().await?;
        Ok(channel)
    }

    /// The open connection's handle, opening a connection when there is none.
    async fn streams(&self) -> Result<SendRequest<Bytes>, BoxError> {
        if let Some(open) = self.open() {
            return Ok(open);
        }
        let _connecting = self.shared.connecting.lock().await;
        if let Some(open) = self.open() {
            return Ok(open);
        }
        let opened = self.handshake().await.map_err(tonic::ConnectError)?;
        let streams = opened.streams.clone();
        *self.current() = Some(opened);
        Ok(streams)
    }

    fn open(&self) -> Option<SendRequest<Bytes>> {
        self.current()
            .as_ref()
            .filter(|open| !open.ended.load(Ordering::Acquire))
            .map(|open| open.streams.clone())
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Option<Connection>> {
        // A clone or a store cannot leave the handle half-written.
        self.shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn handshake(&self) -> Result<Connection, BoxError> {
        let authority = &self.shared.authority;
        let host = authority.host().trim_matches(['[', ']']);
        let stream = tokio::net::TcpStream::connect((host, authority.port_u16().unwrap_or(80)))
            .await
            .map_err(|error| format!("cannot connect to {authority}: {error}"))?;
        // Small unary calls must not wait on Nagle.
        stream.set_nodelay(true)?;
        let (streams, connection) = client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME)
            .max_send_buffer_size(MAX_SEND_BUFFER)
            .max_header_list_size(MAX_HEADER_LIST)
            .enable_push(false)
            .handshake(Coalesced::new(stream))
            .await
            .map_err(|error| format!("HTTP/2 with {authority} failed: {error}"))?;
        let ended = Arc::new(AtomicBool::new(false));
        let ends = Arc::clone(&ended);
        // Drives the connection until it closes; its calls then fail and the next call
        // connects again.
        tokio::spawn(async move {
            let _ = connection.await;
            ends.store(true, Ordering::Release);
        });
        Ok(Connection { streams, ended })
    }

    /// What a call that HTTP/2 failed answers, in gRPC's terms.
    fn status(&self, error: &h2::Error) -> Status {
        status_of(error, &self.shared.authority)
    }
}

/// A connection that failed or went away is UNAVAILABLE (the call may be tried again, on the
/// next connection); a stream the server reset takes the code gRPC gives its reason.
fn status_of(error: &h2::Error, authority: &Authority) -> Status {
    if error.is_io() || error.is_go_away() {
        return Status::unavailable(format!("the connection to {authority} failed: {error}"));
    }
    let code = match error.reason() {
        Some(Reason::REFUSED_STREAM) => Code::Unavailable,
        Some(Reason::CANCEL) => Code::Cancelled,
        Some(Reason::ENHANCE_YOUR_CALM) => Code::ResourceExhausted,
        Some(Reason::INADEQUATE_SECURITY) => Code::PermissionDenied,
        Some(_) => Code::Internal,
        None => Code::Unknown,
    };
    Status::new(code, format!("HTTP/2 call to {authority} failed: {error}"))
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
            let failed = |error: h2::Error| channel.status(&error);
            let mut streams = channel.streams().await?.ready().await.map_err(failed)?;
            let (head, body) = request.into_parts();
            let whole = body.is_end_stream();
            let (answer, stream) = streams
                .send_request(Request::from_parts(head, ()), whole)
                .map_err(failed)?;
            if !whole {
                let mut pipe = BodyPipe {
                    body,
                    stream,
                    held: None,
                };
                // A unary request's one message is ready now, and leaves from here; a body
                // still streaming goes on in a task of its own.
                match std::future::poll_fn(|cx| Poll::Ready(pipe.poll_send(cx))).await {
                    Poll::Ready(sent) => sent?,
                    Poll::Pending => {
                        tokio::spawn(std::future::poll_fn(move |cx| {
                            pipe.poll_send(cx).map(|_| ())
                        }));
                    }
                }
            }
            let response = answer.await.map_err(failed)?;
            let authority = channel.shared.authority.clone();
            Ok(response.map(|received| {
                Body::new(ResponseBody {
                    received,
                    data_done: false,
                    authority,
                })
            }))
        })
    }
}

/// A request's body onto its stream. The last DATA frame is held back until the body says
/// whether more follows, so a one-message body leaves as one frame that also ends the stream.
/// The stream takes data beyond its flow-control window and holds it until the window opens;
/// a unary request is one message, already in memory.
struct BodyPipe {
    body: Body,
    stream: SendStream<Bytes>,
    held: Option<Bytes>,
}

impl BodyPipe {
    /// Sends what the body has; ready once it has all gone. A body that fails resets the
    /// stream, so the server does not act on half a request, and its status is the call's.
    /// A send that fails means the stream or the connection did, which the answer reports.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        loop {
            let frame = match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => {
                    let sent = self.held.take().is_none_or(|data| self.send(data, false));
                    return if sent {
                        Poll::Pending
                    } else {
                        Poll::Ready(Ok(()))
                    };
                }
                Poll::Ready(None) => {
                    let last = self.held.take().unwrap_or_default();
                    self.send(last, true);
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Some(Err(error))) => {
                    self.stream.send_reset(Reason::CANCEL);
                    return Poll::Ready(Err(error));
                }
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            let sent = match frame.into_data() {
                Ok(data) => self
                    .held
                    .replace(data)
                    .is_none_or(|earlier| self.send(earlier, false)),
                Err(frame) => {
                    let sent = self.held.take().is_none_or(|data| self.send(data, false));
                    if let Ok(trailers) = frame.into_trailers() {
                        if sent {
                            let _ = self.stream.send_trailers(trailers);
                        }
                        return Poll::Ready(Ok(()));
                    }
                    sent
                }
            };
            if !sent {
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// Whether `data` went onto the stream.
    fn send(&mut self, data: Bytes, end: bool) -> bool {
        self.stream.send_data(data, end).is_ok()
    }
}

/// An answer's body as tonic reads it: its DATA frames, each given back to the flow-control
/// windows once read, then its trailers (`grpc-status`).
struct ResponseBody {
    received: RecvStream,
    data_done: bool,
    authority: Authority,
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if !this.data_done {
            match ready!(this.received.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Read: the server may send as much again. Fails only once the stream
                    // is gone, which the next poll reports.
                    let _ = this.received.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => {
                    return Poll::Ready(Some(Err(status_of(&error, &this.authority))));
                }
                None => this.data_done = true,
            }
        }
        match ready!(this.received.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(error) => Poll::Ready(Some(Err(status_of(&error, &this.authority)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.received.is_end_stream()
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
