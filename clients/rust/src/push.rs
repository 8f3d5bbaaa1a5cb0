//! The push side: a tonic `Receiver` service that Courier calls with each delivery of a push
//! subscription. It checks the call comes from Courier, runs the handler in the producer's
//! trace, and answers OK (acknowledged) or an error status (retried with backoff).

use std::sync::Arc;

use opentelemetry::context::FutureExt as _;
use tonic::{Request, Response, Status};
use tracing::warn;

use crate::CallbackAuth;
use crate::handler::Handler;
use crate::proto::receiver_server::{Receiver, ReceiverServer};
use crate::proto::{DeliverResponse, Delivery};
use crate::trace;

/// A `Receiver` service around a [`Handler`].
pub struct PushReceiver<H> {
    handler: Arc<H>,
    auth: CallbackAuth,
}

impl<H: Handler> PushReceiver<H> {
    /// Runs `handler` on the deliveries `auth` accepts as Courier's.
    pub fn new(handler: H, auth: CallbackAuth) -> Self {
        Self {
            handler: Arc::new(handler),
            auth,
        }
    }

    /// The service, ready for `tonic::transport::Server::add_service`.
    pub fn into_server(self) -> ReceiverServer<Self> {
        ReceiverServer::new(self)
    }
}

#[tonic::async_trait]
impl<H: Handler> Receiver for PushReceiver<H> {
    async fn deliver(
        &self,
        request: Request<Delivery>,
    ) -> Result<Response<DeliverResponse>, Status> {
        self.auth
            .verify(
                request.metadata(),
                &request.get_ref().subscription,
                &request.get_ref().message_id,
            )
            .await?;
        let delivery = request.into_inner();
        let message_id = delivery.message_id.clone();
        let context = trace::handler_context(&delivery);
        match self.handler.handle(delivery).with_context(context).await {
            Ok(()) => Ok(Response::new(DeliverResponse {})),
            Err(failure) => {
                warn!(%message_id, error = %failure, "push handler failed; Courier will retry");
                // The push contract has no Reject: any error is retried until the
                // subscription's max_attempts make the delivery a dead letter.
                let code = if failure.is_permanent() {
                    tonic::Code::FailedPrecondition
                } else {
                    tonic::Code::Unavailable
                };
                Err(Status::new(code, failure.to_string()))
            }
        }
    }
}
