//! Producer: the two-phase flow (Prepare, then Confirm or Cancel), Publish, CheckStatus and
//! checker registration.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::field::Empty;
use tracing::{debug, info, instrument};

use super::ApiContext;
use super::{convert, endpoints};
use crate::domain::{Decision, Timestamp};
use crate::metrics;
use crate::proto::{self, producer_server::Producer};

pub struct ProducerService {
    context: Arc<ApiContext>,
}

impl ProducerService {
    pub(super) fn new(context: Arc<ApiContext>) -> Self {
        Self { context }
    }

    async fn decide(
        &self,
        message: Option<proto::MessageRef>,
        decision: Decision,
    ) -> Result<proto::MessageState, Status> {
        let message = convert::message_ref(message)?;
        crate::telemetry::record_message(&message);
        let state = self
            .context
            .store
            .decide(&message, decision, Timestamp::now())
            .await?;
        metrics::message_decided(state, metrics::Source::Producer);
        debug!(%message, ?decision, %state, "decided");
        Ok(convert::message_state(state))
    }
}

#[tonic::async_trait]
impl Producer for ProducerService {
    #[instrument(skip_all, fields(producer = Empty, topic = Empty, message_id = Empty))]
    async fn prepare(
        &self,
        request: Request<proto::PrepareRequest>,
    ) -> Result<Response<proto::PrepareResponse>, Status> {
        let message =
            convert::new_message(request.into_inner().into(), false, &self.context.config)?;
        crate::telemetry::record("producer", &message.producer);
        crate::telemetry::record("topic", &message.topic);
        let outcome = self.context.store.insert_message(message).await?;
        crate::telemetry::record("message_id", outcome.message_id);
        if outcome.created {
            metrics::message_prepared();
        }
        debug!(message_id = %outcome.message_id, created = outcome.created, "prepared");
        Ok(Response::new(convert::prepare_response(outcome)))
    }

    #[instrument(skip_all, fields(message_id = Empty, producer = Empty, key = Empty))]
    async fn confirm(
        &self,
        request: Request<proto::ConfirmRequest>,
    ) -> Result<Response<proto::ConfirmResponse>, Status> {
        let state = self
            .decide(request.into_inner().message, Decision::Commit)
            .await?;
        Ok(Response::new(proto::ConfirmResponse {
            state: state.into(),
        }))
    }

    #[instrument(skip_all, fields(message_id = Empty, producer = Empty, key = Empty))]
    async fn cancel(
        &self,
        request: Request<proto::CancelRequest>,
    ) -> Result<Response<proto::CancelResponse>, Status> {
        let state = self
            .decide(request.into_inner().message, Decision::Rollback)
            .await?;
        Ok(Response::new(proto::CancelResponse {
            state: state.into(),
        }))
    }

    #[instrument(skip_all, fields(producer = Empty, topic = Empty, message_id = Empty))]
    async fn publish(
        &self,
        request: Request<proto::PublishRequest>,
    ) -> Result<Response<proto::PublishResponse>, Status> {
        let message =
            convert::new_message(request.into_inner().into(), true, &self.context.config)?;
        crate::telemetry::record("producer", &message.producer);
        crate::telemetry::record("topic", &message.topic);
        let outcome = self.context.store.insert_message(message).await?;
        crate::telemetry::record("message_id", outcome.message_id);
        if outcome.created {
            metrics::message_published();
        }
        debug!(message_id = %outcome.message_id, created = outcome.created, "published");
        Ok(Response::new(convert::publish_response(outcome)))
    }

    #[instrument(skip_all, fields(message_id = Empty, producer = Empty, key = Empty))]
    async fn check_status(
        &self,
        request: Request<proto::CheckStatusRequest>,
    ) -> Result<Response<proto::CheckStatusResponse>, Status> {
        let message = convert::message_ref(request.into_inner().message)?;
        crate::telemetry::record_message(&message);
        let record = self.context.store.get_message(&message).await?;
        Ok(Response::new(proto::CheckStatusResponse {
            message: Some(convert::message(record)),
        }))
    }

    #[instrument(skip_all, fields(producer = Empty))]
    async fn register_checker(
        &self,
        request: Request<proto::RegisterCheckerRequest>,
    ) -> Result<Response<proto::RegisterCheckerResponse>, Status> {
        let checker = convert::register_checker(request.into_inner(), &self.context.config)?;
        endpoints::must_be_allowed("endpoint", &checker.endpoint, &self.context.config)?;
        let (producer, endpoint) = (checker.producer.clone(), checker.endpoint.clone());
        crate::telemetry::record("producer", &producer);
        self.context.store.register_checker(checker).await?;
        info!(%producer, %endpoint, "checker registered");
        Ok(Response::new(proto::RegisterCheckerResponse {}))
    }
}
