//! The last look at a Courier service's answer before it leaves: what tonic answers on its own
//! before any codec runs (a request over the size limit, a body cut short) is told in
//! Courier's words, and an UNAVAILABLE answer (only a store that did not answer gives one)
//! alerts the health task at once.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::server::NamedService;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, QuotaViolation, StatusExt};
use tower_service::Service;

use crate::health::StoreOutages;

/// The start of the OUT_OF_RANGE text tonic answers, before any codec runs, when a request is
/// over the service's `max_decoding_message_size`.
const TONIC_SIZE_CHECK: &str = "Error, decoded message length too large";
/// The INTERNAL text tonic answers when the body ends before the length its frame declares.
const TONIC_CUT_SHORT: &str = "Unexpected EOF decoding stream.";

/// The largest request a service decodes, and the configured limit to name when one is over.
#[derive(Debug, Clone)]
pub struct RequestLimit {
    pub bytes: usize,
    /// The configuration key a client most likely ran into (the QuotaFailure subject).
    pub limit: &'static str,
    /// What that key allows, in words.
    pub hint: Option<String>,
}

/// A Courier service with its answers looked at on the way out.
#[derive(Clone)]
pub struct Answers<S> {
    inner: S,
    edge: Arc<Edge>,
}

#[derive(Debug)]
struct Edge {
    request_limit: RequestLimit,
    outages: StoreOutages,
}

impl<S> Answers<S> {
    pub fn new(inner: S, request_limit: RequestLimit, outages: StoreOutages) -> Self {
        Self {
            inner,
            edge: Arc::new(Edge {
                request_limit,
                outages,
            }),
        }
    }
}

impl<S: NamedService> NamedService for Answers<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Answers<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let answer = self.inner.call(request);
        let edge = self.edge.clone();
        Box::pin(async move { Ok(edge.look_at(answer.await?)) })
    }
}

impl Edge {
    /// An error answered before any message went out is "trailers-only": its status is in the
    /// headers. Answers with a body pass untouched.
    fn look_at(&self, answer: http::Response<Body>) -> http::Response<Body> {
        let Some(status) = Status::from_header_map(answer.headers()) else {
            return answer;
        };
        match status.code() {
            Code::OutOfRange if status.message().starts_with(TONIC_SIZE_CHECK) => {
                self.request_too_large(status.message()).into_http()
            }
            Code::Internal if status.message() == TONIC_CUT_SHORT => Status::invalid_argument(
                "the request ends before the length its gRPC frame declares",
            )
            .into_http(),
            Code::Unavailable => {
                self.outages.report();
                answer
            }
            _ => answer,
        }
    }

    /// RESOURCE_EXHAUSTED with a QuotaFailure naming the limit, as for an oversized payload.
    fn request_too_large(&self, tonic_text: &str) -> Status {
        let limit = &self.request_limit;
        let size = match found_bytes(tonic_text) {
            Some(found) => format!("request is {found} bytes"),
            None => "request is too large".to_owned(),
        };
        let mut description = format!("{size}; this server takes at most {} bytes", limit.bytes);
        if let Some(hint) = &limit.hint {
            description = format!("{description}; {hint}");
        }
        let details = ErrorDetails::with_quota_failure(vec![QuotaViolation::new(
            limit.limit,
            description.clone(),
        )]);
        Status::with_error_details(Code::ResourceExhausted, description, details)
    }
}

/// The request's size in tonic's text: "... found 5242885 bytes, the limit is ...".
fn found_bytes(tonic_text: &str) -> Option<usize> {
    let (_, rest) = tonic_text.split_once("found ")?;
    rest.split(' ').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonics_text_gives_the_request_size() {
        let text = "Error, decoded message length too large: found 5242885 bytes, the limit is: \
                    4194304 bytes";
        assert_eq!(found_bytes(text), Some(5_242_885));
        assert_eq!(found_bytes("Error, decoded message length too large"), None);
    }
}
