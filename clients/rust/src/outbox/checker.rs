//! The Checker Courier calls for a producer's messages left PREPARED, answering from the
//! producer's outbox.

use tonic::{Request, Response, Status};
use tracing::warn;

use super::Outbox;
use crate::CallbackAuth;
use crate::proto::checker_server::{Checker, CheckerServer};
use crate::proto::{CheckRequest, CheckResponse, Decision};
use crate::sql::Backend;

/// A tonic `Checker` service over an [`Outbox`]: COMMIT when the message's local transaction
/// committed, ROLLBACK when it did not (and now never will), UNKNOWN when the database cannot
/// say right now (Courier asks again later).
#[derive(Debug, Clone)]
pub struct OutboxChecker<DB: Backend> {
    outbox: Outbox<DB>,
    auth: CallbackAuth,
}

impl<DB: Backend> OutboxChecker<DB> {
    /// A checker answering from `outbox`, accepting the calls `auth` lets through.
    pub fn new(outbox: Outbox<DB>, auth: CallbackAuth) -> Self {
        Self { outbox, auth }
    }

    /// The service, ready for `tonic::transport::Server::add_service`.
    pub fn into_server(self) -> CheckerServer<Self> {
        CheckerServer::new(self)
    }
}

#[tonic::async_trait]
impl<DB: Backend> Checker for OutboxChecker<DB> {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let check = request.get_ref();
        self.auth
            .verify(request.metadata(), &check.producer, &check.message_id)
            .await?;
        if check.message_id.is_empty() {
            return Err(Status::invalid_argument("message_id is required"));
        }
        let decision = match self.outbox.decide(&check.message_id).await {
            Ok(decision) => decision,
            Err(error) => {
                warn!(message_id = %check.message_id, %error, "cannot read the outbox; answering UNKNOWN");
                Decision::Unknown
            }
        };
        Ok(Response::new(CheckResponse {
            decision: decision.into(),
        }))
    }
}
