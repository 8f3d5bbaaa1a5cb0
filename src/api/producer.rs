//! Producer: the two-phase flow (Prepare, then Confirm or Cancel), Publish, CheckStatus and
//! checker registration.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::field::Empty;
use tracing::{debug, instrument};

use super::ApiContext;
use super::auth::Caller;
use super::endpoints;
use super::trace;
use crate::convert;
use crate::domain::{Decision, MessageRef, Timestamp};
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
        caller: &Caller,
        message: Option<proto::MessageRef>,
        decision: Decision,
    ) -> Result<proto::MessageState, Status> {
        let message = convert::message_ref(message)?;
        crate::telemetry::record_message(&message);
        self.authorize_message(caller, &message).await?;
        let state = self
            .context
            .store
            .decide(&message, decision, Timestamp::now())
            .await?;
        metrics::message_decided(state, metrics::Source::Producer);
        debug!(%message, ?decision, %state, "decided");
        Ok(convert::message_state(state))
    }

    /// Authorizes a call on one message for its producer: named in a key reference, or read
    /// from the stored message for a reference by id, unless the caller's scopes cover every
    /// producer anyway (then the extra read is skipped).
    async fn authorize_message(&self, caller: &Caller, message: &MessageRef) -> Result<(), Status> {
        if caller.allowed_on_any() {
            return Ok(());
        }
        let producer = match message {
            MessageRef::ProducerKey { producer, .. } => producer.clone(),
            MessageRef::Id(_) => self.context.store.get_message(message).await?.producer,
        };
        caller.authorize(Some(producer.as_str()))
    }
}

#[tonic::async_trait]
impl Producer for ProducerService {
    #[instrument(skip_all, fields(producer = Empty, topic = Empty, message_id = Empty))]
    async fn prepare(
        &self,
        request: Request<proto::PrepareRequest>,
    ) -> Result<Response<proto::PrepareResponse>, Status> {
        let caller = Caller::of(&request)?;
        let trace = trace::message_trace(&request);
        let mut message =
            convert::new_message(request.into_inner().into(), false, &self.context.config)?;
        message.trace = trace;
        caller.authorize(Some(message.producer.as_str()))?;
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
        let caller = Caller::of(&request)?;
        let state = self
            .decide(&caller, request.into_inner().message, Decision::Commit)
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
        let caller = Caller::of(&request)?;
        let state = self
            .decide(&caller, request.into_inner().message, Decision::Rollback)
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
        let caller = Caller::of(&request)?;
        let trace = trace::message_trace(&request);
        let mut message =
            convert::new_message(request.into_inner().into(), true, &self.context.config)?;
        message.trace = trace;
        caller.authorize(Some(message.producer.as_str()))?;
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
        let caller = Caller::of(&request)?;
        let message = convert::message_ref(request.into_inner().message)?;
        crate::telemetry::record_message(&message);
        self.authorize_message(&caller, &message).await?;
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
        let caller = Caller::of(&request)?;
        let checker = convert::register_checker(request.into_inner(), &self.context.config)?;
        caller.authorize(Some(checker.producer.as_str()))?;
        endpoints::must_be_allowed("endpoint", &checker.endpoint, &self.context.config)?;
        let (producer, endpoint) = (checker.producer.clone(), checker.endpoint.clone());
        let timeout = checker.timeout;
        crate::telemetry::record("producer", &producer);
        self.context.store.register_checker(checker).await?;
        crate::audit!(caller, %producer, %endpoint, ?timeout, "checker registered");
        Ok(Response::new(proto::RegisterCheckerResponse {}))
    }
}
