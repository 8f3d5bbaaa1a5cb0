//! The tower layer that authenticates every call to Courier's services once, before any
//! handler runs: it puts the [`Caller`] into the request, or answers UNAUTHENTICATED itself.
//! Health and reflection pass untouched.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use tonic::Status;
use tower_layer::Layer;
use tower_service::Service;

use super::{Caller, rules};
use crate::security::Authenticator;

#[derive(Debug, Clone)]
pub struct AuthLayer {
    authenticator: Arc<Authenticator>,
}

impl AuthLayer {
    pub fn new(authenticator: Arc<Authenticator>) -> Self {
        Self { authenticator }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            authenticator: self.authenticator.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Authenticate<S> {
    inner: S,
    authenticator: Arc<Authenticator>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Authenticate<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Self::Response, Self::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let path = request.uri().path();
        if !path.starts_with(rules::PROTECTED_PREFIX) {
            return Either::Right(self.inner.call(request));
        }
        let (rpc, rule) = rules::lookup(path);
        let authorization = request.headers().get(http::header::AUTHORIZATION);
        match self.authenticator.authenticate(authorization) {
            Ok(who) => {
                request.extensions_mut().insert(Caller::new(who, rpc, rule));
                Either::Right(self.inner.call(request))
            }
            Err(rejection) => {
                let status = Status::unauthenticated(rejection.to_string());
                Either::Left(ready(Ok(status.into_http())))
            }
        }
    }
}
